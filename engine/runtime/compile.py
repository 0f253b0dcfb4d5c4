"""The one-token decode step of a batch of sequences (engine.batching), eager or compiled (gpt-fast's
recipe: static cache shapes, one graph per step), per loaded causal model.

A batch's sequences live in a RowCache (engine.row_cache) sized by a length bucket (powers of two
from 256); one compiled step per bucket, attention choice and row count (powers of two up to the
batch capacity), so a few shapes cover every request. A sparse step reads each sequence's
fixed-size key set (sinks + window) from the cache, so it compiles like the dense one
(attention/hook.py). A compiled step serves every cache of its shape.

Compiling takes up to a minute on a small CPU, so it never happens on a request: the first batch
to need a step starts its compile in the background and decodes eagerly; later steps use the
compiled one when it is ready. The compiler is Python holding the GIL (and, the first time, the import
machinery), and an eager decode hands the GIL back at every op: the first request of a fresh process,
with the compile starting beside it, decoded at 0.7 instead of 15.5 tokens/s (int8-wo, measured). So
the compiling thread pauses while any request is in flight and works in the gaps between requests.
Any failure to compile is recorded once and that step stays eager; the metrics say which path ran.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from engine.attention.choice import DENSE, AttentionChoice
from engine.platform.fallbacks import CUDA_GRAPHS, FALLBACKS
from engine.platform.settings import settings
from engine.runtime.kv_cache import RowCache
from engine.runtime.step import BatchKey, bucket_for, decode_step, keeps_pages, step_key, step_rows

log = logging.getLogger(__name__)
_step_ids = itertools.count()  # names the code object of each compiled step (_own_copy)


def _lower_priority() -> None:
    """On Linux, let requests have the CPU first: this thread (and the compiler processes it starts)
    runs at the lowest priority. Elsewhere, or if not allowed, compiling simply competes."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


class InFlight:
    """How many requests are being served; background compiles give way while there are any."""

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


IN_FLIGHT = InFlight()
# A request may wait on a lock the compiler holds (the compiler's own lock, an import): after each
# pause that ends with requests still in flight, the compiler runs unpaused for RUN_S, so it always
# advances (at RUN_S / (PAUSE_S + RUN_S) of its speed at worst) and releases what it holds.
PAUSE_S, RUN_S = 0.5, 0.25
_unpaused_until = threading.local()
# At exit, background compiles stop at their next Python call: a daemon thread still compiling when
# the interpreter finalizes aborts the process, and inductor shuts its compile workers down at exit.
_STOP = threading.Event()
_compiling: set[threading.Thread] = set()


class _CompileStopped(BaseException):
    """Unwinds a background compile at exit (a BaseException: the compiler's `except Exception`
    fallbacks must not catch it)."""


def _give_way(frame, event, arg) -> None:
    """Profile hook of a compiling thread: at each Python call, wait while requests are served."""
    if event != "call" or frame.f_code.co_filename == threading.__file__:
        return  # never from inside threading's own code, which may hold the lock the wait below needs
    if _STOP.is_set():
        raise _CompileStopped
    if IN_FLIGHT.idle.is_set() or time.monotonic() < getattr(_unpaused_until, "t", 0.0):
        return
    if not IN_FLIGHT.idle.wait(PAUSE_S):
        _unpaused_until.t = time.monotonic() + RUN_S


def stop_compiles(timeout: float = 10.0) -> None:
    """Stop the background compiles and wait (up to `timeout`) for their threads to end."""
    _STOP.set()
    deadline = time.monotonic() + timeout
    for thread in list(_compiling):
        thread.join(max(0.0, deadline - time.monotonic()))


threading._register_atexit(stop_compiles)  # before finalizing and before other exit handlers


def _own_copy(function: Callable, name: str) -> Callable:
    """`function` with a code object of its own. The compiler keeps its compiled versions and their
    guards per code object: one per step means a step checks only its own guards, and many steps
    never reach the compiler's limit on versions of one function."""
    code = function.__code__.replace(co_name=name)
    return types.FunctionType(code, function.__globals__, name, function.__defaults__, function.__closure__)


@dataclass
class CompiledStep:
    """decode_step compiled for `rows` sequences in caches of one shape."""

    run: Callable[[torch.Tensor, torch.Tensor, RowCache], torch.Tensor]  # (tokens, positions, cache) -> logits
    rows: int
    compile_s: float  # how long compiling it took (in the background)


MAX_STEPS = 8  # per model: beyond these, steps run eagerly


StepId = tuple[BatchKey, int]  # (batch key, rows)


