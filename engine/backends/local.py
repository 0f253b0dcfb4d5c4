"""The local backend: the model loaded into the engine's pool, its requests run on the engine thread."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import replace

import torch

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.api.validation import check_family
from engine.backends.base import Prompt, Run
from engine.models.embedded import ProgressFn
from engine.models.loader import LoadedModel
from engine.models.precision import check_source, check_supported, resolve_precision
from engine.models.registry import ModelSpec, get_spec
from engine.platform.errors import PrecisionError
from engine.runtime.decoding import encode_prompt
from engine.runtime.engine import Engine


class LocalBackend:
    def __init__(self, engine: Engine):
        self.engine = engine

    def check(self, request: GenerationRequest) -> None:
        options = request.options
        spec = get_spec(options.model)
        check_supported(options.precision, self.engine.device)
        check_source(options.precision, spec)
        check_family(spec, request)  # an unregistered model's: once it is loaded
        if options.speculation == "draft":
            check_draft(options, spec, self.engine.device)

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
        draft = self._draft(request.options, loaded, progress)
        return self.engine.runner.generate(loaded, request, encoded, alone, draft)

    def _draft(self, options: RunOptions, loaded: LoadedModel, progress: ProgressFn | None) -> LoadedModel | None:
        """The model that guesses for speculation draft, loaded once like any other (None: no draft)."""
        if options.speculation != "draft":
            return None
        draft = self.engine.get(options.model, options.draft_precision, progress)
        if draft.model.dtype != loaded.model.dtype:  # it writes its guesses' keys into the model's own cache
            dtypes = [str(m.model.dtype).removeprefix("torch.") for m in (draft, loaded)]
            raise PrecisionError(
                f"The draft at {draft.precision} computes in {dtypes[0]} and the model at {loaded.precision} in "
                f"{dtypes[1]}; they share one KV cache: choose a draft_precision that computes in {dtypes[1]}."
            )
        return draft


def check_draft(options: RunOptions, spec: ModelSpec, device: torch.device) -> None:
    """A draft precision this device and model have, and cheaper than the model's own: guessing with
    the model itself checks every token twice."""
    check_supported(options.draft_precision, device)
    check_source(options.draft_precision, spec)
    if options.draft_precision == resolve_precision(options.precision, device, spec):
        raise PrecisionError(
            f"The draft precision is the model's own ({options.draft_precision}): every guess would cost a "
            "full step; choose a cheaper draft_precision (e.g. gguf-q8 or int4-wo) or speculation prompt_lookup."
        )
