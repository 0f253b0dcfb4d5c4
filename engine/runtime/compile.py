"""The compiled decode steps of a loaded causal model (gpt-fast's recipe: static cache shapes, one
graph per step).

A batch's sequences live in a KV cache sized by a length bucket (engine.runtime.step); one compiled
step per bucket, attention choice (one for every row, or the distinct choices of rows attending
differently: RowChoices, each row's index an input), row count and width (tokens a row: 1, or a
speculating step's run of guesses, engine.runtime.speculation), so a few shapes cover every request.
A sparse step reads each sequence's fixed-size key set (sinks + window) from the cache, so it
compiles like the dense one. A compiled step serves every cache of its shape.

Compiling takes minutes on a small CPU, so it never happens on a request: the first batch to need
a step starts its compile in the background (engine.runtime.background: between requests, giving
way to them) and decodes eagerly; later steps use the compiled one when it is ready. On CPU a step is
compiled ahead of time and saved (engine.runtime.saved_steps): the next process (the app after
`python -m engine prepare`) loads it in seconds. Any failure to compile is recorded once and that
step stays eager; the metrics say which path ran.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch._inductor.config as inductor_config
from transformers import PreTrainedModel

from engine.attention.choice import DENSE, AttentionChoice, RowChoices, StepChoice
from engine.models.embedded import BUILDING
from engine.models.gguf_group import GROUP_BLOCK_MATMULS
from engine.models.packed import BlockLinear
from engine.platform.fallbacks import FALLBACKS
from engine.runtime import saved_steps
from engine.runtime.background import Background
from engine.runtime.kv_cache import RowCache
from engine.runtime.step import StepKey, bucket_for, decode_step, keeps_pages, step_key, step_rows, verify_step
from engine.runtime.step_variants import StepVariant, step_variants

log = logging.getLogger(__name__)
_step_ids = itertools.count()  # names the code object of each compiled step (_own_copy)


def _own_copy(function: Callable, name: str) -> Callable:
    """`function` with a code object of its own. The compiler keeps its compiled versions and their
    guards per code object: one per step means a step checks only its own guards, and many steps
    never reach the compiler's limit on versions of one function."""
    code = function.__code__.replace(co_name=name)
    return types.FunctionType(code, function.__globals__, name, function.__defaults__, function.__closure__)


@dataclass
class CompiledStep:
    """decode_step (or, `width` > 1, verify_step) compiled for `rows` sequences in caches of one shape."""

    # (tokens, positions, cache, each row's index into RowChoices or None) -> logits
    run: Callable[[torch.Tensor, torch.Tensor, RowCache, torch.Tensor | None], torch.Tensor]
    rows: int
    width: int
    compile_s: float  # how long compiling (or loading) it took, in the background
    loaded: bool = False  # loaded as saved by an earlier process


StepId = tuple[StepKey, int, int]  # (step key, rows, width)


