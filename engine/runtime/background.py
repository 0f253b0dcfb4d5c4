"""Work that runs beside requests, in the gaps between them: the engine's count of requests in flight,
and the background threads (decode-step compiles) that give way to them.

The compiler is Python holding the GIL (and, the first time, the import machinery), and an eager
decode hands the GIL back at every op: the first request of a fresh process, with a compile starting
beside it, decoded at 0.7 instead of 15.5 tokens/s (int8-wo, measured). So a background thread starts
only between requests and, once started, pauses at each Python call while any request is in flight.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
# A request may wait on a lock the compiler holds (the compiler's own lock, an import): after each
# pause that ends with requests still in flight, the compiler runs unpaused for RUN_S, so it always
# advances (at RUN_S / (PAUSE_S + RUN_S) of its speed at worst) and releases what it holds.
PAUSE_S, RUN_S = 0.5, 0.25


class InFlight:
    """How many requests are being served; background work gives way while there are any."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()
        self.idle = threading.Event()
        self.idle.set()

    @contextmanager
    def serving(self) -> Iterator[None]:
        with self._lock:
            self._count += 1
            self.idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                if self._count == 0:
                    self.idle.set()


class _Stopped(BaseException):
    """Unwinds background work when the engine stops (a BaseException: the compiler's `except
    Exception` fallbacks must not catch it)."""


class Background:
    """The engine's background threads: each starts between requests, gives way to them, and stops at
    its next Python call once `stop` is called (a daemon thread still compiling when the interpreter
    finalizes aborts the process, and inductor shuts its compile workers down at exit)."""

    def __init__(self, in_flight: InFlight):
        self.in_flight = in_flight
        self._stop = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._unpaused_until = threading.local()

    def start(self, work: Callable[[], None], name: str) -> None:
        threading.Thread(target=self._run, args=(work,), name=name, daemon=True).start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background threads and wait (up to `timeout`) for them to end."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, work: Callable[[], None]) -> None:
        _lower_priority()
        self._threads.add(threading.current_thread())
        try:
            while not self.in_flight.idle.wait(PAUSE_S):  # start between requests
                if self._stop.is_set():
                    raise _Stopped
            # Only now: with the hook on, the wait above would run the hook inside Event.wait, which
            # holds the event's lock, and the hook's own wait on that event would never get it.
            sys.setprofile(self._give_way)  # this thread only
            work()
        except _Stopped:
            log.info("stopped %s: the engine stopped", threading.current_thread().name)
        finally:
            sys.setprofile(None)
            self._threads.discard(threading.current_thread())

    def _give_way(self, frame, event: str, arg: object) -> None:
        """Profile hook of a background thread: at each Python call, wait while requests are served."""
        if event != "call" or frame.f_code.co_filename == threading.__file__:
            return  # never from inside threading's own code, which may hold the lock the wait below needs
        if self._stop.is_set():
            raise _Stopped
        idle = self.in_flight.idle
        if idle.is_set() or time.monotonic() < getattr(self._unpaused_until, "t", 0.0):
            return
        if not idle.wait(PAUSE_S):
            self._unpaused_until.t = time.monotonic() + RUN_S


# One per process, whatever the engines: a compile and a request of any engine share the process's GIL
# and cores, so compiles give way to the requests of every engine.
PROCESS = Background(InFlight())


def _lower_priority() -> None:
    """On Linux, let requests have the CPU first: this thread (and the compiler processes it starts)
    runs at the lowest priority. Elsewhere, or if not allowed, it simply competes."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
