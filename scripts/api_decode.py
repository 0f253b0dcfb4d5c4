"""Decode speed as an API user sees it, against llama.cpp on the same GGUF and prompt, one run.

Launches the app (embedded default model, default settings: `auto`) as a user does and, from the
moment its page answers, sends the decode benchmark's chat prompt through the API (`/chat`, greedy,
no system prompt) again and again, reading each answer for --think seconds (the background compile
runs in those gaps and gives way to requests): each answer's `decode_tokens_per_s` and decode path (eager while
the step compiles in the background, then compiled) as its metrics report them, and when it started
after launch. After the app has stopped (nothing else on the cores), llama.cpp decodes the same
prompt (engine.bench.decode), and so does the engine in this process, without the app (the decode
bench's path, its saved step loaded): the app's steady state (the median of the compiled answers)
against both, in one run.

    python scripts/api_decode.py --answers 12
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from app_process import launch, stop, wait_for_page
from gradio_client import Client

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest, Message
from engine.bench.decode import PROMPT, llama_cpp_decode_rate
from engine.models.registry import DEFAULT_MODEL
from engine.service import run
from engine.warmup import WarmUp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=12, help="chat answers to time, the first ones included")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--think", type=float, default=5.0, help="seconds a user reads an answer before the next")
    args = parser.parse_args()
    launched = time.perf_counter()
    app, url = launch()
    rates: dict[str, list[float]] = {"eager": [], "mixed": [], "compiled": []}  # mixed: compiled mid-answer
    try:
        wait_for_page(app, url)
        client = Client(url, verbose=False)
        print("| # | started s after launch | precision | decode path | decode tok/s |\n|---|---|---|---|---|")
        for index in range(args.answers):
            started = time.perf_counter() - launched
            _, metrics = client.predict(PROMPT, [], "", max_new_tokens=args.new_tokens, api_name="/chat")
            rates[metrics["decode_path"]].append(metrics["decode_tokens_per_s"])
            print(f"| {index + 1} | {started:.1f} | {metrics['precision']} | {metrics['decode_path']} | "
                  f"{metrics['decode_tokens_per_s']:.1f} |", flush=True)  # fmt: skip
            time.sleep(args.think)  # the gaps in which the background compile runs
    finally:
        stop(app)
    direct = direct_rates(args.answers, args.new_tokens)
    anchor = llama_cpp_decode_rate(DEFAULT_MODEL, args.new_tokens, repeats=3)
    if anchor is None:
        print("llama.cpp: not installed (bash scripts/anchor.sh)")
        return 1
    print(f"llama.cpp: {anchor:.1f} tok/s")
    for path, values in rates.items():
        if values:
            print(f"{path}: median {statistics.median(values):.1f} tok/s = "
                  f"{statistics.median(values) / anchor:.2f}x llama.cpp ({len(values)} answers)")  # fmt: skip
    if direct and rates["compiled"]:
        app_rate, engine_rate = statistics.median(rates["compiled"]), statistics.median(direct)
        print(f"engine without the app: median {engine_rate:.1f} tok/s = {engine_rate / anchor:.2f}x llama.cpp "
              f"({len(direct)} answers); the app reaches {app_rate / engine_rate:.2f}x of it")  # fmt: skip
    return 0


def direct_rates(answers: int, new_tokens: int) -> list[float]:
    """The same chat through the engine in this process (no app, no server): its compiled answers' decode
    tokens/s, after a warm-up that loads the saved step as the app's does."""
    WarmUp(DEFAULT_MODEL).run()
    request = GenerationRequest(RunOptions(max_new_tokens=new_tokens), messages=(Message("user", PROMPT),))
    metrics = [run(request).metrics for _ in range(answers)]
    return [m.decode_tokens_per_s for m in metrics if m.decode_path == "compiled" and m.decode_tokens_per_s]


if __name__ == "__main__":
    sys.exit(main())
