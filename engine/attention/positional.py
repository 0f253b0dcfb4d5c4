"""The pattern interface and the positional patterns: which keys each query reads follows from positions alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from engine.attention.choice import SparseSettings


class Pattern(Protocol):
    # read-only properties: the patterns are frozen dataclasses, whose fields cannot be set
    @property
    def name(self) -> str: ...

    @property  # for decoders (True) or encoders (False)
    def causal(self) -> bool: ...

    @property  # decode_keys gives a fixed-size key set (else None: the rule masks the whole cache)
    def fixed_decode_keys(self) -> bool: ...

    @property  # decode also reads keys `select` picks by content
    def query_aware(self) -> bool: ...

    @property  # prefill also reads key blocks `select_blocks` picks (query-aware without it: dense)
    def prefill_by_content(self) -> bool: ...

    def key_ranges(self, q0: int, q1: int, kv_len: int, s: SparseSettings) -> list[tuple[int, int]]: ...

    def rule(self, q: torch.Tensor, k: torch.Tensor, s: SparseSettings) -> torch.Tensor: ...

    def keeps_all(self, kv_len: int, s: SparseSettings) -> bool:
        """True when, over `kv_len` keys, the pattern drops nothing: sparse is then exactly dense."""
        ...

    def decode_keys(
        self, position: torch.Tensor, kv_len: int, s: SparseSettings
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For one query per sequence at `position` ((B,) tensor: a compiled step cannot branch on it), a
        fixed number of key indices per sequence to read and which of them count, both (B, keys);
        None: no fixed-size set, mask the whole cache."""
        ...


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


@dataclass(frozen=True)
class Traits:
    """A pattern's flags (Pattern's first five members), by default those of a causal positional pattern."""

    name: str = ""
    causal: bool = True
    fixed_decode_keys: bool = False
    query_aware: bool = False
    prefill_by_content: bool = False


@dataclass(frozen=True)
class SlidingWindowSinks(Traits):
    """StreamingLLM: each query sees the `window` most recent keys plus the first `sinks` keys."""

    name: str = "sliding_sinks"
    fixed_decode_keys: bool = True

    def key_ranges(self, q0, q1, kv_len, s):
        lo = max(0, q0 - s.window + 1)
        return _merge([(0, min(s.sinks, kv_len)), (lo, min(q1, kv_len))])

    def rule(self, q, k, s):
        return (k <= q) & ((q - k < s.window) | (k < s.sinks))

    def keeps_all(self, kv_len, s):
        return kv_len <= s.window

    def decode_keys(self, position, kv_len, s):
        # sinks + window indices whatever the position, so the shape is static; early on the window
        # overlaps the sinks or starts before 0, and those entries do not count
        position = position.reshape(-1, 1)
        sinks = torch.arange(s.sinks, device=position.device).expand(len(position), -1)
        recent = position - s.window + 1 + torch.arange(s.window, device=position.device)
        valid = torch.cat([sinks <= position, recent >= s.sinks], dim=1)
        return torch.cat([sinks, recent], dim=1).clamp(0, kv_len - 1), valid


@dataclass(frozen=True)
class LocalGlobal(Traits):
    """Longformer / BigBird-ITC: a bidirectional window of `window` keys centred on the query,
    plus `sinks` global tokens that see, and are seen by, every token."""

    name: str = "local_global"
    causal: bool = False

    def key_ranges(self, q0, q1, kv_len, s):
        if q0 < s.sinks:  # a block holding global queries reads every key
            return [(0, kv_len)]
        half = s.window // 2
        return _merge([(0, min(s.sinks, kv_len)), (max(0, q0 - half), min(kv_len, q1 + half))])

    def rule(self, q, k, s):
        return ((q - k).abs() <= s.window // 2) | (k < s.sinks) | (q < s.sinks)

    def keeps_all(self, kv_len, s):
        return kv_len - 1 <= s.window // 2

    def decode_keys(self, position, kv_len, s):
        return None  # encoders do not decode


@dataclass(frozen=True)
class RandomBlocks(Traits):
    """BigBird for decoders: the sliding window and sinks, plus about `random_blocks` earlier key
    blocks of `block` tokens per query block. The choice is a fixed hash of the two block indices,
    so every layer, decode step and kernel sees the same blocks without storing them."""

    name: str = "bigbird_random"
    random_blocks: int = 2
    block: int = 64

    def _picked(self, q_block, k_block):
        """Works on ints and on tensors alike."""
        span = q_block.clamp(min=1) if isinstance(q_block, torch.Tensor) else max(q_block, 1)
        return (k_block < q_block) & (
            (q_block * 40503 + k_block * 2654435761 + 12345) % 1000003 % span < self.random_blocks
        )

    def key_ranges(self, q0, q1, kv_len, s):
        ranges = SlidingWindowSinks().key_ranges(q0, q1, kv_len, s)
        for q_block in range(q0 // self.block, (q1 - 1) // self.block + 1):
            for k_block in range(q_block):
                if self._picked(q_block, k_block):
                    ranges.append((k_block * self.block, min((k_block + 1) * self.block, kv_len)))
        return _merge(ranges)

    def rule(self, q, k, s):
        return SlidingWindowSinks().rule(q, k, s) | self._picked(q // self.block, k // self.block)

    def keeps_all(self, kv_len, s):
        return kv_len <= s.window

    def decode_keys(self, position, kv_len, s):
        return None  # how many blocks are picked depends on the position


def budget_covers(kv_len: int, s: SparseSettings, unit: int) -> bool:
    """Whether the keys between the sinks and the last query's window lie in few enough units of
    `unit` keys for the budget: a pattern picking whole units by content then drops nothing."""
    last = kv_len - 1 - s.window
    return last < s.sinks or last // unit - s.sinks // unit + 1 <= s.budget // unit
