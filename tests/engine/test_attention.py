"""Property tests: the sparse kernels equal dense SDPA given the equivalent explicit boolean mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.masking_utils import bidirectional_mask_function, causal_mask_function

from engine.attention.blocked import MaskShape, blocked_attention, build_plan
from engine.attention.choice import SparseSettings
from engine.attention.flex import flex_block_mask, flex_sparse_attention
from engine.attention.patterns import PATTERNS, explicit_mask
from engine.models.embedded import BUILDING


def reference(q, k, v, allowed, bias=None):
    """Dense SDPA with an explicit mask; rows with no allowed key are defined as 0."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    mask = allowed if bias is None else bias.masked_fill(~allowed, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.masked_fill(~allowed.any(-1, keepdim=True), 0.0)


def model_mask(causal: bool, padding: torch.Tensor | None):
    base = causal_mask_function if causal else bidirectional_mask_function
    if padding is None:
        return base
    return lambda b, h, q, kv: base(b, h, q, kv) & padding[b, kv]


def run_case(
    *, causal, lq, lk, heads, kv_heads, settings, padding=None, bias=None, dtype=torch.float32, seed=0, pattern=None
):
    torch.manual_seed(seed)
    b, d = (padding.shape[0] if padding is not None else 2), 32
    q = torch.randn(b, heads, lq, d, dtype=dtype)
    k = torch.randn(b, kv_heads, lk, d, dtype=dtype)
    v = torch.randn(b, kv_heads, lk, d, dtype=dtype)
    pattern = PATTERNS[pattern or ("sliding_sinks" if causal else "local_global")]
    q_offset = lk - lq  # decode steps: the queries are the last positions of the cache
    mask_fn = model_mask(causal, padding)
    plan = build_plan(
        pattern,
        settings,
        MaskShape(batch_size=b, q_length=lq, kv_length=lk, q_offset=q_offset),
        model_mask=mask_fn,
        groups=heads // kv_heads,
        device=q.device,
    )
    out = blocked_attention(q, k, v, plan, None, bias)
    q_pos, k_pos = torch.arange(q_offset, lk), torch.arange(lk)
    allowed = explicit_mask(pattern, settings, q_pos, k_pos)[None, None]
    allowed = allowed & mask_fn(
        torch.arange(b)[:, None, None, None], torch.zeros(1, dtype=torch.long), q_pos[:, None], k_pos[None, :]
    )
    return out, reference(q, k, v, allowed.expand(b, 1, lq, lk), bias), plan


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("length", [1, 7, 64, 100, 257])
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (6, 2)])
def test_prefill_matches_explicit_mask(pattern, length, heads, kv_heads):
    settings = SparseSettings(window=24, sinks=3, block_size=16)
    causal = PATTERNS[pattern].causal
    out, ref, _ = run_case(
        causal=causal, lq=length, lk=length, heads=heads, kv_heads=kv_heads, settings=settings, pattern=pattern
    )
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("seed", range(6))
def test_random_shapes_and_settings(seed):
    gen = torch.Generator().manual_seed(seed)
    draw = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=gen))  # noqa: E731
    settings = SparseSettings(window=draw(1, 80), sinks=draw(0, 6), block_size=draw(1, 40))
    length = draw(1, 300)
    pattern = sorted(PATTERNS)[seed % len(PATTERNS)]
    causal = PATTERNS[pattern].causal
    out, ref, _ = run_case(
        causal=causal, lq=length, lk=length, heads=4, kv_heads=2, settings=settings, seed=seed, pattern=pattern
    )
    assert rel_err(out, ref) < 1e-5, (settings, length, pattern)


@pytest.mark.parametrize("causal", [True, False])
def test_left_padding(causal):
    lengths = [90, 61]
    padding = torch.zeros(2, 90, dtype=torch.bool)
    for row, n in enumerate(lengths):
        padding[row, 90 - n :] = True
    settings = SparseSettings(window=20, sinks=2, block_size=16)
    out, ref, _ = run_case(causal=causal, lq=90, lk=90, heads=4, kv_heads=2, settings=settings, padding=padding)
    valid = padding[:, None, :, None]  # compare real (non-pad) query rows
    assert rel_err(out * valid, ref * valid) < 1e-5


