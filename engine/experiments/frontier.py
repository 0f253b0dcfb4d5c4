"""The speed-quality frontier of sparse attention at decode: `python -m engine.bench frontier`.

For each long real text and length: the prompt (`length` - STEPS tokens) is prefilled the way a
request with that pattern would be, then the text's next STEPS tokens are fed one decode step at a
time (teacher forcing), so the cache ends `length` long and fills its length bucket exactly. Each pattern's next-token distributions are compared with dense attention's on the same
tokens: mean KL(dense || pattern), top-1 agreement and perplexity. On sampled layers, a probe reads
what each step kept and measures the attention-mass recall: the share of dense attention
probability that falls on the kept keys, averaged over heads and steps, and the density, the share
of keys kept. Prefill and decode step times are measured on the same runs: decode as the median
ratio of paired steps with an interval (engine.experiments.statistics's statistics), prefill from one run each.
With `compiled`, the decode steps are timed again through the compiled step each pattern's requests
would use (engine.runtime.compile), after compiling it; quality and the probe always come from eager steps.

Patterns at the same budget (keys each decode step reads, a share of the length): the sliding
window with sinks spends it all on the most recent keys; Quest keeps a LOCAL_WINDOW and picks the
rest by content, page by page, after a dense prefill; block top-k decodes as Quest does but also
prefills sparsely, each query block reading the LOCAL_WINDOW and the key blocks its pooled scores pick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.util import find_spec
from pathlib import Path

import torch

from engine.attention.choice import DENSE, AttentionChoice, AttentionStats, SparseSettings
from engine.attention.content import PAGE
from engine.attention.context import probe_attention
from engine.data import long_document
from engine.experiments.figures import figure_panels
from engine.experiments.statistics import compare_timing, distribution_quality
from engine.experiments.sweep import Progress
from engine.models.loader import LoadedModel
from engine.platform.errors import InputError
from engine.runtime.engine import Engine, default_engine
from engine.runtime.kv_cache import RowCache
from engine.runtime.step import bucket_for, decode_step, keeps_pages, step_key

LENGTHS = (2048, 4096, 8192)
QUICK_LENGTHS = (2048, 4096)
DENSITIES = (0.06, 0.12)  # budgets: keys each decode step reads, as a share of the prompt
STEPS = 24  # teacher-forced decode steps scored per text and length
SINKS = 4
LOCAL_WINDOW = 64  # Quest's own recent keys; the rest of its budget goes to pages
PATTERNS = ("sliding_sinks", "quest", "block_topk")
PROBED_LAYERS = 4  # layers whose steps the probe measures, spread over the depth


def texts() -> dict[str, str]:
    """Two long real texts of different kinds, offline: English prose (the sample document, then
    Python's reference documentation that ships with the interpreter) and code (the standard
    library's argparse module)."""
    import pydoc_data.topics

    prose = long_document() + "\n\n" + "\n\n".join(pydoc_data.topics.topics.values())
    spec = find_spec("argparse")
    assert spec is not None and spec.origin is not None  # a standard library module, from its source file
    code = Path(spec.origin).read_text()
    return {"prose": prose, "code": code}


@dataclass
class FrontierRow:
    text: str
    length: int
    pattern: str
    budget: int  # keys each decode step may read (dense: all)
    density: float  # share of the keys before each step that it kept (measured on the probed layers)
    kl_mean: float
    top1_agreement: float
    perplexity: float | None  # None only when no tokens are scored (distribution_quality); here they are
    perplexity_dense: float | None
    mass_recall: float  # share of dense attention probability on the kept keys (probed layers, all heads)
    prefill_ms: float
    prefill_speedup: float  # dense prefill ms / this pattern's (one run each)
    decode_ms: float  # median decode step
    decode_speedup: float  # median of paired step ratios, dense / this pattern; above 1 = faster
    decode_low: float
    decode_high: float
    decode_verdict: str
    decode_path: str  # eager | compiled: which decode step the timings are of


FRONTIER_COLUMNS = [
    "text", "length", "pattern", "budget", "density", "kl_mean", "top1_agreement", "perplexity", "mass_recall",
    "prefill_speedup", "decode_ms", "decode_speedup", "decode_low", "decode_high", "decode_verdict", "decode_path",
]  # fmt: skip


def settings_for(pattern: str, budget: int) -> SparseSettings:
    """`budget` keys per decode step: the sliding window spends all but the sinks on recent keys;
    the content patterns keep LOCAL_WINDOW recent keys and whole pages for the rest."""
    if pattern in ("quest", "block_topk"):
        pages = max(1, (budget - SINKS - LOCAL_WINDOW) // PAGE)
        return SparseSettings(window=LOCAL_WINDOW, sinks=SINKS, pattern=pattern, budget=pages * PAGE)
    return SparseSettings(window=budget - SINKS, sinks=SINKS, pattern=pattern)


@dataclass
class _Run:
    logprobs: torch.Tensor  # (STEPS, vocab): the next-token distributions at the scored positions
    prefill_ms: float
    step_ms: list[float]
    kept: list[float]  # probed: share of keys kept, per (layer, step)
    recall: list[float]  # probed: share of dense attention mass on them, per (layer, step, head)


def _probe(layers: set[int], kept: list[float], recall: list[float]):
    def probe(layer: int, query, key, rows, keep) -> None:
        if layer not in layers:
            return
        heads, kv_heads, dim = query.shape[1], key.shape[1], query.shape[-1]
        q = query[0, :, 0].float().reshape(kv_heads, heads // kv_heads, dim)
        probs = torch.softmax((q @ key[0].float().transpose(-1, -2)) * dim**-0.5, dim=-1)  # (Hkv, G, L)
        counted = keep[0, :, 0, :].expand(kv_heads, -1).float()
        if rows is None:  # the rule over the whole cache
            chosen = counted
        else:  # a row may be listed twice (clamped, or in the sinks and the window): counted if any says so
            chosen = torch.zeros(kv_heads, key.shape[2]).scatter_reduce_(1, rows[0], counted, reduce="amax")
        kept.append(float(chosen.mean()))
        recall.extend((probs * chosen[:, None, :]).sum(-1).flatten().tolist())

    return probe


def _run(
    loaded: LoadedModel, ids: torch.Tensor, length: int, choice: AttentionChoice, layers: set[int], compiled: bool
) -> _Run:
    """Prefill `length` tokens of `ids` with `choice`, then STEPS - 1 teacher-forced decode steps
    (eager, or the compiled step, compiled first)."""
    model = loaded.model
    bucket = bucket_for(length + STEPS)
    step = None
    if compiled:  # the step is traced on caches of the batch capacity: this cache takes that shape
        key = step_key(bucket, choice)
        if (key, 1, 1) not in loaded.compiled.compile_seconds:  # once per step: each compile holds its memory
            loaded.compiled.compile_now(length + STEPS, choice)
        step = loaded.compiled.step(key, 1)
        if step is None:
            raise RuntimeError(f"the decode step did not compile: {loaded.compiled.failures}")
    rows = loaded.compiled.capacity if compiled else 1
    cache = RowCache(model.config.num_hidden_layers, rows, bucket, pages=keeps_pages(choice))
    kept: list[float] = []
    recall: list[float] = []
    with torch.inference_mode(), probe_attention(_probe(layers, kept, recall)):
        cache.prefill(0)
        start = time.perf_counter()
        out = model(input_ids=ids[:, :length], position_ids=torch.arange(length)[None], past_key_values=cache,
                    use_cache=True, logits_to_keep=1, studio_choice=replace(choice, stats=AttentionStats()))  # fmt: skip
        prefill_ms = (time.perf_counter() - start) * 1000
        logits, step_ms = [out.logits[0, -1].float()], []
        for t in range(STEPS - 1):
            position, token = torch.tensor([length + t]), ids[:, length + t : length + t + 1]
            start = time.perf_counter()
            if step is not None:
                logits.append(step.run(token, position, cache)[0].float())
            else:
                cache.decode(position, length + t + 1)
                logits.append(decode_step(model, token, position, cache, choice)[0].float())
            step_ms.append((time.perf_counter() - start) * 1000)
    return _Run(torch.log_softmax(torch.stack(logits), -1), prefill_ms, step_ms, kept, recall)


def _measured(loaded: LoadedModel, ids, prompt: int, choice: AttentionChoice, layers: set[int], compiled: bool):
    """(the eager run, the run whose decode steps are timed: the compiled one with `compiled`)."""
    eager = _run(loaded, ids, prompt, choice, layers, compiled=False)
    return eager, (_run(loaded, ids, prompt, choice, layers, compiled=True) if compiled else eager)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 1.0


def _row(
    text: str, length: int, pattern: str, budget: int, run: _Run, dense: _Run, targets, timed: tuple[_Run, _Run]
) -> FrontierRow:
    """`run` against `dense` (eager); decode timings from `timed`: (dense's, the pattern's) timed runs."""
    quality = distribution_quality(dense.logprobs, run.logprobs, targets)
    decode = compare_timing(timed[0].step_ms, timed[1].step_ms)
    prefill = compare_timing([dense.prefill_ms], [run.prefill_ms])
    return FrontierRow(
        text=text, length=length, pattern=pattern, budget=budget, density=_mean(run.kept),
        kl_mean=quality.kl_mean, top1_agreement=quality.top1_agreement, perplexity=quality.perplexity_b,
        perplexity_dense=quality.perplexity_a, mass_recall=_mean(run.recall), prefill_ms=run.prefill_ms,
        prefill_speedup=prefill.ratio, decode_ms=sorted(timed[1].step_ms)[len(timed[1].step_ms) // 2],
        decode_speedup=decode.ratio, decode_low=decode.low, decode_high=decode.high, decode_verdict=decode.verdict,
        decode_path="compiled" if timed[1] is not run else "eager",
    )  # fmt: skip


def frontier(
    model: str,
    precision: str = "auto",
    lengths: tuple[int, ...] = LENGTHS,
    densities: tuple[float, ...] = DENSITIES,
    engine: Engine | None = None,
    progress: Progress | None = None,
    compiled: bool = False,
) -> list[FrontierRow]:
    """Rows per text x length: dense, then each pattern at each budget (see the module docstring)."""
    engine = engine or default_engine()
    loaded = engine.get(model, precision)
    report = progress or (lambda fraction, what: None)
    # Timed alone, background compiles held; not while compiling its own steps, which the dynamo lock a
    # held compile keeps would stall (engine.runtime.background)
    with engine.background.hold() if not compiled else engine.in_flight.serving():
        return engine.runner.call(lambda _: _frontier(loaded, lengths, densities, report, compiled), alone=True)


def _frontier(
    loaded: LoadedModel, lengths, densities, report: Callable[[float, str], None], compiled: bool
) -> list[FrontierRow]:
    depth = loaded.model.config.num_hidden_layers
    layers = {round(i * (depth - 1) / (PROBED_LAYERS - 1)) for i in range(PROBED_LAYERS)}
    rows: list[FrontierRow] = []
    corpus = {name: loaded.tokenizer(text)["input_ids"] for name, text in texts().items()}
    points = [(name, length) for name in corpus for length in lengths]
    for done, (name, length) in enumerate(points):
        prompt = length - STEPS
        ids = torch.tensor([corpus[name][:length]], device=loaded.device)
        if ids.shape[1] < length:
            raise InputError(f"The {name} text has only {ids.shape[1]} tokens in this tokenizer; pick shorter lengths.")
        targets = ids[0, prompt:]

        report(done / len(points), f"{name}, {length} tokens: dense")
        dense, dense_timed = _measured(loaded, ids, prompt, DENSE, layers, compiled)
        rows.append(_row(name, length, "dense", length, dense, dense, targets, (dense_timed, dense_timed)))
        for density in densities:
            budget = round(density * length)
            for pattern in PATTERNS:
                report(done / len(points), f"{name}, {length} tokens: {pattern} at {budget} keys")
                choice = AttentionChoice("sparse", settings_for(pattern, budget))
                run, timed = _measured(loaded, ids, prompt, choice, layers, compiled)
                rows.append(_row(name, length, pattern, budget, run, dense, targets, (dense_timed, timed)))
    report(1.0, "done")
    return rows


def plot_frontier(rows: list[FrontierRow], path: Path) -> None:
    """Per length (columns): decode speedup (top) and prefill speedup (bottom) against mean KL to
    dense, one marker per pattern, both texts; each text's Pareto front (no other point on it both
    faster and closer to dense) joined by a line."""
    from matplotlib.ticker import NullFormatter

    lengths = sorted({r.length for r in rows})
    panels = [(phase, length) for phase in ("decode", "prefill") for length in lengths]
    with figure_panels(path, panels, (4.5, 3.8), columns=len(lengths)) as pairs:
        for ax, (phase, length) in pairs:
            points = [r for r in rows if r.length == length and r.pattern != "dense"]

            def speed(row: FrontierRow, phase=phase) -> float:
                return getattr(row, f"{phase}_speedup")

            for pattern, marker in zip(PATTERNS, "os^", strict=True):
                mine = [r for r in points if r.pattern == pattern]
                ax.scatter([max(r.kl_mean, 1e-4) for r in mine], [speed(r) for r in mine], marker=marker,
                           label=pattern)  # fmt: skip
                for r in mine:
                    ax.annotate(f"{r.text} {r.density:.0%}", (max(r.kl_mean, 1e-4), speed(r)), fontsize=6)
            for text, style in zip(sorted({r.text for r in points}), ("k--", "k:"), strict=False):
                same = [r for r in points if r.text == text]  # a front compares points on one text
                front = sorted((p for p in same if not any(q.kl_mean < p.kl_mean and speed(q) > speed(p)
                                                           for q in same)), key=lambda r: r.kl_mean)  # fmt: skip
                ax.plot([max(r.kl_mean, 1e-4) for r in front], [speed(r) for r in front], style, lw=0.8,
                        label=f"Pareto front, {text}")  # fmt: skip
            ax.axhline(1.0, color="grey", lw=0.5)
            ax.set(xscale="log", xlabel="mean KL to dense (log)", ylabel=f"{phase} speedup vs dense",
                   title=f"{length} tokens: {phase}")  # fmt: skip
            ax.xaxis.set_minor_formatter(NullFormatter())  # the decade labels only: minor ones overlap
            ax.legend(fontsize=7)
