"""Plugs the dense/sparse switch into transformers' attention interface.

Models load once with attn_implementation="studio". Each forward carries its attention choice (a
request's AttentionChoice, or a batch step's RowChoices with each row's index as `studio_rows`) as
the keyword argument `studio_choice`, which transformers hands through the model
to the attention function (as it does for every attention kwarg), so the batched, seq2seq, scoring
and compiled paths all choose the same way and switching needs no reload. The mask is registered too: without it the layers would receive
attention_mask=None and lose causal masking.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import (
    AttentionMaskInterface,
)

from engine.attention.blocked import blocked_attention, content_keys
from engine.attention.choice import DENSE, RowChoices, StepChoice
from engine.attention.content import PAGE, page_bounds, prefills_by_content
from engine.attention.context import INSPECTOR, PROBE, sparse_kernel_name
from engine.attention.flex import flex_content_block_mask, flex_sparse_attention
from engine.attention.grouped import grouped_query_attention
from engine.attention.mask import StudioMask, studio_mask
from engine.attention.one_query import one_query_attention
from engine.attention.patterns import pattern_for
from engine.platform.fallbacks import FALLBACKS, FLEX

IMPLEMENTATION = "studio"


def studio_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, Lq, D)
    key: torch.Tensor,  # (B, Hkv, Lk, D)
    value: torch.Tensor,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    position_bias: torch.Tensor | None = None,
    studio_choice: StepChoice | None = None,  # the forward's, an argument on every path (None: dense)
    studio_pages: list | None = None,  # per layer, (min, max) key bounds per page (engine.runtime.kv_cache), for Quest
    studio_traced: bool = False,  # a compiled decode step, as the compiler traces it (engine.runtime.step)
    studio_rows: torch.Tensor | None = None,  # with RowChoices: (B,) each row's index into its choices
    **kwargs,
):
    # `studio_traced`, not torch.compiler.is_compiling(): that flag is process-wide, so a compile tracing
    # in a background thread would turn it on for an eager forward on the engine thread.
    causal, cross_attention = _kind(module, is_causal)
    if isinstance(studio_choice, RowChoices):
        if not cross_attention:
            return _rows_attention(module, query, key, value, attention_mask, studio_choice, studio_rows, scaling,
                                   position_bias, kwargs.get("position_ids"), studio_pages, studio_traced), None  # fmt: skip
        studio_choice = DENSE  # a decoder's cross-attention: dense for every row
    choice = studio_choice or DENSE
    if not isinstance(attention_mask, StudioMask):  # a caller-made 4D mask or None: plain SDPA
        if _grouped_queries(module, query, attention_mask, position_bias, dropout):  # a speculating step
            return grouped_query_attention(query, key, value, attention_mask, scaling), None
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, position_bias, **kwargs
        )
    mask = attention_mask
    if not cross_attention and not studio_traced and (inspector := INSPECTOR.get()) is not None:
        # transformers' attention modules hold their layer index as an int (nn.Module's stub: Tensor | Module)
        inspector(cast(int, module.layer_idx), query, key, scaling if scaling is not None else query.shape[-1] ** -0.5)
    pattern = pattern_for(choice.settings, causal) if choice.mode == "sparse" and not cross_attention else None
    # Quest prefills densely; a pattern that prefills by content picks key blocks instead
    dense_prefill = (
        pattern is not None and pattern.query_aware and not pattern.prefill_by_content and query.shape[2] > 1
    )
    if (
        pattern is None
        or dense_prefill
        or pattern.keeps_all(mask.shape.kv_offset + mask.shape.kv_length, choice.settings)
    ):
        # Dense SDPA: asked for, cross-attention, a query-aware pattern's prefill, or a sparse pattern
        # that would keep every pair anyway.
        if choice.stats is not None and not cross_attention:
            pairs = mask.shape.dense_pairs(causal)
            choice.stats.computed_pairs += pairs
            choice.stats.dense_pairs += pairs
        if query.shape[2] == 1 and studio_traced:  # a compiled decode step (eagerly SDPA is faster)
            return one_query_attention(query, key, value, mask.dense(), scaling, position_bias), None
        return sdpa_attention_forward(
            module, query, key, value, mask.dense(), dropout, scaling, is_causal, position_bias, **kwargs
        )

    # A sparse decode step: compiled, it needs static shapes; eagerly, a gathered key set is as fast as the
    # blocked kernel and keeps both paths' tokens equal, while masking the whole cache would be slower.
    # (Decode steps count no pairs: the density reported is the prefill's.)
    if query.shape[2] == 1 and not module.training and (studio_traced or pattern.fixed_decode_keys):
        positions = kwargs.get("position_ids")
        pages = studio_pages[cast(int, module.layer_idx)] if studio_pages is not None else None
        return _sparse_one_query(
            query, key, value, mask, pattern, choice.settings, scaling, position_bias, positions, pages,
            module.layer_idx, studio_traced,
        )  # fmt: skip

    picked = None
    if prefills_by_content(pattern):  # per layer: this layer's queries and keys choose
        relative_offset = mask.shape.q_offset - mask.shape.kv_offset
        picked = pattern.select_blocks(query, key, relative_offset, choice.settings, mask.key_counts())
    groups = query.shape[1] // key.shape[1]
    out = None
    if sparse_kernel_name(query.device) == "flex":
        try:
            if picked is None:
                block_mask, computed = mask.block_mask(pattern, choice.settings, query.device)
            else:
                assert prefills_by_content(pattern)  # blocks are picked only for such a pattern
                block_mask, computed = flex_content_block_mask(
                    pattern, choice.settings, mask.shape, picked, model_mask=mask.model_mask(),
                    heads=query.shape[1], device=query.device,
                )  # fmt: skip
            dense = mask.shape.dense_pairs(causal)
            out = flex_sparse_attention(query, key, value, block_mask, scaling, position_bias)
        except Exception as exc:  # never run on a GPU here: its first error hands over to the tested kernel
            FALLBACKS.record(FLEX, "the blocked kernel", exc)
    if out is None:
        if picked is None:
            plan, added = mask.plan(pattern, choice.settings, groups, query.device), None
        else:  # query blocks of the selection's size, so each one's picked keys sit beside its positional ones
            assert prefills_by_content(pattern)  # blocks are picked only for such a pattern
            plan = mask.plan(pattern, replace(choice.settings, block_size=picked.block), groups, query.device)
            added = content_keys(
                pattern, choice.settings, mask.shape, picked, model_mask=mask.model_mask(), groups=groups
            )
        computed, dense = plan.computed_pairs, plan.dense_pairs
        computed += sum(keys.mask.shape[-2] // groups * keys.rows.shape[-1] for keys in added or ())
        out = blocked_attention(query, key, value, plan, scaling, position_bias, added)
    if choice.stats is not None:
        choice.stats.computed_pairs += computed
        choice.stats.dense_pairs += dense
    return out.transpose(1, 2).contiguous(), None  # (B, Lq, H, D), as transformers expects


def _kind(module: torch.nn.Module, is_causal: bool | None) -> tuple[bool, bool]:
    """Whether the layer's attention is causal, and whether it is a decoder's cross-attention."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    return causal, getattr(module, "is_decoder", False) and not causal


