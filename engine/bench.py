"""Benchmarks (not tests): `python -m engine.bench`.

Two suites, each printing a table and, with `--out DIR`, writing JSON, CSV and a PNG plot:
- `attention` (default): sequence length x attention mode x precision. For each point the attention
  op alone at the model's shapes (one layer, prefill and one decode step) and the whole model
  (prefill ms, decode tokens/s, peak memory). Next to each sparse speedup: the theoretical limit,
  dense (query, key) pairs over the pairs the pattern allows.
- `precision`: per precision, cold load time, footprint, prefill, decode tokens/s, and greedy
  agreement with fp32 (what `auto` on CPU is chosen from).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from transformers.masking_utils import causal_mask_function

from .attention import PATTERNS, AttentionStats, pattern_for, use_attention
from .attention.hook import StudioMask, studio_attention
from .cache import ModelCache
from .errors import StudioError
from .loader import LoadedModel
from .metrics import PeakMemory, now
from .precision import resolve_device, supported_precisions
from .registry import DEFAULT_MODEL
from .service import run
from .types import GenerationRequest, SparseSettings

ASSETS = Path(__file__).resolve().parent.parent / "assets"
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


@dataclass
class PrecisionRow:
    precision: str
    load_s: float
    footprint_mb: float
    prefill_ms: float
    decode_tokens_per_s: float | None
    peak_memory_mb: float
    agreement_with_fp32: float  # share of identical greedy tokens
    text: str


def corpus_ids(tokenizer, length: int) -> torch.Tensor:
    """`length` token ids of real text (the long sample document, repeated as needed)."""
    ids = tokenizer(ASSETS.joinpath("long_document.txt").read_text())["input_ids"]
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


def precision_table(
    model: str = DEFAULT_MODEL,
    precisions: tuple[str, ...] | None = None,
    input_tokens: int = 256,
    new_tokens: int = 64,
    progress: Progress | None = None,
) -> list[PrecisionRow]:
    """Each precision loaded cold (own cache) and run on the same summarization-style prompt."""
    precisions = precisions or tuple(supported_precisions(resolve_device()))
    rows, reference = [], None
    for i, precision in enumerate(precisions):
        if progress:
            progress(i / len(precisions), f"{precision}")
        cache = ModelCache(budget_mb=0)  # a fresh cache: the load below is timed from disk
        loaded = cache.get(model, precision)
        text = loaded.tokenizer.decode(corpus_ids(loaded.tokenizer, input_tokens)[0])
        request = GenerationRequest(model=model, text=text, max_new_tokens=new_tokens, precision=precision)
        run(request, cache)  # warm-up: first-call allocations and kernel selection are not the steady state
        result = run(request, cache)
        if reference is None:
            reference = result.token_ids
        same = sum(a == b for a, b in zip(reference, result.token_ids, strict=False))
        m = result.metrics
        rows.append(
            PrecisionRow(
                precision=loaded.precision,
                load_s=loaded.load_seconds,
                footprint_mb=loaded.footprint_mb,
                prefill_ms=m.prefill_ms,
                decode_tokens_per_s=m.decode_tokens_per_s,
                peak_memory_mb=m.peak_memory_mb,
                agreement_with_fp32=same / max(len(reference), len(result.token_ids), 1),
                text=result.text,
            )
        )
        del cache, loaded
    return rows


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(rows: list, columns: list[str] | None = None) -> str:
    """A plain-text table of dataclass rows (all fields, or `columns`)."""
    if not rows:
        return "(no rows)"
    columns = columns or [f.name for f in fields(rows[0])]
    cells = [[_fmt(getattr(r, c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


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
PRECISION_COLUMNS = [
    "precision",
    "load_s",
    "footprint_mb",
    "prefill_ms",
    "decode_tokens_per_s",
    "peak_memory_mb",
    "agreement_with_fp32",
]


def plot_sweep(rows: list[SweepRow], path: Path) -> None:
    """Speed vs sequence length: attention op and whole-model prefill, dense and sparse, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("op_prefill_ms", "attention op, one layer (ms)"), ("model_prefill_ms", "whole-model prefill (ms)")]
    panels.append(("model_decode_tokens_per_s", "whole-model decode (tokens/s)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (column, title) in zip(axes, panels, strict=True):
        for precision in dict.fromkeys(r.precision for r in rows):
            for mode, style in (("dense", "o-"), ("sparse", "s--")):
                pts = [
                    (r.length, getattr(r, column))
                    for r in rows
                    if r.precision == precision and r.mode == mode and getattr(r, column) is not None
                ]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, label=f"{mode} {precision}")
        ax.set(title=title, xlabel="sequence length (tokens)", yscale="log" if column.endswith("_ms") else "linear")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r.length for r in rows}), [str(n) for n in sorted({r.length for r in rows})])
        ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_precisions(rows: list[PrecisionRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.precision for r in rows]
    panels = [("decode_tokens_per_s", "decode tokens/s"), ("prefill_ms", "prefill ms"), ("footprint_mb", "MB")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5))
    for ax, (column, title) in zip(axes, panels, strict=True):
        ax.bar(names, [getattr(r, column) or 0 for r in rows])
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(rows: list, out: Path, stem: str, plot: Callable[[list, Path], None], meta: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.csv", out / f"{stem}.png"]
    paths[0].write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    with paths[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(rows[0])])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    plot(rows, paths[2])
    return paths


