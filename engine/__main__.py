"""Command line: `python -m engine run ...` and `python -m engine models`.

Like the app, the CLI is a front end: it uses `tasks` to turn task inputs into a request.
Errors are turned into a one-line message and exit status 2 here, and only here.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from . import DEFAULT_MODEL, PRECISIONS, Chunk, Comparison, Result, StudioError, list_models, stream_request
from .registry import TASKS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Transformer Studio engine")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one request and print the output (and metrics)")
    run.add_argument("--task", required=True, choices=TASKS)
    run.add_argument("--model", default=DEFAULT_MODEL)
    run.add_argument("--precision", default="auto", choices=PRECISIONS)
    run.add_argument("--attention", default="dense", choices=("dense", "sparse", "compare"))
    run.add_argument("--window", type=int, default=512, help="sparse: keys each query sees")
    run.add_argument("--sinks", type=int, default=4, help="sparse: sink / global tokens")
    run.add_argument("--block-size", type=int, default=64, help="sparse: kernel query block")
    run.add_argument("--pattern", default="auto", help="sparse: auto or one of the pattern names")
    run.add_argument("--max-new-tokens", type=int, default=128)
    run.add_argument("--repetition-penalty", type=float, default=1.0)
    run.add_argument("--truncate", action="store_true", help="cut over-long input instead of failing")
    run.add_argument("--source", default="en", help="translation: source language code")
    run.add_argument("--target", default="fr", help="translation: target language code")
    run.add_argument("--length", default="medium", help="summarization: short, medium or long")
    run.add_argument("--labels", default="positive, negative, neutral", help="classification: candidates")
    run.add_argument("--language", default="python", help="code: programming language")
    run.add_argument("--system", default=None, help="dialogue: system prompt")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    run.add_argument("text", help="the input; '-' reads stdin, '@FILE' reads a file")
    sub.add_parser("models", help="list the model registry")
    return parser


def _read_text(arg: str) -> str:
    if arg == "-":
        return sys.stdin.read()
    if arg.startswith("@"):
        return Path(arg[1:]).read_text()
    return arg


def _build(args) -> object:
    from tasks import RunOptions, classification, code, dialogue, summarization, translation

    options = RunOptions(
        model=args.model,
        precision=args.precision,
        attention=args.attention,
        window=args.window,
        sinks=args.sinks,
        block_size=args.block_size,
        pattern=args.pattern,
        max_new_tokens=args.max_new_tokens,
        repetition_penalty=args.repetition_penalty,
        truncate=args.truncate,
    )
    text = _read_text(args.text)
    if args.task == "translation":
        return translation.build_request(text, args.source, args.target, options)
    if args.task == "summarization":
        return summarization.build_request(text, args.length, options)
    if args.task == "dialogue":
        return dialogue.build_request([], text, args.system or dialogue.DEFAULT_SYSTEM, options)
    if args.task == "classification":
        return classification.build_request(text, args.labels, options)
    return code.build_request(text, args.language, options)


def _metrics_line(result: Result) -> str:
    m = result.metrics
    decode = f"{m.decode_tokens_per_s:.1f} tok/s" if m.decode_tokens_per_s else "n/a"
    return (
        f"[{m.attention} | {m.precision} | {m.device}] prefill {m.prefill_ms:.0f} ms, TTFT {m.ttft_ms:.0f} ms, "
        f"decode {decode}, total {m.total_ms:.0f} ms, {m.input_tokens} in / {m.new_tokens} new tokens, "
        f"peak {m.peak_memory_mb:.0f} MB, model {m.model_memory_mb:.0f} MB, density {m.density:.3f}"
    )


def _print_text(final: Result | Comparison) -> None:
    results = [final] if isinstance(final, Result) else [final.dense, final.sparse]
    for result in results:
        if final is not result:
            print(f"--- {result.metrics.attention} ---\n{result.text}")
        if result.scores:
            print(", ".join(f"{k}: {v:.3f}" for k, v in sorted(result.scores.items(), key=lambda kv: -kv[1])))
        if result.truncated_tokens:
            print(f"(input truncated: {result.truncated_tokens} tokens cut)", file=sys.stderr)
        print(_metrics_line(result), file=sys.stderr)
    if isinstance(final, Comparison):
        decode = f"{final.decode_speedup:.2f}x" if final.decode_speedup else "n/a"
        first = "none" if final.first_divergence is None else str(final.first_divergence)
        print(
            f"sparse vs dense: prefill {final.prefill_speedup:.2f}x, decode {decode}, total "
            f"{final.total_speedup:.2f}x, token agreement {final.token_agreement:.1%}, first divergence {first}, "
            f"density {final.density:.3f}",
            file=sys.stderr,
        )


def _run(args) -> int:
    request = _build(args)
    final = None
    for event in stream_request(request):
        if isinstance(event, Chunk):
            if not args.json and args.attention != "compare":
                print(event.text, end="", flush=True)
        else:
            final = event
    if args.json:
        if isinstance(final, Result):
            payload = {"text": final.text, "metrics": asdict(final.metrics)}
            payload.update(scores=final.scores, truncated_tokens=final.truncated_tokens)
        else:
            payload = final.to_dict()
            payload["comparison"] = {k: payload.pop(k) for k in list(payload) if k not in ("dense", "sparse")}
        print(json.dumps(payload, indent=2))
        return 0
    if isinstance(final, Result) and not final.scores:
        print()
    _print_text(final)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "models":
            for spec in list_models():
                print(
                    f"{spec.name:30} {spec.family or 'auto':10} {spec.source:8} {','.join(spec.tasks):45} {spec.location}"
                )
            return 0
        return _run(args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
