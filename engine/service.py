"""The engine's front door: `stream_request(request)` admits a request once (engine.backends.admission:
validated, its backend chosen, its prompt tokenized), then runs it on its backend, or runs the A/B
experiment it asks for (engine.experiments.compare). Every event is a text delta (Chunk) or the
final Result / Comparison (engine.api.events). `precheck` admits a request before it queues (the
app's validators); its run then finds that admission."""

from __future__ import annotations

from collections.abc import Iterator

from engine.api.events import Chunk, Event
from engine.api.request import GenerationRequest
from engine.api.results import Comparison, Result
from engine.backends.admission import admit, admitted
from engine.experiments.compare import run_comparison
from engine.models.embedded import ProgressFn
from engine.runtime.engine import Engine, default_engine


def precheck(request: GenerationRequest, engine: Engine | None = None) -> None:
    """Every rule a request can be held to before it queues, cheap enough for a validator: the rules,
    its backend's, and, when its model is loaded, whether its input fits the model's context. Raises
    the StudioError the run would."""
    admit(request, engine or default_engine())


def stream_request(
    request: GenerationRequest, engine: Engine | None = None, progress: ProgressFn | None = None
) -> Iterator[Event]:
    """Yield Chunks as text arrives, then one Result, or a Comparison when the options ask for one."""
    engine = engine or default_engine()
    admission = admitted(request, engine)
    with engine.in_flight.serving():  # background work pauses meanwhile (engine.runtime.background)
        if admission.axis is not None:
            yield from run_comparison(admission, engine, progress)
            return
        run = admission.run
        for item in run.backend.stream(run.request, progress=progress, prompt=run.prompt):
            yield item if isinstance(item, Result) else Chunk(item, run.label)


def run(
    request: GenerationRequest, engine: Engine | None = None, progress: ProgressFn | None = None
) -> Result | Comparison:
    final = None
    for item in stream_request(request, engine, progress):
        final = item
    assert isinstance(final, Result | Comparison), final
    return final
