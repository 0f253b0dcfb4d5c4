"""Work handed to the engine thread and how its caller follows it: a Ticket carries the events back."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeVar

from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.attention.choice import AttentionChoice
from engine.models.loader import LoadedModel
from engine.platform.measure import OtherWork
from engine.runtime.background import PROCESS
from engine.runtime.prompt import Encoded
from engine.runtime.step import BatchKey

T = TypeVar("T")
_END = object()


class Ticket:
    """A submitted piece of work, seen from the request's side: its events in order, then the end."""

    def __init__(self, alone: bool):
        self.alone = alone
        self.submitted = time.perf_counter()
        self.cancelled = threading.Event()
        self.ended = threading.Event()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._other: OtherWork | None = None

    def started(self) -> None:
        """The engine starts it now. Work run `alone` measures from here, not from its wait in the queue
        (other users' requests run meanwhile), what other work takes until its Result."""
        if self.alone:
            self._other = OtherWork(PROCESS.cpu_s).start()

    def put(self, item: object) -> None:
        """An event; a Result or an error is the last one."""
        if isinstance(item, Result) and self._other is not None:
            item = replace(item, metrics=replace(item.metrics, other_work_ms=self._other.stop()))
        self._events.put(item)
        if isinstance(item, Result | BaseException):
            self.end()

    def end(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            self._events.put(_END)

    def __iter__(self) -> Iterator:
        while (item := self._events.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item


@dataclass
class Generation:
    """A causal request, decoded in a batch."""

    loaded: LoadedModel
    request: GenerationRequest
    encoded: Encoded
    key: tuple[int, AttentionChoice]  # its own bucket and attention choice (engine.runtime.step.step_key)
    ticket: Ticket
    draft: LoadedModel | None = None  # speculation draft: the same model at a cheaper precision, which guesses
    batch: BatchKey | None = None  # the batch it joins, as the scheduler places it


@dataclass
class Job:
    """Any other work: an iterator of events, advanced one item per turn."""

    start: Callable[[], Iterator]
    ticket: Ticket
    items: Iterator | None = field(default=None)


def once(fn: Callable[[], T]) -> Iterator[T]:
    yield fn()


@dataclass(frozen=True)
class Report:
    """A progress report made on the scheduler's thread, for the caller's."""

    fraction: float
    message: str


def no_progress(fraction: float, message: str) -> None:
    return None
