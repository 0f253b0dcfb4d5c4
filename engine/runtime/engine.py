"""The one model cache: keyed by (model, precision), LRU-evicted under a memory budget (weights and
the KV caches of running batches), thread-safe, and loading each key once even when many requests
ask at the same time. Loading, like every forward, runs on the process's one engine thread
(engine.scheduler)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import psutil
import torch

from engine.models.embedded import ProgressFn
from engine.models.loader import LoadedModel, load_model
from engine.models.out_of_memory import out_of_memory
from engine.models.precision import BITSANDBYTES, resolve_device, resolve_precision
from engine.models.precision_menu import PRECISION_BY_NAME
from engine.models.registry import get_spec
from engine.platform.errors import ModelLoadError
from engine.platform.fallbacks import BITSANDBYTES_GPU, FALLBACKS, FP16_GPU
from engine.platform.memory import free_memory, is_out_of_memory
from engine.platform.settings import settings
from engine.runtime.batching import ModelBatches
from engine.runtime.compile import CompiledDecode
from engine.runtime.scheduler import SCHEDULER


def default_budget_mb(device: torch.device) -> float:
    """STUDIO_MEMORY_BUDGET_MB, else 80% of GPU memory or half of system RAM."""
    if (budget := settings().memory_budget_mb) is not None:
        return budget
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory * 0.8 / 2**20
    return psutil.virtual_memory().total * 0.5 / 2**20


class ModelCache:
    def __init__(
        self, budget_mb: float | None = None, device: torch.device | None = None, max_batch: int | None = None
    ):
        self.device = device or resolve_device()
        self.max_batch = max_batch or settings().max_batch
        self.budget_mb = budget_mb if budget_mb is not None else default_budget_mb(self.device)
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self.scheduler = SCHEDULER  # the process's one engine thread

    def get(self, name: str, precision: str, progress: ProgressFn | None = None) -> LoadedModel:
        """The model at `precision` (validated by the caller; `auto` resolved here), loaded once."""
        spec = get_spec(name)
        if spec.remote:
            raise ModelLoadError(
                f"{name} is served by {spec.location}, not loaded here: the Lab and the benchmarks measure local models."
            )
        key = (name, resolve_precision(precision, self.device, spec.family))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a second request for the same key waits here, then finds it loaded
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
            loaded = self._load(spec, key, progress)
            if loaded.batches is not None:  # a new batch waits while its cache would overshoot the budget
                loaded.batches.fits = lambda extra: self.used_mb() + extra / 2**20 <= self.budget_mb
            with self._lock:
                self._models[key] = loaded
                self._evict(keep=key)
            return loaded

    def _load(self, spec, key: tuple[str, str], progress: ProgressFn | None) -> LoadedModel:
        """Load on the one thread that does torch work (engine.scheduler).
        - An untested CUDA path (engine.fallbacks) that fails loads the tested way instead, for good.
        - Out of memory: drop every other model, free what they held and try once more; then say
          what to choose instead."""
        precision, device = key[1], self.device
        instead = _tested_instead(spec, precision, device)
        if instead is not None and FALLBACKS.failed(instead.path):
            precision, device = instead.precision, instead.device

        def load(precision: str, device: torch.device) -> LoadedModel:
            return self.scheduler.call(
                lambda report: self._with_decode_state(load_model(spec, precision, device, report)), progress=progress
            )

        try:
            return load(precision, device)
        except Exception as exc:
            if not is_out_of_memory(exc):
                if instead is None or FALLBACKS.failed(instead.path):
                    raise
                FALLBACKS.record(instead.path, instead.says, exc)
                return load(instead.precision, instead.device)
            with self._lock:
                self._models.clear()  # requests still holding one keep it alive until they finish
            free_memory(self.device)
        try:
            return load(precision, device)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise out_of_memory(exc, "loading", device, spec.name, precision) from exc
            raise

    def _with_decode_state(self, loaded: LoadedModel) -> LoadedModel:
        """A causal model's compiled steps and batches, sized by the batch capacity."""
        if loaded.spec.family == "causal":
            compiles = settings().compile_decode and PRECISION_BY_NAME[loaded.precision].compiles
            loaded.compiled = CompiledDecode(loaded.model, compiles, self.max_batch)
            loaded.batches = ModelBatches(self.max_batch)
        return loaded

    def _evict(self, keep: tuple[str, str]) -> None:
        while self.used_mb() > self.budget_mb and len(self._models) > 1:
            oldest = next(k for k in self._models if k != keep)
            del self._models[oldest]  # requests still holding it keep it alive until they finish
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def used_mb(self) -> float:
        """Weights of the loaded models plus the KV caches of the batches decoding on them."""
        models = list(self._models.values())  # a snapshot: callers may hold the lock
        return sum(m.footprint_mb + (m.batches.memory_bytes() / 2**20 if m.batches else 0) for m in models)

    def peek(self, name: str, precision: str) -> LoadedModel | None:
        """The model if it is loaded now (never loads, never reorders the LRU); None otherwise."""
        spec = get_spec(name)
        if spec.remote:
            return None
        with self._lock:
            return self._models.get((name, resolve_precision(precision, self.device, spec.family)))

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


@dataclass(frozen=True)
class _Instead:
    path: str  # the untested path (engine.fallbacks)
    precision: str
    device: torch.device
    says: str


def _tested_instead(spec, precision: str, device: torch.device) -> _Instead | None:
    """Where a load on CUDA goes when its untested path fails: bitsandbytes to the CPU at the same
    precision (its CPU backend is tested), fp16 (`auto` on CUDA) to the CPU at what `auto` is there."""
    if device.type != "cuda":
        return None
    cpu = torch.device("cpu")
    if precision in BITSANDBYTES:
        return _Instead(BITSANDBYTES_GPU, precision, cpu, f"{precision} with bitsandbytes on the CPU")
    if precision == "fp16":
        tested = resolve_precision("auto", cpu, spec.family)
        return _Instead(FP16_GPU, tested, cpu, f"{tested} on the CPU")
    return None


_default: ModelCache | None = None
_default_lock = threading.Lock()


def default_cache() -> ModelCache:
    """The process-wide cache shared by the CLI, every tab and the API (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModelCache()
        return _default
