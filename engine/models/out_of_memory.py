"""Running out of memory, said clearly: which model, at which precision, and a smaller choice to try."""

from __future__ import annotations

import torch

from engine.models.precision_menu import PRECISION_BY_NAME, PRECISION_CHOICES
from engine.platform.errors import OutOfMemoryError
from engine.platform.memory import free_memory


def smaller_precisions(precision: str, device: torch.device) -> list[str]:
    """The precisions this device runs whose weights take fewer bits than `precision`'s, largest first."""
    from engine.models.precision import supported_precisions  # late: engine.models.precision asks is_out_of_memory

    bits = PRECISION_BY_NAME[precision].weight_bits
    available = supported_precisions(device)
    smaller = [c for c in PRECISION_CHOICES if 0 < c.weight_bits < bits and c.name in available and not c.gguf_only]
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
