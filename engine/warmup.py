"""Warm a model before anyone asks: load it (the embedded one converts on first use), load the decode
step that set-up saved for short requests, and run one tiny request, which starts compiling that step
in the background where none was saved (engine.runtime.compile). The app starts one at launch and
shows its state; `python -m engine prepare` runs it in the foreground and compiles that step there (the
set-up command does, so the first request after set-up pays neither conversion nor compile)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Literal

from engine.api.options import options_from
from engine.api.request import GenerationRequest
from engine.models.precision import supported_precisions
from engine.platform.errors import StudioError
from engine.platform.machine import machine_limits, measure_machine
from engine.runtime.engine import Engine, default_engine
from engine.runtime.step import MIN_BUCKET
from engine.service import run

log = logging.getLogger(__name__)
Phase = Literal["waiting", "loading", "warming", "ready", "failed"]


@dataclass(frozen=True)
class WarmState:
    model: str
    precision: str
    phase: Phase
    message: str  # what is happening, or what happened, in one sentence
    seconds: float  # since the warm-up started (its total once ready or failed)

    @property
    def done(self) -> bool:
        return self.phase in ("ready", "failed")


class WarmUp:
    """One model's warm-up, in the background (`start`) or here (`run`); `state()` at any time."""

    def __init__(self, model: str, precision: str = "auto", engine: Engine | None = None):
        self.model, self.precision, self._engine = model, precision, engine
        self._lock = threading.Lock()
        self._started: float | None = None
        self._state = WarmState(model, precision, "waiting", "not started", 0.0)

    def state(self) -> WarmState:
        """Its state; `seconds` counts on until it is done."""
        with self._lock:
            state = self._state
        if state.done or self._started is None:
            return state
        return replace(state, seconds=time.perf_counter() - self._started)

    def start(self) -> None:
        threading.Thread(target=self.run, name=f"warm-{self.model}", daemon=True).start()

    def run(self, compile_here: bool = False) -> WarmState:
        """`compile_here` (set-up): compile the short requests' decode step in this thread (or load it,
        if saved before) rather than in the background, which gives way at every Python call (a cold
        compile took twice as long there); it is saved for the app to load."""
        self._started = time.perf_counter()
        engine = self._engine or default_engine()
        try:
            self._set("loading", f"loading {self.model}")
            # The precision check of every request's validator imports bitsandbytes and torchao (~4 s
            # here, more on a busy machine): now, not in the first visitor's queue join, which
            # gradio_client gives 5 s.
            supported_precisions(engine.device)
            loaded = engine.get(self.model, self.precision, lambda fraction, message: self._set("loading", message))
            # On the engine thread, as every forward: torch keeps a team of OpenMP threads per thread
            # that ran a parallel region, and more teams than cores slow every step (README)
            compiled = loaded.compiled
            ready = False
            if compiled is not None and compiled.enabled and compile_here:
                self._set("warming", f"compiling the decode step of {self.model} at {loaded.precision}")
                engine.runner.call(lambda _: compiled.compile_now(MIN_BUCKET))
            elif compiled is not None:  # a short chat's step, if set-up saved it: the first one is fast
                self._set("warming", f"loading the saved decode step of {self.model} at {loaded.precision}")
                ready = engine.runner.call(lambda _: compiled.load_saved(MIN_BUCKET))
            self._set("warming", f"first run of {self.model} at {loaded.precision}")
            # Two tokens take a decode step, which starts the step's compile where none was loaded;
            # where one was, one token (prefill only): a decode step beside a visitor's first request
            # would make a batch of two, whose step would then compile in the background for minutes.
            new_tokens = 1 if ready else 2
            options = options_from({"model": self.model, "precision": self.precision, "max_new_tokens": new_tokens})
            run(GenerationRequest(options, text="Hello"), engine)
            if machine_limits() is None:  # what every request's time split is set against; set-up measures it
                self._set("warming", "measuring this machine's memory bandwidth and matmul rate")
                engine.runner.call(lambda _: measure_machine())
            self._set("ready", f"{self.model} at {loaded.precision} is loaded and warm")
        except Exception as exc:  # a boundary: a failed warm-up is reported, and requests still try for themselves
            reason = str(exc) if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
            self._set("failed", reason)
            log.warning("warm-up of %s failed: %s", self.model, reason)
        return self.state()

    def _set(self, phase: Phase, message: str) -> None:
        assert self._started is not None  # run() sets it before any phase
        with self._lock:
            self._state = WarmState(self.model, self.precision, phase, message, time.perf_counter() - self._started)
