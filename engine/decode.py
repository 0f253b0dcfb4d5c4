"""A static KV cache and a compiled one-token decode step (gpt-fast's recipe), per loaded causal model.

One compiled step and one preallocated cache per length bucket (powers of two from 256), so a few
shapes cover every request. Compiling takes over a minute on a small CPU, so it never happens on a
request: the first request of a new bucket starts a background compile and decodes eagerly; later
ones use the compiled step when it is ready and free. Dense attention only: the sparse decode's
plan branches on data, which the compiler cannot trace, so sparse decodes eagerly. Any failure to
compile is recorded once and that bucket stays eager; the metrics always say which path ran.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import StaticCache

from .attention.hook import AttentionChoice

log = logging.getLogger(__name__)
MIN_BUCKET = 256
DENSE = AttentionChoice()


def _lower_priority() -> None:
    """On Linux, let requests have the CPU first: this thread (and the compiler processes it starts)
    runs at the lowest priority. Elsewhere, or if not allowed, compiling simply competes."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def bucket_for(tokens: int) -> int:
    """The cache length for a request of `tokens` (input + new): the next power of two, at least 256."""
    return max(MIN_BUCKET, 1 << (tokens - 1).bit_length())


def _one_token(model, token: torch.Tensor, position: torch.Tensor, cache: StaticCache) -> torch.Tensor:
    # The attention choice goes in as an argument (not the ContextVar the eager path reads): the
    # compiler traces it as a constant, so the whole step is one graph.
    out = model(input_ids=token, past_key_values=cache, cache_position=position, use_cache=True, studio_choice=DENSE)
    return out.logits[:, -1]


@dataclass
class Slot:
    """A compiled step with its own static cache; one request uses it at a time."""

    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (token (1, 1), position (1,)) -> logits (1, vocab)
    cache: StaticCache
    busy: threading.Lock = field(default_factory=threading.Lock)


class CompiledDecode:
    """The compiled decode steps of one loaded causal model, by bucket."""

    def __init__(self, model, enabled: bool):
        self.model, self.enabled = model, enabled
        self.compile_seconds: dict[int, float] = {}
        self.failures: dict[int, str] = {}
        self._slots: dict[int, Slot] = {}
        self._started: set[int] = set()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, tokens: int) -> Iterator[Slot | None]:
        """A ready, free slot for a request of `tokens`, held for the block; None means decode eagerly
        (and, the first time a bucket is asked for, its compile starts in the background)."""
        bucket = bucket_for(tokens)
        with self._lock:
            ready = self._slots.get(bucket)
            start = self.enabled and bucket not in self._started
            self._started.add(bucket)
        if start:
            threading.Thread(
                target=self._compile_in_background, args=(bucket,), name=f"compile-{bucket}", daemon=True
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

    def compile_now(self, tokens: int) -> None:
        """Compile the bucket for `tokens` in this thread (benchmarks and tests; requests never wait)."""
        bucket = bucket_for(tokens)
        with self._lock:
            self._started.add(bucket)
        self._compile(bucket)

    def _compile_in_background(self, bucket: int) -> None:
        _lower_priority()
        self._compile(bucket)

    def _compile(self, bucket: int) -> None:
        model = self.model
        try:
            start = time.perf_counter()
            cache = StaticCache(config=model.config, max_cache_len=bucket)
            device = next(model.parameters()).device
            # CUDA: also capture the step as a CUDA graph (static cache addresses allow it). Not yet
            # run on a GPU here: no GPU has been lent to this project.
            mode = "reduce-overhead" if device.type == "cuda" else None
            compiled = torch.compile(_one_token, dynamic=False, fullgraph=True, mode=mode)

            def step(token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
                return compiled(model, token, position, cache)

            token = torch.zeros((1, 1), dtype=torch.long, device=device)
            with torch.inference_mode():
                model(input_ids=token, past_key_values=cache, cache_position=torch.arange(1, device=device))
                for position in (1, 2):  # the first call compiles; the second checks it is reused
                    step(token, torch.tensor([position], device=device))
            slot = Slot(step, cache)
            with self._lock:
                self._slots[bucket] = slot
                self.compile_seconds[bucket] = time.perf_counter() - start
            log.info("compiled the decode step for %d tokens in %.1f s", bucket, self.compile_seconds[bucket])
        except Exception as exc:  # any compiler failure: this bucket decodes eagerly, and says why
            self.failures[bucket] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning("decode step for %d tokens not compiled (%s); decoding eagerly", bucket, self.failures[bucket])
