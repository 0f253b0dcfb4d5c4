"""The attention op alone at a model's shapes: dense vs sparse for one layer, prefill and one decode
step, through the same function the model calls, in interleaved paired trials."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from transformers.masking_utils import causal_mask_function

from engine.api.results import Timing
from engine.attention.choice import AttentionChoice, AttentionStats, SparseSettings
from engine.attention.interface import studio_attention
from engine.attention.mask import StudioMask
from engine.attention.patterns import pattern_for
from engine.experiments.compare import interleaved
from engine.experiments.statistics import compare_timing
from engine.models.loader import LoadedModel
from engine.platform.measure import now

MODES = ("dense", "sparse")


class _AttentionShape(torch.nn.Module):
    """Stands in for a decoder layer's attention module: what the attention functions read from it."""

    def __init__(self, groups: int):
        super().__init__()
        self.is_causal, self.num_key_value_groups, self.layer_idx = True, groups, 0


def _timed(fn: Callable[[], object], device: torch.device) -> Callable[[], float]:
    """`fn` as a function returning its run time in ms (the device synchronised around it)."""

    def run() -> float:
        start = now(device)
        fn()
        return (now(device) - start) * 1000

    return run


def allowed_pairs(settings: SparseSettings, length: int, rows: int = 512) -> int:
    """Causal pairs the decoder pattern allows over a full prefill, counted a slab of rows at a time."""
    pattern = pattern_for(settings, causal=True)
    keys = torch.arange(length)
    total = 0
    for start in range(0, length, rows):
        queries = torch.arange(start, min(start + rows, length))[:, None]
        total += int((pattern.rule(queries, keys[None, :], settings) & (keys[None, :] <= queries)).sum())
    return total


@dataclass
class OpTimings:
    """One attention layer at one length, dense vs sparse over interleaved trials (ms)."""

    prefill: Timing
    decode: Timing  # one decode step
    plan_ms: tuple[float, float]  # (dense, sparse): building the mask / sparse plan
    density: tuple[float, float]  # (dense, sparse)


def time_attention_op(loaded: LoadedModel, length: int, settings: SparseSettings, repeats: int) -> OpTimings:
    """Dense vs sparse attention for one layer at the model's shapes, through the same function the
    model calls: prefill over `repeats` paired trials, a decode step over 5x as many."""
    config = loaded.model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    dtype = next(p.dtype for p in loaded.model.parameters() if p.is_floating_point())
    device = loaded.device
    module = _AttentionShape(heads // kv_heads)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(h: int, n: int) -> torch.Tensor:
        return torch.randn(1, h, n, head_dim, generator=gen).to(device, dtype)

    q, k, v = rand(heads, length), rand(kv_heads, length), rand(kv_heads, length)
    stats = {mode: AttentionStats() for mode in MODES}

    def mask_for(query: torch.Tensor, q_offset: int) -> StudioMask:
        return StudioMask(
            batch_size=1,
            q_length=query.shape[2],
            kv_length=length,
            q_offset=q_offset,
            kv_offset=0,
            mask_function=causal_mask_function,
            attention_mask=None,
            allow_is_causal_skip=True,
            device=device,
        )

    def both(call: Callable[[str], object], trials: int) -> tuple[list[float], list[float]]:
        """`call(mode)` timed for dense and sparse, interleaved."""
        dense, sparse = (_timed(partial(call, mode), device) for mode in MODES)
        return interleaved(dense, sparse, trials)

    def attend(mode: str, query: torch.Tensor, mask: StudioMask) -> None:
        with torch.inference_mode():
            choice = AttentionChoice(mode, settings, stats[mode])
            studio_attention(module, query, k, v, mask, scaling=head_dim**-0.5, studio_choice=choice)

    # A model builds the mask (and the sparse plan) once per forward and shares it across its
    # layers, so the per-layer time excludes it; the plan is timed on its own (a fresh mask each run).
    prefill_mask, decode_mask = mask_for(q, 0), mask_for(q[:, :, -1:], length - 1)
    fresh = both(lambda mode: attend(mode, q, mask_for(q, 0)), 1)
    prefill = both(lambda mode: attend(mode, q, prefill_mask), repeats)
    density = (stats["dense"].density, stats["sparse"].density)
    decode = both(lambda mode: attend(mode, q[:, :, -1:], decode_mask), repeats * 5)
    dense_plan, sparse_plan = (max(0.0, f[0] - statistics.median(p)) for f, p in zip(fresh, prefill, strict=True))
    return OpTimings(compare_timing(*prefill), compare_timing(*decode), (dense_plan, sparse_plan), density)
