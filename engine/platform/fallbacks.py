"""CUDA-only paths that fall back, once, on their first error, to a path the tests run.

No GPU has been lent to this project: compiled FlexAttention, CUDA graphs, bitsandbytes on a GPU and
fp16 (what `auto` means on CUDA) are written to their documented APIs but have never run here. Each
is tried; its first error switches this process to the tested path for good (the blocked kernel,
compiled steps without graphs, bitsandbytes on the CPU, fp32), logs why, and every later request's
metrics carry the reason."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

FLEX = "FlexAttention"
CUDA_GRAPHS = "CUDA graphs (compile mode reduce-overhead)"
BITSANDBYTES_GPU = "bitsandbytes on CUDA"
FP16_GPU = "fp16 on CUDA"


@dataclass(frozen=True)
class Fallback:
    path: str  # what failed
    instead: str  # what runs instead
    reason: str  # the error, one line

    def __str__(self) -> str:
        return f"{self.path} failed ({self.reason}); {self.instead} instead"


class Fallbacks:
    def __init__(self) -> None:
        self._failed: dict[str, Fallback] = {}
        self._lock = threading.Lock()

    def failed(self, path: str) -> bool:
        return path in self._failed

    def record(self, path: str, instead: str, exc: BaseException) -> Fallback:
        lines = str(exc).strip().splitlines()
        fallback = Fallback(path, instead, f"{type(exc).__name__}: {lines[0] if lines else ''}")
        with self._lock:
            first = path not in self._failed
            self._failed.setdefault(path, fallback)
        if first:
            log.warning("%s", fallback)
        return fallback

    def active(self) -> list[str]:
        """Every fallback this process took, as sentences (the metrics' `fallbacks`)."""
        with self._lock:
            return [str(f) for f in self._failed.values()]

    def clear(self) -> None:
        with self._lock:
            self._failed.clear()


FALLBACKS = Fallbacks()
