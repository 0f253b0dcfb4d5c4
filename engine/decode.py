"""A static KV cache and a compiled one-token decode step (gpt-fast's recipe), per loaded causal model.

One compiled step and one preallocated cache per length bucket (powers of two from 256) and
attention choice, so a few shapes cover every request. A sparse step reads its pattern's fixed-size
key set (sinks + window) from the static cache, so it compiles like the dense one (attention/hook.py).

Compiling takes up to a minute on a small CPU, so it never happens on a request: the first request
of a new bucket starts a background compile and decodes eagerly; later ones use the compiled step
when it is ready and free. The compiler is Python holding the GIL (and, the first time, the import
machinery), and an eager decode hands the GIL back at every op: the first request of a fresh process,
with the compile starting beside it, decoded at 0.7 instead of 15.5 tokens/s (int8-wo, measured). So
the compiling thread pauses while any request is in flight and works in the gaps between requests. Any failure to compile is
recorded once and that step stays eager; the metrics always say which path ran.
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
from dataclasses import dataclass, field, replace

import torch
from transformers import StaticCache

from .attention import pattern_for
from .attention.hook import DENSE, AttentionChoice
from .settings import settings

log = logging.getLogger(__name__)
MIN_BUCKET = 256
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


def _give_way(frame, event, arg) -> None:
    """Profile hook of a compiling thread: at each Python call, wait while requests are served."""
    if event != "call" or IN_FLIGHT.idle.is_set() or time.monotonic() < getattr(_unpaused_until, "t", 0.0):
        return
    if not IN_FLIGHT.idle.wait(PAUSE_S):
        _unpaused_until.t = time.monotonic() + RUN_S


def bucket_for(tokens: int) -> int:
    """The cache length for a request of `tokens` (input + new): the next power of two, at least 256."""
    return max(MIN_BUCKET, 1 << (tokens - 1).bit_length())


def _one_token(model, token: torch.Tensor, position: torch.Tensor, cache: StaticCache, choice) -> torch.Tensor:
    # The attention choice goes in as an argument (not the ContextVar the eager path reads): the
    # compiler traces it as a constant, so the whole step is one graph.
    out = model(input_ids=token, past_key_values=cache, cache_position=position, use_cache=True, studio_choice=choice)
    return out.logits[:, -1]


def _own_copy(function: Callable, name: str) -> Callable:
    """`function` with a code object of its own. The compiler keeps its compiled versions and their
    guards per code object: one per slot means a step checks only its own guards, and many slots
    never reach the compiler's limit on versions of one function."""
    code = function.__code__.replace(co_name=name)
    return types.FunctionType(code, function.__globals__, name, function.__defaults__, function.__closure__)


@dataclass
class Slot:
    """A compiled step with its own static cache; one request uses it at a time."""

    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (token (1, 1), position (1,)) -> logits (1, vocab)
    cache: StaticCache
    compile_s: float  # how long compiling it took (in the background)
    busy: threading.Lock = field(default_factory=threading.Lock)


SlotKey = tuple[int, AttentionChoice]  # (bucket, attention choice without stats)
MAX_STEPS = 8  # per model: each holds a bucket-sized cache; requests beyond decode eagerly


def step_key(bucket: int, choice: AttentionChoice) -> SlotKey:
    """Requests that would run the same step share it: sparse settings the step does not read are
    reset, and a pattern that keeps every key of the bucket is dense attention."""
    if choice.mode == "dense":
        return bucket, DENSE
    settings = replace(choice.settings, block_size=DENSE.settings.block_size)  # only prefill's kernel reads it
    if pattern_for(settings, causal=True).keeps_all(bucket, settings):
        return bucket, DENSE
    return bucket, AttentionChoice("sparse", settings)


class CompiledDecode:
    """The compiled decode steps of one loaded causal model, by bucket and attention choice."""

    def __init__(self, model, enabled: bool):
        self.model, self.enabled = model, enabled
        self.compile_seconds: dict[SlotKey, float] = {}
        self.failures: dict[SlotKey, str] = {}
        self._slots: dict[SlotKey, Slot] = {}
        self._started: set[SlotKey] = set()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, tokens: int, choice: AttentionChoice = DENSE) -> Iterator[Slot | None]:
        """A ready, free slot for a request of `tokens`, held for the block; None means decode eagerly
        (and, the first time a bucket and choice are asked for, their compile starts in the background)."""
        key = step_key(bucket_for(tokens), choice)
        with self._lock:
            ready = self._slots.get(key)
            start = self.enabled and key not in self._started and len(self._started) < MAX_STEPS
            self._started.add(key)
        if start:
            threading.Thread(
                target=self._compile_in_background, args=(key,), name=f"compile-{key[0]}", daemon=True
            ).start()
        if ready is None or not ready.busy.acquire(blocking=False):
            yield None
            return
        try:
            with torch.inference_mode():  # the cache's tensors were made under inference mode
                ready.cache.reset()
            yield ready
        finally:
            ready.busy.release()

    def compile_now(self, tokens: int, choice: AttentionChoice = DENSE) -> None:
        """Compile the step for `tokens` in this thread (benchmarks and tests; requests never wait)."""
        key = step_key(bucket_for(tokens), choice)
        with self._lock:
            self._started.add(key)
        self._compile(key)

    def _compile_in_background(self, key: SlotKey) -> None:
        _lower_priority()
        IN_FLIGHT.idle.wait()  # start between requests
        sys.setprofile(_give_way)  # this thread only
        try:
            self._compile(key)
        finally:
            sys.setprofile(None)

    def _compile(self, key: SlotKey) -> None:
        bucket, choice = key
        model = self.model
        # Inductor keeps its compiled kernels on disk: next to the model cache they outlive a restart
        # (a later process compiles the same step in seconds), unless TORCHINDUCTOR_CACHE_DIR says otherwise.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings().cache / "inductor"))
        try:
            start = time.perf_counter()
            cache = StaticCache(config=model.config, max_cache_len=bucket)
            device = next(model.parameters()).device
            # CUDA: also capture the step as a CUDA graph (static cache addresses allow it). Not yet
            # run on a GPU here: no GPU has been lent to this project.
            mode = "reduce-overhead" if device.type == "cuda" else None
            one_token = _own_copy(_one_token, f"_one_token_{bucket}_{choice.mode}_{next(_step_ids)}")
            compiled = torch.compile(one_token, dynamic=False, fullgraph=True, mode=mode)

            def step(token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
                return compiled(model, token, position, cache, choice)

            token = torch.zeros((1, 1), dtype=torch.long, device=device)
            with torch.inference_mode():
                model(input_ids=token, past_key_values=cache, cache_position=torch.arange(1, device=device))
                for position in (1, 2):  # the first call compiles; the second checks it is reused
                    step(token, torch.tensor([position], device=device))
            slot = Slot(step, cache, compile_s=time.perf_counter() - start)
            with self._lock:
                self._slots[key] = slot
                self.compile_seconds[key] = slot.compile_s
            log.info("compiled the %s decode step for %d tokens in %.1f s", choice.mode, bucket, slot.compile_s)
        except Exception as exc:  # any compiler failure: this step stays eager, and says why
            with self._lock:
                self.failures[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning("%s decode step for %d tokens not compiled (%s); decoding eagerly", choice.mode, bucket,
                        self.failures[key])  # fmt: skip
