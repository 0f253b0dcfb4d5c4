"""Dense (PyTorch SDPA) and sparse attention, switchable per request."""

from .hook import IMPLEMENTATION, AttentionStats, register, sparse_kernel_name, use_attention
from .kernels import MaskShape, blocked_attention, build_plan, flex_block_mask, flex_sparse_attention
from .patterns import PATTERNS, explicit_mask, pattern_for

__all__ = [
    "IMPLEMENTATION",
    "PATTERNS",
    "AttentionStats",
    "MaskShape",
    "blocked_attention",
    "build_plan",
    "explicit_mask",
    "flex_block_mask",
    "flex_sparse_attention",
    "pattern_for",
    "register",
    "sparse_kernel_name",
    "use_attention",
]
