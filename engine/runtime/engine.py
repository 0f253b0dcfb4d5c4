"""The engine: one device, its pool of loaded models, the engine thread that runs every forward (a
scheduler that decides and a runner that runs), the requests in flight and the work that runs in the
gaps between them (decode steps compiling). All of the engine's state lives here, with an explicit
lifetime: its threads start with their first work, `stop` ends them, and the process's engine
(`default_engine`) stops when the main thread ends, before the interpreter finalizes."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable

import torch

from engine.models.embedded import ProgressFn
from engine.models.loader import LoadedModel, load_model
from engine.models.pool import ModelPool, default_budget_mb
from engine.models.precision import resolve_device
from engine.models.precision_menu import PRECISION_BY_NAME
from engine.models.registry import ModelSpec
from engine.platform.settings import settings
from engine.runtime import background
from engine.runtime.aside import run_aside
from engine.runtime.batching import ModelBatches
from engine.runtime.compile import CompiledDecode
from engine.runtime.runner import Runner
from engine.runtime.scheduler import Scheduler
from engine.runtime.seq2seq import decoder_rows


class Engine:
    def __init__(
        self,
        budget_mb: float | None = None,
        device: torch.device | None = None,
        max_batch: int | None = None,
        prefill_chunk: int | None = None,
    ):
        self.device = device or resolve_device()
        self.max_batch = max_batch or settings().max_batch
        self.models = ModelPool(
            self.device,
            budget_mb if budget_mb is not None else default_budget_mb(self.device),
            load=self._load,
            held_mb=lambda loaded: loaded.batches.memory_bytes() / 2**20 if loaded.batches else 0.0,
        )
        self.background = background.PROCESS  # compiles, in the gaps between requests of every engine
        self.in_flight = self.background.in_flight  # requests being served: background work gives way
        chunk = settings().prefill_chunk if prefill_chunk is None else prefill_chunk
        self.runner = Runner(Scheduler(fits=self.models.fits), self.device, chunk, stepped=self.in_flight.step)
        # Requests admitted ahead of their run (engine.backends.admission): validated and tokenized once.
        self.admitted: OrderedDict[Hashable, object] = OrderedDict()
        self.lock = threading.Lock()
        _stop_at_exit(self)

    def get(self, name: str, precision: str, progress: ProgressFn | None = None) -> LoadedModel:
        """The model at `precision`, loaded once (engine.models.pool)."""
        return self.models.get(name, precision, progress)

    def stop(self, timeout: float = 10.0) -> None:
        """End the engine thread after its current step (later requests hear EngineStoppedError) and
        the process's background work: the end of the process, when the main thread ends."""
        self.runner.stop(timeout)
        self.background.stop(timeout)

    def _load(self, spec: ModelSpec, precision: str, device: torch.device, progress: ProgressFn | None) -> LoadedModel:
        """Load off the engine thread, which goes on decoding its streams meanwhile (engine.runtime.aside),
        then give it its batches (a causal model also its compiled steps)."""

        def load(report: ProgressFn) -> LoadedModel:
            loaded = load_model(spec, precision, device, report)
            if loaded.spec.family == "causal":
                chosen = settings()
                compiles = chosen.compile_decode and PRECISION_BY_NAME[loaded.precision].compiles
                identity = (
                    f"{spec.source}:{spec.location} {loaded.precision} {device} {loaded.model.config.to_json_string()}"
                )
                loaded.compiled = CompiledDecode(
                    loaded.model, identity, compiles, self.max_batch, self.background, chosen.max_compiled_steps
                )
                loaded.batches = ModelBatches(self.max_batch)
            elif loaded.spec.family == "seq2seq":
                loaded.batches = ModelBatches(decoder_rows(loaded.model, self.max_batch))
            return loaded

        return run_aside(load, progress, f"studio-load-{spec.name}", busy=self.runner.decoding)


_default: Engine | None = None
_default_lock = threading.Lock()
_runners: weakref.WeakSet[Runner] = weakref.WeakSet()  # to stop at exit (a running thread keeps its runner)
_exit_lock = threading.Lock()
_exit_watch: threading.Thread | None = None
# How long exit waits for an engine thread's current step (a model's load, a decode step) and for the
# background compiles to end: a load of the embedded model took ~20 s on a busy 2-core machine
EXIT_WAIT_S = 120.0


def default_engine() -> Engine:
    """The process's engine, shared by the CLI, every tab and the API (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Engine()
        return _default


def _stop_at_exit(engine: Engine) -> None:
    global _exit_watch
    with _exit_lock:
        _runners.add(engine.runner)
        if _exit_watch is None:
            _exit_watch = threading.Thread(target=_stop_when_main_ends, name="studio-exit")
            _exit_watch.start()


def _stop_when_main_ends() -> None:
    """At exit, the main thread ends before the interpreter joins the threads that are not daemons
    (this one) and finalizes: the engine threads and the background compiles must not be inside torch
    by then (a thread inside a torch op at finalization aborts the process: "terminate called without
    an active exception", seen here), nor compiling while inductor shuts its compile workers down.
    Every runner still alive is stopped, whether or not its engine still is."""
    threading.main_thread().join()
    background.PROCESS.stop(EXIT_WAIT_S, end_compilers=True)  # first: no compile of any thread waits on a compiler
    for runner in list(_runners):
        runner.stop(EXIT_WAIT_S)
