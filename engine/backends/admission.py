"""A request admitted once: validated, its backend chosen, its prompt tokenized when its model is
loaded. The app's validator admits a request before it queues (`admit`, through engine.service's
precheck) and the handler's run finds that admission again (`admitted`), so neither the rules nor
the tokenizer run twice for one request."""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.api.request import GenerationRequest
from engine.api.validation import validate
from engine.backends import Backend, Prompt, backend_for
from engine.runtime.engine import Engine

REMEMBERED = 64  # admissions kept for the runs that follow them (a validator's, then its handler's)


@dataclass(frozen=True)
class Run:
    """One run of an admitted request: the request as its backend runs it."""

    request: GenerationRequest
    backend: Backend
    label: str
    prompt: Prompt | None = None  # tokenized at admission, when the model was loaded then


@dataclass(frozen=True)
class Admission:
    request: GenerationRequest  # as asked
    runs: tuple[Run, ...]  # one, or a comparison's A and B
    axis: str | None = None  # a comparison's: what B changes

    @property
    def run(self) -> Run:
        """The single run; a comparison's B (what an attention map shows)."""
        return self.runs[-1]


def admit(request: GenerationRequest, engine: Engine, remember: bool = True) -> Admission:
    """Check every rule about `request` and choose who runs it; `remember`: kept for `admitted`."""
    sides = validate(request, engine.device)
    if sides is None:
        backend = backend_for(request.options.model, engine)
        backend.check(request.options)
        run = Run(request, backend, request.options.attention, backend.prompt(request))
        admission = Admission(request, (run,))
    else:
        a, b = backend_for(sides.a.model, engine), backend_for(sides.b.model, engine)
        a.check(request.options)  # as asked: a server refuses a comparison of precisions or attention
        served_b = b.served(sides.b)
        b.check(served_b)
        admission = Admission(
            request,
            (
                Run(replace(request, options=a.served(sides.a)), a, sides.a_label),
                Run(replace(request, options=served_b), b, sides.b_label),
            ),
            sides.axis,
        )
    if not remember:
        return admission
    with engine.lock:
        engine.admitted[request] = admission
        while len(engine.admitted) > REMEMBERED:
            engine.admitted.pop(next(iter(engine.admitted)))
    return admission


def admitted(request: GenerationRequest, engine: Engine) -> Admission:
    """The admission of `request`: the one made before it queued, or one made now."""
    with engine.lock:
        admission = engine.admitted.pop(request, None)
    if isinstance(admission, Admission):
        return admission
    return admit(request, engine, remember=False)