class CompiledDecode:
    """The compiled decode steps of one loaded causal model, by batch key and row count."""

    def __init__(self, model, enabled: bool, capacity: int):
        self.model, self.enabled, self.capacity = model, enabled, capacity
        self.compile_seconds: dict[StepId, float] = {}
        self.failures: dict[StepId, str] = {}
        self._steps: dict[StepId, CompiledStep] = {}
        self._started: set[StepId] = set()
        self._lock = threading.Lock()

    def step(self, key: BatchKey, batch: int) -> CompiledStep | None:
        """The compiled step for `batch` sequences of batch `key`, or None (run eagerly): the first time
        its row count is asked for, its compile starts in the background. Until it is ready, a
        compiled step with more rows serves."""
        rows = step_rows(batch, self.capacity)
        with self._lock:
            start = self.enabled and (key, rows) not in self._started and len(self._started) < MAX_STEPS
            if start:
                self._started.add((key, rows))
            ready = [s for (k, r), s in self._steps.items() if k == key and r >= batch]
        if start:
            threading.Thread(
                target=self._compile_in_background, args=((key, rows),), name=f"compile-{key[0]}-{rows}", daemon=True
            ).start()
        return min(ready, key=lambda s: s.rows, default=None)

    def compile_now(self, tokens: int, choice: AttentionChoice = DENSE, batch: int = 1) -> None:
        """Compile the step for `batch` sequences of `tokens` in this thread (benchmarks and tests;
        requests never wait)."""
        step_id = (step_key(bucket_for(tokens), choice), step_rows(batch, self.capacity))
        with self._lock:
            self._started.add(step_id)
        self._compile(step_id)

    def _compile_in_background(self, step_id: StepId) -> None:
        _lower_priority()
        _compiling.add(threading.current_thread())
        try:
            while not IN_FLIGHT.idle.wait(PAUSE_S):  # start between requests
                if _STOP.is_set():
                    raise _CompileStopped
            # Only now: with the hook on, the wait above would run the hook inside Event.wait, which
            # holds the event's lock, and the hook's own wait on that event would never get it.
            sys.setprofile(_give_way)  # this thread only
            self._compile(step_id)
        except _CompileStopped:
            log.info("stopped compiling the decode step %s at exit", step_id)
        finally:
            sys.setprofile(None)
            _compiling.discard(threading.current_thread())

    def _compile(self, step_id: StepId) -> None:
        model = self.model
        # Inductor keeps its compiled kernels on disk: next to the model cache they outlive a restart
        # (a later process compiles the same step in seconds), unless TORCHINDUCTOR_CACHE_DIR says otherwise.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings().cache / "inductor"))
        for mode in graph_modes(next(model.parameters()).device):
            try:
                step = self._compile_step(step_id, mode)
            except Exception as exc:  # any compiler failure: this step stays eager, and says why
                if mode == "reduce-overhead":  # never run on a GPU here: without graphs next
                    FALLBACKS.record(CUDA_GRAPHS, "compiled steps without CUDA graphs", exc)
                    continue
                with self._lock:
                    self.failures[step_id] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.warning("%s decode step for %d x %d tokens not compiled (%s); decoding eagerly",
                            step_id[0][1].mode, step_id[1], step_id[0][0], self.failures[step_id])  # fmt: skip
                return
            with self._lock:
                self._steps[step_id] = step
                self.compile_seconds[step_id] = step.compile_s
            log.info("compiled the %s decode step for %d x %d tokens in %.1f s", step_id[0][1].mode, step_id[1],
                     step_id[0][0], step.compile_s)  # fmt: skip
            return

    def _compile_step(self, step_id: StepId, mode: str | None) -> CompiledStep:
        (bucket, choice), rows = step_id
        model = self.model
        start = time.perf_counter()
        device = next(model.parameters()).device
        own = _own_copy(decode_step, f"decode_step_{bucket}_{choice.mode}_{rows}_{next(_step_ids)}")
        compiled = torch.compile(own, dynamic=False, fullgraph=True, mode=mode)

        def run(tokens: torch.Tensor, positions: torch.Tensor, cache: RowCache) -> torch.Tensor:
            cache.decode(positions, cache.length)
            return compiled(model, tokens, positions, cache, choice)

        # A scratch cache of the batches' shape: the step serves any cache of that shape, and
        # the batches' own caches are in use meanwhile.
        scratch = RowCache(model.config.num_hidden_layers, self.capacity, bucket, pages=keeps_pages(choice))
        with torch.inference_mode():  # as the batches' steps run: the compiler guards on it
            token = torch.zeros((rows, 1), dtype=torch.long, device=device)
            scratch.prefill(0)  # allocates the cache's tensors
            model(input_ids=token[:1], position_ids=token[:1], past_key_values=scratch, use_cache=True)
            for position in (1, 2):  # the first call compiles; the second checks it is reused
                run(token, torch.full((rows,), position, device=device), scratch)
        return CompiledStep(run, rows, compile_s=time.perf_counter() - start)


def graph_modes(device: torch.device) -> list[str | None]:
    """The compile modes to try, in order: on CUDA, the step captured as a CUDA graph too (static cache
    shapes allow it), unless that failed once in this process; then the plain compiled step."""
    if device.type == "cuda" and not FALLBACKS.failed(CUDA_GRAPHS):
        return ["reduce-overhead", None]
    return [None]
