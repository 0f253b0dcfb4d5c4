"""The engine's front door: validate a request once (engine.validation), get the model from the cache, run it
dense, sparse, or both (compare), streaming or not."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from .cache import ModelCache, default_cache
from .embedded import ProgressFn
from .generate import score_labels, stream
from .loader import LoadedModel
from .types import Comparison, GenerationRequest, Result
from .validation import check_family, validate


@dataclass(frozen=True)
class Chunk:
    """A streamed piece of output text; `run` says which run it belongs to in compare mode."""

    text: str
    run: str = "dense"


Event = Chunk | Result | Comparison


def _single(loaded: LoadedModel, request: GenerationRequest) -> Iterator[Chunk | Result]:
    if request.candidates is not None:
        yield score_labels(loaded, request)
        return
    for item in stream(loaded, request):
        yield item if isinstance(item, Result) else Chunk(item, request.options.attention)


def compare_results(dense: Result, sparse: Result) -> Comparison:
    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    a, b = dense.token_ids, sparse.token_ids
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    if first is None and len(a) != len(b):
        first = min(len(a), len(b))
    longest = max(len(a), len(b))
    agreement = sum(x == y for x, y in zip(a, b, strict=False)) / longest if longest else 1.0
    score_agreement = None
    if dense.scores is not None and sparse.scores is not None:
        score_agreement = 1 - 0.5 * sum(abs(dense.scores[k] - sparse.scores.get(k, 0.0)) for k in dense.scores)
        agreement = float(dense.text == sparse.text)
    dm, sm = dense.metrics, sparse.metrics
    return Comparison(
        dense=dense,
        sparse=sparse,
        prefill_speedup=dm.prefill_ms / sm.prefill_ms,
        decode_speedup=ratio(sm.decode_tokens_per_s, dm.decode_tokens_per_s),
        total_speedup=dm.total_ms / sm.total_ms,
        token_agreement=agreement,
        first_divergence=first,
        density=sm.density,
        score_agreement=score_agreement,
    )


def stream_request(
    request: GenerationRequest, cache: ModelCache | None = None, progress: ProgressFn | None = None
) -> Iterator[Event]:
    """Yield Chunks as text arrives, then one Result (dense/sparse) or Comparison (compare)."""
    cache = cache or default_cache()
    validate(request, cache.device)
    loaded = cache.get(request.options.model, request.options.precision, progress)
    check_family(loaded.spec, request)  # the family of an unregistered model is known only now
    if request.options.attention != "compare":
        yield from _single(loaded, request)
        return
    results = {}
    for mode in ("dense", "sparse"):  # same model, precision and inputs; greedy so runs are comparable
        options = replace(request.options, attention=mode, temperature=0.0)
        for item in _single(loaded, replace(request, options=options)):
            if isinstance(item, Result):
                results[mode] = item
            else:
                yield item
    yield compare_results(results["dense"], results["sparse"])


def run(
    request: GenerationRequest, cache: ModelCache | None = None, progress: ProgressFn | None = None
) -> Result | Comparison:
    final = None
    for item in stream_request(request, cache, progress):
        final = item
    assert isinstance(final, Result | Comparison), final
    return final
