"""Running out of memory, said clearly: which model, at which precision, and a smaller choice to try.

One rule for what counts as out of memory (CUDA's OutOfMemoryError, or the CPU allocator's "can't
allocate memory"), one message, and freeing what the process no longer holds, so the next request
finds the memory a failed one left behind."""

from __future__ import annotations

import gc

import torch

from engine.platform.errors import OutOfMemoryError


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's own, the CPU allocator's, or ours already (a job's, said again by whoever knows more)."""
    if isinstance(exc, torch.OutOfMemoryError | OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
