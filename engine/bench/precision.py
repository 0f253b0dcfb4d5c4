"""The precision table: per precision, cold load time, footprint, prefill, decode tokens/s, and greedy
agreement with the first precision (fp32 by default: what `auto` on CPU is chosen from)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.api.validation import validate_options
from engine.experiments.sweep import Progress, corpus_ids
from engine.models.precision import resolve_device, supported_precisions
from engine.models.registry import DEFAULT_MODEL
from engine.runtime.engine import Engine
from engine.service import run


@dataclass
class PrecisionRow:
    precision: str
    load_s: float
    footprint_mb: float
    prefill_ms: float | None
    decode_tokens_per_s: float | None
    peak_memory_mb: float | None
    agreement_with_fp32: float  # share of identical greedy tokens
    text: str


# The printed table's columns (the files also hold the generated text).
PRECISION_COLUMNS = [
    "precision",
    "load_s",
    "footprint_mb",
    "prefill_ms",
    "decode_tokens_per_s",
    "peak_memory_mb",
    "agreement_with_fp32",
]


def precision_table(
    model: str = DEFAULT_MODEL,
    precisions: tuple[str, ...] | None = None,
    input_tokens: int = 256,
    new_tokens: int = 64,
    progress: Progress | None = None,
) -> list[PrecisionRow]:
    """Each precision loaded cold (own cache) and run on the same summarization-style prompt."""
    precisions = precisions or tuple(supported_precisions(resolve_device()))
    rows, reference = [], None
    for i, precision in enumerate(precisions):
        if progress:
            progress(i / len(precisions), f"{precision}")
        engine = Engine(budget_mb=0)  # a fresh engine: the load below is timed from disk
        options = RunOptions(model=model, precision=precision, max_new_tokens=new_tokens)
        validate_options(options, engine.device)  # before the load, which the engine does not check
        loaded = engine.get(model, precision)
        text = loaded.tokenizer.decode(corpus_ids(loaded.tokenizer, input_tokens)[0])
        request = GenerationRequest(options=options, text=text)
        run(request, engine)  # warm-up: first-call allocations and kernel selection are not the steady state
        result = run(request, engine)
        assert isinstance(result, Result)  # no comparison is asked for
        if reference is None:
            reference = result.token_ids
        same = sum(a == b for a, b in zip(reference, result.token_ids, strict=False))
        m = result.metrics
        rows.append(
            PrecisionRow(
                precision=loaded.precision,
                load_s=loaded.load_seconds,
                footprint_mb=loaded.footprint_mb,
                prefill_ms=m.prefill_ms,
                decode_tokens_per_s=m.decode_tokens_per_s,
                peak_memory_mb=m.peak_memory_mb,
                agreement_with_fp32=same / max(len(reference), len(result.token_ids), 1),
                text=result.text,
            )
        )
        del engine, loaded
    return rows
