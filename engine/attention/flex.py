"""The FlexAttention kernel (CUDA): the sparse plan as a BlockMask, compiled once per shape."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import torch

from engine.attention.blocked import MaskFn, MaskShape
from engine.attention.choice import SparseSettings
from engine.attention.content import ContentPattern, PickedBlocks
from engine.attention.positional import Pattern
from engine.platform.settings import settings

_BLOCK_MASKS: OrderedDict[tuple, tuple] = OrderedDict()  # shape-keyed BlockMasks, reused across forwards
_BLOCK_MASKS_LOCK = threading.Lock()  # requests run in several threads (STUDIO_CONCURRENCY > 1)
_BLOCK_MASK_CACHE_SIZE = 64


def flex_block_mask(
    pattern: Pattern,
    settings: SparseSettings,
    shape: MaskShape,
    *,
    model_mask: MaskFn,
    device: torch.device,
    cacheable: bool,
):
    """(BlockMask, pairs in its kept blocks) for these shapes. Without padding (`cacheable`) the
    result depends only on the shapes and rules, so it is cached: building one costs milliseconds
    on GPU and seconds on CPU at long lengths."""
    from torch.nn.attention.flex_attention import create_block_mask

    key = (pattern, settings, model_mask, shape, str(device))
    if cacheable:
        with _BLOCK_MASKS_LOCK:
            if key in _BLOCK_MASKS:
                _BLOCK_MASKS.move_to_end(key)
                return _BLOCK_MASKS[key]

    def mask_mod(batch, head, q_idx, kv_idx):
        q_abs, k_abs = q_idx + shape.q_offset, kv_idx + shape.kv_offset
        return pattern.rule(q_abs, k_abs, settings) & model_mask(batch, head, q_abs, k_abs)

    block_mask = create_block_mask(mask_mod, shape.batch_size, None, shape.q_length, shape.kv_length, device=device)
    pairs = _kept_pairs(block_mask, shape, heads=1)
    if cacheable:  # two threads may both build the same mask; the second simply replaces the first
        with _BLOCK_MASKS_LOCK:
            _BLOCK_MASKS[key] = (block_mask, pairs)
            while len(_BLOCK_MASKS) > _BLOCK_MASK_CACHE_SIZE:
                _BLOCK_MASKS.popitem(last=False)
    return block_mask, pairs


def _kept_pairs(block_mask, shape: MaskShape, heads: int) -> int:
    """(query, key) pairs in a BlockMask's kept tiles, per sequence and head."""
    q_block, kv_block = block_mask.BLOCK_SIZE
    kept = block_mask.kv_num_blocks.sum()
    if block_mask.full_kv_num_blocks is not None:
        kept = kept + block_mask.full_kv_num_blocks.sum()
    return min(int(kept) * q_block * kv_block // (shape.batch_size * heads), shape.q_length * shape.kv_length)


def flex_content_block_mask(
    pattern: ContentPattern,
    settings: SparseSettings,
    shape: MaskShape,
    picked: PickedBlocks,
    *,
    model_mask: MaskFn,
    heads: int,
    device: torch.device,
):
    """(BlockMask, pairs its kept tiles hold per head) for one layer of a content pattern: per query
    head, the positional part or a picked key block (never cached: it depends on the layer's keys)."""
    from torch.nn.attention.flex_attention import create_block_mask

    table, groups, block = picked.table(), heads // picked.blocks.shape[1], picked.block

    def mask_mod(batch, head, q_idx, kv_idx):
        q_abs, k_abs = q_idx + shape.q_offset, kv_idx + shape.kv_offset
        content = table[batch, head // groups, q_idx // block, kv_idx // block] & pattern.content_rule(
            q_abs, k_abs, settings
        )
        return (pattern.rule(q_abs, k_abs, settings) | content) & model_mask(batch, head, q_abs, k_abs)

    # compiled on CUDA: eagerly it would hold a (B, H, Lq, Lk) mask for every layer (not run on a GPU here)
    block_mask = create_block_mask(mask_mod, shape.batch_size, heads, shape.q_length, shape.kv_length, device=device,
                                   _compile=device.type == "cuda")  # fmt: skip
    return block_mask, _kept_pairs(block_mask, shape, heads)


@functools.cache  # one compiled wrapper per process, made on first use (thread-safe enough: at worst made twice)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_sparse_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    block_mask,
    scaling: float | None,
    position_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """FlexAttention with a BlockMask: only kept (query block, key block) tiles are computed.
    Compiled on CUDA (STUDIO_FLEX_COMPILE=1 compiles on CPU too); eager elsewhere."""
    from torch.nn.attention.flex_attention import flex_attention

    attend = _compiled_flex() if query.is_cuda or settings().flex_compile else flex_attention
    score_mod = None
    if position_bias is not None:

        def score_mod(score, batch, head, q_idx, kv_idx):
            return score + position_bias[0 if position_bias.shape[0] == 1 else batch, head, q_idx, kv_idx]

    enable_gqa = query.shape[1] != key.shape[1]
    return attend(query, key, value, score_mod=score_mod, block_mask=block_mask, scale=scaling, enable_gqa=enable_gqa)
