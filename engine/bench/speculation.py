"""`python -m engine.bench speculation`: what prompt lookup buys per task, at 1 and N concurrent
streams, against plain decoding in the same run.

Tasks whose answer repeats its input gain (a summary quotes its document, an edit rewrites its
code); a chat question whose answer is all new text gains nothing and must lose little. Each task
runs greedy with speculation `none` (A) and `prompt_lookup` (B), the pairs interleaved so that drift
cancels; the table gives decode tokens/s (1 stream: each request's own rate; N streams: all new
tokens over the wave's wall time), B / A with its bootstrap interval, the share of guesses kept and
the tokens a step, and whether every B answer equals A's token for token (it must). Compiled steps
(plain and checking, for 1 and N rows) are compiled before the timings, as a warm server runs them.
"""

from __future__ import annotations

import inspect
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
from engine.runtime.batching import STEP_TOKENS
from engine.runtime.compile import CompiledDecode
from engine.runtime.engine import Engine
from engine.runtime.step import step_rows, step_width

Progress = Callable[[float, str], None]
DOCUMENT_TOKENS = 880  # "~1k tokens" that, with the template and a 120-token summary, fit a 1024 bucket


@dataclass
class SpeculationRow:
    task: str
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
    same_output: bool  # every speculating answer equals the plain one, token for token
    trials: int


SPECULATION_COLUMNS = [
    "task", "streams", "input_tokens", "new_tokens", "plain_tokens_per_s", "speculating_tokens_per_s", "ratio",
    "ratio_low", "ratio_high", "kept", "tokens_per_step", "same_output", "trials",
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


def _compile(engine: Engine, model: str, precision: str, tokens: int, streams: tuple[int, ...], lookahead: int) -> None:
    """The steps the timings take, compiled first: plain and checking, per row count."""
    loaded = engine.get(model, precision)
    if loaded.compiled is None or not loaded.compiled.enabled:
        return
    for count in streams:
        rows = step_rows(count, loaded.compiled.capacity)
        budget = STEP_TOKENS // rows
        widths = [1] + ([min(step_width(1 + lookahead), 1 << (budget.bit_length() - 1))] if budget >= 2 else [])
        for width in widths:
            engine.runner.call(partial(_compile_step, loaded.compiled, tokens, count, width))  # the engine's thread


def _compile_step(compiled: CompiledDecode, tokens: int, batch: int, width: int, report: object) -> None:
    compiled.compile_now(tokens, batch=batch, width=width)


def speculation_table(
    model: str = DEFAULT_MODEL,
    precision: str = "auto",
    streams: tuple[int, ...] = (1, 8),
    trials: int = 3,
    progress: Progress | None = None,
) -> list[SpeculationRow]:
    engine = Engine()
    precision = resolve_precision(precision, engine.device, get_spec(model))
    tokenizer = engine.get(model, precision).tokenizer
    prompts = task_prompts(tokenizer)
    rows: list[SpeculationRow] = []
    for i, (task, (message, new_tokens)) in enumerate(prompts.items()):
        if progress:
            progress(i / len(prompts), task)
        plain = GenerationRequest(
            RunOptions(model=model, precision=precision, max_new_tokens=new_tokens),
            messages=(Message("user", message),),
        )
        fast = replace(plain, options=replace(plain.options, speculation="prompt_lookup"))
        input_tokens = single_result(plain, engine).metrics.input_tokens or 0
        _compile(engine, model, precision, input_tokens + new_tokens, streams, fast.options.lookahead)
        for count in streams:
            a, b = interleaved(partial(_wave, engine, plain, count), partial(_wave, engine, fast, count), trials)
            rate_a, rate_b = [_rate(*wave) for wave in a], [_rate(*wave) for wave in b]
            timing = compare_timing(rate_a, rate_b, higher_is_better=True)
            answers = [r for wave, _ in b for r in wave]
            reference = a[0][0][0].token_ids
            rows.append(
                SpeculationRow(
                    task, count, input_tokens, new_tokens, statistics.median(rate_a), statistics.median(rate_b),
                    timing.ratio, timing.low, timing.high,
                    sum(r.metrics.accepted_tokens for r in answers) / max(1, sum(r.metrics.proposed_tokens for r in answers)),
                    statistics.mean((r.metrics.new_tokens - 1) / max(1, r.metrics.decode_steps) for r in answers),
                    all(r.token_ids == reference for wave, _ in (*a, *b) for r in wave), trials,
                )
            )  # fmt: skip
    return rows


def plot_speculation(rows: list[SpeculationRow], path: Path) -> None:
    with figure_panels(path, [("ratio", "Prompt lookup / plain decode tokens/s")], (7, 3.6)) as [(axes, (_, title))]:
        labels = [f"{r.task}\n{r.streams} stream{'s' if r.streams > 1 else ''}" for r in rows]
        axes.bar(labels, [r.ratio for r in rows], yerr=[[r.ratio - r.ratio_low for r in rows],
                 [r.ratio_high - r.ratio for r in rows]], color="C0")  # fmt: skip
        axes.axhline(1.0, color="grey", linewidth=0.8)
        axes.set(ylabel="speed-up (x)", title=title)
        axes.tick_params(axis="x", labelsize=7)
