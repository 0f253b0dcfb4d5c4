"""The attention sweep: sequence length x attention mode x precision.

For each point the attention op alone at the model's shapes (one layer, prefill and one decode step)
and the whole model (prefill ms, decode tokens/s, peak memory). Next to each sparse speedup: the
theoretical limit, dense (query, key) pairs over the pairs the pattern allows.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from transformers.masking_utils import causal_mask_function

from ..attention import AttentionStats, pattern_for, use_attention
from ..attention.hook import StudioMask, studio_attention
from ..cache import ModelCache
from ..data import long_document
from ..loader import LoadedModel
from ..metrics import PeakMemory, now
from ..options import DEFAULT_MODEL, RunOptions, SparseSettings
from ..validation import validate_options

Progress = Callable[[float, str], None]

DEFAULT_LENGTHS = (512, 1024, 2048, 4096, 8192)
QUICK_LENGTHS = (512, 2048, 8192)


@dataclass(frozen=True)
class SweepConfig:
    model: str = DEFAULT_MODEL
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    precisions: tuple[str, ...] = ("fp32",)
    settings: SparseSettings = field(default_factory=SparseSettings)
    decode_tokens: int = 16  # decode steps timed after each whole-model prefill
    repeats: int = 3  # op timings: median of this many runs
    whole_model: bool = True
    max_model_length: int = 8192  # whole-model points stop here (prefill time grows fast on CPU)


@dataclass
class SweepRow:
    precision: str
    length: int
    mode: str  # dense | sparse
    op_prefill_ms: float  # one attention layer over `length` queries
    op_plan_ms: float  # building the mask / sparse plan, once per forward for all layers
    op_decode_ms: float  # one attention layer, one query against `length` cached keys
    model_prefill_ms: float | None = None
    model_decode_tokens_per_s: float | None = None
    model_peak_memory_mb: float | None = None
    density: float = 1.0  # share of dense (query, key) pairs the kernel computed
    flop_limit: float = 1.0  # dense pairs / pairs the pattern allows: the speedup sparsity can buy
    op_speedup: float | None = None  # sparse rows: dense / sparse, measured
    model_prefill_speedup: float | None = None
    model_decode_speedup: float | None = None


# The printed table's columns, in reading order (the files hold every field).
SWEEP_COLUMNS = [
    "precision",
    "length",
    "mode",
    "op_prefill_ms",
    "op_speedup",
    "flop_limit",
    "op_plan_ms",
    "density",
    "op_decode_ms",
    "model_prefill_ms",
    "model_prefill_speedup",
    "model_decode_tokens_per_s",
    "model_decode_speedup",
    "model_peak_memory_mb",
]


def corpus_ids(tokenizer, length: int) -> torch.Tensor:
    """`length` token ids of real text (the long sample document, repeated as needed)."""
    ids = tokenizer(long_document())["input_ids"]
    reps = -(-length // len(ids))
    return torch.tensor([(ids * reps)[:length]], dtype=torch.long)


class _AttentionShape(torch.nn.Module):
    """Stands in for a decoder layer's attention module: what the attention functions read from it."""

    def __init__(self, groups: int):
        super().__init__()
        self.is_causal, self.num_key_value_groups, self.layer_idx = True, groups, 0


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = now(device)
        fn()
        times.append((now(device) - start) * 1000)
    return statistics.median(times)


def _allowed_pairs(settings: SparseSettings, length: int, rows: int = 512) -> int:
    """Causal pairs the decoder pattern allows over a full prefill, counted a slab of rows at a time."""
    pattern = pattern_for(settings, causal=True)
    keys = torch.arange(length)
    total = 0
    for start in range(0, length, rows):
        queries = torch.arange(start, min(start + rows, length))[:, None]
        total += int((pattern.rule(queries, keys[None, :], settings) & (keys[None, :] <= queries)).sum())
    return total


