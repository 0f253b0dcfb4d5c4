"""What runs a request: a Backend, chosen once per request from its model (engine.backends.backend_for),
and the request as admitted to run (engine.service)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.models.embedded import ProgressFn
from engine.models.loader import LoadedModel
from engine.runtime.prompt import Encoded


@dataclass(frozen=True)
class Prompt:
    """A request's prompt tokenized for one loaded model, once: reused while that model stays loaded
    (held weakly: a remembered prompt never keeps an evicted model's memory)."""

    model: weakref.ref[LoadedModel]
    encoded: Encoded

    def for_model(self, loaded: LoadedModel) -> Encoded | None:
        return self.encoded if self.model() is loaded else None


class Backend(Protocol):
    def check(self, request: GenerationRequest) -> None:
        """Raise the user's error for what this backend cannot do as `request` asks (its rules beyond
        engine.api.validation's: the device's precisions, the model's family, a server's limits)."""
        ...

    def served(self, options: RunOptions) -> RunOptions:
        """A comparison side's `options` as this backend runs them: `auto` resolved here, a server's
        own precision and attention."""
        ...

    def load(self, options: RunOptions, progress: ProgressFn | None = None) -> LoadedModel | None:
        """The model loaded here for `options`; None where nothing is loaded here (a server)."""
        ...

    def prompt(self, request: GenerationRequest) -> Prompt | None:
        """The request's prompt tokenized now, if its model is loaded already (None otherwise)."""
        ...

    def stream(self, run: Run, alone: bool = False, progress: ProgressFn | None = None) -> Iterator[str | Result]:
        """Text deltas, then the Result, of `run` (its prompt too, when tokenized already). `alone`:
        measured with nothing else running in this process."""
        ...


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
