"""The pool of loaded models: keyed by (model, precision), LRU-evicted under a memory budget (the
weights, plus what the runtime says each model's batches hold), thread-safe, and loading each key once
even when many requests ask at the same time. How a model loads is the caller's (the engine loads on
its one thread)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import torch

from engine.models.embedded import ProgressFn
from engine.models.loader import LoadedModel
from engine.models.out_of_memory import out_of_memory
from engine.models.precision import BITSANDBYTES, resolve_precision
from engine.models.registry import ModelSpec, get_spec
from engine.platform.errors import ModelLoadError
from engine.platform.fallbacks import BITSANDBYTES_GPU, FALLBACKS, FP16_GPU
from engine.platform.memory import free_memory, is_out_of_memory
from engine.platform.settings import settings

Loader = Callable[[ModelSpec, str, torch.device, ProgressFn | None], LoadedModel]
Key = tuple[str, str]  # (model name, resolved precision)


def default_budget_mb(device: torch.device) -> float:
    """STUDIO_MEMORY_BUDGET_MB, else 80% of GPU memory or half of system RAM."""
    if (budget := settings().memory_budget_mb) is not None:
        return budget
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory * 0.8 / 2**20
    return psutil.virtual_memory().total * 0.5 / 2**20


class ModelPool:
    def __init__(
        self,
        device: torch.device,
        budget_mb: float,
        load: Loader,
        held_mb: Callable[[LoadedModel], float] = lambda loaded: 0.0,
    ):
        self.device, self.budget_mb = device, budget_mb
        self._load_model = load
        self._held_mb = held_mb  # what a model holds beside its weights (its batches' KV caches)
        self._models: OrderedDict[Key, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Key, threading.Lock] = {}

    def get(self, name: str, precision: str, progress: ProgressFn | None = None) -> LoadedModel:
        """The model at `precision` (validated by the caller; `auto` resolved here), loaded once."""
        spec = get_spec(name)
        if spec.remote:
            raise ModelLoadError(
                f"{name} is served by {spec.location}, not loaded here: the Lab and the benchmarks measure local models."
            )
        key = (name, resolve_precision(precision, self.device, spec))
        if (loaded := self._touch(key)) is not None:
            return loaded
        key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a second request for the same key waits here, then finds it loaded
            if (loaded := self._touch(key)) is not None:
                return loaded
            loaded = self._load(spec, key, progress)
            with self._lock:
                self._models[key] = loaded
                self._evict(keep=key)
            return loaded

    def peek(self, name: str, precision: str) -> LoadedModel | None:
        """The model if it is loaded now (never loads, never reorders the LRU); None otherwise."""
        spec = get_spec(name)
        if spec.remote:
            return None
        with self._lock:
            return self._models.get((name, resolve_precision(precision, self.device, spec)))

    def loaded(self) -> list[Key]:
        with self._lock:
            return list(self._models)

    def loaded_models(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def used_mb(self) -> float:
        """Weights of the loaded models plus what each holds beside them."""
        models = list(self._models.values())  # a snapshot: callers may hold the lock
        return sum(m.footprint_mb + self._held_mb(m) for m in models)

    def fits(self, extra_bytes: int) -> bool:
        """Whether `extra_bytes` more (a new batch's cache) stay within the budget."""
        return self.used_mb() + extra_bytes / 2**20 <= self.budget_mb

    def _touch(self, key: Key) -> LoadedModel | None:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        return None

    def _load(self, spec: ModelSpec, key: Key, progress: ProgressFn | None) -> LoadedModel:
        """- An untested CUDA path (engine.platform.fallbacks) that fails loads the tested way instead,
          for good.
        - Out of memory: drop every other model, free what they held and try once more; then say
          what to choose instead."""
        precision, device = key[1], self.device
        instead = _tested_instead(spec, precision, device)
        if instead is not None and FALLBACKS.failed(instead.path):
            precision, device = instead.precision, instead.device
        try:
            return self._load_model(spec, precision, device, progress)
        except Exception as exc:
            if not is_out_of_memory(exc):
                if instead is None or FALLBACKS.failed(instead.path):
                    raise
                FALLBACKS.record(instead.path, instead.says, exc)
                return self._load_model(spec, instead.precision, instead.device, progress)
            self.clear()  # requests still holding one keep it alive until they finish
            free_memory(self.device)
        try:
            return self._load_model(spec, precision, device, progress)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise out_of_memory(exc, "loading", device, spec.name, precision) from exc
            raise

    def _evict(self, keep: Key) -> None:
        while self.used_mb() > self.budget_mb and len(self._models) > 1:
            oldest = next(k for k in self._models if k != keep)
            del self._models[oldest]  # requests still holding it keep it alive until they finish
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@dataclass(frozen=True)
class _Instead:
    path: str  # the untested path (engine.platform.fallbacks)
    precision: str
    device: torch.device
    says: str


def _tested_instead(spec: ModelSpec, precision: str, device: torch.device) -> _Instead | None:
    """Where a load on CUDA goes when its untested path fails: bitsandbytes to the CPU at the same
    precision (its CPU backend is tested), fp16 (`auto` on CUDA) to the CPU at what `auto` is there."""
    if device.type != "cuda":
        return None
    cpu = torch.device("cpu")
    if precision in BITSANDBYTES:
        return _Instead(BITSANDBYTES_GPU, precision, cpu, f"{precision} with bitsandbytes on the CPU")
    if precision == "fp16":
        tested = resolve_precision("auto", cpu, spec)
        return _Instead(FP16_GPU, tested, cpu, f"{tested} on the CPU")
    return None
