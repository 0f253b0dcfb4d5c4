"""The engine's front door. `stream_request(request)` admits a request once: every rule about it is
checked (engine.api.validation, then its backend's), its backend is chosen (engine.backends) and its
prompt tokenized when its model is loaded. Then it runs on its backend, or as the A/B experiment it
asks for (engine.experiments.compare). Every event is a text delta (Chunk) or the final Result /
Comparison (engine.api.events). `precheck` admits a request before it queues (the app's validators)
and its run finds that admission again, so neither the rules nor the tokenizer run twice for one
request. `attention_map` comes in by the same door."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from engine.api.events import Chunk, Event
from engine.api.request import GenerationRequest
from engine.api.results import Comparison, Result
from engine.api.validation import validate
from engine.backends import Admission, Run, backend_for
from engine.experiments import attention_map as maps
from engine.experiments.compare import run_comparison
from engine.models.embedded import ProgressFn
from engine.runtime.engine import Engine, default_engine

REMEMBERED = 64  # admissions kept for the runs that follow them (a validator's, then its handler's)


def precheck(request: GenerationRequest, engine: Engine | None = None) -> None:
    """Every rule a request can be held to before it queues, cheap enough for a validator: the rules,
    its backend's, and, when its model is loaded, whether its input fits the model's context. Raises
    the StudioError the run would."""
    engine = engine or default_engine()
    admission = _admit(request, engine)
    with engine.lock:
        engine.admitted[request] = admission
        while len(engine.admitted) > REMEMBERED:
            engine.admitted.pop(next(iter(engine.admitted)))


def stream_request(
    request: GenerationRequest, engine: Engine | None = None, progress: ProgressFn | None = None
) -> Iterator[Event]:
    """Yield Chunks as text arrives, then one Result, or a Comparison when the options ask for one."""
    engine = engine or default_engine()
    admission = _admitted(request, engine)
    with engine.in_flight.serving():  # background work pauses meanwhile (engine.runtime.background)
        if admission.axis is not None:
            yield from run_comparison(admission, engine, progress)
            return
        run = admission.run
        for item in run.backend.stream(run, progress=progress):
            yield item if isinstance(item, Result) else Chunk(item, run.label)


def run(
    request: GenerationRequest, engine: Engine | None = None, progress: ProgressFn | None = None
) -> Result | Comparison:
    final = None
    for item in stream_request(request, engine, progress):
        final = item
    assert isinstance(final, Result | Comparison), final
    return final


def attention_map(
    request: GenerationRequest,
    layer: int,
    head: int,
    engine: Engine | None = None,
    progress: ProgressFn | None = None,
) -> maps.AttentionMap:
    """The map of `request` (a comparison: its B side) at `layer` and query `head`."""
    engine = engine or default_engine()
    admission = _admitted(request, engine)
    with engine.in_flight.serving():
        return maps.attention_map(admission, layer, head, engine, progress)


def _admit(request: GenerationRequest, engine: Engine) -> Admission:
    if (sides := validate(request)) is None:
        backend = backend_for(request.options.model, engine)
        backend.check(request)
        return Admission(request, (Run(request, backend, request.options.attention, backend.prompt(request)),))
    a, b = backend_for(sides.a.model, engine), backend_for(sides.b.model, engine)
    a.check(request)  # as asked: a server refuses a comparison of precisions or attention
    served_a = a.served(sides.a)
    if sides.axis == "model" and served_a.precision != "auto":  # both models at one precision: A's
        sides = replace(sides, b=replace(sides.b, precision=served_a.precision))
    request_b = replace(request, options=b.served(sides.b))
    b.check(request_b)
    label_a, label_b = sides.labels(served_a, request_b.options)
    runs = (Run(replace(request, options=served_a), a, label_a), Run(request_b, b, label_b))
    return Admission(request, runs, sides.axis)


def _admitted(request: GenerationRequest, engine: Engine) -> Admission:
    """The admission `precheck` made of `request`, or one made now."""
    with engine.lock:
        admission = engine.admitted.pop(request, None)
    return admission if isinstance(admission, Admission) else _admit(request, engine)
