"""The remote backend: a model served by another process over the OpenAI protocol
(engine.backends.openai_protocol). A remote request does no torch work, so it runs on the request's
thread, not the engine's, unless it is measured alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.api.validation import check_family
from engine.backends.base import Prompt, Run
from engine.backends.openai_protocol import score_remote, stream_remote
from engine.models.embedded import ProgressFn
from engine.models.registry import get_spec
from engine.platform.errors import AttentionConfigError, InputError, PrecisionError
from engine.runtime.engine import Engine


class RemoteBackend:
    def __init__(self, engine: Engine):
        self.engine = engine

    def check(self, request: GenerationRequest) -> None:
        """A server runs its own precision and attention, and the protocol has no repetition penalty: a
        request that asks otherwise is told so rather than silently ignored."""
        options, name = request.options, request.options.model
        check_family(get_spec(name), request)
        if options.precision != "auto" or options.compare == "precision":
            raise PrecisionError(
                f"{name} runs at its server's precision: choose auto (and compare models, not precisions)."
            )
        if options.attention != "dense" or options.compare == "attention":
            raise AttentionConfigError(
                f"{name} runs with its server's attention: choose dense (and compare models, not attention)."
            )
        if options.speculation != "none" or options.compare == "speculation":
            raise InputError(
                f"{name} decodes on its server, which speculates as it is set up: choose speculation none."
            )
        if request.answer_start:
            raise InputError(
                f"{name} is served over the OpenAI protocol, which takes text, not the token ids a branch "
                "starts from: branch from a local model's answer."
            )
        if options.repetition_penalty != 1.0:
            raise InputError(
                f"{name} is served over the OpenAI protocol, which has no repetition penalty: set it to 1."
            )

    def served(self, options: RunOptions) -> RunOptions:
        return replace(options, precision="auto", attention="dense")

    def load(self, options: RunOptions, progress: ProgressFn | None = None) -> None:
        return None  # nothing of a server's model is loaded here

    def prompt(self, request: GenerationRequest) -> Prompt | None:
        return None  # the server tokenizes

    def stream(self, run: Run, alone: bool = False, progress: ProgressFn | None = None) -> Iterator[str | Result]:
        request = run.request
        if alone:  # measured: on the engine thread, with nothing else running (a server on this machine has its CPU)
            return self.engine.runner.stream(lambda: self._answer(request), alone=True)
        return self._answer(request)

    def _answer(self, request: GenerationRequest) -> Iterator[str | Result]:
        if request.candidates is not None:
            yield score_remote(get_spec(request.options.model), request)
        else:
            yield from stream_remote(get_spec(request.options.model), request)
