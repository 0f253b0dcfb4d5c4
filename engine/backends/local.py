"""The local backend: the model loaded into the engine's pool, its requests run on the engine thread."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import replace

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.api.validation import check_family
from engine.backends.base import Prompt, Run
from engine.models.embedded import ProgressFn
from engine.models.loader import LoadedModel
from engine.models.precision import check_source, check_supported, resolve_precision
from engine.models.registry import get_spec
from engine.runtime.decoding import encode_prompt
from engine.runtime.engine import Engine


class LocalBackend:
    def __init__(self, engine: Engine):
        self.engine = engine

    def check(self, request: GenerationRequest) -> None:
        spec = get_spec(request.options.model)
        check_supported(request.options.precision, self.engine.device)
        check_source(request.options.precision, spec)
        check_family(spec, request)  # an unregistered model's: once it is loaded

    def served(self, options: RunOptions) -> RunOptions:
        spec = get_spec(options.model)
        return replace(options, precision=resolve_precision(options.precision, self.engine.device, spec))

    def load(self, options: RunOptions, progress: ProgressFn | None = None) -> LoadedModel:
        return self.engine.get(options.model, options.precision, progress)

    def prompt(self, request: GenerationRequest) -> Prompt | None:
        options = request.options
        if (loaded := self.engine.models.peek(options.model, options.precision)) is None:
            return None
        check_family(loaded.spec, request)
        return Prompt(weakref.ref(loaded), encode_prompt(loaded, request))

    def stream(self, run: Run, alone: bool = False, progress: ProgressFn | None = None) -> Iterator[str | Result]:
        request = run.request
        loaded = self.load(request.options, progress)
        encoded = run.prompt.for_model(loaded) if run.prompt is not None else None
        if encoded is None:  # not tokenized yet, or for a model since evicted
            check_family(loaded.spec, request)  # the family of an unregistered model is known only now
            encoded = encode_prompt(loaded, request)
        return self.engine.runner.generate(loaded, request, encoded, alone)