def machine() -> dict:
    import platform

    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", default="attention", choices=("attention", "precision"))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--quick", action="store_true", help="a short sweep (about a minute on a laptop CPU)")
    parser.add_argument("--lengths", help="comma-separated sequence lengths (default 512..8192)")
    parser.add_argument("--precisions", help="comma-separated precisions (attention default fp32; precision: all)")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--sinks", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--pattern", default="auto", choices=("auto", *PATTERNS), help="sparse pattern")
    parser.add_argument("--decode-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--input-tokens", type=int, default=256, help="precision: prompt length")
    parser.add_argument("--new-tokens", type=int, default=64, help="precision: tokens generated")
    parser.add_argument("--op-only", action="store_true", help="attention op only, no whole-model runs")
    parser.add_argument("--out", type=Path, help="write JSON, CSV and PNG here")
    return parser


def _csv(text: str | None, cast=str) -> tuple | None:
    return tuple(cast(x.strip()) for x in text.split(",") if x.strip()) if text else None


def _report(message: str) -> Progress:
    return lambda fraction, what: print(f"[{fraction:4.0%}] {message}: {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.suite == "precision":
            rows = precision_table(
                args.model, _csv(args.precisions), args.input_tokens, args.new_tokens, _report("precision")
            )
            columns, stem, plot = PRECISION_COLUMNS, "precision", plot_precisions
            meta = {"model": args.model, "input_tokens": args.input_tokens, "new_tokens": args.new_tokens}
            meta["machine"] = machine()
        else:
            config = SweepConfig(
                model=args.model,
                settings=SparseSettings(
                    window=args.window, sinks=args.sinks, block_size=args.block_size, pattern=args.pattern
                ),
                decode_tokens=args.decode_tokens,
                repeats=args.repeats,
                whole_model=not args.op_only,
            )
            if args.quick:
                config = replace(config, lengths=QUICK_LENGTHS, repeats=2, decode_tokens=8, max_model_length=2048)
            config = replace(
                config,
                lengths=_csv(args.lengths, int) or config.lengths,
                precisions=_csv(args.precisions) or config.precisions,
            )
            rows = sweep(config, progress=_report("sweep"))
            columns, stem, plot = SWEEP_COLUMNS, "attention", plot_sweep
            meta = {"config": asdict(config), "machine": machine()}
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows, columns))
    if args.out:
        for path in write_outputs(rows, args.out, stem, plot, meta):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