@pytest.mark.parametrize("cache_len", [1, 5, 33, 300])
def test_single_token_decode_against_cache(cache_len):
    settings = SparseSettings(window=32, sinks=4, block_size=16)
    out, ref, plan = run_case(causal=True, lq=1, lk=cache_len, heads=6, kv_heads=2, settings=settings)
    assert rel_err(out, ref) < 1e-5
    # Decode reads only the sinks and the window of the cache, never the whole cache.
    assert plan.computed_pairs == min(cache_len, settings.window + settings.sinks)


@pytest.mark.parametrize("cache_len", [1, 70, 300, 3000])
def test_random_blocks_decode_reads_window_sinks_and_its_blocks(cache_len):
    settings = SparseSettings(window=32, sinks=4, block_size=16)
    out, ref, plan = run_case(
        causal=True, lq=1, lk=cache_len, heads=6, kv_heads=2, settings=settings, pattern="bigbird_random"
    )
    assert rel_err(out, ref) < 1e-5
    # about two random 64-token blocks (the hash may pick a few more), never the whole cache
    assert plan.computed_pairs <= min(cache_len, settings.window + settings.sinks + 6 * 64)


def test_full_window_equals_dense_causal_attention():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 4, 150, 32), torch.randn(1, 2, 150, 32), torch.randn(1, 2, 150, 32)
    settings = SparseSettings(window=150, sinks=0, block_size=32)
    plan = build_plan(
        PATTERNS["sliding_sinks"],
        settings,
        MaskShape(batch_size=1, q_length=150, kv_length=150),
        model_mask=causal_mask_function,
        groups=2,
        device=q.device,
    )
    dense = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert rel_err(blocked_attention(q, k, v, plan, None), dense) < 1e-5


def test_position_bias_is_sliced_per_block():
    settings = SparseSettings(window=10, sinks=1, block_size=8)
    bias = torch.randn(1, 4, 40, 40)
    out, ref, _ = run_case(causal=False, lq=40, lk=40, heads=4, kv_heads=4, settings=settings, bias=bias)
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_half_precision_bounded(dtype, tol):
    settings = SparseSettings(window=24, sinks=2, block_size=16)
    out, ref, _ = run_case(causal=True, lq=100, lk=100, heads=4, kv_heads=2, settings=settings, dtype=dtype)
    assert rel_err(out, ref) < tol


def test_work_grows_with_window_not_length():
    settings = SparseSettings(window=64, sinks=4, block_size=32)
    pairs = {}
    for n in (1024, 2048):
        _, _, plan = run_case(causal=True, lq=n, lk=n, heads=2, kv_heads=2, settings=settings)
        pairs[n] = plan.computed_pairs
    assert 1.9 < pairs[2048] / pairs[1024] < 2.1  # linear in n (dense would be 4x)
    assert pairs[2048] < 2048 * (64 + 32 + 4)


