"""The attention map (engine.experiments.attention_map) on a tiny local decoder: what each attention choice
computes at prefill and at the first decode step, against the map's own dense probabilities."""

from __future__ import annotations

import pytest
import torch

from engine import AttentionMap, Engine, GenerationRequest, InputError, attention_map, options_from
from engine.attention.patterns import PATTERNS, explicit_mask

PROMPT = "the quick brown fox jumps over the lazy dog " * 30  # about 270 tokens: 5 blocks of 64


@pytest.fixture
def cache(tiny_env):
    return Engine(budget_mb=10_000, device=torch.device("cpu"))


def mapped(cache, layer=1, head=3, **options) -> AttentionMap:
    request = GenerationRequest(options_from({"model": "tiny-llama", "precision": "fp32", **options}), text=PROMPT)
    return attention_map(request, layer, head, cache)


def tiles_of(allowed: torch.Tensor, block: int) -> list[tuple[int, int]]:
    """Tiles with an allowed pair, one by one."""
    blocks = -(-allowed.shape[0] // block)
    return [
        (q, k)
        for q in range(blocks)
        for k in range(blocks)
        if allowed[q * block : (q + 1) * block, k * block : (k + 1) * block].any()
    ]


def test_dense_attention_computes_every_causal_tile(cache):
    found = mapped(cache, attention="dense")
    n = found.tokens
    assert (found.layers, found.heads, found.kv_head, found.block, found.attention) == (2, 4, 1, 64, "dense")
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    assert found.tiles == tiles_of(causal, 64) and found.content_tiles == []
    assert found.density == 1 and found.mass_recall == pytest.approx(1, abs=1e-5)
    probabilities = torch.tensor(found.probabilities)
    assert probabilities.shape == (n, n) and torch.allclose(probabilities.sum(1), torch.ones(n), atol=1e-5)
    assert (probabilities.triu(1) == 0).all()  # causal
    assert found.decode_keys == list(range(n + 1)) and found.decode_mass_recall == pytest.approx(1, abs=1e-5)
    tile_mass = torch.tensor(found.tile_mass)
    assert torch.allclose(tile_mass.sum(1), torch.ones(len(tile_mass)), atol=1e-5)


def test_the_sliding_window_map_is_its_rule(cache):
    """Tiles, density and mass recall follow from the pattern's explicit mask and the map's own
    dense probabilities; the decode step reads the sinks and the window."""
    found = mapped(cache, attention="sparse", pattern="sliding_sinks", window=24, sinks=2, block_size=16)
    n, positions = found.tokens, torch.arange(found.tokens)
    settings = options_from({"window": 24, "sinks": 2}).sparse
    allowed = explicit_mask(PATTERNS["sliding_sinks"], settings, positions, positions) & (
        positions[:, None] >= positions[None, :]
    )
    assert found.block == 16 and found.tiles == tiles_of(allowed, 16)
    assert found.density == pytest.approx(float(allowed.sum() / (n * (n + 1) / 2)))
    probabilities = torch.tensor(found.probabilities)
    assert found.mass_recall == pytest.approx(float((probabilities * allowed).sum() / n), abs=1e-5)
    assert 0 < found.mass_recall < 1
    assert found.decode_keys == [0, 1, *range(n + 1 - 24, n + 1)]
    assert 0 < found.decode_mass_recall < 1


def test_block_topk_adds_content_tiles_and_quest_reads_pages_at_decode(cache):
    topk = mapped(cache, attention="sparse", pattern="block_topk", window=16, sinks=2, budget=64)
    assert topk.block == 64 and topk.content_tiles and set(topk.content_tiles) <= set(topk.tiles)
    assert all(k <= q for q, k in topk.content_tiles)  # a picked block starts at or before the query block
    quest = mapped(cache, attention="sparse", pattern="quest", window=16, sinks=2, budget=64)
    n = quest.tokens
    assert quest.density == 1  # Quest prefills densely
    # decode: the sinks, the window and budget // 16 pages of 16 keys, of the n + 1 keys there are
    assert 2 + 16 < len(quest.decode_keys) <= 2 + 16 + 64 < n
    assert {0, 1, n} <= set(quest.decode_keys)


def test_bad_layer_head_or_model_kind_is_a_clear_error(cache):
    with pytest.raises(InputError, match="layers 0-1 and heads 0-3"):
        mapped(cache, layer=2)
    request = GenerationRequest(options_from({"model": "tiny-t5", "precision": "fp32"}), text=PROMPT)
    with pytest.raises(InputError, match="decoder"):
        attention_map(request, 0, 0, cache)
