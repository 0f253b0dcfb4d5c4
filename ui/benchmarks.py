"""The Lab's runs: the attention benchmark sweep and the speed-quality frontier (engine.experiments) on the
shared model cache, as plot frames and tables; the last one is kept for the MCP resource."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from engine import (
    FRONTIER_COLUMNS,
    SWEEP_COLUMNS,
    InputError,
    ModelSpec,
    RunOptions,
    SweepConfig,
    SweepRow,
    default_engine,
    frontier,
    get_spec,
    plot_frontier,
    sweep,
    to_frame,
    validate_options,
)

LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
DEFAULT_LENGTHS = (512, 1024, 2048)


def _decoder(options: RunOptions, longest: int) -> ModelSpec:
    """The options' model, checked: the Lab benchmarks local decoder models, within their context."""
    validate_options(options, default_engine().device)
    spec = get_spec(options.model)
    if spec.family != "causal" or spec.remote:
        kind = "served remotely" if spec.remote else f"a {spec.family} model"
        raise InputError(f"The Lab benchmarks local decoder models; {spec.name} is {kind}.")
    if spec.context_length and longest > spec.context_length:
        raise InputError(f"{spec.name} fits {spec.context_length} tokens; drop the longer lengths.")
    return spec


def build_config(lengths: list, whole_model: bool, decode_tokens: int, options: RunOptions) -> SweepConfig:
    chosen = tuple(sorted({int(n) for n in lengths or ()}))
    if not chosen:
        raise InputError("Pick at least one sequence length.")
    _decoder(options, chosen[-1])
    return SweepConfig(
        model=options.model,
        lengths=chosen,
        precisions=(options.precision,),
        settings=options.sparse,
        decode_tokens=max(1, int(decode_tokens)),
        repeats=2,
        whole_model=whole_model,
        model_repeats=1,  # one paired whole-model trial: an indicative ratio, quick in the Lab
    )


_last: dict = {}  # the last benchmark this process ran (the app's MCP resource reads it)


def last_benchmark() -> dict:
    """The last sweep or frontier run in this process: its kind, model, when it ended, and its rows."""
    return dict(_last)


def _remember(kind: str, options: RunOptions, frame: pd.DataFrame) -> None:
    _last.clear()
    _last.update(kind=kind, model=options.model, precision=options.precision,
                 finished=datetime.now(UTC).isoformat(timespec="seconds"), rows=frame.to_dict("records"))  # fmt: skip


def run(
    lengths: list, whole_model: bool, decode_tokens: int, options: RunOptions, progress=None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The sweep on the shared model cache (the model stays loaded for the other tabs), as
    (op plot frame, whole-model plot frame, table)."""
    rows = sweep(build_config(lengths, whole_model, decode_tokens, options), default_engine(), progress)
    _remember("sweep", options, result := table(rows))
    return (*plot_frames(rows), result)


def plot_frames(rows: list[SweepRow]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(attention op ms vs length, whole-model prefill ms vs length), one series per mode."""
    op = pd.DataFrame([{"tokens": r.length, "ms": r.op_prefill_ms, "mode": r.mode} for r in rows])
    model = pd.DataFrame(
        [{"tokens": r.length, "ms": r.model_prefill_ms, "mode": r.mode} for r in rows if r.model_prefill_ms]
    )
    return op, model if not model.empty else pd.DataFrame(columns=["tokens", "ms", "mode"])


def table(rows: list[SweepRow]) -> pd.DataFrame:
    return to_frame(rows, SWEEP_COLUMNS).round(3)


def run_frontier(
    lengths: list, densities: list, compiled: bool, options: RunOptions, progress=None
) -> tuple[str, pd.DataFrame]:
    """The frontier on the shared model cache, as (plot PNG path, table)."""
    chosen = tuple(sorted({int(n) for n in lengths or ()}))
    budgets = tuple(sorted({float(d) for d in densities or ()}))
    if not chosen or not budgets:
        raise InputError("Pick at least one length and one budget.")
    _decoder(options, chosen[-1])
    rows = frontier(options.model, options.precision, chosen, budgets, progress=progress, compiled=compiled)
    path = Path(tempfile.mkdtemp(prefix="studio-frontier-")) / "frontier.png"
    plot_frontier(rows, path)
    _remember("frontier", options, result := to_frame(rows, FRONTIER_COLUMNS).round(4))
    return str(path), result
