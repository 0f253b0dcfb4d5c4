"""Who runs a request: the local engine (loaded into the model cache, scheduled on the engine thread)
or the remote server a registry entry names (engine.remote)."""

from __future__ import annotations

from collections.abc import Iterator

from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.api.validation import check_family
from engine.backends.remote import score_remote, stream_remote
from engine.models.embedded import ProgressFn
from engine.models.registry import get_spec
from engine.runtime.engine import ModelCache


def _remote(request: GenerationRequest) -> Iterator[str | Result]:
    spec = get_spec(request.options.model)
    if request.candidates is not None:
        yield score_remote(spec, request)
    else:
        yield from stream_remote(spec, request)


def generate(
    request: GenerationRequest, cache: ModelCache, alone: bool = False, progress: ProgressFn | None = None
) -> Iterator[str | Result]:
    """Text deltas, then the Result. `alone`: measured with nothing else running in this process. A
    remote request otherwise runs on the caller's thread: it does no torch work."""
    if get_spec(request.options.model).remote:
        return cache.scheduler.stream(lambda: _remote(request), alone=True) if alone else _remote(request)
    loaded = cache.get(request.options.model, request.options.precision, progress)
    check_family(loaded.spec, request)  # the family of an unregistered model is known only now
    return cache.scheduler.generate(loaded, request, alone)