def test_flex_kernel_matches_explicit_mask():
    """FlexAttention (the CUDA path) run eagerly on CPU with head_dim 64, on shapes we use."""
    torch.manual_seed(0)
    settings = SparseSettings(window=40, sinks=4)
    q, k, v = torch.randn(1, 4, 256, 64), torch.randn(1, 2, 256, 64), torch.randn(1, 2, 256, 64)
    pattern = PATTERNS["sliding_sinks"]
    shape = MaskShape(batch_size=1, q_length=256, kv_length=256)
    block_mask, pairs = flex_block_mask(
        pattern, settings, shape, model_mask=causal_mask_function, device=q.device, cacheable=True
    )
    again = flex_block_mask(pattern, settings, shape, model_mask=causal_mask_function, device=q.device, cacheable=True)
    assert again[0] is block_mask  # cached per shape, reused across forwards
    assert pairs == 3 * 128 * 128  # the kept 128x128 tiles of the 2x2 grid (tiles, not elements)
    out = flex_sparse_attention(q, k, v, block_mask, scaling=None)
    pos = torch.arange(256)
    ref = reference(q, k, v, explicit_mask(pattern, settings, pos, pos)[None, None])
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("pattern", ["sliding_sinks", "block_topk"])
def test_flex_and_blocked_kernels_agree_inside_a_model(studio_env, pattern):
    """The CUDA path (FlexAttention, eager here) and the CPU path give the same logits through the
    attention hook, for prefill and decode steps against the cache. head_dim 64: FlexAttention on
    CPU returned NaN for head_dim 16. Block top-k picks its key blocks per layer from that layer's
    queries and keys, so it reads more than the window alone."""
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    from engine.attention.choice import AttentionChoice, AttentionStats
    from engine.attention.interface import register

    register()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024)  # fmt: skip
    with BUILDING:  # as every build: transformers sets torch's default dtype for the process meanwhile
        model = LlamaForCausalLM._from_config(config, attn_implementation="studio").eval()
    ids = torch.randint(0, 128, (1, 600))
    settings = SparseSettings(window=32, sinks=4, pattern=pattern, budget=64)

    def run(kernel: str):
        studio_env("STUDIO_SPARSE_KERNEL", kernel)
        stats, cache, logits = AttentionStats(), DynamicCache(config=config), []
        choice = AttentionChoice("sparse", settings, stats)
        with torch.inference_mode():
            out = model(input_ids=ids, past_key_values=cache, use_cache=True, studio_choice=choice)
            logits.append(out.logits[:, -1])
            for step in range(3):
                step_ids = ids[:, step : step + 1]
                out = model(input_ids=step_ids, past_key_values=cache, use_cache=True, studio_choice=choice)
                logits.append(out.logits[:, -1])
        return torch.cat(logits), stats.density

    blocked, blocked_density = run("blocked")
    flex, flex_density = run("flex")
    assert rel_err(flex, blocked) < 1e-4
    # 128x128 tiles are coarse at 300 tokens: flex computes more pairs than dense would here
    assert 0 < blocked_density < 1 < flex_density
    shape = MaskShape(batch_size=1, q_length=600, kv_length=600)
    window_only = build_plan(PATTERNS["sliding_sinks"], SparseSettings(window=32, sinks=4), shape,
                             model_mask=causal_mask_function, groups=2, device=ids.device)  # fmt: skip
    assert (blocked_density > window_only.computed_pairs / window_only.dense_pairs) == (pattern == "block_topk")


