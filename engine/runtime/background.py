"""Work that runs beside requests, in the gaps between them: the engine's count of requests in flight,
and the background threads (decode-step compiles) that give way to them.

The compiler is Python holding the GIL (and, the first time, the import machinery), and an eager
decode hands the GIL back at every op: the first request of a fresh process, with a compile starting
beside it, decoded at 0.7 instead of 15.5 tokens/s (int8-wo, measured). So a background thread starts
only between requests and, once started, pauses at each Python call while any request is in flight.

Timed work (a comparison's trials, a benchmark) holds the background entirely (`Background.hold`):
no background thread starts or advances, and the compiler's own processes (inductor's compile
workers, the C++ compiler they run) are suspended until the last hold ends. Right after launch, a
compile running beside five A/A comparisons turned 2 of their 10 verdicts into "slower" (trials
jumped from ~150 ms to 350-400 ms).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil

log = logging.getLogger(__name__)
# A request may wait on a lock the compiler holds (the compiler's own lock, an import): after each
# pause that ends with requests still in flight, the compiler runs unpaused for RUN_S, so it always
# advances (at RUN_S / (PAUSE_S + RUN_S) of its speed at worst) and releases what it holds. A hold
# lets it run only once the engine thread has not stepped for STALLED_S (a request stuck on what the
# held compiler holds): never while timed work runs, but no lock is held forever.
PAUSE_S, RUN_S, STALLED_S = 0.5, 0.25, 30.0
# Files whose functions may run holding a lock a request needs too: never paused inside
_NEVER_PAUSED = (threading.__file__, os.path.dirname(logging.__file__), "<frozen importlib")
# The processes of a compile: inductor's workers (and theirs), and C/C++ compilers with their tools
_COMPILER_NAMES = frozenset({"cc", "c++", "gcc", "g++", "clang", "clang++", "cc1", "cc1plus", "as", "ld", "collect2"})


class InFlight:
    """How many requests are being served and how many timed sections hold the background; background
    work gives way while there are any (`idle`), and stops still while anything is timed (`untimed`)."""

    def __init__(self) -> None:
        self._count = 0
        self._timed = 0
        self._lock = threading.Lock()
        self.idle = threading.Event()
        self.idle.set()
        self.untimed = threading.Event()
        self.untimed.set()
        self.stepped = time.monotonic()  # when an engine thread last took a step (`step`)

    def step(self) -> None:
        """An engine thread took a step: the work it serves is not stuck."""
        self.stepped = time.monotonic()

    @contextmanager
    def serving(self, timed: bool = False) -> Iterator[None]:
        """A request (or a `timed` section) in flight."""
        with self._lock:
            self._count += 1
            self._timed += timed
            self.idle.clear()
            if timed:
                self.untimed.clear()
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                self._timed -= timed
                if self._count == 0:
                    self.idle.set()
                if self._timed == 0:
                    self.untimed.set()


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
        self._window = threading.local()
        self._holds = 0
        self._suspended: list[psutil.Process] = []
        self._hold_lock = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Timed work: while any hold lasts, no background thread starts or advances and the compiler's
        processes are suspended (holds nest: the first suspends them, the last resumes them)."""
        with self._hold_lock:
            if self._holds == 0:
                self._suspended = _suspend_compilers()
            self._holds += 1
        try:
            with self.in_flight.serving(timed=True):
                yield
        finally:
            with self._hold_lock:
                self._holds -= 1
                if self._holds == 0:
                    _resume(self._suspended)
                    self._suspended = []

    def cpu_s(self) -> float:
        """CPU seconds the live background threads have used (what they take from timed work)."""
        total = 0.0
        for thread in list(self._threads):
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident or 0))
            except (AttributeError, OSError):  # not Linux, or the thread just ended
                pass
        return total

    def start(self, work: Callable[[], None], name: str) -> None:
        threading.Thread(target=self._run, args=(work,), name=name, daemon=True).start()

    def stop(self, timeout: float = 10.0, end_compilers: bool = False) -> None:
        """Stop the background threads and wait (up to `timeout`) for them to end. `end_compilers` (the
        process's end): the process's compilers end too, or a thread waiting on the C++ compiler (a
        minute or two for a step's wrapper) would wait for it."""
        self._stop.set()
        for process in _compiler_processes() if end_compilers else []:
            with contextlib.suppress(psutil.Error):  # it ended meanwhile
                process.kill()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s is still running after %.0f s; exiting now may abort", thread.name, timeout)

    def _run(self, work: Callable[[], None]) -> None:
        _lower_priority()
        self._threads.add(threading.current_thread())
        try:
            while not self.in_flight.idle.wait(PAUSE_S):  # start between requests and timed work
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
        if event != "call" or frame.f_code.co_filename.startswith(_NEVER_PAUSED):
            return  # e.g. threading's own code, which may hold the lock the wait below needs
        if self._stop.is_set():
            raise _Stopped
        idle, untimed, now = self.in_flight.idle, self.in_flight.untimed, time.monotonic()
        window = self._window  # (runs until, and whether through timed work): thread-local
        if idle.is_set() or (now < getattr(window, "until", 0.0) and (untimed.is_set() or window.escape)):
            return
        while True:
            held = time.monotonic()
            while not untimed.wait(PAUSE_S):  # timed work: no progress at all, short of the escape
                if self._stop.is_set():
                    raise _Stopped
                if time.monotonic() - max(held, self.in_flight.stepped) > STALLED_S:
                    log.warning("no engine step for %.0f s: a held compile runs %.2f s (it may hold a lock)",
                                STALLED_S, RUN_S)  # fmt: skip
                    window.until, window.escape = time.monotonic() + RUN_S, True
                    return
            if idle.wait(PAUSE_S):
                return
            if untimed.is_set():  # requests still in flight: run a while, then give way again
                window.until, window.escape = time.monotonic() + RUN_S, False
                return


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


def _compiler_processes() -> list[psutil.Process]:
    """This process's descendants that are compiling: inductor's compile workers and C/C++ compilers,
    each with its own descendants (never a server the tests or a user started beside us)."""
    found: dict[int, psutil.Process] = {}
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return []
    for child in children:
        try:
            if child.name() in _COMPILER_NAMES or "_inductor" in " ".join(child.cmdline()):
                found[child.pid] = child
                found.update((p.pid, p) for p in child.children(recursive=True))
        except psutil.Error:  # it ended meanwhile
            continue
    return list(found.values())


def _suspend_compilers() -> list[psutil.Process]:
    suspended = []
    for process in _compiler_processes():
        try:
            process.suspend()
            suspended.append(process)
        except psutil.Error:
            continue
    return suspended


def _resume(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.resume()
        except psutil.Error:  # it ended (or was ended) meanwhile
            continue
