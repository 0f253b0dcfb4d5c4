"""`python -m engine.bench speculation`: what each guesser (prompt_lookup, draft, auto) buys per
task, at 1 and N concurrent streams, against plain decoding in the same run.

Tasks whose answer repeats its input gain from prompt lookup (a summary quotes its document, an edit
rewrites its code); a chat question whose answer is all new text gains nothing from it and must lose
little (auto); a draft model gains wherever it agrees with the model. Each task runs greedy with
speculation `none` (A) and each guesser (B), the pairs interleaved so that drift cancels; the table
gives decode tokens/s (1 stream: each request's own rate; N streams: all new tokens over the wave's
wall time), B / A with its bootstrap interval, the share of guesses kept, the tokens a step, the
draft's share of the decode time, and whether every B answer equals A's token for token (it must).
Compiled steps (plain and checking for 1 and N rows, the draft's plain ones) are compiled before the
timings, as a warm server runs them.
"""

from __future__ import annotations

import inspect
import itertools
import statistics
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from engine.api.options import RunOptions
from engine.api.request import GenerationRequest, Message
from engine.api.results import Result
from engine.bench.decode import PROMPT, single_result
from engine.data import long_document
from engine.experiments.compare import interleaved
from engine.experiments.figures import figure_panels
from engine.experiments.statistics import compare_timing
from engine.models.precision import resolve_precision
from engine.models.registry import DEFAULT_MODEL, get_spec
from engine.platform.errors import InputError
from engine.runtime.compile import CompiledDecode
from engine.runtime.engine import Engine
from engine.runtime.speculation import STEP_TOKENS
from engine.runtime.step import step_rows, step_width

Progress = Callable[[float, str], None]
DOCUMENT_TOKENS = 880  # "~1k tokens" that, with the template and a 120-token summary, fit a 1024 bucket


GUESSERS = ("prompt_lookup", "draft", "auto")


@dataclass
class SpeculationRow:
    task: str
    speculation: str  # B's guesser
    streams: int
    input_tokens: int
    new_tokens: int  # per request
    plain_tokens_per_s: float  # median of the trials
    speculating_tokens_per_s: float
    ratio: float  # speculating / plain, from the paired trials
    ratio_low: float  # bootstrap interval of the ratio
    ratio_high: float
    kept: float  # accepted / proposed guesses
    tokens_per_step: float  # new tokens (after the first) per decode step
    draft_share: float  # draft: its steps' share of the decode time
    # every speculating answer equals a plain answer, token for token: with 1 stream the plain one; with
    # N, one of the plain waves', which can differ by row (fp32 batched matmuls round by row block)
    same_output: bool
    trials: int


SPECULATION_COLUMNS = [
    "task", "speculation", "streams", "input_tokens", "new_tokens", "plain_tokens_per_s", "speculating_tokens_per_s",
    "ratio", "ratio_low", "ratio_high", "kept", "tokens_per_step", "draft_share", "same_output", "trials",
]  # fmt: skip


def _document(tokenizer) -> str:
    ids = tokenizer(long_document())["input_ids"][:DOCUMENT_TOKENS]
    return tokenizer.decode(ids, skip_special_tokens=True)


def task_prompts(tokenizer) -> dict[str, tuple[str, int]]:
    """Per task, the user's message and the new tokens it asks for. The code is a real function of
    Python's standard library (textwrap's line wrapper, ~60 lines), so nothing here is made up."""
    code = textwrap.dedent(inspect.getsource(textwrap.TextWrapper._wrap_chunks))
    paragraph = long_document().split("\n\n")[0]
    return {
        "summarize": (f"Summarize this text in a few sentences.\n\n{_document(tokenizer)}", 120),
        "code edit": (f"Rewrite this function with type hints. Reply with the code only.\n\n{code}", 256),
        "chat": (PROMPT, 128),
        "translation": (f"Translate this text into French.\n\n{paragraph}", 128),
    }


def _wave(engine: Engine, request: GenerationRequest, streams: int) -> tuple[list[Result], float]:
    """`streams` copies of the request at once: their Results and all their new tokens a second."""
    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(lambda _: single_result(request, engine), range(streams)))
    wall = time.perf_counter() - start
    return results, sum(r.metrics.new_tokens for r in results) / wall


def _rate(results: list[Result], aggregate: float) -> float:
    """One stream: the request's own decode rate; several: the wave's aggregate."""
    if len(results) > 1:
        return aggregate
    rate = results[0].metrics.decode_tokens_per_s
    assert rate is not None  # every request here decodes many tokens
    return rate