@pytest.mark.parametrize("with_bias", [False, True])
def test_one_query_attention_matches_sdpa(with_bias):
    """The decode step's attention (one query, grouped KV heads) equals PyTorch's SDPA."""
    from engine.attention.one_query import one_query_attention

    torch.manual_seed(0)
    b, h, hkv, length, d = 2, 6, 2, 37, 16
    query, key, value = torch.randn(b, h, 1, d), torch.randn(b, hkv, length, d), torch.randn(b, hkv, length, d)
    mask = torch.rand(b, 1, 1, length) > 0.3
    mask[..., -1] = True  # a query always sees itself
    bias = torch.randn(1, h, 1, length) if with_bias else None
    expected_mask = mask if bias is None else bias.masked_fill(~mask, float("-inf"))
    expected = F.scaled_dot_product_attention(
        query, key.repeat_interleave(h // hkv, 1), value.repeat_interleave(h // hkv, 1), attn_mask=expected_mask
    )
    got = one_query_attention(query, key, value, mask, None, bias)
    assert got.shape == (b, 1, h, d)
    assert torch.allclose(got, expected.transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize("width", [2, 4, 8])
def test_grouped_query_attention_matches_sdpa_on_copied_keys(width):
    """A speculating step's attention (a few queries a row, each with its own mask, grouped KV heads)
    equals SDPA on keys copied per query head, as transformers computes it."""
    from engine.attention.grouped import grouped_query_attention

    torch.manual_seed(0)
    b, h, hkv, length, d = 2, 6, 2, 37, 16
    query, key, value = torch.randn(b, h, width, d), torch.randn(b, hkv, length, d), torch.randn(b, hkv, length, d)
    positions = torch.tensor([[20], [30]]) + torch.arange(width)  # each row's own place in its cache
    mask = (torch.arange(length) <= positions[..., None])[:, None]  # (b, 1, width, length)
    expected = F.scaled_dot_product_attention(
        query, key.repeat_interleave(h // hkv, 1), value.repeat_interleave(h // hkv, 1), attn_mask=mask
    )
    got = grouped_query_attention(query, key, value, mask, None)
    assert got.shape == (b, width, h, d)
    assert torch.allclose(got, expected.transpose(1, 2), atol=1e-6)


@pytest.mark.parametrize("pattern_name", ["sliding_sinks", "bigbird_random"])
@pytest.mark.parametrize("positions", [(3, 20), (199, 255), (255, 3)])
def test_sparse_decode_step_attends_exactly_to_the_pattern(pattern_name, positions):
    """A batch of two sequences, each with one query at its own position, over a 256-slot cache (as
    a batch's step sees it: keys past each position are stale): the decode step (gathered key sets,
    or the rule over the whole cache) equals SDPA under each row's explicit pattern mask."""
    from engine.attention.interface import _sparse_one_query
    from engine.attention.mask import studio_mask
    from engine.attention.patterns import PATTERNS, explicit_mask

    torch.manual_seed(1)
    settings = SparseSettings(window=16, sinks=4, pattern=pattern_name)
    pattern, length, h, hkv, d = PATTERNS[pattern_name], 256, 6, 2, 8
    query, key, value = torch.randn(2, h, 1, d), torch.randn(2, hkv, length, d), torch.randn(2, hkv, length, d)
    at = torch.tensor(positions)[:, None]
    reads = torch.arange(length) <= at  # each row's own length, as engine.runtime.compile.decode_step masks it
    mask = studio_mask(2, 1, length, q_offset=length - 1, kv_offset=0, attention_mask=reads)
    got, _ = _sparse_one_query(query, key, value, mask, pattern, settings, None, None, at)
    for row, position in enumerate(positions):
        allowed = explicit_mask(pattern, settings, torch.tensor([position]), torch.arange(length))
        expected = F.scaled_dot_product_attention(
            query[row : row + 1],
            key[row : row + 1].repeat_interleave(h // hkv, 1),
            value[row : row + 1].repeat_interleave(h // hkv, 1),
            attn_mask=allowed,
        )
        assert torch.allclose(got[row : row + 1], expected.transpose(1, 2), atol=1e-5)


def quest_reference_mask(query, key, position: int, settings: SparseSettings, written) -> torch.Tensor:
    """Quest written out for one sequence, loop by loop: per KV head, each page's bound over its
    written keys up to the query, the best `budget // 16` pages outside the sinks and the window,
    then the keys the query attends to, (H, length) bool, one row per query head."""
    heads, kv_heads, length = query.shape[0], key.shape[0], key.shape[1]
    groups, page, pages = heads // kv_heads, 16, -(-length // 16)
    window_start = position - settings.window + 1
    allowed = torch.zeros(heads, length, dtype=torch.bool)
    for kv in range(kv_heads):
        scores = {}
        for p in range(pages):
            start = p * page
            members = [i for i in range(start, min(start + page, length)) if i <= position and written[i]]
            if not (start + page > settings.sinks and start < window_start and start <= position) or not members:
                continue
            keys = key[kv, members]
            lo, hi = keys.amin(0), keys.amax(0)
            qs = query[kv * groups : (kv + 1) * groups]
            scores[p] = max(float(torch.maximum(q * lo, q * hi).sum()) for q in qs)
        chosen = sorted(scores, key=scores.get, reverse=True)[: settings.budget // page]
        for i in range(length):
            near = i < settings.sinks or i >= window_start or i // page in chosen
            allowed[kv * groups : (kv + 1) * groups, i] = near and i <= position and bool(written[i])
    return allowed


@pytest.mark.parametrize("positions", [(150, 60), (202, 17), (30, 202)])
@pytest.mark.parametrize(("window", "budget"), [(16, 32), (40, 64)])
def test_quest_decode_step_attends_exactly_to_its_pages(positions, window, budget):
    """The Quest decode step (pages scored against each query, per KV head, then the gathered keys)
    equals SDPA under Quest's mask written out by hand: a 203-slot cache (not a page multiple), GQA
    (6 query heads on 2 KV heads), stale keys past each position, and padding in the first row."""
    from engine.attention.interface import _sparse_one_query
    from engine.attention.mask import studio_mask

    torch.manual_seed(2)
    settings = SparseSettings(window=window, sinks=4, pattern="quest", budget=budget)
    length, h, hkv, d = 203, 6, 2, 8
    query, key, value = torch.randn(2, h, 1, d), torch.randn(2, hkv, length, d), torch.randn(2, hkv, length, d)
    at = torch.tensor(positions)[:, None]
    reads = torch.arange(length) <= at
    reads[0, 5:9] = False  # padding inside the first sequence
    mask = studio_mask(2, 1, length, q_offset=length - 1, kv_offset=0, attention_mask=reads)
    got, _ = _sparse_one_query(query, key, value, mask, PATTERNS["quest"], settings, None, None, at)
    for row, position in enumerate(positions):
        allowed = quest_reference_mask(
            query[row, :, 0], key[row], position, settings, torch.ones(length, dtype=torch.bool)
        )
        allowed &= reads[row]
        expected = F.scaled_dot_product_attention(
            query[row : row + 1],
            key[row : row + 1].repeat_interleave(h // hkv, 1),
            value[row : row + 1].repeat_interleave(h // hkv, 1),
            attn_mask=allowed[None, :, None, :],
        )
        assert torch.allclose(got[row : row + 1], expected.transpose(1, 2), atol=1e-5)
        # sinks + window + the budget's pages, of a larger cache: the step reads a small share of it
        assert allowed[0].sum() <= settings.sinks + window + budget


def test_a_row_cache_keeps_the_page_bounds_of_what_each_row_wrote():
    """Prefill sets a row's bounds (a former sequence's keys past the prompt do not count); each decode
    step updates the page it writes to; a moved row takes its bounds along."""
    from engine.attention.content import page_bounds
    from engine.runtime.kv_cache import RowCache

    torch.manual_seed(3)
    cache = RowCache(layers=1, capacity=2, length=64, pages=True)
    layer = cache.layers[0]
    with torch.inference_mode():
        for row, n in ((0, 40), (1, 21)):
            cache.prefill(row)
            layer.update(torch.randn(1, 2, n, 8), torch.randn(1, 2, n, 8))
        cache.prefill(0)  # a new, shorter sequence in row 0: its bounds ignore the old keys past 10
        layer.update(torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 8))
        lengths = [10, 21]
        for _ in range(7):
            cache.decode(torch.tensor(lengths), 64)
            layer.update(torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8))
            lengths = [n + 1 for n in lengths]
        for row, n in enumerate(lengths):
            low, high = page_bounds(layer.keys[row], torch.arange(64) < n)
            assert torch.equal(layer.low[row], low) and torch.equal(layer.high[row], high)
        cache.move_row(1, 0)
        assert torch.equal(layer.low[0], layer.low[1]) and torch.equal(layer.keys[0], layer.keys[1])


def block_topk_case(length: int, heads: int, kv_heads: int, *, padding=None, bias=None, seed=0, kernel="blocked"):
    """The content pattern's prefill through a kernel and through SDPA under its explicit mask (the
    positional part, or a pair in a picked block under the content rule), with the model's mask."""
    from engine.attention.blocked import content_keys
    from engine.attention.content import BlockTopK
    from engine.attention.flex import flex_content_block_mask

    torch.manual_seed(seed)
    b, d = (padding.shape[0] if padding is not None else 2), 64
    pattern, settings = BlockTopK(block=16), SparseSettings(window=20, sinks=3, pattern="block_topk", budget=48)
    q, k, v = torch.randn(b, heads, length, d), torch.randn(b, kv_heads, length, d), torch.randn(b, kv_heads, length, d)
    shape, mask_fn = MaskShape(batch_size=b, q_length=length, kv_length=length), model_mask(True, padding)
    picked = pattern.select_blocks(q, k, 0, settings, padding)
    groups = heads // kv_heads
    if kernel == "flex":
        block_mask, _ = flex_content_block_mask(pattern, settings, shape, picked, model_mask=mask_fn, heads=heads,
                                                    device=q.device)  # fmt: skip
        out = flex_sparse_attention(q, k, v, block_mask, None)
    else:
        from dataclasses import replace

        plan = build_plan(pattern, replace(settings, block_size=16), shape, model_mask=mask_fn, groups=groups,
                          device=q.device)  # fmt: skip
        added = content_keys(pattern, settings, shape, picked, model_mask=mask_fn, groups=groups)
        out = blocked_attention(q, k, v, plan, None, bias, added)
    pos = torch.arange(length)
    allowed = explicit_mask(pattern, settings, pos, pos, picked).repeat_interleave(groups, 1)
    allowed = allowed & mask_fn(torch.arange(b)[:, None, None, None], torch.zeros(1, dtype=torch.long), pos[:, None],
                                pos[None, :])  # fmt: skip
    return out, reference(q, k, v, allowed, bias), picked, allowed


@pytest.mark.parametrize("length", [1, 7, 100, 257])
@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (6, 2)])
def test_block_topk_prefill_matches_its_explicit_mask(length, heads, kv_heads):
    """Lengths that are not block multiples, GQA: each KV head reads its own picked blocks."""
    out, ref, picked, allowed = block_topk_case(length, heads, kv_heads)
    assert rel_err(out, ref) < 1e-5
    if length == 257:  # the content part adds keys, and different ones for different KV heads
        positions = torch.arange(257)
        assert (
            allowed & ~explicit_mask(PATTERNS["block_topk"], SparseSettings(window=20, sinks=3), positions, positions)
        ).any()
        if kv_heads > 1:
            assert not torch.equal(picked.blocks[:, 0], picked.blocks[:, 1])


def test_block_topk_prefill_with_left_padding_and_a_position_bias():
    padding = torch.ones(2, 150, dtype=torch.bool)
    padding[1, :37] = False
    bias = torch.randn(1, 4, 150, 150)
    out, ref, picked, _ = block_topk_case(150, 4, 2, padding=padding, bias=bias, seed=3)
    valid = padding[:, None, :, None]
    assert rel_err(out * valid, ref * valid) < 1e-5
    # the second sequence's key blocks 0 and 1 (rows 0-31) are padding only: never worth a slot
    assert not (picked.valid[1] & (picked.blocks[1] < 2)).any() and (picked.valid[0] & (picked.blocks[0] < 2)).any()


def test_block_topk_flex_kernel_matches_its_explicit_mask():
    """The CUDA path's per-layer BlockMask (FlexAttention, eager on CPU) gives the same attention."""
    out, ref, _, _ = block_topk_case(200, 6, 2, kernel="flex", seed=4)
    assert rel_err(out, ref) < 1e-5


def test_block_topk_picks_the_key_block_the_queries_point_at():
    """A key block planted to match a query block's queries wins over the others; only blocks before
    the window and past the sinks are candidates, at most budget // block of them."""
    from engine.attention.content import BlockTopK

    torch.manual_seed(5)
    pattern, settings = BlockTopK(block=16), SparseSettings(window=16, sinks=4, budget=32)
    d, length = 32, 160
    q, k = torch.randn(1, 2, length, d) * 0.1, torch.randn(1, 1, length, d) * 0.1
    direction = torch.randn(d)
    q[0, 1, 144:160] += direction  # the last query block, one of the two query heads
    k[0, 0, 48:64] += direction  # key block 3
    picked = pattern.select_blocks(q, k, 0, settings)
    assert picked.blocks.shape == (1, 1, 10, 2)
    assert 3 in picked.blocks[0, 0, 9].tolist()
    for query_block in range(10):
        last_query = min(query_block * 16 + 15, length - 1)
        for slot, block in enumerate(picked.blocks[0, 0, query_block].tolist()):
            eligible = block * 16 + 16 > settings.sinks and block * 16 <= last_query - settings.window
            assert eligible or not picked.valid[0, 0, query_block, slot]
    assert not picked.valid[0, 0, 0].any()  # the first block's queries have nothing before their window
