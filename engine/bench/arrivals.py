"""`python -m engine.bench arrivals`: what new users' prompts cost the streams decoding meanwhile, per
prefill chunk (engine.runtime.causal: a prompt prefilled `chunk` tokens between two steps; 0: whole).

`--users` streams (default 4) decode chat answers on the embedded model, each asking its next
question when an answer ends, with their compiled steps compiled first, as on a warm server. Once
every one streams, they decode `QUIET_S` undisturbed; then `--arrivals` users (default 8) come, evenly
over `SPREAD_S`, each asking a chat question for `--new-tokens` tokens (default 8: their prefill is
what is measured; their own decoding is the batch growing, which `serve` measures), after
`--context-words` words of a passage (default none: a chat prompt of ~40 tokens). Per chunk size,
in the same run: the streams' gaps between text deltas (within an answer) before the arrivals and
while they arrive (from the first arrival to the last one's first token), their p95s and ratio, the
longest gap, and the arrivals' time to first token, which chunks lengthen.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import cast

from engine.api.events import Chunk
from engine.api.options import RunOptions
from engine.api.request import GenerationRequest, Message
from engine.api.results import Result
from engine.attention.choice import DENSE
from engine.bench.report import percentile
from engine.bench.serve import QUESTIONS, Progress, warm
from engine.experiments.figures import figure_panels
from engine.models.registry import DEFAULT_MODEL
from engine.runtime.engine import Engine
from engine.service import stream_request

PASSAGE = (  # what an arriving user asks about, repeated to the prompt length asked for (`context_words`)
    "The town council met on Tuesday to discuss the new bridge over the river. Engineers presented three "
    "designs, each with a different cost and timeline, and residents asked about traffic during the works. "
    "The council agreed to publish the designs online and to hold a vote next month after a public hearing. "
)
QUIET_S = 2.0  # the streams alone, before anyone arrives
SPREAD_S = 4.0  # the arrivals come evenly over this long
CHUNKS = (0, 8, 16, 32)


@dataclass
class ArrivalsRow:
    prefill_chunk: int  # tokens of a new prompt a step (0: whole prompts)
    streams: int
    arrivals: int
    arrival_input_tokens: float  # mean prompt tokens of an arrival
    quiet_p50_gap_ms: float  # the streams' gaps before the arrivals
    quiet_p95_gap_ms: float
    arriving_p95_gap_ms: float  # gaps that overlapped the arrivals
    p95_over_quiet: float
    longest_gap_ms: float  # while they arrived
    arrival_ttft_p50_ms: float


ARRIVALS_COLUMNS = list(ArrivalsRow.__dataclass_fields__)


Answer = tuple[float, list[float]]  # when it was asked, when each of its text deltas came


def _stream(
    engine: Engine, options: RunOptions, first: int, going: threading.Barrier, stop: threading.Event
) -> list[Answer]:
    """One user asking question after question until `stop`."""
    answers: list[Answer] = []
    asked = first
    while not stop.is_set():
        request = GenerationRequest(options, messages=(Message("user", QUESTIONS[asked % len(QUESTIONS)]),))
        arrivals: list[float] = []
        answers.append((time.perf_counter(), arrivals))
        events = stream_request(request, engine)
        for event in events:
            if isinstance(event, Chunk):
                arrivals.append(time.perf_counter())
                if len(answers) == 1 and len(arrivals) == 1:
                    going.wait(timeout=600)
            if stop.is_set():
                cast(Generator, events).close()  # the request leaves the batch at the next step
                break
        asked += 1
    return answers


def _arrive(engine: Engine, options: RunOptions, question: str, context_words: int) -> tuple[float, Result]:
    """One arriving user (a question after `context_words` words of a passage): its time to first token
    and its Result."""
    if context_words:
        words = (PASSAGE * (1 + context_words // len(PASSAGE.split()))).split()[:context_words]
        question = " ".join(words) + "\n\n" + question
    sent, first = time.perf_counter(), None
    request = GenerationRequest(options, messages=(Message("user", question),))
    for event in stream_request(request, engine):
        if isinstance(event, Chunk) and first is None:
            first = time.perf_counter()
        if isinstance(event, Result):
            return (first or time.perf_counter()) - sent, event
    raise RuntimeError("the arrival's stream ended without a result")


def arrivals_round(
    engine: Engine,
    options: RunOptions,
    chunk: int,
    streams: int,
    arrivals: int,
    arrival_tokens: int,
    context_words: int = 0,
) -> ArrivalsRow:
    """One round at one prefill chunk size on a warm engine."""
    engine.runner.prefill_chunk = chunk
    going, stop = threading.Barrier(streams + 1), threading.Event()
    arriving = replace(options, max_new_tokens=arrival_tokens)
    with ThreadPoolExecutor(streams + arrivals) as pool:
        users = [pool.submit(_stream, engine, options, i, going, stop) for i in range(streams)]
        going.wait(timeout=600)
        quiet_from = time.perf_counter()
        time.sleep(QUIET_S)
        start = time.perf_counter()
        came = []
        for i in range(arrivals):
            time.sleep(max(0.0, start + i * SPREAD_S / arrivals - time.perf_counter()))
            question = QUESTIONS[(streams + i) % len(QUESTIONS)]
            came.append(pool.submit(_arrive, engine, arriving, question, context_words))
        answered = [c.result() for c in came]
        end = max(start + ttft for ttft, _ in answered)  # the last arrival's first token, at the latest
        stop.set()
        answers = [answer for user in users for answer in user.result()]
    # A stream's next question is a prompt arriving too: quiet gaps are those beside none of them
    asking = [(asked, times[0]) for asked, times in answers if times and asked > quiet_from]
    quiet, during = [], []
    for _, times in answers:
        for before, after in pairwise(times):
            gap = (after - before) * 1000
            if after > start and before < end:
                during.append(gap)
            elif quiet_from <= before and after <= start and all(after <= a or before >= b for a, b in asking):
                quiet.append(gap)
    quiet_p95, during_p95 = percentile(quiet, 0.95), percentile(during, 0.95)
    return ArrivalsRow(
        prefill_chunk=chunk,
        streams=streams,
        arrivals=arrivals,
        arrival_input_tokens=statistics.fmean(r.metrics.input_tokens or 0 for _, r in answered),
        quiet_p50_gap_ms=statistics.median(quiet),
        quiet_p95_gap_ms=quiet_p95,
        arriving_p95_gap_ms=during_p95,
        p95_over_quiet=during_p95 / quiet_p95,
        longest_gap_ms=max(during),
        arrival_ttft_p50_ms=statistics.median(ttft for ttft, _ in answered) * 1000,
    )


def arrivals_table(
    model: str = DEFAULT_MODEL,
    precision: str = "auto",
    chunks: tuple[int, ...] = CHUNKS,
    streams: int = 4,
    arrivals: int = 8,
    new_tokens: int = 8,
    context_words: int = 0,
    progress: Progress | None = None,
) -> list[ArrivalsRow]:
    """A row per prefill chunk size, on one warm engine."""
    engine = Engine()
    options = RunOptions(model=model, precision=precision, max_new_tokens=256)
    if progress:
        progress(0.0, "warming up")
    # the steps the rounds run (a compiled step's rows: a power of two): the streams, and with arrivals
    warm(engine, options, {DENSE: {streams, engine.max_batch}})
    rows = []
    for i, chunk in enumerate(chunks):
        if progress:
            progress(0.1 + 0.9 * i / len(chunks), f"prefill chunk {chunk or 'whole'}")
        rows.append(arrivals_round(engine, options, chunk, streams, arrivals, new_tokens, context_words))
    engine.models.clear()
    return rows


def plot_arrivals(rows: list[ArrivalsRow], path) -> None:
    panels = [("gaps", "streams' p95 gap between tokens (ms)"), ("ttft", "arrivals' time to first token (ms)")]
    with figure_panels(path, panels, (5.0, 3.6)) as pairs:
        labels = [str(r.prefill_chunk or "whole") for r in rows]
        for axes, (name, title) in pairs:
            if name == "gaps":
                axes.plot(labels, [r.quiet_p95_gap_ms for r in rows], marker="o", label="no arrivals")
                axes.plot(labels, [r.arriving_p95_gap_ms for r in rows], marker="o", label="while users arrive")
                axes.legend()
            else:
                axes.bar(labels, [r.arrival_ttft_p50_ms for r in rows])
            axes.set(xlabel="prefill chunk (tokens)", ylabel="ms", title=title)