def _compile(engine: Engine, options: RunOptions, tokens: int, streams: tuple[int, ...], drafts: bool) -> None:
    """The steps the timings take, compiled first: plain and checking per row count (every width up
    to the widest, which auto may narrow to), and the draft's steps where a draft guesses."""
    loaded = engine.get(options.model, options.precision)
    if loaded.compiled is None or not loaded.compiled.enabled:
        return
    draft = engine.get(options.model, options.draft_precision).compiled if drafts else None
    for count in streams:
        rows = step_rows(count, loaded.compiled.capacity)
        budget = STEP_TOKENS // rows
        widest = min(step_width(1 + options.lookahead), 1 << (budget.bit_length() - 1)) if budget >= 2 else 1
        steps = [(loaded.compiled, 1 << i) for i in range(widest.bit_length())]
        if draft is not None and draft.enabled and budget >= 2:
            steps.append((draft, 1))
        for compiled, width in steps:
            engine.runner.call(partial(_compile_step, compiled, tokens, count, width))  # the engine's thread


def _compile_step(compiled: CompiledDecode, tokens: int, batch: int, width: int, report: object) -> None:
    compiled.compile_now(tokens, batch=batch, width=width)


def speculation_table(
    model: str = DEFAULT_MODEL,
    precision: str = "auto",
    streams: tuple[int, ...] = (1, 8),
    trials: int = 3,
    progress: Progress | None = None,
    guessers: tuple[str, ...] = GUESSERS,
    tasks: tuple[str, ...] = (),
) -> list[SpeculationRow]:
    """A row per task (`tasks`: those of task_prompts, default all), guesser and stream count. A draft
    needs a cheaper precision than the model's (RunOptions.draft_precision, gguf-q8): with the model at
    that precision, draft rows are left out."""
    engine = Engine()
    precision = resolve_precision(precision, engine.device, get_spec(model))
    base = RunOptions(model=model, precision=precision)
    if base.draft_precision == precision and "draft" in guessers:
        print(f"draft: left out, the model runs at the draft's own precision ({precision}); try --precisions fp32")
        guessers = tuple(g for g in guessers if g != "draft")
    prompts = task_prompts(engine.get(model, precision).tokenizer)
    if unknown := set(tasks) - set(prompts):
        raise InputError(f"Unknown task {', '.join(sorted(unknown))}; choose from {', '.join(prompts)}.")
    prompts = {task: prompt for task, prompt in prompts.items() if not tasks or task in tasks}
    rows: list[SpeculationRow] = []
    for i, (task, (message, new_tokens)) in enumerate(prompts.items()):
        if progress:
            progress(i / len(prompts), task)
        plain = GenerationRequest(replace(base, max_new_tokens=new_tokens), messages=(Message("user", message),))
        input_tokens = single_result(plain, engine).metrics.input_tokens or 0
        _compile(engine, plain.options, input_tokens + new_tokens, streams, "draft" in guessers)
        for guesser, count in itertools.product(guessers, streams):
            fast = replace(plain, options=replace(plain.options, speculation=guesser))
            a, b = interleaved(partial(_wave, engine, plain, count), partial(_wave, engine, fast, count), trials)
            rows.append(_row(task, guesser, count, input_tokens, new_tokens, a, b, trials))
    return rows


Waves = list[tuple[list[Result], float]]  # per trial: the wave's Results and its aggregate tokens/s


def _row(task: str, guesser: str, count: int, input_tokens: int, new_tokens: int, a: Waves, b: Waves,
         trials: int) -> SpeculationRow:  # fmt: skip
    rate_a, rate_b = [_rate(*wave) for wave in a], [_rate(*wave) for wave in b]
    timing = compare_timing(rate_a, rate_b, higher_is_better=True)
    answers = [r.metrics for wave, _ in b for r in wave]
    plain_answers = {tuple(r.token_ids) for wave, _ in a for r in wave}
    decode_s = sum(m.total_ms - (m.prefill_ms or 0) for m in answers) / 1000
    return SpeculationRow(
        task, guesser, count, input_tokens, new_tokens, statistics.median(rate_a), statistics.median(rate_b),
        timing.ratio, timing.low, timing.high,
        sum(m.accepted_tokens for m in answers) / max(1, sum(m.proposed_tokens for m in answers)),
        statistics.mean((m.new_tokens - 1) / max(1, m.decode_steps) for m in answers),
        sum(m.draft_ms for m in answers) / 1000 / decode_s if decode_s > 0 else 0.0,
        all(tuple(r.token_ids) in plain_answers for wave, _ in b for r in wave), trials,
    )  # fmt: skip


def plot_speculation(rows: list[SpeculationRow], path: Path) -> None:
    with figure_panels(path, [("ratio", "Speculating / plain decode tokens/s")], (9, 3.8)) as [(axes, (_, title))]:
        labels = [f"{r.task}\n{r.speculation}\n{r.streams} stream{'s' if r.streams > 1 else ''}" for r in rows]
        axes.bar(labels, [r.ratio for r in rows], yerr=[[r.ratio - r.ratio_low for r in rows],
                 [r.ratio_high - r.ratio for r in rows]], color="C0")  # fmt: skip
        axes.axhline(1.0, color="grey", linewidth=0.8)
        axes.set(ylabel="speed-up (x)", title=title)
        axes.tick_params(axis="x", labelsize=7)
