"""Many users at once through the app's API, as outside users would call it (gradio_client).

Starts the app (the embedded default model, default settings) in a subprocess on a loopback port,
once per mode: `batched` (the default) and `one-at-a-time` (STUDIO_MAX_BATCH=1, and the queue
settings the app had before batching: 1 request in the engine, 16 waiting); on request also
`whole-prompts` (batched, each new prompt prefilled at once, as before chunked prefill). Then N users, each a
thread with its own client, send R mixed requests one after another (chat, code, classification,
summarization, translation). Before the timed round, a warm-up: every user once at the same time,
then a wait until the app's process is quiet (the background compiles that burst asked for are done:
a warm server; a step compiled cold took 180 s here with four compiling at once, so no fixed pause
fits every machine); `--no-warm-up` times a server fresh from its first request instead. Prints per mode: failures (with the first
message), p50 / p95 latency, the wall time, and which decode path the requests ran; the ratio of
wall times is the speed-up.

    python scripts/load_test.py --users 8 --requests 4
    python scripts/load_test.py --users 24 --requests 2 --modes batched
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil
from app_process import launch, stop
from gradio_client import Client

from engine.bench.report import percentile

# After the warm-up burst, background compiles run only between requests: wait until the app's
# process tree has used under QUIET_CPU of a core over QUIET_S (at most WARM_UP_LIMIT_S)
QUIET_CPU, QUIET_S, WARM_UP_LIMIT_S = 0.15, 10.0, 1200.0
MODES = {
    "batched": {},
    "whole-prompts": {"STUDIO_PREFILL_CHUNK": "0"},  # batched, each prompt prefilled at once (before chunks)
    "one-at-a-time": {"STUDIO_MAX_BATCH": "1", "STUDIO_CONCURRENCY": "1", "STUDIO_MAX_QUEUE": "16"},
}
CALLS = [  # (endpoint, arguments): the kinds of request the app serves, short answers
    ("/chat", ("What is the capital of France?", [], "Answer briefly.")),
    ("/generate_code", ("Reverse a string.", "python")),
    ("/classify", ("Great service, I loved it!", "positive, negative, neutral")),
    ("/chat", ("Give me one tip for better sleep.", [], "")),
    ("/summarize", ("The town council met on Monday to discuss the new park. " * 6, "short")),
    ("/translate", ("Where is the station?", "en", "fr")),
]


def _start(env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    app, url = launch(env_extra)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            client = Client(url, verbose=False)
            client.predict(*CALLS[0][1], api_name=CALLS[0][0])  # loads the model; the first request's costs
            return app, url
        except Exception:
            if app.poll() is not None:
                raise RuntimeError("the app exited during start-up") from None
            time.sleep(2)
    app.kill()
    raise RuntimeError("the app did not answer within 10 minutes")


def _user(url: str, user: int, requests: int) -> list[tuple[float, str | None, str]]:
    """(latency, error or None, decode path) per request."""
    client = Client(url, verbose=False)
    outcomes = []
    for i in range(requests):
        endpoint, args = CALLS[(user + i) % len(CALLS)]
        start = time.perf_counter()
        try:
            _, metrics = client.predict(*args, api_name=endpoint)
            path = metrics.get("decode_path", "") if metrics.get("new_tokens", 0) > 1 else "scored"
            outcomes.append((time.perf_counter() - start, None, path))
        except Exception as exc:  # what the user saw
            outcomes.append((time.perf_counter() - start, f"{type(exc).__name__}: {exc}", ""))
    return outcomes


def _wait_until_quiet(pid: int) -> float:
    """Seconds until the process `pid` and its children used under QUIET_CPU of a core over QUIET_S."""
    start = time.monotonic()
    root = psutil.Process(pid)
    while time.monotonic() - start < WARM_UP_LIMIT_S:
        tree = [root, *root.children(recursive=True)]
        before = sum(_cpu_s(p) for p in tree)
        time.sleep(QUIET_S)
        if sum(_cpu_s(p) for p in tree) - before < QUIET_CPU * QUIET_S:
            break
    return time.monotonic() - start


def _cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:  # it ended meanwhile (a compiler)
        return 0.0
    return times.user + times.system


def _round(url: str, users: int, requests: int) -> list[tuple[float, str | None, str]]:
    with ThreadPoolExecutor(users) as pool:
        return [o for seen in pool.map(lambda u: _user(url, u, requests), range(users)) for o in seen]


def run_mode(mode: str, users: int, requests: int, warm_up: bool) -> dict:
    app, url = _start(MODES[mode])
    try:
        if warm_up:
            _round(url, users, 1)
            waited = _wait_until_quiet(app.pid)
            print(f"{mode}: the app was quiet {waited:.0f} s after the warm-up burst", flush=True)
        start = time.perf_counter()
        outcomes = _round(url, users, requests)
        wall = time.perf_counter() - start
    finally:
        stop(app)
    latencies = [t for t, error, _ in outcomes if error is None] or [0.0]
    errors = [error for _, error, _ in outcomes if error is not None]
    return {
        "mode": mode,
        "users": users,
        "requests": len(outcomes),
        "failures": len(errors),
        "p50_s": statistics.median(latencies),
        "p95_s": percentile(latencies, 0.95),
        "wall_s": wall,
        "first_error": errors[0][:120] if errors else "",
        "paths": dict(Counter(path for _, error, path in outcomes if error is None)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4, help="per user, one after another")
    parser.add_argument("--modes", default="batched,one-at-a-time", help=", ".join(MODES))
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false")
    args = parser.parse_args()
    rows = [run_mode(mode, args.users, args.requests, args.warm_up) for mode in args.modes.split(",")]
    print("| mode | users | requests | failures | p50 s | p95 s | wall s | decode paths |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['users']} | {r['requests']} | {r['failures']} | {r['p50_s']:.1f} | "
              f"{r['p95_s']:.1f} | {r['wall_s']:.1f} | {r['paths']} |")  # fmt: skip
        if r["first_error"]:
            print(f"  first failure: {r['first_error']}")
    if len(rows) == 2:
        print(f"wall time, {rows[0]['mode']} / {rows[1]['mode']}: {rows[0]['wall_s'] / rows[1]['wall_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
