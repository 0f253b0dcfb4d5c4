"""`python -m engine.bench soak`: N mixed requests through the engine's front door, and where the
process's memory goes as they run.

A few users (threads) share the requests: the five installed tasks on short texts of varying
length, each request's task and text drawn by a seeded generator (the same N requests every run),
the tasks' default options (the embedded model, `auto` precision, dense attention). Every 25
requests the users pause and the engine settles: its batches retire and the background compiles
started so far finish, as in a server's quiet moments (with users always in flight no compile would
start). Then a row is read at rest: the process's resident memory next to the engine's own
accounting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil

from engine.api.frontends import installed_tasks
from engine.api.options import RunOptions
from engine.api.request import GenerationRequest
from engine.experiments.figures import figure_panels
from engine.models.registry import DEFAULT_MODEL
from engine.platform.heap import heap_mb
from engine.runtime.engine import Engine
from engine.service import precheck, run

Progress = Callable[[float, str], None]
TEXTS = [  # short user texts, one to a few sentences: each task reads them as its input
    "The meeting moved to Thursday.",
    "Our new bakery opens on Monday with fresh bread, pastries and coffee for the whole street.",
    "I loved the film: the acting was superb, the music moving, and the ending surprised everyone.",
    "The train was late again and nobody told us why.",
    "Write a function that returns the largest of three numbers.",
    "The city council voted to fund a new park with playgrounds, a pond and walking paths; "
    "construction starts in spring and should finish within a year.",
    "Sort a list of names by their length, shortest first.",
    "The weather will be sunny in the morning, with rain expected in the evening.",
    "Researchers found that walking every day improves sleep, mood and memory in older adults, "
    "and that even short walks help.",
    "Thank you for your help yesterday!",
    "Read a text file and count how many times each word appears.",
    "The product arrived broken and customer service never answered my emails.",
]
EVERY = 25  # requests between rows
SETTLE_S = 600.0  # the longest a row waits for the engine to settle (a compile takes a minute or two here)
SINCE = 100  # growth is measured from the row after this many requests: compiles and first uses are done


@dataclass
class SoakRow:
    requests: int  # done so far
    rss_mb: float  # the process's resident memory (psutil)
    heap_mb: float | None  # what malloc has handed out and not taken back (glibc; None elsewhere)
    models_mb: float  # the pool's count: weights plus batch caches (ModelPool.used_mb)
    caches_mb: float  # batch KV caches alive
    compiled_steps: int  # compiled decode steps, all models (at most STUDIO_MAX_COMPILED_STEPS each)
    admitted: int  # admissions the front door keeps for the runs that follow them
    failures: int  # requests that ended with an error, so far


SOAK_COLUMNS = list(SoakRow.__dataclass_fields__)


def plan(requests: int, new_tokens: int, model: str = DEFAULT_MODEL, seed: int = 0) -> list[GenerationRequest]:
    """`requests` requests, each a task and a text drawn by a generator seeded with `seed`."""
    tasks = installed_tasks()
    names = sorted(tasks)
    options = RunOptions(model=model, max_new_tokens=new_tokens)
    rng = random.Random(seed)
    return [tasks[rng.choice(names)].build(rng.choice(TEXTS), options) for _ in range(requests)]


def snapshot(engine: Engine, done: int, failures: int) -> SoakRow:
    """The process's memory and the engine's accounting now."""
    models = engine.models.loaded_models()
    return SoakRow(
        requests=done,
        rss_mb=psutil.Process().memory_info().rss / 2**20,
        heap_mb=heap_mb(),
        models_mb=engine.models.used_mb(),
        caches_mb=sum(m.batches.memory_bytes() for m in models if m.batches) / 2**20,
        compiled_steps=sum(m.compiled.kept() for m in models if m.compiled),
        admitted=len(engine.admitted),
        failures=failures,
    )


def _send(engine: Engine, request: GenerationRequest) -> bool:
    """One request as the app sends it (its validator's precheck, then the run); whether it failed."""
    try:
        precheck(request, engine)
        run(request, engine)
    except Exception:  # counted: a soak looks at memory, and a failure is part of what it saw
        return True
    return False


def _settled(engine: Engine) -> bool:
    """No batch alive and no compile under way."""
    models = engine.models.loaded_models()
    return not any(m.batches and m.batches.by_key for m in models) and not any(
        m.compiled and m.compiled.compiling() for m in models
    )


def _settle(engine: Engine) -> None:
    """With nothing in flight: wait until the batches have retired and the compiles started have
    finished, or SETTLE_S has passed."""
    deadline = time.monotonic() + SETTLE_S
    while not _settled(engine) and time.monotonic() < deadline:
        time.sleep(0.2)


def soak_table(
    model: str = DEFAULT_MODEL,
    requests: int = 500,
    users: int = 4,
    new_tokens: int = 64,
    progress: Progress | None = None,
) -> list[SoakRow]:
    """A row with the model loaded, then one every EVERY requests, read at rest."""
    engine = Engine()
    engine.get(model, "auto")
    planned = plan(requests, new_tokens, model)
    rows, failures = [snapshot(engine, 0, 0)], 0
    with ThreadPoolExecutor(users) as pool:
        for start in range(0, requests, EVERY):
            failures += sum(pool.map(lambda request: _send(engine, request), planned[start : start + EVERY]))
            _settle(engine)
            rows.append(snapshot(engine, min(start + EVERY, requests), failures))
            if progress:
                progress(rows[-1].requests / requests, f"{rows[-1].requests} requests, {rows[-1].rss_mb:.0f} MB")
    return rows


def growth(rows: list[SoakRow], since: int = SINCE) -> float | None:
    """Resident memory after the last request over that after request `since` (None: no row after it)."""
    base = next((r for r in rows if r.requests >= since), None)
    return rows[-1].rss_mb / base.rss_mb if base is not None and rows[-1].requests > base.requests else None


def plot_soak(rows: list[SoakRow], path) -> None:
    """Resident memory against requests done, with the parts the process and the engine account for."""
    lines = [("rss_mb", "resident (RSS)"), ("heap_mb", "malloc in use"), ("models_mb", "engine's models + caches")]
    with figure_panels(path, ["memory over a long run"], (6.5, 4)) as pairs:
        for axes, title in pairs:
            for column, label in lines:
                axes.plot([r.requests for r in rows], [getattr(r, column) or 0 for r in rows], marker="o", label=label)
            axes.set(xlabel="requests done", ylabel="MB", title=title, ylim=(0, None))
            axes.legend()
