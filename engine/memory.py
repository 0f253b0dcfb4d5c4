"""Running out of memory, said clearly: which model, at which precision, and a smaller choice to try.

One rule for what counts as out of memory (CUDA's OutOfMemoryError, or the CPU allocator's "can't
allocate memory"), one message, and freeing what the process no longer holds, so the next request
finds the memory a failed one left behind."""

from __future__ import annotations

import gc

import torch

from .errors import OutOfMemoryError
from .precision_menu import PRECISION_BY_NAME, PRECISION_CHOICES


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's own, the CPU allocator's, or ours already (a job's, said again by whoever knows more)."""
    if isinstance(exc, torch.OutOfMemoryError | OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def smaller_precisions(precision: str, device: torch.device) -> list[str]:
    """The precisions this device runs whose weights take fewer bits than `precision`'s, largest first."""
    from .precision import supported_precisions  # late: engine.precision asks is_out_of_memory

    bits = PRECISION_BY_NAME[precision].weight_bits
    available = supported_precisions(device)
    smaller = [c for c in PRECISION_CHOICES if 0 < c.weight_bits < bits and c.name in available]
    return [c.name for c in sorted(smaller, key=lambda c: -c.weight_bits)]


def out_of_memory(
    exc: BaseException, doing: str, device: torch.device, model: str = "", precision: str = ""
) -> OutOfMemoryError:
    """The user's error for `exc` (an out-of-memory while `doing`), after freeing what is free."""
    free_memory(device)
    what = f"{model} at {precision}" if model else "this request"
    smaller = smaller_precisions(precision, device) if precision in PRECISION_BY_NAME else []
    hint = f"try {smaller[0]} (fewer bytes per weight), a smaller model" if smaller else "try a smaller model"
    return OutOfMemoryError(
        f"Out of memory {doing} {what} on {device.type}: {hint}, or a shorter input. "
        "What the failed work held is freed; the next request can go ahead."
    )


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
