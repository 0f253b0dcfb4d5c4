"""`python -m engine.bench load`: what loading another model costs the streams decoding meanwhile.

`--users` streams (default 4) decode chat answers on the embedded model; once every one has its
first token, a second model is loaded into the same engine, as a request for another tab's model
would load it (by default SmolLM2-360M at its real size with random weights, engine.bench.sizes:
a ~1.4 GB checkpoint read from disk), at `--precisions` like the streams (default `auto`). The
streams' compiled steps are compiled first, as on a warm server. Each stream's gaps between text
deltas, from when every stream has its first token (before, a gap holds another stream's prompt),
are split into those while the load ran and the rest: the table gives the usual gap (median
of the rest), the longest gap while loading, and their ratio, with the load's own time.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

from engine.api.events import Chunk
from engine.api.options import RunOptions
from engine.api.request import GenerationRequest, Message
from engine.attention.choice import DENSE
from engine.bench.report import percentile
from engine.bench.serve import QUESTIONS, Progress, warm
from engine.bench.sizes import built
from engine.experiments.figures import figure_panels
from engine.models.registry import DEFAULT_MODEL
from engine.runtime.engine import Engine
from engine.service import stream_request

LOADED = "smollm2-360m-instruct"  # engine.bench.sizes: the model the streams' engine loads meanwhile
SETTLE_S = 0.5  # of decoding alone, once every stream has its first token, before the load starts


@dataclass
class LoadRow:
    streams: int
    model: str  # what was loaded while they decoded
    precision: str
    load_s: float
    usual_gap_ms: float  # median gap between a stream's text deltas, outside the load
    p95_gap_ms: float  # outside the load
    longest_gap_loading_ms: float  # the longest gap that overlapped the load
    longest_over_usual: float
    tokens_during_load: int  # deltas the streams received while it ran


LOAD_COLUMNS = list(LoadRow.__dataclass_fields__)


def _stream(engine: Engine, options: RunOptions, question: str, going: threading.Semaphore) -> list[float]:
    """One user's answer: the times its text deltas arrived (`going` released at its first: it never
    waits for the others, which would stop its own deltas and show as a gap of the engine's)."""
    arrivals: list[float] = []
    request = GenerationRequest(options, messages=(Message("user", question),))
    for event in stream_request(request, engine):
        if isinstance(event, Chunk):
            arrivals.append(time.perf_counter())
            if len(arrivals) == 1:
                going.release()
    return arrivals


def load_table(
    model: str = DEFAULT_MODEL,
    precision: str = "auto",
    streams: int = 4,
    new_tokens: int = 192,
    loaded: str = LOADED,
    progress: Progress | None = None,
) -> list[LoadRow]:
    """One row: `streams` streams on `model` while `loaded` (a key of engine.bench.sizes.SIZES) loads."""
    if progress:
        progress(0.0, f"building {loaded} at its real size")
    location = built(loaded)
    engine = Engine()
    options = RunOptions(model=model, precision=precision, max_new_tokens=new_tokens)
    if progress:
        progress(0.2, "warming up")
    warm(engine, options, {DENSE: {streams}})  # compiled first: no compile runs beside the timings
    going = threading.Semaphore(0)
    with ThreadPoolExecutor(streams) as pool:
        answers = [pool.submit(_stream, engine, options, QUESTIONS[i % len(QUESTIONS)], going) for i in range(streams)]
        for _ in range(streams):
            going.acquire(timeout=600)
        everyone = time.perf_counter()  # before it, gaps hold the other streams' prompts
        time.sleep(SETTLE_S)
        if progress:
            progress(0.5, f"{streams} streams going: loading {loaded}")
        start = time.perf_counter()
        engine.get(location, precision)
        end = time.perf_counter()
        arrivals = [answer.result() for answer in answers]
    loading: list[float] = []
    usual: list[float] = []
    for times in arrivals:
        for before, after in pairwise(times):
            if before >= everyone:
                (loading if after > start and before < end else usual).append((after - before) * 1000)
    longest = max(loading, default=0.0)
    typical = statistics.median(usual)
    during = sum(start < t < end for times in arrivals for t in times)
    engine.models.clear()
    p95 = percentile(usual, 0.95)
    return [LoadRow(streams, loaded, precision, end - start, typical, p95, longest, longest / typical, during)]


def plot_load(rows: list[LoadRow], path) -> None:
    panels = [("usual_gap_ms", "gap between tokens (ms)")]
    with figure_panels(path, panels, (5.5, 3.6)) as pairs:
        for axes, (_, title) in pairs:
            labels = [f"{r.streams} streams, {r.model}" for r in rows]
            axes.bar([f"{label}\nusual" for label in labels], [r.usual_gap_ms for r in rows])
            axes.bar([f"{label}\nlongest, loading" for label in labels], [r.longest_gap_loading_ms for r in rows])
            axes.set(ylabel="ms", title=title)
