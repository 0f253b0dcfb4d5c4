"""Lab: the attention benchmark sweep (engine.bench) from the browser, as plot frames and a table."""

from __future__ import annotations

import pandas as pd

from engine import InputError, RunOptions, default_cache, get_spec, validate_options
from engine.bench import SWEEP_COLUMNS, SweepConfig, SweepRow, sweep, to_frame

LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
DEFAULT_LENGTHS = (512, 1024, 2048)


def build_config(lengths: list, whole_model: bool, decode_tokens: int, options: RunOptions) -> SweepConfig:
    chosen = tuple(sorted({int(n) for n in lengths or ()}))
    if not chosen:
        raise InputError("Pick at least one sequence length.")
    cache = default_cache()
    validate_options(options, cache.device)
    spec = get_spec(options.model)
    if spec.family != "causal":
        raise InputError(f"The Lab benchmarks decoder models; {spec.name} is a {spec.family} model.")
    if spec.context_length and chosen[-1] > spec.context_length:
        raise InputError(f"{spec.name} fits {spec.context_length} tokens; drop the longer lengths.")
    return SweepConfig(
        model=options.model,
        lengths=chosen,
        precisions=(options.precision,),
        settings=options.sparse,
        decode_tokens=max(1, int(decode_tokens)),
        repeats=2,
        whole_model=whole_model,
        model_repeats=1,  # one paired whole-model trial: its verdict allows the unmeasured 10% noise
    )


def run(
    lengths: list, whole_model: bool, decode_tokens: int, options: RunOptions, progress=None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The sweep on the shared model cache (the model stays loaded for the other tabs), as
    (op plot frame, whole-model plot frame, table)."""
    rows = sweep(build_config(lengths, whole_model, decode_tokens, options), default_cache(), progress)
    return (*plot_frames(rows), table(rows))


def plot_frames(rows: list[SweepRow]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(attention op ms vs length, whole-model prefill ms vs length), one series per mode."""
    op = pd.DataFrame([{"tokens": r.length, "ms": r.op_prefill_ms, "mode": r.mode} for r in rows])
    model = pd.DataFrame(
        [{"tokens": r.length, "ms": r.model_prefill_ms, "mode": r.mode} for r in rows if r.model_prefill_ms]
    )
    return op, model if not model.empty else pd.DataFrame(columns=["tokens", "ms", "mode"])


def table(rows: list[SweepRow]) -> pd.DataFrame:
    return to_frame(rows, SWEEP_COLUMNS).round(3)
