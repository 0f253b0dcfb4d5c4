"""Sparse attention patterns as data: an element rule plus a block layout.

A pattern answers two questions for a block of queries at absolute positions [q0, q1):
- `key_ranges`: which contiguous key ranges the kernel must read (the block layout);
- `rule`: which (query, key) pairs inside those ranges are allowed (the exact mask).
A query-aware pattern (Quest) also picks keys by content at each decode step: `select` scores key
pages from their per-channel bounds against the query. A pattern that prefills by content
(block top-k) adds, per query block and KV head, the key blocks `select_blocks` picks from pooled
query and key summaries. Kernels never special-case a pattern, so a new pattern is a new entry in
PATTERNS.
"""

from __future__ import annotations

import torch

from engine.attention.choice import SparseSettings
from engine.attention.content import BlockTopK, PickedBlocks, QuestPages, prefills_by_content
from engine.attention.positional import LocalGlobal, Pattern, RandomBlocks, SlidingWindowSinks
from engine.platform.errors import AttentionConfigError

PATTERNS: dict[str, Pattern] = {
    p.name: p for p in (SlidingWindowSinks(), LocalGlobal(), RandomBlocks(), QuestPages(), BlockTopK())
}


def pattern_catalog() -> dict[str, dict]:
    """Every pattern: its attention kind, whether it picks keys by content (at decode, at prefill),
    and its docstring's first paragraph."""
    return {
        name: {"causal": p.causal, "picks_keys_at_decode_by_content": p.query_aware,
               "picks_keys_at_prefill_by_content": p.prefill_by_content,
               "summary": (type(p).__doc__ or "").split("\n\n")[0].replace("\n", " ")}
        for name, p in PATTERNS.items()
    }  # fmt: skip


def pattern_for(settings: SparseSettings, causal: bool) -> Pattern:
    """The pattern the settings name (validated by the run options' choices) for this attention kind."""
    if settings.pattern == "auto":
        return PATTERNS["sliding_sinks" if causal else "local_global"]
    pattern = PATTERNS[settings.pattern]
    if pattern.causal != causal:
        kind = "causal (decoder)" if causal else "bidirectional (encoder)"
        raise AttentionConfigError(f"Pattern {pattern.name!r} cannot serve {kind} attention; use pattern 'auto'.")
    return pattern


def explicit_mask(
    pattern: Pattern,
    settings: SparseSettings,
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    picked: PickedBlocks | None = None,
) -> torch.Tensor:
    """The dense boolean mask equivalent to the pattern ([len(q_pos), len(k_pos)]; with a content
    pattern's `picked` blocks, for queries from position q_pos[0] and keys from 0: (B, Hkv, Lq, Lk))."""
    allowed = pattern.rule(q_pos[:, None], k_pos[None, :], settings)
    if picked is None:
        return allowed
    assert prefills_by_content(pattern)  # only a pattern that prefills by content picks blocks
    content = pattern.content_rule(q_pos[:, None], k_pos[None, :], settings)
    return allowed | (content & picked.chosen(q_pos - q_pos[0], k_pos))
