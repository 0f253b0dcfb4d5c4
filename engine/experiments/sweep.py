"""The attention sweep: sequence length x attention mode x precision.

For each point the attention op alone at the model's shapes (one layer, prefill and one decode step)
and the whole model (prefill ms, decode tokens/s, peak memory). Dense and sparse run interleaved
(dense sparse, sparse dense, ...) in paired trials and are compared as every comparison in the
product is (`engine.experiments.statistics.compare_timing`): the median paired speedup, its 95% interval, a verdict,
and the noise floor. Next to each sparse speedup: the theoretical limit, dense (query, key) pairs
over the pairs the pattern allows.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

import torch

from engine.api.options import RunOptions
from engine.api.results import Timing, Verdict
from engine.api.validation import validate_options
from engine.attention.choice import AttentionChoice, SparseSettings
from engine.data import long_document
from engine.experiments.attention_op import MODES, allowed_pairs, time_attention_op
from engine.experiments.compare import interleaved
from engine.experiments.statistics import compare_timing
from engine.models.loader import LoadedModel
from engine.models.registry import DEFAULT_MODEL
from engine.platform.measure import PeakMemory, now
from engine.runtime.engine import Engine

Progress = Callable[[float, str], None]

DEFAULT_LENGTHS = (512, 1024, 2048, 4096, 8192)
QUICK_LENGTHS = (512, 2048, 8192)


@dataclass(frozen=True)
class SweepConfig:
    model: str = DEFAULT_MODEL
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    precisions: tuple[str, ...] = ("fp32",)
    settings: SparseSettings = field(default_factory=SparseSettings)
    decode_tokens: int = 16  # decode steps timed after each whole-model prefill
    repeats: int = 3  # op prefill: paired dense/sparse trials (the op decode step: 5x as many)
    whole_model: bool = True
    max_model_length: int = 8192  # whole-model points stop here (prefill time grows fast on CPU)
    model_repeats: int = 2  # whole model: paired dense/sparse trials


def _interval_column(speedup: str) -> property:
    """A read-only "low-high" text of the `<speedup>_low` / `<speedup>_high` fields (None on dense rows)."""
    return property(lambda row: _interval(getattr(row, f"{speedup}_low"), getattr(row, f"{speedup}_high")))


@dataclass
class SweepRow:
    """One (precision, length, mode) point; timings are medians of the mode's trials. Sparse rows
    also carry the comparison with dense: speedup (median paired ratio, above 1 = sparse faster),
    its 95% interval, the verdict ("faster" | "slower" | "same"; "indicative" under 3 pairs) and the op's noise floor."""

    precision: str
    length: int
    mode: str  # dense | sparse
    op_prefill_ms: float  # one attention layer over `length` queries
    op_plan_ms: float  # building the mask / sparse plan, once per forward for all layers
    op_decode_ms: float  # one attention layer, one query against `length` cached keys
    model_prefill_ms: float | None = None
    model_decode_tokens_per_s: float | None = None
    model_peak_memory_mb: float | None = None
    density: float = 1.0  # share of dense (query, key) pairs the kernel computed
    flop_limit: float = 1.0  # dense pairs / pairs the pattern allows: the speedup sparsity can buy
    op_speedup: float | None = None  # sparse rows: dense / sparse, measured
    model_prefill_speedup: float | None = None
    model_decode_speedup: float | None = None
    op_speedup_low: float | None = None
    op_speedup_high: float | None = None
    op_verdict: Verdict | None = None
    noise: float | None = None  # the op prefill timing's relative run-to-run spread (0.10 = unmeasured)
    op_decode_speedup: float | None = None
    op_decode_speedup_low: float | None = None
    op_decode_speedup_high: float | None = None
    op_decode_verdict: Verdict | None = None
    model_prefill_speedup_low: float | None = None
    model_prefill_speedup_high: float | None = None
    model_prefill_verdict: Verdict | None = None
    model_decode_speedup_low: float | None = None
    model_decode_speedup_high: float | None = None
    model_decode_verdict: Verdict | None = None

    # The intervals as one printed column each ("low-high"); the files hold the numbers.
    op_interval = _interval_column("op_speedup")
    op_decode_interval = _interval_column("op_decode_speedup")
    model_prefill_interval = _interval_column("model_prefill_speedup")
    model_decode_interval = _interval_column("model_decode_speedup")


def _interval(low: float | None, high: float | None) -> str | None:
    return None if low is None or high is None else f"{low:.3f}-{high:.3f}"


# The printed table's columns, in reading order (the files hold every field; the `*_interval`
# columns are SweepRow properties formatting the `*_low` / `*_high` fields).
SWEEP_COLUMNS = [
    "precision",
    "length",
    "mode",
    "op_prefill_ms",
    "op_speedup",
    "op_interval",
    "op_verdict",
    "flop_limit",
    "noise",
    "op_plan_ms",
    "density",
    "op_decode_ms",
    "op_decode_speedup",
    "op_decode_interval",
    "op_decode_verdict",
    "model_prefill_ms",
    "model_prefill_speedup",
    "model_prefill_interval",
    "model_prefill_verdict",
    "model_decode_tokens_per_s",
    "model_decode_speedup",
    "model_decode_interval",
    "model_decode_verdict",
    "model_peak_memory_mb",
]