class CompiledDecode:
    """The compiled decode steps of one loaded causal model, by step key and row count: at most
    `max_steps` (STUDIO_MAX_COMPILED_STEPS) are ever started: each compile grows the process for good
    (the embedded model at fp32: about 100 MB a step, measured), and steps are kept for the model's life.
    `identity`: the loaded model in words (source, precision, configuration), which names its saved
    steps."""

    def __init__(
        self,
        model: PreTrainedModel,
        identity: str,
        enabled: bool,
        capacity: int,
        background: Background,
        max_steps: int,
    ):
        self.model, self.identity, self.enabled, self.capacity = model, identity, enabled, capacity
        self.background, self.max_steps = background, max_steps
        self.compile_seconds: dict[StepId, float] = {}
        self.failures: dict[StepId, str] = {}
        self.failed_variants: set[str] = set()  # StepVariant names that failed for this model
        self._steps: dict[StepId, CompiledStep] = {}
        self._started: set[StepId] = set()
        self._lock = threading.Lock()

    def step(self, key: StepKey, batch: int, width: int = 1) -> CompiledStep | None:
        """The compiled step for `batch` sequences of step `key`, `width` tokens each, or None (run
        eagerly): the first time its row count is asked for, its compile starts in the background.
        Until it is ready, a compiled step with more rows serves."""
        step_id = (key, step_rows(batch, self.capacity), width)
        with self._lock:
            start = self.enabled and step_id not in self._started and len(self._started) < self.max_steps
            if start:
                self._started.add(step_id)
            ready = [s for (k, r, w), s in self._steps.items() if k == key and r >= batch and w == width]
        if start:
            self.background.start(lambda: self._compile(step_id), name=f"compile-{key[0]}-{step_id[1]}x{width}")
        return min(ready, key=lambda s: s.rows, default=None)

    def kept(self) -> int:
        """Compiled steps held now."""
        with self._lock:
            return len(self._steps)

    def compiling(self) -> int:
        """Compiles started and not yet done (ready or failed)."""
        with self._lock:
            return len(self._started) - len(self._steps) - len(self.failures)

    def compile_now(self, tokens: int, choice: StepChoice = DENSE, batch: int = 1, width: int = 1) -> None:
        """Compile the step for `batch` sequences of `tokens`, `width` tokens a step each, in this thread
        (benchmarks and tests; requests never wait). `choice`: a request's, or RowChoices as
        engine.runtime.step.step_choice makes them."""
        bucket = bucket_for(tokens)
        key = (bucket, choice) if isinstance(choice, RowChoices) else step_key(bucket, choice)
        step_id = (key, step_rows(batch, self.capacity), width)
        with self._lock:
            self._started.add(step_id)
        self._compile(step_id)

    def load_saved(self, tokens: int, choice: AttentionChoice = DENSE, batch: int = 1) -> bool:
        """Load the step for `batch` sequences of `tokens` here and now if an earlier process saved it
        (`python -m engine prepare` does): a few seconds, so a warm-up leaves the first request on the
        compiled path. False where none is saved or it does not load: the first request to need the
        step starts its compile in the background, as ever."""
        step_id = (step_key(bucket_for(tokens), choice), step_rows(batch, self.capacity), 1)
        saved = next((v for v in step_variants(next(self.model.parameters()).device) if v.saved), None)
        with self._lock:
            if not self.enabled or saved is None or saved.name in self.failed_variants or step_id in self._started:
                return step_id in self._steps
            self._started.add(step_id)
        try:
            step = self._compile_step(step_id, saved, load_only=True)
        except Exception as exc:  # as a failed compile: the background one tries the next variants
            log.warning("the saved decode step did not run (%s: %s)", type(exc).__name__, exc)
            step = None
        if step is None:
            with self._lock:
                self._started.discard(step_id)
            return False
        self._keep(step_id, step)
        return True

    def _compile(self, step_id: StepId) -> None:
        model = self.model
        # One compile thread: no pool of worker processes (each resident, and each taking a core from
        # requests); the C++ compiler runs as a child of this thread, which timed work suspends.
        inductor_config.compile_threads = int(os.environ.get("TORCHINDUCTOR_COMPILE_THREADS", "1"))
        variants = [v for v in step_variants(next(model.parameters()).device) if v.name not in self.failed_variants]
        for variant in variants:
            try:
                step = self._compile_step(step_id, variant)
                assert step is not None  # not load_only: compiled if not loaded
            except Exception as exc:  # any compiler failure: the next variant, else this step stays eager
                if variant is not variants[-1]:
                    self._variant_failed(variant, exc)
                    continue
                with self._lock:
                    self.failures[step_id] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.warning("%s decode step for %d x %d of %d tokens not compiled (%s); decoding eagerly",
                            step_id[0][1].mode, step_id[1], step_id[2], step_id[0][0],
                            self.failures[step_id])  # fmt: skip
                return
            self._keep(step_id, step)
            return

    def _keep(self, step_id: StepId, step: CompiledStep) -> None:
        with self._lock:
            self._steps[step_id] = step
            self.compile_seconds[step_id] = step.compile_s
        log.info("%s the %s decode step for %d x %d of %d tokens in %.1f s", "loaded" if step.loaded else "compiled",
                 step_id[0][1].mode, step_id[1], step_id[2], step_id[0][0], step.compile_s)  # fmt: skip

    def _variant_failed(self, variant: StepVariant, exc: Exception) -> None:
        """A variant that failed is not tried again: for every model (an untested GPU path, recorded
        process-wide), or for this model's steps (a compiler bug its graph meets)."""
        if variant.fallback is not None:
            FALLBACKS.record(variant.fallback, variant.instead, exc)
            return
        self.failed_variants.add(variant.name)
        log.warning("%s failed for this model (%s: %s); %s", variant.name, type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "", variant.instead)  # fmt: skip

    def _compile_step(self, step_id: StepId, variant: StepVariant, load_only: bool = False) -> CompiledStep | None:
        """The step compiled as `variant` says, run on a scratch cache; `load_only`: only if saved (else None)."""
        (bucket, choice), rows, width = step_id
        model = self.model
        start = time.perf_counter()
        device = next(model.parameters()).device
        # A scratch cache of the batches' shape: the step serves any cache of that shape, and
        # the batches' own caches are in use meanwhile.
        scratch = RowCache(model.config.num_hidden_layers, self.capacity, bucket, pages=keeps_pages(choice))
        # BUILDING: the compiler saves torch's process-wide default dtype as it starts and puts it back
        # as it ends, as a model's build does around its own: overlapping, they left bf16 behind
        # (seen: a load beside a background compile), and a step traced under it fails its guards.
        with BUILDING, torch.inference_mode():  # as the batches' steps run: the compiler guards on it (inputs too)
            token = torch.zeros((rows, width), dtype=torch.long, device=device)
            scratch.prefill(0)  # allocates the cache's tensors
            model(input_ids=token[:1, :1], position_ids=token[:1, :1], past_key_values=scratch, use_cache=True)
            compiled, loaded = self._compiled_function(step_id, variant, token, scratch, load_only)
            if compiled is None:
                return None

            def run(tokens: torch.Tensor, positions: torch.Tensor, cache: RowCache, which=None) -> torch.Tensor:
                cache.decode(positions, cache.length)
                return compiled(model, tokens, positions, cache, choice, True, which)

            which = _example_rows(choice, rows, device)
            for position in (1, 2):  # the first call compiles (unless ahead of time); the second checks it is reused
                run(token, _example_positions(rows, width, position, device), scratch, which)
        return CompiledStep(run, rows, width, compile_s=time.perf_counter() - start, loaded=loaded)

    def _compiled_function(
        self, step_id: StepId, variant: StepVariant, token: torch.Tensor, scratch: RowCache, load_only: bool
    ) -> tuple[Callable[..., torch.Tensor] | None, bool]:
        """decode_step compiled as `variant` says, and whether it was loaded from disk (`load_only`: None
        where none is saved). Ahead of time (`variant.saved`), it is traced on the scratch cache and
        saved; otherwise on its first call."""
        # No guards on the model's modules: a step only ever runs this model, whose modules and
        # weights never change after loading; checking ~900 of them cost ~2 ms a step (profile:
        # README). The guards on the step's inputs (tokens, positions, cache) stay.
        guards = saved_steps.portable_guards if variant.saved else torch.compiler.skip_guard_on_all_nn_modules_unsafe
        options: dict[str, Any] = {"guard_filter_fn": guards, **variant.inductor}
        if any(isinstance(module, BlockLinear) for module in self.model.modules()):
            options["post_grad_custom_pre_pass"] = GROUP_BLOCK_MATMULS  # the gguf precisions
        (bucket, choice), rows, width = step_id
        function = decode_step if width == 1 else verify_step
        if not variant.saved:
            own = _own_copy(function, f"{function.__name__}_{bucket}_{choice.mode}_{rows}x{width}_{next(_step_ids)}")
            return torch.compile(own, dynamic=False, fullgraph=True, mode=variant.mode, options=options), False
        path = self._saved_file(step_id, variant)
        positions = _example_positions(rows, width, 1, token.device)
        scratch.decode(positions, scratch.length)
        inputs = (self.model, token, positions, scratch, choice, True, _example_rows(choice, rows, token.device))
        step = saved_steps.load(path, inputs)
        loaded = step is not None
        if step is None and load_only:
            return None, False
        if step is None:
            compiler = torch.compile(function, dynamic=False, fullgraph=True, mode=variant.mode, options=options)
            # torch.compile is typed as returning the function; what it returns has aot_compile (torch >= 2.10)
            step = compiler.aot_compile((inputs, {}))  # type: ignore[attr-defined]
            saved_steps.save(step, path)
        return saved_steps.guarded(step, function), loaded

    def _saved_file(self, step_id: StepId, variant: StepVariant) -> Path:
        how = f"{step_id!r} capacity={self.capacity} {variant.name} {variant.mode} {sorted(variant.inductor.items())}"
        return saved_steps.step_file(self.identity, how)


def _example_rows(choice: StepChoice, rows: int, device: torch.device) -> torch.Tensor | None:
    """A step's `which` input, as batches give it: each row's index into RowChoices, else None."""
    return torch.zeros(rows, dtype=torch.long, device=device) if isinstance(choice, RowChoices) else None


def _example_positions(rows: int, width: int, position: int, device: torch.device) -> torch.Tensor:
    """A step's positions input, as batches give it: (rows,) for one token a row, else (rows, width)."""
    if width == 1:
        return torch.full((rows,), position, device=device)
    return torch.full((rows, 1), position, device=device) + torch.arange(width, device=device)
