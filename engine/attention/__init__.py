"""Dense (PyTorch SDPA) and sparse attention, switchable per request."""

from engine.attention.blocked import MaskShape, blocked_attention, build_plan
from engine.attention.choice import AttentionStats
from engine.attention.context import sparse_kernel_name
from engine.attention.flex import flex_block_mask, flex_sparse_attention
from engine.attention.interface import IMPLEMENTATION, register
from engine.attention.patterns import PATTERNS, explicit_mask, pattern_for

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
]
