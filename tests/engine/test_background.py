"""Timed work runs alone (engine.runtime.background): while a hold lasts no background thread starts or
advances, and the compiler's processes are suspended, but no other process of ours; other work's CPU
during a span is measured (engine.platform.measure.OtherWork)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from engine.platform.measure import OtherWork
from engine.runtime import background as background_module
from engine.runtime.background import Background, InFlight


class Counter:
    """Background work that counts its Python calls until told to stop."""

    def __init__(self) -> None:
        self.count, self.done = 0, threading.Event()

    def tick(self) -> None:
        self.count += 1

    def run(self) -> None:
        while not self.done.is_set():
            self.tick()
            time.sleep(0.001)


@pytest.fixture
def background() -> Iterator[Background]:
    background = Background(InFlight())
    yield background
    background.stop()


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_hold_stops_background_work_and_its_end_resumes_it(background):
    counter = Counter()
    background.start(counter.run, name="counter")
    assert wait_for(lambda: counter.count > 10)
    with background.hold():
        time.sleep(0.1)  # it stops at its next Python call
        held = counter.count
        time.sleep(0.5)
        assert counter.count == held
    assert wait_for(lambda: counter.count > held)
    counter.done.set()


def test_a_held_compile_runs_a_moment_only_when_the_engine_stops_stepping(background, monkeypatch):
    """A request stuck on a lock the held compiler holds must not wait forever: once no engine step
    came for STALLED_S, the compile runs for a moment; while the engine steps, it never does."""
    monkeypatch.setattr(background_module, "STALLED_S", 0.5)
    counter = Counter()
    background.start(counter.run, name="counter")
    assert wait_for(lambda: counter.count > 10)
    with background.hold():
        time.sleep(0.1)
        held = counter.count
        for _ in range(15):  # 1.5 s of timed work, stepping
            background.in_flight.step()
            time.sleep(0.1)
        assert counter.count == held
        assert wait_for(lambda: counter.count > held, timeout=3.0)  # no steps: it escapes
    counter.done.set()


def test_background_work_does_not_start_during_a_hold(background):
    counter = Counter()
    with background.hold():
        background.start(counter.run, name="counter")
        time.sleep(0.7)
        assert counter.count == 0
    assert wait_for(lambda: counter.count > 0)
    counter.done.set()


def _child(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])


def test_a_hold_suspends_the_compilers_processes_and_no_other(background):
    compiler = _child("torch/_inductor/compile_worker")  # as inductor's compile workers are named
    server = _child("--port", "8000")  # e.g. a llama.cpp server a test started beside us
    try:
        processes = psutil.Process(compiler.pid), psutil.Process(server.pid)
        assert wait_for(lambda: all(p.cmdline() for p in processes))  # both are running their command
        stopped = lambda: processes[0].status() == psutil.STATUS_STOPPED  # noqa: E731  (a signal takes a moment)
        with background.hold():
            assert wait_for(stopped) and processes[1].status() != psutil.STATUS_STOPPED
            with background.hold():  # holds nest: the inner one's end resumes nothing
                pass
            time.sleep(0.2)
            assert stopped()
        assert wait_for(lambda: not stopped())
    finally:
        for child in (compiler, server):
            child.kill()
            child.wait()


def test_other_processes_cpu_during_a_span_is_counted():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.3)  # past its start-up
        with OtherWork(lambda: 0.0) as other:
            time.sleep(0.6)
        assert other.ms >= 300 and 550 <= other.wall_ms
    finally:
        busy.kill()
        busy.wait()


def test_a_comparisons_trials_hold_the_processs_background_work(tiny_env):
    """From the first timed pair to the last, a background thread (a compile) makes no progress."""
    import torch

    from engine import Engine, GenerationRequest, RunOptions
    from engine.runtime.background import PROCESS
    from engine.service import run

    counter, seen = Counter(), []
    PROCESS.start(counter.run, name="counter")
    try:
        assert wait_for(lambda: counter.count > 10)
        options = RunOptions(model="tiny-llama", compare="attention", compare_with="dense", trials=4, max_new_tokens=4)
        request = GenerationRequest(options, text="the quick brown fox " * 8)
        progress = lambda fraction, message: seen.append((message, counter.count))  # noqa: E731
        comparison = run(request, Engine(budget_mb=10_000, device=torch.device("cpu")), progress=progress)
        during = [count for message, count in seen if message.startswith("trial")]
        assert len(during) == comparison.total.trials == 4
        assert during[1] == during[-1]  # the first pair's start may still see a call under way
        assert wait_for(lambda: counter.count > during[-1])  # and it goes on once they end
    finally:
        counter.done.set()
