"""The engine's front door: validate a request once (engine.validation), then run it (engine.dispatch:
the local engine, batched with whatever else runs, or a remote server), or run the A/B experiment
it asks for (engine.compare), streaming or not."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from engine.api.request import GenerationRequest
from engine.api.results import Comparison, Result
from engine.api.validation import validate
from engine.backends.dispatch import generate
from engine.experiments.compare import run_comparison
from engine.models.embedded import ProgressFn
from engine.runtime.compile import IN_FLIGHT
from engine.runtime.decoding import encode_prompt
from engine.runtime.engine import ModelCache, default_cache


@dataclass(frozen=True)
class Chunk:
    """A streamed piece of output text; `run` says which run it belongs to in compare mode."""

    text: str
    run: str = "dense"


Event = Chunk | Result | Comparison


def precheck(request: GenerationRequest, cache: ModelCache | None = None) -> None:
    """Every rule a request can be held to without the engine, cheap enough to run before it queues
    (the app's validators do): `validate`, and, when its model is loaded, whether its input fits the
    model's context. Raises the StudioError the engine would."""
    cache = cache or default_cache()
    validate(request, cache.device)
    if (loaded := cache.peek(request.options.model, request.options.precision)) is not None:
        encode_prompt(loaded, request)


def stream_request(
    request: GenerationRequest, cache: ModelCache | None = None, progress: ProgressFn | None = None
) -> Iterator[Event]:
    """Yield Chunks as text arrives, then one Result, or a Comparison when the options ask for one."""
    cache = cache or default_cache()
    with IN_FLIGHT.serving():  # background compiles pause meanwhile (engine.decode)
        if (sides := validate(request, cache.device)) is not None:
            for item in run_comparison(request, sides, cache, progress):
                yield Chunk(item[1], item[0]) if isinstance(item, tuple) else item
            return
        for item in generate(request, cache, progress=progress):
            yield item if isinstance(item, Result) else Chunk(item, request.options.attention)


def run(
    request: GenerationRequest, cache: ModelCache | None = None, progress: ProgressFn | None = None
) -> Result | Comparison:
    final = None
    for item in stream_request(request, cache, progress):
        final = item
    assert isinstance(final, Result | Comparison), final
    return final
