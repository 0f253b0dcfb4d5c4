"""Query-aware patterns: keys picked by content, per decode step (Quest) or per prefill block (block top-k)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeGuard

import torch

from engine.attention.choice import SparseSettings
from engine.attention.positional import Pattern, SlidingWindowSinks, Traits, budget_covers

PAGE = 16  # Quest's page: keys summarised, scored and read together


def page_bounds(keys: torch.Tensor, written: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (min, max) of each page of `keys` (..., length, D) -> (..., pages, D) each, over the
    keys `written` says hold data (bool, broadcastable to (..., length); None: all). A page with
    none is (+inf, -inf): it can promise nothing."""
    length = keys.shape[-2]
    pages = -(-length // PAGE)
    pad = pages * PAGE - length
    empty = torch.zeros(length, dtype=torch.bool, device=keys.device) if written is None else ~written
    empty = torch.nn.functional.pad(empty, (0, pad), value=True)[..., None]
    padded = torch.nn.functional.pad(keys, (0, 0, 0, pad))
    low = padded.masked_fill(empty, float("inf")).unflatten(-2, (pages, PAGE)).amin(-2)
    high = padded.masked_fill(empty, float("-inf")).unflatten(-2, (pages, PAGE)).amax(-2)
    return low, high


@dataclass(frozen=True)
class QuestPages(Traits):
    """Quest (Tang et al., 2024): at each decode step, for each KV head, the pages of PAGE keys whose
    per-channel key bounds promise this query the highest score, `budget` keys of them, plus the
    sinks and the window. Prefill is dense, as in the paper: the choice is made per generated token."""

    name: str = "quest"
    fixed_decode_keys: bool = True
    query_aware: bool = True

    def key_ranges(self, q0, q1, kv_len, s):
        return [(0, min(q1, kv_len))]

    def rule(self, q, k, s):
        return k <= q

    def keeps_all(self, kv_len, s):
        return budget_covers(kv_len, s, PAGE)

    def decode_keys(self, position, kv_len, s):
        return SlidingWindowSinks().decode_keys(position, kv_len, s)  # the positional part; `select` adds pages

    def select(
        self,
        query: torch.Tensor,  # (B, H, 1, D)
        low: torch.Tensor,  # (B, Hkv, pages, D): each page's per-channel key minimum
        high: torch.Tensor,
        position: torch.Tensor,  # (B, 1): each sequence's query position
        s: SparseSettings,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sequence and KV head, the keys of the `budget // PAGE` best pages outside the sinks and
        the window, and which of them count: both (B, Hkv, budget // PAGE * PAGE). A page's score is
        Quest's upper bound of q.k over its keys, sum_d max(q_d min_d, q_d max_d), the largest over the
        query heads that share the KV head."""
        b, heads, _, dim = query.shape
        kv_heads, pages = low.shape[1], low.shape[2]
        q = query.reshape(b, kv_heads, heads // kv_heads, dim).float()
        # sum_d max(q_d min_d, q_d max_d) = q+ . max + q- . min (q+, q-: the positive and negative parts):
        # two small matmuls instead of products over every (head, page, channel)
        bound = q.clamp(min=0) @ high.float().transpose(-1, -2) + q.clamp(max=0) @ low.float().transpose(-1, -2)
        bound = bound.amax(2)  # (B, Hkv, pages)
        start = torch.arange(pages, device=query.device) * PAGE
        window_start = position - s.window + 1  # (B, 1)
        # a page counts if it holds a key that neither the sinks nor the window read, at or before the query
        outside = (start + PAGE > s.sinks) & (start < window_start) & (start <= position)
        bound = bound.masked_fill(~outside[:, None, :], float("-inf"))
        picked = min(s.budget // PAGE, pages)
        scores, best = bound.topk(picked, dim=-1)  # (B, Hkv, picked)
        keys = (best[..., None] * PAGE + torch.arange(PAGE, device=query.device)).flatten(-2)
        near = window_start[:, :, None]
        valid = (scores > float("-inf"))[..., None].expand(-1, -1, -1, PAGE).flatten(-2)
        valid = valid & (keys >= s.sinks) & (keys < near) & (keys <= position[:, :, None])
        return keys, valid  # keys of a last, partial page may lie past the cache: never valid, clamp to read


@dataclass(frozen=True)
class PickedBlocks:
    """A content pattern's prefill choice for one layer: per sequence, KV head and query block of
    `block` queries, the key blocks (of `block` rows of the layer's `key_blocks`) it reads beyond the
    positional part. `blocks` and `valid` (False: a slot with nothing to pick) are (B, Hkv, query blocks, k)."""

    blocks: torch.Tensor
    valid: torch.Tensor
    block: int
    key_blocks: int

    def rows(self, query_block: int, kv_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Key rows the query block reads and which of them exist, both (B, Hkv, used * block): `used`
        the most blocks any sequence and head picked (the best come first, so the unused slots are the
        last ones: early query blocks read fewer keys). Rows past the keys are clamped (read, never counted)."""
        used = int(self.valid[:, :, query_block].sum(-1).max()) if self.valid.numel() else 0
        offsets = torch.arange(self.block, device=self.blocks.device)
        rows = (self.blocks[:, :, query_block, :used, None] * self.block + offsets).flatten(-2)
        exists = self.valid[:, :, query_block, :used, None].expand(-1, -1, -1, self.block).flatten(-2) & (rows < kv_len)
        return rows.clamp(max=kv_len - 1), exists

    def table(self) -> torch.Tensor:
        """Whether each key block is picked for each query block, (B, Hkv, query blocks, key blocks) bool."""
        b, kv_heads, query_blocks, _ = self.blocks.shape
        table = torch.zeros(b, kv_heads, query_blocks, self.key_blocks + 1, dtype=torch.bool, device=self.blocks.device)
        table.scatter_(-1, torch.where(self.valid, self.blocks, self.key_blocks), True)  # invalid: a spare column
        return table[..., : self.key_blocks]

    def chosen(self, query_rows: torch.Tensor, key_rows: torch.Tensor) -> torch.Tensor:
        """Whether each (query row, key row) pair lies in a picked block, (B, Hkv, Lq, Lk) bool."""
        return self.table()[:, :, query_rows // self.block][..., key_rows // self.block]


class ContentPattern(Pattern, Protocol):
    """A pattern that prefills by content: each query block of `block` queries also reads the key blocks
    `select_blocks` picks, at the pairs `content_rule` allows."""

    @property
    def block(self) -> int: ...

    def content_rule(self, q: torch.Tensor, k: torch.Tensor, s: SparseSettings) -> torch.Tensor: ...

    def select_blocks(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        q_offset: int,
        s: SparseSettings,
        key_counts: torch.Tensor | None = None,
    ) -> PickedBlocks: ...


def prefills_by_content(pattern: Pattern) -> TypeGuard[ContentPattern]:
    """The pattern's `prefill_by_content` flag, which promises ContentPattern's members."""
    return pattern.prefill_by_content


@dataclass(frozen=True)
class BlockTopK(QuestPages):
    """Block top-k by pooled scores (the block selection of MoBA and of vertical-slash / XAttention-style
    prefill, with mean pooling): the queries of each `block` and the keys of each `block` are averaged,
    and each query block reads, per KV head, the `budget // block` earlier key blocks whose pooled key
    scores highest against its pooled queries (the largest over the query heads sharing the KV head),
    plus the sinks and the window. Decode is Quest's: a query picks pages itself, as precisely as a
    one-query block can."""

    name: str = "block_topk"
    prefill_by_content: bool = True
    block: int = 64

    def key_ranges(self, q0, q1, kv_len, s):
        return SlidingWindowSinks().key_ranges(q0, q1, kv_len, s)

    def rule(self, q, k, s):
        return SlidingWindowSinks().rule(q, k, s)

    def content_rule(self, q, k, s):
        """Pairs a picked block may add: causal, outside the sinks and the window (read there already)."""
        return (k <= q) & (k >= s.sinks) & (q - k >= s.window)

    def keeps_all(self, kv_len, s):
        return budget_covers(kv_len, s, self.block) and budget_covers(kv_len, s, PAGE)  # prefill's and decode's

    def select_blocks(
        self,
        query: torch.Tensor,  # (B, H, Lq, D)
        key: torch.Tensor,  # (B, Hkv, Lk, D)
        q_offset: int,  # absolute position of the first query; keys start at 0
        s: SparseSettings,
        key_counts: torch.Tensor | None = None,  # (B, Lk) bool: keys that hold data (padding: False); None: all
    ) -> PickedBlocks:
        """Each query block's best `budget // block` key blocks per KV head among those holding a key
        its queries may add (`content_rule`); fewer where fewer exist."""
        heads, lq, kv_heads, lk = query.shape[1], query.shape[2], key.shape[1], key.shape[2]
        query_blocks, key_blocks = -(-lq // self.block), -(-lk // self.block)
        pooled_q = _block_means(query.float(), self.block, None)  # (B, H, query blocks, D)
        pooled_k = _block_means(key.float(), self.block, key_counts)  # (B, Hkv, key blocks, D)
        scores = pooled_q.unflatten(1, (kv_heads, heads // kv_heads)) @ pooled_k[:, :, None].transpose(-1, -2)
        scores = scores.amax(2)  # (B, Hkv, query blocks, key blocks)
        last_query = q_offset + torch.arange(query_blocks, device=query.device).mul(self.block).add(self.block - 1)
        last_query = last_query.clamp(max=q_offset + lq - 1)[:, None]
        start = torch.arange(key_blocks, device=query.device) * self.block
        eligible = (start + self.block > s.sinks) & (start <= last_query - s.window)
        if key_counts is not None:  # a block of padding only pools to zero: never worth a slot
            holds = torch.nn.functional.pad(key_counts, (0, key_blocks * self.block - lk)).unflatten(
                -1, (-1, self.block)
            )
            eligible = eligible & holds.any(-1)[:, None, None, :]
        scores = scores.masked_fill(~eligible, float("-inf"))
        best = scores.topk(min(s.budget // self.block, key_blocks), dim=-1)
        return PickedBlocks(best.indices, best.values > float("-inf"), self.block, key_blocks)


def _block_means(x: torch.Tensor, block: int, counts: torch.Tensor | None) -> torch.Tensor:
    """Mean of each `block` rows of x (..., L, D) -> (..., blocks, D), over the rows `counts` says
    hold data ((B, L) bool, or None: all); a last partial block averages what it has."""
    length = x.shape[-2]
    weight = torch.ones(length, device=x.device) if counts is None else counts.float()[:, None, :]
    pad = -length % block
    total = torch.nn.functional.pad(x * weight[..., None], (0, 0, 0, pad)).unflatten(-2, (-1, block)).sum(-2)
    weight = torch.nn.functional.pad(weight, (0, pad))
    return total / weight.unflatten(-1, (-1, block)).sum(-1).clamp(min=1)[..., None]
