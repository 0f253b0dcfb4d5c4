"""`python -m engine.bench serve`: N simulated users at once against the engine, continuous batching
against one request at a time, in the same run.

Each user is a thread that sends its requests one after another through the engine's front door
(engine.service, as the app does), each a different chat question, greedy. Per user count and mode
the table gives the aggregate output speed (all new tokens over the wall time), latency and time to
first token as each user saw them (p50, p95), how many sequences shared each decode step, and the
decode path. "one-at-a-time" is the same engine with a batch capacity of 1 (STUDIO_MAX_BATCH=1);
"batched, half sparse" has every other user on sparse attention, in the same batches (each row
attends by its own choice: engine.runtime.step.step_choice).
Compiled steps are compiled before the timings (each mode its own), so both run what a warm server runs.
A seq2seq model's users send each question as a text to translate or summarize (their tasks' requests).

`serve_sizes` runs the same table on the registry's Space defaults built at their real sizes with
random weights (engine.bench.sizes: the hub is out of reach here).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest, Message
from engine.api.results import Result
from engine.attention.choice import DENSE, AttentionChoice, SparseSettings, StepChoice
from engine.bench.report import percentile
from engine.bench.sizes import SIZES, built
from engine.experiments.figures import figure_panels
from engine.models.loader import LoadedModel
from engine.models.precision_menu import PRECISION_BY_NAME
from engine.models.registry import DEFAULT_MODEL
from engine.runtime.engine import Engine
from engine.runtime.step import bucket_for, step_choice, step_key
from engine.service import Chunk, stream_request

Progress = Callable[[float, str], None]
QUESTIONS = [
    "What is the capital of France, and what is it known for?",
    "Give me three tips for writing clean Python code.",
    "Explain what a transformer model is in two sentences.",
    "Why is the sky blue?",
    "Write a haiku about the sea.",
    "What are the health benefits of walking every day?",
    "How do I make a simple tomato sauce?",
    "Describe the water cycle briefly.",
    "What is the difference between a list and a tuple in Python?",
    "Suggest a name for a small bakery and say why.",
    "Summarize the plot of Romeo and Juliet in a few lines.",
    "What should I pack for a weekend hiking trip?",
    "How does a bicycle stay upright?",
    "Explain recursion to a ten-year-old.",
    "What are three good habits for better sleep?",
    "Why do leaves change colour in autumn?",
]
MODES = {"batched": None, "one-at-a-time": 1}  # batch capacity: the settings' default, or 1
MIXED = "batched, half sparse"  # the batched engine, every other user on sparse attention
SPARSE_WINDOW = 32  # under the 256-token bucket: sparse rows then attend otherwise than dense ones


@dataclass
class ServeRow:
    model: str
    mode: str  # batched | one-at-a-time
    users: int
    requests: int
    failures: int
    wall_s: float
    tokens: int  # new tokens of every request
    tokens_per_s: float  # all new tokens over the wall time: the aggregate decode throughput
    vs_one_user: float  # tokens_per_s over the same mode's one-user row
    latency_p50_s: float  # per request, as its user saw it: submit to Result
    latency_p95_s: float
    ttft_p50_s: float  # submit to first text
    ttft_p95_s: float
    mean_batch: float  # sequences per decode step the requests took part in, on average
    decode_path: str  # the most common path (compiled | eager | mixed)


SERVE_COLUMNS = list(ServeRow.__dataclass_fields__)


def _user(engine: Engine, requests: list[GenerationRequest]) -> list[tuple[float, float, Result] | Exception]:
    """One user: its requests one after another; per request (latency, ttft, Result) or the error."""
    seen: list[tuple[float, float, Result] | Exception] = []
    for request in requests:
        start, first = time.perf_counter(), None
        try:
            for event in stream_request(request, engine):
                if isinstance(event, Chunk) and first is None:
                    first = time.perf_counter() - start
                elif isinstance(event, Result):
                    latency = time.perf_counter() - start
                    seen.append((latency, first if first is not None else latency, event))
        except Exception as exc:  # counted as a failure, as a user would see it
            seen.append(exc)
    return seen


def _request(options: RunOptions, question: str, loaded: LoadedModel) -> GenerationRequest:
    """A user's request: the question as a chat turn, or for a seq2seq model as the text itself, its
    answer begun with the token its generation config forces first (BART's BOS, which the engine
    leaves to the model: a trained one picks it; random weights, engine.bench.sizes, would repeat the
    start token, BART's EOS, and end every answer at once)."""
    if loaded.spec.family == "seq2seq":
        forced = loaded.model.generation_config.forced_bos_token_id
        return GenerationRequest(options, text=question, answer_start=() if forced is None else (forced,))
    return GenerationRequest(options, messages=(Message("user", question),))


def serve_round(
    engine: Engine,
    label: str,
    mode: str,
    users: int,
    per_user: int,
    options: RunOptions,
    half_sparse: bool = False,
) -> ServeRow:
    """`half_sparse`: every other user asks for sparse attention."""
    sparse = replace(options, attention="sparse", window=SPARSE_WINDOW, sinks=4)
    loaded = engine.get(options.model, options.precision)
    plans = [
        [
            _request(
                sparse if half_sparse and u % 2 else options, QUESTIONS[(u * per_user + i) % len(QUESTIONS)], loaded
            )
            for i in range(per_user)
        ]
        for u in range(users)
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        outcomes = [item for seen in pool.map(lambda plan: _user(engine, plan), plans) for item in seen]
    wall = time.perf_counter() - start
    done = [o for o in outcomes if not isinstance(o, Exception)]
    latencies, ttfts = [o[0] for o in done] or [0.0], [o[1] for o in done] or [0.0]
    results = [o[2] for o in done]
    tokens = sum(r.metrics.new_tokens for r in results)
    return ServeRow(
        model=label,
        mode=mode,
        users=users,
        requests=len(outcomes),
        failures=len(outcomes) - len(done),
        wall_s=wall,
        tokens=tokens,
        tokens_per_s=tokens / wall,
        vs_one_user=1.0,
        latency_p50_s=statistics.median(latencies),
        latency_p95_s=percentile(latencies, 0.95),
        ttft_p50_s=statistics.median(ttfts),
        ttft_p95_s=percentile(ttfts, 0.95),
        mean_batch=statistics.fmean(r.metrics.batch_size for r in results) if results else 0.0,
        decode_path=Counter(r.metrics.decode_path for r in results).most_common(1)[0][0] if results else "",
    )


def warm(engine: Engine, options: RunOptions, steps: dict[StepChoice, set[int]]) -> None:
    """Load, compile the steps the rounds will use (per attention choice, the batch sizes), and run
    once: first-call costs are not timed."""
    loaded = engine.get(options.model, options.precision)
    if loaded.compiled is not None and PRECISION_BY_NAME[loaded.precision].compiles:
        loaded.compiled.enabled = False  # no background compile starts during the timings
        tokens = 64 + options.max_new_tokens
        for choice, batch in [(c, b) for c, batches in steps.items() for b in sorted(batches)]:
            step = (tokens, choice, batch)
            # on the engine's thread; mypy cannot infer a lambda whose default binds the loop's value
            engine.runner.call(lambda _, step=step: loaded.compiled.compile_now(*step))  # type: ignore[misc]
    _user(engine, [_request(options, QUESTIONS[0], loaded)])


def serve_table(
    model: str = DEFAULT_MODEL,
    precision: str = "auto",
    users: tuple[int, ...] = (1, 2, 4, 8, 16),
    per_user: int = 2,
    new_tokens: int = 64,
    progress: Progress | None = None,
    label: str | None = None,
) -> list[ServeRow]:
    """Per mode, a row per user count; the batched mode also runs the largest count that fits one
    batch with every other user on sparse attention: what mixing costs. `label`: the model's name in
    the rows (default: `model`)."""
    options = RunOptions(model=model, precision=precision, max_new_tokens=new_tokens)
    bucket = bucket_for(64 + new_tokens)  # warm's: a chat question's prompt and answer
    sparse = step_key(bucket, AttentionChoice("sparse", SparseSettings(window=SPARSE_WINDOW, sinks=4)))[1]
    mixed_step = step_choice([DENSE, sparse])[0]
    rows: list[ServeRow] = []
    for m, (mode, capacity) in enumerate(MODES.items()):
        engine = Engine(max_batch=capacity)
        sizes = {min(u, engine.max_batch) for u in users}
        mixed = max((u for u in users if 1 < u <= engine.max_batch), default=0) if capacity is None else 0
        if progress:
            progress(m / len(MODES), f"{mode}: loading and compiling")
        # the half-sparse round's steps: both kinds of rows, and the sparse ones alone as the round ends
        half = {r for r in (mixed // 2, mixed) if r > 1}  # a mixed step has two rows at least
        rounds: dict[StepChoice, set[int]] = {mixed_step: half, sparse: {max(1, mixed // 2)}} if mixed else {}
        warm(engine, options, {DENSE: sizes, **rounds})
        first = len(rows)
        for i, count in enumerate(users):
            if progress:
                progress((m + i / len(users)) / len(MODES), f"{mode}: {count} users")
            rows.append(serve_round(engine, label or model, mode, count, per_user, options))
        if mixed:
            rows.append(serve_round(engine, label or model, MIXED, mixed, per_user, options, half_sparse=True))
        one = next((r for r in rows[first:] if r.users == 1), rows[first])
        rows[first:] = [replace(r, vs_one_user=r.tokens_per_s / one.tokens_per_s) for r in rows[first:]]
        engine.models.clear()
    return rows


def serve_sizes(
    precision: str = "auto",
    users: tuple[int, ...] = (1, 8),
    per_user: int = 2,
    new_tokens: int = 64,
    progress: Progress | None = None,
    names: tuple[str, ...] = tuple(SIZES),
) -> list[ServeRow]:
    """serve_table for each of the Space defaults `names`, built at its real size (engine.bench.sizes)."""
    rows: list[ServeRow] = []
    for i, name in enumerate(names):
        if progress:
            progress(i / len(names), f"{name}: building at its real size")
        rows += serve_table(built(name), precision, users, per_user, new_tokens, progress, label=name)
    return rows


def plot_serve(rows: list[ServeRow], path) -> None:
    panels = [("tokens_per_s", "aggregate output (tokens/s)"), ("latency_p95_s", "p95 latency (s)")]
    models = list(dict.fromkeys(r.model for r in rows))
    with figure_panels(path, panels, (5.5, 3.6)) as pairs:
        for axes, (column, title) in pairs:
            for model, mode in [(model, mode) for model in models for mode in MODES]:
                mine = [r for r in rows if r.mode == mode and r.model == model]
                label = mode if len(models) == 1 else f"{model}, {mode}"
                axes.plot([r.users for r in mine], [getattr(r, column) for r in mine], marker="o", label=label)
            axes.set(xlabel="concurrent users", ylabel=title, title=title, xscale="log")
            axes.legend()