def time_attention_op(
    loaded: LoadedModel, length: int, mode: str, settings: SparseSettings, repeats: int
) -> tuple[float, float, float, float]:
    """(prefill ms, mask/plan ms, decode-step ms, density) of one attention layer at the model's shapes, through
    the same function the model calls."""
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
    stats = AttentionStats()

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

    def attend(query: torch.Tensor, mask: StudioMask) -> None:
        with torch.inference_mode(), use_attention(mode, settings, stats):
            studio_attention(module, query, k, v, mask, scaling=head_dim**-0.5)

    # A model builds the mask (and the sparse plan) once per forward and shares it across its
    # layers, so the per-layer time excludes it; the plan is timed on its own.
    prefill_mask, decode_mask = mask_for(q, 0), mask_for(q[:, :, -1:], length - 1)
    plan = _median_ms(lambda: attend(q, mask_for(q, 0)), device, 1)
    prefill = _median_ms(lambda: attend(q, prefill_mask), device, repeats)
    density = stats.density
    decode = _median_ms(lambda: attend(q[:, :, -1:], decode_mask), device, repeats * 5)
    return prefill, plan - prefill, decode, density


def time_model(loaded: LoadedModel, length: int, mode: str, settings: SparseSettings, decode_tokens: int):
    """Whole-model (prefill ms, decode tokens/s, peak MB) on `length` tokens of real text, greedy."""
    from transformers import DynamicCache

    model, device = loaded.model, loaded.device
    ids = corpus_ids(loaded.tokenizer, length).to(device)
    with PeakMemory(device) as memory, torch.inference_mode(), use_attention(mode, settings):
        cache = DynamicCache(config=model.config)
        start = now(device)
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        token = logits[:, -1].argmax(-1, keepdim=True)
        prefill_s = now(device) - start
        start = now(device)
        for _ in range(decode_tokens):
            token = model(input_ids=token, past_key_values=cache, use_cache=True).logits[:, -1].argmax(-1, keepdim=True)
        decode_s = now(device) - start
    return prefill_s * 1000, decode_tokens / decode_s, memory.peak_mb()


def sweep(config: SweepConfig, cache: ModelCache | None = None, progress: Progress | None = None) -> list[SweepRow]:
    """Run the attention sweep; `progress(fraction, message)` is called before each point."""
    cache = cache or ModelCache()
    for precision in config.precisions:  # the run options' validation, before anything is loaded
        options = RunOptions(model=config.model, precision=precision, **asdict(config.settings))
        validate_options(options, cache.device)
    rows: list[SweepRow] = []
    points = [(p, n, m) for p in config.precisions for n in config.lengths for m in ("dense", "sparse")]
    for i, (precision, length, mode) in enumerate(points):
        if progress:
            progress(i / len(points), f"{precision}, {length} tokens, {mode}")
        loaded = cache.get(config.model, precision)
        op_prefill, plan, op_decode, density = time_attention_op(loaded, length, mode, config.settings, config.repeats)
        row = SweepRow(loaded.precision, length, mode, op_prefill, max(plan, 0.0), op_decode, density=density)
        if mode == "sparse":
            dense_pairs = length * (length + 1) // 2
            row.flop_limit = dense_pairs / _allowed_pairs(config.settings, length)
        if config.whole_model and length <= min(config.max_model_length, loaded.spec.context_length):
            row.model_prefill_ms, row.model_decode_tokens_per_s, row.model_peak_memory_mb = time_model(
                loaded, length, mode, config.settings, config.decode_tokens
            )
        if mode == "sparse":
            _fill_speedups(row, rows[-1])
        rows.append(row)
    if progress:
        progress(1.0, "done")
    return rows


def _fill_speedups(sparse: SweepRow, dense: SweepRow) -> None:
    sparse.op_speedup = dense.op_prefill_ms / sparse.op_prefill_ms
    if sparse.model_prefill_ms and dense.model_prefill_ms:
        sparse.model_prefill_speedup = dense.model_prefill_ms / sparse.model_prefill_ms
    if sparse.model_decode_tokens_per_s and dense.model_decode_tokens_per_s:
        sparse.model_decode_speedup = sparse.model_decode_tokens_per_s / dense.model_decode_tokens_per_s
