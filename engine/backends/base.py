"""What runs a request: a Backend, chosen once per request from its model (engine.backends.choose)."""

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
from engine.models.registry import ModelSpec
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
    spec: ModelSpec

    def check(self, options: RunOptions) -> None:
        """Raise the user's error for what this backend cannot do as `options` ask."""
        ...

    def served(self, options: RunOptions) -> RunOptions:
        """`options` as this backend runs them (a server: its own precision and attention)."""
        ...

    def load(self, options: RunOptions, progress: ProgressFn | None = None) -> LoadedModel | None:
        """The model loaded here for `options`; None where nothing is loaded here (a server)."""
        ...

    def prompt(self, request: GenerationRequest) -> Prompt | None:
        """The request's prompt tokenized now, if its model is loaded already (None otherwise)."""
        ...

    def stream(
        self,
        request: GenerationRequest,
        alone: bool = False,
        progress: ProgressFn | None = None,
        prompt: Prompt | None = None,
    ) -> Iterator[str | Result]:
        """Text deltas, then the Result. `alone`: measured with nothing else running in this process."""
        ...
