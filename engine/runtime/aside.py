"""Work kept off the engine thread: loading a model, whose reading and converting of files took whole
seconds from the streams the engine thread decodes (`python -m engine.bench load`).

It runs on a thread of its own that ends with it: PyTorch's OpenMP runtime keeps a team of threads
for each thread that ran parallel work, and a second team living beside the engine thread's halves
the engine's speed for as long as it lives (engine.runtime.runner), so the work never runs on a
request's thread, which lives on. Its progress reports reach the caller on the caller's thread.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from engine.models.embedded import ProgressFn
from engine.runtime.tickets import Report

T = TypeVar("T")


@dataclass
class _Done(Generic[T]):
    value: T


@dataclass
class _Failed:
    error: BaseException


# While the engine decodes the work runs RUN_S at a time, then sleeps PAUSE_S: it holds the GIL
# while it runs Python (and the cores while it runs torch), and the engine thread must get its decode
# steps in between. (A load of the 360M-size model beside 4 streams: 1.0 s -> 1.7 s, 12 -> 72 tokens
# reached the streams meanwhile.)
RUN_S, PAUSE_S = 0.02, 0.03


def run_aside(
    fn: Callable[[ProgressFn], T],
    progress: ProgressFn | None = None,
    name: str = "studio-aside",
    busy: Callable[[], bool] = lambda: False,
) -> T:
    """fn(report) on a new thread, waited for here, giving way while `busy()`; what it reports reaches
    `progress` in this thread, what it raises is raised here."""
    events: queue.SimpleQueue[Report | _Done[T] | _Failed] = queue.SimpleQueue()
    ran_since = time.monotonic()

    def give_way(frame, event: str, arg: object) -> None:
        """Profile hook of the aside thread: at a Python call past its running time, sleep a while."""
        nonlocal ran_since
        if event == "call" and time.monotonic() - ran_since > RUN_S:
            if busy():
                time.sleep(PAUSE_S)
            ran_since = time.monotonic()

    def work() -> None:
        sys.setprofile(give_way)  # this thread only
        try:
            events.put(_Done(fn(lambda fraction, message: events.put(Report(fraction, message)))))
        except BaseException as exc:  # the caller's to handle, as if it had run there
            events.put(_Failed(exc))
        finally:
            sys.setprofile(None)

    # not a daemon: the interpreter waits for it at exit rather than end it inside torch
    threading.Thread(target=work, name=name).start()
    while True:
        event = events.get()
        if isinstance(event, Report):
            if progress:
                progress(event.fraction, event.message)
        elif isinstance(event, _Failed):
            raise event.error
        else:
            return event.value
