"""Sparse attention kernels: they compute only the key blocks a pattern keeps.

- `blocked`: PyTorch SDPA per query block over the gathered key ranges (sinks + window), with the
  exact mask only inside those ranges. Measured fastest on CPU (see README, benchmark section).
- `flex`: FlexAttention with a BlockMask, compiled; the CUDA path.
Cost of both grows with n * window, not n^2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.attention.choice import SparseSettings
from engine.attention.content import ContentPattern, PickedBlocks
from engine.attention.positional import Pattern

MaskFn = Callable[..., torch.Tensor]  # transformers mask function: (batch, head, q_idx, kv_idx) -> bool


@dataclass(frozen=True)
class MaskShape:
    """One forward's attention geometry. Positions are absolute: the queries sit at q_offset ..
    q_offset + q_length - 1 and the KV cache holds keys kv_offset .. kv_offset + kv_length - 1."""

    batch_size: int
    q_length: int
    kv_length: int
    q_offset: int = 0
    kv_offset: int = 0

    def dense_pairs(self, causal: bool) -> int:
        """(query, key) pairs dense attention computes; a causal query at position p sees keys up to p."""
        if not causal:
            return self.q_length * self.kv_length
        first = self.q_offset - self.kv_offset + 1
        return self.q_length * first + self.q_length * (self.q_length - 1) // 2


@dataclass
class QueryBlock:
    q0: int  # query rows [q0, q1) of the layer's query tensor
    q1: int
    ranges: list[tuple[int, int]]  # key rows of the layer's key tensor
    mask: torch.Tensor | None  # (B or 1, 1, groups * (q1 - q0), K) bool, rows grouped by query head; None: all kept
    empty_rows: torch.Tensor | None  # (B or 1, 1, groups * (q1 - q0), 1): rows with no allowed key


@dataclass
class SparsePlan:
    """Everything the blocked kernel needs for one layer shape; built once per forward, shared by layers."""

    blocks: list[QueryBlock]
    computed_pairs: int  # (query, key) pairs the kernel computes
    dense_pairs: int  # pairs dense attention would compute under the model's own mask


@dataclass
class ContentKeys:
    """The keys a content pattern adds to one query block: per KV head, their rows of the layer's key
    tensor (B, Hkv, K) and which (query, key) pairs count (B, Hkv, groups * rows, K), rows grouped by
    query head as in QueryBlock."""

    rows: torch.Tensor
    mask: torch.Tensor


def content_keys(
    pattern: ContentPattern,
    settings: SparseSettings,
    shape: MaskShape,
    picked: PickedBlocks,
    *,
    model_mask: MaskFn,
    groups: int,
) -> list[ContentKeys]:
    """Per query block of `picked.block` queries, the keys of its picked blocks, masked by the
    pattern's content rule (no pair the positional part reads already) and the model's own mask."""
    batch = torch.arange(shape.batch_size, device=picked.blocks.device)[:, None, None, None]
    head = torch.zeros(1, dtype=torch.long, device=picked.blocks.device)[None, :, None, None]
    added = []
    for index, start in enumerate(range(0, shape.q_length, picked.block)):
        rows, exists = picked.rows(index, shape.kv_length)
        q_pos = shape.q_offset + torch.arange(start, min(start + picked.block, shape.q_length), device=rows.device)
        k_pos = (rows + shape.kv_offset)[:, :, None, :]
        allowed = exists[:, :, None, :] & pattern.content_rule(q_pos[:, None], k_pos, settings)
        allowed = allowed & model_mask(batch, head, q_pos[None, None, :, None], k_pos)
        added.append(ContentKeys(rows, allowed.repeat(1, 1, groups, 1)))
    return added


def _positions(ranges: list[tuple[int, int]], device) -> torch.Tensor:
    return torch.cat([torch.arange(lo, hi, device=device) for lo, hi in ranges])


def build_plan(
    pattern: Pattern,
    settings: SparseSettings,
    shape: MaskShape,
    *,
    model_mask: MaskFn,
    groups: int,
    device: torch.device,
) -> SparsePlan:
    """Lay out query blocks and their key ranges; evaluate the exact mask only inside them."""
    q_offset, kv_offset = shape.q_offset, shape.kv_offset
    kv_end = kv_offset + shape.kv_length
    batch = torch.arange(shape.batch_size, device=device)[:, None, None, None]
    head = torch.zeros(1, dtype=torch.long, device=device)[None, :, None, None]
    blocks, computed = [], 0
    for start in range(0, shape.q_length, settings.block_size):
        stop = min(start + settings.block_size, shape.q_length)
        q0_abs, q1_abs = q_offset + start, q_offset + stop
        ranges = [
            (max(lo, kv_offset) - kv_offset, min(hi, kv_end) - kv_offset)
            for lo, hi in pattern.key_ranges(q0_abs, q1_abs, kv_end, settings)
            if min(hi, kv_end) > max(lo, kv_offset)
        ]
        q_pos = torch.arange(q0_abs, q1_abs, device=device)
        k_pos = _positions(ranges, device) + kv_offset
        allowed = pattern.rule(q_pos[:, None], k_pos[None, :], settings)[None, None]
        allowed = allowed & model_mask(batch, head, q_pos[None, None, :, None], k_pos[None, None, None, :])
        if bool(allowed.all()):  # e.g. a decode step: no mask lets SDPA take its unmasked path
            blocks.append(QueryBlock(start, stop, ranges, None, None))
        else:
            mask = allowed.repeat(1, 1, groups, 1)
            empty = ~mask.any(-1, keepdim=True)
            blocks.append(QueryBlock(start, stop, ranges, mask, empty if bool(empty.any()) else None))
        computed += (stop - start) * k_pos.numel()
    return SparsePlan(blocks, computed, shape.dense_pairs(pattern.causal))


def _gather(tensor: torch.Tensor, ranges: list[tuple[int, int]]) -> torch.Tensor:
    if len(ranges) == 1:
        lo, hi = ranges[0]
        return tensor[:, :, lo:hi]
    return torch.cat([tensor[:, :, lo:hi] for lo, hi in ranges], dim=2)


def blocked_attention(
    query: torch.Tensor,  # (B, H, Lq, D)
    key: torch.Tensor,  # (B, Hkv, Lk, D)
    value: torch.Tensor,  # (B, Hkv, Lk, D)
    plan: SparsePlan,
    scaling: float | None,
    position_bias: torch.Tensor | None = None,  # (B or 1, H, Lq, Lk) additive, e.g. T5
    content: list[ContentKeys] | None = None,  # a content pattern's keys per block (blocks of the same queries)
) -> torch.Tensor:
    """Block-sparse attention; returns (B, H, Lq, D). Each query block reads its key ranges and, with
    `content`, its KV heads' own picked keys beside them."""
    b, h, lq, d = query.shape
    hkv = key.shape[1]
    groups = h // hkv
    # Fold the query heads that share a KV head into the row dimension: keys are read once per group.
    q_grouped = query.view(b, hkv, groups, lq, d)
    out = torch.empty_like(q_grouped)
    for i, blk in enumerate(plan.blocks):
        rows = blk.q1 - blk.q0
        q_blk = q_grouped[:, :, :, blk.q0 : blk.q1].reshape(b, hkv, groups * rows, d)
        k_blk, v_blk = _gather(key, blk.ranges), _gather(value, blk.ranges)
        mask, empty_rows = blk.mask, blk.empty_rows
        bias = None
        if position_bias is not None:
            cols = _positions(blk.ranges, query.device)
            bias = position_bias[:, :, blk.q0 : blk.q1][..., cols]
            bias = bias.reshape(bias.shape[0], hkv, groups * rows, -1)
        if content is not None:
            added = content[i]
            if mask is None:
                mask = torch.ones(1, 1, groups * rows, k_blk.shape[2], dtype=torch.bool, device=query.device)
            index = added.rows[..., None].expand(-1, -1, -1, d)
            k_blk = torch.cat([k_blk, key.gather(2, index)], dim=2)
            v_blk = torch.cat([v_blk, value.gather(2, index)], dim=2)
            mask = torch.cat([mask.expand(b, hkv, -1, -1), added.mask], dim=-1)
            empty = ~mask.any(-1, keepdim=True)
            empty_rows = empty if bool(empty.any()) else None
            if bias is not None:  # per query head: its KV head's picked rows
                assert position_bias is not None  # bias is only ever taken from position_bias
                per_head = added.rows.repeat_interleave(groups, 1)[:, :, None, :].expand(-1, -1, rows, -1)
                picked = position_bias[:, :, blk.q0 : blk.q1].expand(b, -1, -1, -1).gather(-1, per_head)
                bias = torch.cat([bias.expand(b, -1, -1, -1), picked.reshape(b, hkv, groups * rows, -1)], dim=-1)
        if bias is not None:
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        o = F.scaled_dot_product_attention(q_blk, k_blk, v_blk, attn_mask=mask, scale=scaling)
        if empty_rows is not None:  # fully masked rows (padding) give NaN in SDPA; zero them
            o = o.masked_fill(empty_rows, 0.0)
        out[:, :, :, blk.q0 : blk.q1] = o.view(b, hkv, groups, rows, d)
    return out.view(b, h, lq, d)