def corpus_ids(tokenizer, length: int) -> torch.Tensor:
    """`length` token ids of real text (the long sample document, repeated as needed)."""
    ids = tokenizer(long_document())["input_ids"]
    reps = -(-length // len(ids))
    return torch.tensor([(ids * reps)[:length]], dtype=torch.long)


def time_model(
    loaded: LoadedModel, length: int, mode: str, settings: SparseSettings, decode_tokens: int
) -> tuple[float, float, float]:
    """One whole-model run: (prefill ms, decode tokens/s, peak MB) on `length` tokens of real text, greedy."""
    from transformers import DynamicCache

    model, device = loaded.model, loaded.device
    ids = corpus_ids(loaded.tokenizer, length).to(device)
    choice = AttentionChoice(mode, settings)
    with PeakMemory(device) as memory, torch.inference_mode():
        cache = DynamicCache(config=model.config)
        start = now(device)
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1, studio_choice=choice)
        logits = logits.logits
        token = logits[:, -1].argmax(-1, keepdim=True)
        prefill_s = now(device) - start
        start = now(device)
        for _ in range(decode_tokens):
            out = model(input_ids=token, past_key_values=cache, use_cache=True, studio_choice=choice)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        decode_s = now(device) - start
    return prefill_s * 1000, decode_tokens / decode_s, memory.peak_mb()


def _record(row: SweepRow, speedup: str, timing: Timing) -> None:
    """A comparison into a sparse row: `speedup` (e.g. "op_speedup"), its `_low` / `_high`, and the
    verdict ("op_verdict")."""
    setattr(row, speedup, timing.ratio)
    setattr(row, f"{speedup}_low", timing.low)
    setattr(row, f"{speedup}_high", timing.high)
    setattr(row, speedup.removesuffix("_speedup") + "_verdict", timing.verdict)


def _point(loaded: LoadedModel, config: SweepConfig, length: int, progress: Progress) -> list[SweepRow]:
    """The dense and the sparse row of one length; `progress(share of the point done, part)`."""
    progress(0.0, "attention op")
    op = time_attention_op(loaded, length, config.settings, config.repeats)
    rows = [
        SweepRow(loaded.precision, length, mode, statistics.median(prefill), plan, statistics.median(decode), density=d)
        for mode, prefill, decode, plan, d in zip(
            MODES, (op.prefill.a, op.prefill.b), (op.decode.a, op.decode.b), op.plan_ms, op.density, strict=True
        )
    ]
    sparse = rows[1]
    dense_pairs = length * (length + 1) // 2
    sparse.flop_limit = dense_pairs / allowed_pairs(config.settings, length)
    sparse.noise = op.prefill.noise
    _record(sparse, "op_speedup", op.prefill)
    _record(sparse, "op_decode_speedup", op.decode)
    assert loaded.spec.context_length is not None  # the loader reads it from the model's config
    if config.whole_model and length <= min(config.max_model_length, loaded.spec.context_length):
        progress(0.5, "whole model")
        # No untimed warm-up here: a whole-model run at long lengths costs seconds to minutes, and
        # the alternating order already spreads any first-run cost over both modes.
        dense_run, sparse_run = (
            partial(time_model, loaded, length, mode, config.settings, config.decode_tokens) for mode in MODES
        )
        runs = interleaved(dense_run, sparse_run, config.model_repeats, warmup=False)
        # (prefill ms, tokens/s, peak MB) lists
        per_mode = [[list(column) for column in zip(*trials, strict=True)] for trials in runs]
        for row, (prefill_ms, tokens_per_s, peak_mb) in zip(rows, per_mode, strict=True):
            row.model_prefill_ms = statistics.median(prefill_ms)
            row.model_decode_tokens_per_s = statistics.median(tokens_per_s)
            row.model_peak_memory_mb = statistics.median(peak_mb)
        (dense_prefill, dense_decode, _), (sparse_prefill, sparse_decode, _) = per_mode
        _record(sparse, "model_prefill_speedup", compare_timing(dense_prefill, sparse_prefill))
        _record(sparse, "model_decode_speedup", compare_timing(dense_decode, sparse_decode, higher_is_better=True))
    return rows


def sweep(config: SweepConfig, engine: Engine | None = None, progress: Progress | None = None) -> list[SweepRow]:
    """Run the attention sweep; `progress(fraction, message)` is called before each part of each point.
    It runs alone on the engine's scheduler thread (as every forward does): requests on that engine wait,
    and background compiles are held (engine.runtime.background: their CPU would skew the timings)."""
    engine = engine or Engine()
    with engine.background.hold():
        return engine.runner.call(lambda report: _sweep(config, engine, report), alone=True, progress=progress)


def _sweep(config: SweepConfig, engine: Engine, progress: Progress) -> list[SweepRow]:
    for precision in config.precisions:  # the run options' validation, before anything is loaded
        options = RunOptions(model=config.model, precision=precision, **asdict(config.settings))
        validate_options(options, engine.device)
    report = progress
    rows: list[SweepRow] = []
    points = [(p, n) for p in config.precisions for n in config.lengths]
    for i, (precision, length) in enumerate(points):

        def point_progress(share: float, part: str, i=i, precision=precision, length=length) -> None:
            report((i + share) / len(points), f"{precision}, {length} tokens, {part}")

        rows += _point(engine.get(config.model, precision), config, length, point_progress)
    report(1.0, "done")
    return rows
