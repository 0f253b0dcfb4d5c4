"""The benchmark command line: `python -m engine.bench [SUITE] [flags]` (see the package docstring).

Prints the suite's table; with `--out DIR` also writes `<suite>.json`, `.csv` and `.png` there
(`attention.*` or `precision.*`). Errors become one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from engine.api.frontends import add_option_flags
from engine.attention.choice import SparseSettings
from engine.bench import __doc__ as _package_doc
from engine.bench.arrivals import ARRIVALS_COLUMNS, CHUNKS, arrivals_table, plot_arrivals
from engine.bench.auto import auto_choice
from engine.bench.decode import DECODE_COLUMNS, decode_table, plot_decode
from engine.bench.examples import example_answers, example_lines
from engine.bench.experiments import EXPERIMENT_COLUMNS, plot_experiments, run_experiments
from engine.bench.loading import LOAD_COLUMNS, load_table, plot_load
from engine.bench.logprobs import LOGPROBS_COLUMNS, logprobs_table, plot_logprobs
from engine.bench.precision import PRECISION_COLUMNS, precision_table
from engine.bench.report import format_table, machine, plot_precisions, plot_sweep, write_outputs
from engine.bench.serve import SERVE_COLUMNS, plot_serve, serve_sizes, serve_table
from engine.bench.sizes import SIZES
from engine.bench.soak import SINCE, SOAK_COLUMNS, growth, plot_soak, soak_table
from engine.bench.speculation import GUESSERS, SPECULATION_COLUMNS, plot_speculation, speculation_table
from engine.experiments.frontier import DENSITIES, FRONTIER_COLUMNS, LENGTHS, STEPS, frontier, plot_frontier
from engine.experiments.frontier import QUICK_LENGTHS as FRONTIER_QUICK_LENGTHS
from engine.experiments.sweep import QUICK_LENGTHS, SWEEP_COLUMNS, Progress, SweepConfig, sweep
from engine.models.registry import DEFAULT_MODEL
from engine.platform.errors import StudioError
from engine.platform.measure import memory_bandwidth


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.bench", description=_package_doc.splitlines()[0])
    parser.add_argument(
        "suite",
        nargs="?",
        default="attention",
        choices=(
            "attention",
            "precision",
            "compare",
            "decode",
            "serve",
            "frontier",
            "soak",
            "speculation",
            "load",
            "arrivals",
            "logprobs",
        ),
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--quick", action="store_true", help="a short sweep (about a minute on a laptop CPU)")
    parser.add_argument("--lengths", help="comma-separated sequence lengths (default 512..8192)")
    parser.add_argument("--precisions", help="comma-separated precisions (attention default fp32; precision: all)")
    add_option_flags(parser, (f.name for f in fields(SparseSettings)))  # --window, --sinks, --block-size, --pattern
    parser.add_argument("--decode-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="attention op, speculation, logprobs: paired trials")
    parser.add_argument("--logprobs", type=int, default=5, help="logprobs: alternatives asked for per token")
    parser.add_argument("--model-repeats", type=int, default=2, help="whole model: paired dense/sparse trials")
    parser.add_argument("--input-tokens", type=int, default=256, help="precision: prompt length")
    parser.add_argument(
        "--new-tokens",
        type=int,
        help="tokens generated: precision, serve and soak (default 64), decode (128), load (192), arrivals: each "
        "arriving user's (8)",
    )
    parser.add_argument("--op-only", action="store_true", help="attention op only, no whole-model runs")
    parser.add_argument(
        "--runs", help="compare: comparisons per scenario, e.g. identical=10,long=3,precision=1 (the default)"
    )
    parser.add_argument(
        "--users",
        help="serve: concurrent user counts (default 1,2,4,8,16); soak, load, arrivals: one count (4); speculation, logprobs: "
        "streams (1,8)",
    )
    parser.add_argument("--per-user", type=int, default=2, help="serve: requests each user sends, one after another")
    parser.add_argument(
        "--sizes",
        nargs="?",
        const=",".join(SIZES),
        help=f"serve: these Space defaults at their real sizes, random weights; users 1,8 by default ({','.join(SIZES)})",
    )
    parser.add_argument("--requests", type=int, default=500, help="soak: requests sent in all")
    parser.add_argument("--arrivals", type=int, default=8, help="arrivals: users arriving while the streams decode")
    parser.add_argument(
        "--context-words", type=int, default=0, help="arrivals: words of a passage before each question"
    )
    parser.add_argument("--chunks", help="arrivals: prefill chunk sizes in tokens, 0 for whole prompts (0,8,16,32)")
    parser.add_argument("--densities", help="frontier: budgets as shares of the length (default 0.06,0.12)")
    parser.add_argument("--compiled", action="store_true", help="frontier: also time the compiled decode steps")
    parser.add_argument(
        "--speculations", help="speculation: the guessers against none (default prompt_lookup,draft,auto)"
    )
    parser.add_argument(
        "--tasks", help="speculation: comma-separated tasks (default summarize,code edit,chat,translation)"
    )
    parser.add_argument("--out", type=Path, help="write JSON, CSV and PNG here")
    return parser


def _csv(text: str | None, cast: Callable[[str], Any] = str) -> tuple:
    """The items of a comma-separated flag; empty when it is not given."""
    return tuple(cast(x.strip()) for x in (text or "").split(",") if x.strip())


def _report(message: str) -> Progress:
    return lambda fraction, what: print(f"[{fraction:4.0%}] {message}: {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    rows: list[Any]  # the suite's own row dataclasses
    plot: Callable[[list[Any], Path], None]
    try:
        if args.suite == "precision":
            rows = precision_table(
                args.model, _csv(args.precisions), args.input_tokens, args.new_tokens or 64, _report("precision")
            )
            columns, stem, plot = PRECISION_COLUMNS, "precision", plot_precisions
            meta = {"model": args.model, "input_tokens": args.input_tokens, "new_tokens": args.new_tokens or 64}
            meta["machine"] = machine()
        elif args.suite == "decode":
            chosen: dict[str, Any] = {"precisions": _csv(args.precisions)} if args.precisions else {}
            new_tokens = args.new_tokens or 128
            rows = decode_table(args.model, new_tokens=new_tokens, progress=_report("decode"), **chosen)
            columns, stem, plot = DECODE_COLUMNS, "decode", plot_decode
            auto, why = auto_choice(rows, new_tokens)
            studio = tuple(dict.fromkeys(r.precision for r in rows if r.engine == "studio"))
            examples = example_lines(example_answers(args.model, studio), reference=studio[0])
            bandwidth = memory_bandwidth()
            print("\n".join([*why, "", "the app's examples, greedy, against the first precision:", *examples]))
            print("memory bandwidth: " + ", ".join(f"{k} {v:.1f}" for k, v in bandwidth.items()))
            meta = {"model": args.model, "new_tokens": new_tokens, "machine": machine(), "auto": auto, "auto_why": why,
                    "examples": examples, "bandwidth": bandwidth}  # fmt: skip
        elif args.suite == "serve":
            precision = (_csv(args.precisions) or ("auto",))[0]
            new_tokens = args.new_tokens or 64
            if args.sizes:
                users = _csv(args.users or "1,8", int)
                rows = serve_sizes(precision, users, args.per_user, new_tokens, _report("serve"), _csv(args.sizes))
                stem = "serve-sizes"
            else:
                users = _csv(args.users or "1,2,4,8,16", int)
                rows = serve_table(args.model, precision, users, args.per_user, new_tokens, _report("serve"))
                stem = "serve"
            columns, plot = SERVE_COLUMNS, plot_serve
            meta = {"model": args.model, "sizes": args.sizes, "precision": precision, "new_tokens": new_tokens}
            meta["machine"] = machine()
        elif args.suite == "load":
            precision = (_csv(args.precisions) or ("auto",))[0]
            decoding, new_tokens = int(args.users or 4), args.new_tokens or 192
            rows = load_table(args.model, precision, decoding, new_tokens, progress=_report("load"))
            columns, stem, plot = LOAD_COLUMNS, "load", plot_load
            meta = {"model": args.model, "precision": precision, "new_tokens": new_tokens, "machine": machine()}
        elif args.suite == "arrivals":
            precision = (_csv(args.precisions) or ("auto",))[0]
            decoding, new_tokens = int(args.users or 4), args.new_tokens or 8
            rows = arrivals_table(args.model, precision, _csv(args.chunks, int) or CHUNKS, decoding, args.arrivals,
                                  new_tokens, args.context_words, _report("arrivals"))  # fmt: skip
            columns, stem, plot = ARRIVALS_COLUMNS, "arrivals", plot_arrivals
            meta = {"model": args.model, "precision": precision, "new_tokens": new_tokens,
                    "context_words": args.context_words, "machine": machine()}  # fmt: skip
        elif args.suite == "logprobs":
            precision = (_csv(args.precisions) or ("auto",))[0]
            streams, new_tokens = _csv(args.users or "1,8", int), args.new_tokens or 64
            rows = logprobs_table(args.model, precision, streams, args.logprobs, args.repeats, new_tokens,
                                  _report("logprobs"))  # fmt: skip
            columns, stem, plot = LOGPROBS_COLUMNS, "logprobs", plot_logprobs
            meta = {"model": args.model, "precision": precision, "new_tokens": new_tokens, "machine": machine()}
        elif args.suite == "soak":
            new_tokens, soak_users = args.new_tokens or 64, int(args.users or 4)
            rows = soak_table(args.model, args.requests, soak_users, new_tokens, progress=_report("soak"))
            columns, stem, plot = SOAK_COLUMNS, "soak", plot_soak
            ratio = growth(rows)
            print(f"resident memory after request {rows[-1].requests} / after request {SINCE}: {ratio:.3f}"
                  if ratio else f"resident memory: no row after request {SINCE} to compare with")  # fmt: skip
            meta = {"model": args.model, "new_tokens": new_tokens, "users": soak_users, "growth": ratio}
            meta["machine"] = machine()
        elif args.suite == "speculation":
            precision = (_csv(args.precisions) or ("auto",))[0]
            streams = _csv(args.users or "1,8", int)
            rows = speculation_table(args.model, precision, streams, args.repeats, _report("speculation"),
                                     _csv(args.speculations) or GUESSERS, _csv(args.tasks))  # fmt: skip
            columns, stem, plot = SPECULATION_COLUMNS, "speculation", plot_speculation
            meta = {"model": args.model, "precision": precision, "streams": streams, "machine": machine()}
        elif args.suite == "frontier":
            precision = (_csv(args.precisions) or ("auto",))[0]
            lengths = _csv(args.lengths, int) or (FRONTIER_QUICK_LENGTHS if args.quick else LENGTHS)
            densities = _csv(args.densities, float) or DENSITIES
            rows = frontier(
                args.model, precision, lengths, densities, progress=_report("frontier"), compiled=args.compiled
            )
            columns, stem, plot = FRONTIER_COLUMNS, "frontier", plot_frontier
            meta = {"model": args.model, "precision": precision, "steps": STEPS, "machine": machine()}
        elif args.suite == "compare":
            runs = dict((k, int(v)) for k, v in (item.split("=") for item in _csv(args.runs))) if args.runs else None
            rows = run_experiments(args.model, runs, _report("compare"))
            columns, stem, plot = EXPERIMENT_COLUMNS, "compare", plot_experiments
            meta = {"model": args.model, "machine": machine()}
        else:
            config = SweepConfig(
                model=args.model,
                settings=SparseSettings(**{f.name: getattr(args, f.name) for f in fields(SparseSettings)}),
                decode_tokens=args.decode_tokens,
                repeats=args.repeats,
                model_repeats=args.model_repeats,
                whole_model=not args.op_only,
            )
            if args.quick:
                config = replace(
                    config, lengths=QUICK_LENGTHS, repeats=2, model_repeats=1, decode_tokens=8, max_model_length=2048
                )
            config = replace(
                config,
                lengths=_csv(args.lengths, int) or config.lengths,
                precisions=_csv(args.precisions) or config.precisions,
            )
            rows = sweep(config, progress=_report("sweep"))
            columns, stem, plot = SWEEP_COLUMNS, "attention", plot_sweep
            meta = {"config": asdict(config), "machine": machine()}
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows, columns))
    if args.out:
        for path in write_outputs(rows, args.out, stem, plot, meta):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
