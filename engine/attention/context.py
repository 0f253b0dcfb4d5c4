"""Per-forward context of the attention function: what a forward measures or inspects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

import torch

from engine.platform.fallbacks import FALLBACKS, FLEX
from engine.platform.settings import settings

# (layer, query, keys, rows read, which count) of each eager sparse decode step: benchmarks measure
# what a pattern keeps (engine.experiments.frontier); nothing probes a request.
Probe = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor], None]
PROBE: ContextVar[Probe | None] = ContextVar("studio_attention_probe", default=None)
# (layer, query, key, scaling) of every eager self-attention call: the attention map reads a layer's
# queries and keys as attention receives them (after the rotary embedding).
Inspector = Callable[[int, torch.Tensor, torch.Tensor, float], None]
INSPECTOR: ContextVar[Inspector | None] = ContextVar("studio_attention_inspector", default=None)


@contextmanager
def _setting(var: ContextVar, value) -> Iterator[None]:
    """`var` is `value` for this thread's (context's) code inside the block."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def probe_attention(probe: Probe) -> AbstractContextManager[None]:
    return _setting(PROBE, probe)


def inspect_attention(inspector: Inspector) -> AbstractContextManager[None]:
    return _setting(INSPECTOR, inspector)


def sparse_kernel_name(device: torch.device) -> str:
    """FlexAttention on CUDA; the blocked kernel on CPU (measured faster there), and after FlexAttention
    failed once (engine.platform.fallbacks). STUDIO_SPARSE_KERNEL overrides the first choice."""
    if FALLBACKS.failed(FLEX):
        return "blocked"
    return settings().sparse_kernel or ("flex" if device.type == "cuda" else "blocked")
