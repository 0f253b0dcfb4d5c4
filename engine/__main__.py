"""Command line: `python -m engine run ...`, `python -m engine prepare`, `python -m engine models`,
`python -m engine settings`.

The run flags come from the run options' declaration (engine.api.options) and from the installed tasks
(engine.api.frontends). Errors become one line and exit status 2 here, and only here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine import Chunk, Comparison, Result, StudioError, list_models, stream_request
from engine.api.frontends import add_option_flags, build_request, installed_tasks
from engine.api.options import OPTIONS, options_from
from engine.api.report import (
    comparison_headers,
    comparison_line,
    comparison_rows,
    labelled,
    metrics_line,
    scores_text,
    text_table,
    to_json,
)
from engine.models.registry import DEFAULT_MODEL
from engine.platform.machine import measure_machine
from engine.platform.settings import settings, settings_table
from engine.warmup import WarmUp


def _parser(tasks: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Transformer Studio engine")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one request and print the output (and metrics)")
    run.add_argument("--task", required=True, choices=sorted(tasks) or None)
    add_option_flags(run)
    for flag in {flag.name: flag for task in tasks.values() for flag in task.flags}.values():
        run.add_argument(f"--{flag.name}", default=flag.default, help=flag.help)
    run.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    run.add_argument("text", help="the input; '-' reads stdin, '@FILE' reads a file")
    prepare = sub.add_parser(
        "prepare", help="load a model, run it once and compile its decode step, so the first request is fast"
    )
    prepare.add_argument("--model", default=DEFAULT_MODEL)
    prepare.add_argument("--precision", default="auto")
    sub.add_parser("models", help="list the model registry")
    sub.add_parser(
        "measure-machine",
        help="measure this machine's memory bandwidth and matmul rate (what requests are set against)",
    )
    sub.add_parser("settings", help="the STUDIO_* settings in force")
    return parser


def _read_text(arg: str) -> str:
    if arg == "-":
        return sys.stdin.read()
    if arg.startswith("@"):
        return Path(arg[1:]).read_text()
    return arg


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def _text(final: Result | Comparison, texts: dict[str, str]) -> str:
    """The streamed text; a run that streams none (classification) gives its final text."""
    if texts:
        return labelled(texts)
    if isinstance(final, Result):
        return final.text
    return labelled({final.a_label: final.a.text, final.b_label: final.b.text})


def _run(args: argparse.Namespace, tasks: dict) -> int:
    options = options_from({o.name: getattr(args, o.name) for o in OPTIONS})
    request = build_request(tasks, args.task, _read_text(args.text), options, vars(args))
    comparing = options.compares
    texts: dict[str, str] = {}
    final = None
    for event in stream_request(request, progress=_progress if comparing and not args.json else None):
        if isinstance(event, Chunk):
            texts[event.run] = texts.get(event.run, "") + event.text
            if not args.json and not comparing:
                print(event.text, end="", flush=True)
        else:
            final = event
    assert final is not None  # the stream ends with the Result or the Comparison
    if args.json:
        print(json.dumps(to_json(final, _text(final, texts)), indent=2))
        return 0
    if isinstance(final, Result):
        print(scores_text(final.scores) if final.scores else "")
        print(metrics_line(final), file=sys.stderr)
        return 0
    for label, run in ((final.a_label, final.a), (final.b_label, final.b)):
        print(f"--- {label} ---\n{scores_text(run.scores) if run.scores else run.text}")
        print(metrics_line(run), file=sys.stderr)
    print(text_table(comparison_headers(final), comparison_rows(final)), file=sys.stderr)
    print(comparison_line(final), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        tasks = installed_tasks()
        args = _parser(tasks).parse_args(argv)
        if args.command == "models":
            for spec in list_models():
                print(
                    f"{spec.name:30} {spec.family or 'auto':10} {spec.source:8} {','.join(spec.tasks):45} {spec.location}"
                )
            return 0
        if args.command == "measure-machine":
            limits = measure_machine()
            print(f"{limits.cpu}, {limits.threads} threads: memory read {limits.read_gb_per_s:.1f} GB/s, "
                  f"fp32 matmul {limits.matmul_gflop_per_s:.1f} GFLOP/s (kept for every request's time split)")  # fmt: skip
            return 0
        if args.command == "settings":
            print(settings_table(settings()))
            return 0
        if args.command == "prepare":
            state = WarmUp(args.model, args.precision).run(compile_here=True)
            print(f"{'ready' if state.phase == 'ready' else 'error'}: {state.message} ({state.seconds:.1f} s)")
            return 0 if state.phase == "ready" else 2
        return _run(args, tasks)
    except (StudioError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