def _grouped_queries(module, query: torch.Tensor, mask, position_bias, dropout: float) -> bool:
    """Several queries a sequence on grouped key heads, with a boolean 4D mask shared by the heads:
    engine.attention.grouped serves them without copying the keys."""
    groups = getattr(module, "num_key_value_groups", 1)
    shared = isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.dim() == 4 and mask.shape[1] == 1
    return query.shape[2] > 1 and groups > 1 and shared and position_bias is None and not dropout


def _sparse_one_query(
    query, key, value, mask: StudioMask, pattern, settings, scaling, position_bias, positions, pages=None, layer=0,
    traced=False,
):  # fmt: skip
    """One query per sequence under a pattern with static shapes (a compiled step traces it once per
    bucket): each sequence's fixed-size key set gathered from the cache, or, for a pattern without
    one, the whole cache masked by the pattern's rule."""
    rows, keep = _one_query_keys(query, key, mask, pattern, settings, positions, pages)
    probe = None if traced else PROBE.get()
    if probe is not None:
        probe(layer, query, key, rows, keep)
    if rows is None:
        return one_query_attention(query, key, value, keep, scaling, position_bias), None
    b, kv_heads, _, dim = key.shape
    index = rows[..., None].expand(-1, -1, -1, dim)
    bias = None
    if position_bias is not None:  # per query head: its KV head's rows
        per_head = rows.repeat_interleave(query.shape[1] // kv_heads, 1)[:, :, None, :]
        bias = position_bias.expand(b, -1, -1, -1).gather(-1, per_head)
    picked = one_query_attention(query, key.gather(2, index), value.gather(2, index), keep, scaling, bias)
    return picked, None


def _one_query_keys(
    query, key, mask: StudioMask, pattern, settings, positions, pages
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """A one-query step's keys under a pattern: per sequence and KV head, the cache rows it reads and
    which of them count, (B, Hkv, keys) and (B, Hkv, 1, keys); or, for a pattern without a fixed-size
    set, None and (B, 1, 1, Lk) over the whole cache. A query-aware pattern adds, per KV head, the keys
    it picks by content from the page bounds (`pages`: kept by the cache; else computed here)."""
    rows, keep = mask.one_query_keys(pattern, settings, key.shape[2], query.device, positions)
    if rows is None:
        return None, keep
    b, kv_heads, length, _ = key.shape
    rows, keep = rows.expand(b, -1)[:, None, :].expand(-1, kv_heads, -1), keep.expand(b, kv_heads, -1, -1)
    if pattern.query_aware:
        at = mask.query_positions(positions, query.device)
        if pages is None:  # no cache keeps them (a plain forward): from this step's keys up to each query
            pages = page_bounds(key, (torch.arange(length, device=key.device) <= at)[:, None, :])
        low, high = pages
        read = -(-length // PAGE)  # the pages of the keys this step reads (a cache keeps more)
        picked, valid = pattern.select(query, low[:b, :, :read], high[:b, :, :read], at, settings)
        picked = picked.clamp(max=length - 1)
        if (allowed := mask.dense()) is not None:  # the model's own mask (the batch's row lengths, padding)
            valid = valid & allowed.expand(b, kv_heads, -1, -1)[:, :, 0, :].gather(-1, picked)
        rows, keep = torch.cat([rows, picked], -1), torch.cat([keep, valid[:, :, None, :]], -1)
    return rows, keep


def _rows_attention(
    module, query, key, value, mask: StudioMask, choices: RowChoices, which, scaling, position_bias, positions,
    pages, traced: bool,
) -> torch.Tensor:  # fmt: skip
    """A one-query step whose rows attend by their own choices (`which`: (B,) each row's index into
    `choices`): one attention over the whole cache, each row masked to the keys its choice reads
    (the same keys it reads alone, gathered there; no key is in a set twice). Static shapes, so one
    compiled step serves any rows of these choices, at the cost of a dense step's attention."""
    layer = cast(int, module.layer_idx)
    assert isinstance(mask, StudioMask) and query.shape[2] == 1, "rows attend differently only in decode steps"
    assert which is not None, "RowChoices come with each row's index (engine.runtime.step.step_choice)"
    patterns = [pattern_for(c.settings, causal=True) if c.mode == "sparse" else None for c in choices.choices]
    b, kv_heads, length, _ = key.shape
    full = (b, kv_heads, 1, length)

    def keep_of(choice, pattern) -> torch.Tensor:  # (B, Hkv, 1, Lk): the cache's keys a row of `choice` reads
        if pattern is None or pattern.keeps_all(mask.shape.kv_offset + mask.shape.kv_length, choice.settings):
            allowed = mask.dense()
            return allowed.expand(full) if allowed is not None else query.new_ones(full, dtype=torch.bool)
        pages_here = pages[layer] if pages is not None else None
        rows, keep = _one_query_keys(query, key, mask, pattern, choice.settings, positions, pages_here)
        if rows is None:
            return keep.expand(full)
        counts = torch.zeros((b, kv_heads, length), dtype=torch.int32, device=key.device)  # the gathered set
        return (counts.scatter_add(-1, rows, keep[:, :, 0, :].to(torch.int32))[:, :, None, :] > 0).expand(full)

    def keep_of_rows() -> torch.Tensor:
        keeps = torch.stack([keep_of(c, p) for c, p in zip(choices.choices, patterns, strict=True)])
        return keeps[which, torch.arange(b, device=query.device)]

    # Positional patterns pick the same keys in every layer: built once per forward, not per layer
    # (a compiled 8-row step of dense and sliding-window rows: 1.08x a dense one's time when built per layer)
    by_content = any(p is not None and p.query_aware for p in patterns)
    keep = keep_of_rows() if by_content else mask.once(("rows", choices), keep_of_rows)
    if traced:
        return one_query_attention(query, key, value, keep, scaling, position_bias)
    # Eagerly, SDPA (as a dense row alone): one_query_attention would materialise every product in fp32
    per_head = keep.repeat_interleave(query.shape[1] // kv_heads, 1)
    return sdpa_attention_forward(module, query, key, value, per_head, 0.0, scaling, False, position_bias)[0]


def register() -> None:
    """Idempotent: make "studio" a valid attn_implementation for every model."""
    AttentionInterface.register(IMPLEMENTATION, studio_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, studio_mask)
