"""Comparisons as experiments: A and B (differing in one setting) run interleaved over several
trials after a warm-up; each timing gets a median ratio, an interval and a verdict, and B's quality
cost is measured teacher-forced on A's output (engine.experiments.quality).

The trials run alone twice over: each run is scheduled `alone`, and the whole timed span holds the
process's background work (engine.runtime.background: no compile advances, its processes are
suspended). What other processes still take is measured per run, from the moment the engine starts
it (Metrics.other_work_ms: not while it waits for other users' requests to end):
a disturbed pair is run again once. Pairs are added while an interval is too wide to decide and the
time budget allows (engine.experiments.statistics.trial_plan).

Why this shape: one dense run followed by one sparse run reported 0.82x-1.55x "speedups" for
identical kernels on this project's CPU. Alternating the order (A B, then B A, ...) cancels drift
and order effects, pairing each A with the B next to it cancels slow load changes, and a verdict
of `same` is given whenever the interval, widened by each side's own run-to-run noise, holds 1.
Every run is scheduled `alone` (engine.runtime.scheduler): other users' requests wait, rather than share
its steps and its timings; a remote server's runs too, so a server on the same machine has its CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

from engine.api.events import Chunk
from engine.api.results import Comparison, Result, Timing
from engine.backends import Admission, Run
from engine.experiments.quality import Scored, Scorer, agreement, score_sides
from engine.experiments.statistics import (
    TrialPlan,
    compare_timing,
    decided,
    disturbed,
    trial_plan,
)
from engine.models.embedded import ProgressFn
from engine.runtime.engine import Engine

T = TypeVar("T")


def _run(run: Run) -> Iterator[Chunk | Result]:
    """One run, alone: its text deltas as they arrive, then the Result."""
    for item in run.backend.stream(run, alone=True):
        yield item if isinstance(item, Result) else Chunk(item, run.label)


def _last(items: Iterator) -> Result:
    *_, result = items
    return result


def interleaved(
    a: Callable[[], T],
    b: Callable[[], T],
    trials: int,
    warmup: bool = True,
    on_trial: Callable[[int], None] | None = None,
) -> tuple[list[T], list[T]]:
    """(A results, B results) of `trials` paired runs whose order alternates (A B, B A, ...) so drift
    and order effects cancel; after one untimed run of each if `warmup`."""
    if warmup:
        a(), b()
    results: tuple[list[T], list[T]] = ([], [])
    order = [(a, results[0]), (b, results[1])]
    for trial in range(trials):
        if on_trial:
            on_trial(trial)
        for run, into in order if trial % 2 == 0 else order[::-1]:
            into.append(run())
    return results


@dataclass(frozen=True)
class Trial:
    """One timed run, and the CPU ms other work took while it ran (None: not measured, a server's run)."""

    result: Result
    other_ms: float | None

    @property
    def disturbed(self) -> bool:
        return self.other_ms is not None and disturbed(self.other_ms, self.result.metrics.total_ms)


@dataclass(frozen=True)
class Pair:
    a: Trial
    b: Trial
    redone: bool = False  # run again: the first time, other work disturbed it

    @property
    def disturbed(self) -> bool:
        return self.a.disturbed or self.b.disturbed

    @property
    def other_ms(self) -> float | None:
        measured = [t.other_ms for t in (self.a, self.b) if t.other_ms is not None]
        return max(measured) if measured else None


def timed_pairs(
    a: Callable[[], Trial],
    b: Callable[[], Trial],
    plan: TrialPlan,
    settled: Callable[[list[Pair]], bool],
    on_pair: Callable[[int, int], None] | None = None,
) -> list[Pair]:
    """Paired trials in alternating order (A B, B A, ...): the plan's pairs, then more while not
    `settled` and the budget holds another; a disturbed pair is run again once, and the rerun kept."""
    pairs: list[Pair] = []
    started = time.perf_counter()
    while len(pairs) < plan.most:
        spent = time.perf_counter() - started
        if len(pairs) >= plan.planned and (settled(pairs) or spent * (len(pairs) + 1) / len(pairs) > plan.budget_s):
            break
        if on_pair:
            on_pair(len(pairs), plan.planned)
        a_first = len(pairs) % 2 == 0
        kept = _pair(a, b, a_first)
        if kept.disturbed:
            kept = replace(_pair(a, b, a_first), redone=True)
        pairs.append(kept)
    return pairs


def _pair(a: Callable[[], Trial], b: Callable[[], Trial], a_first: bool) -> Pair:
    if a_first:
        trial_a = a()
        return Pair(trial_a, b())
    trial_b = b()
    return Pair(a(), trial_b)


def _timing(a_runs: list[Result], b_runs: list[Result], name: str, higher_is_better: bool = False) -> Timing | None:
    """B vs A on one metric over the paired trials; None when a side lacks the measure (a decode of
    under two tokens, a server that reports no prefill)."""
    a, b = [getattr(r.metrics, name) for r in a_runs], [getattr(r.metrics, name) for r in b_runs]
    return None if None in a + b else compare_timing(a, b, higher_is_better)


def run_comparison(
    admission: Admission, engine: Engine, progress: ProgressFn | None = None
) -> Iterator[Chunk | Comparison]:
    """Yield the warm-up trial's text deltas as they stream (A, then B), then the Comparison."""
    report = progress or (lambda fraction, message: None)
    run_a, run_b = admission.runs
    loaded_a = run_a.backend.load(run_a.request.options, progress)  # None: a server's side
    loaded_b = run_b.backend.load(run_b.request.options, progress)
    # Each side's prompt tokenized once, for every trial and the quality scoring
    run_a = replace(run_a, prompt=run_a.backend.prompt(run_a.request))
    run_b = replace(run_b, prompt=run_b.backend.prompt(run_b.request))
    first: dict[str, Result] = {}
    for fraction, run in ((0.0, run_a), (0.05, run_b)):
        # The warm-up run streams its text (the outputs shown come from it); its timings are not used.
        report(fraction, f"warm-up: {run.label}")
        for item in _run(run):
            if isinstance(item, Result):
                first[run.label] = item
            else:
                yield item
    first_a, first_b = first[run_a.label], first[run_b.label]

    def timings(pairs: list[Pair]) -> list[Timing]:
        a_runs, b_runs = [p.a.result for p in pairs], [p.b.result for p in pairs]
        first_token = _timing(a_runs, b_runs, "prefill_ms") or _timing(a_runs, b_runs, "ttft_ms")
        return [t for t in (first_token, _timing(a_runs, b_runs, "total_ms")) if t is not None]

    plan = trial_plan(admission.request.options.trials, first_a, first_b)
    with engine.background.hold():
        pairs = timed_pairs(
            _trial(run_a, measured=loaded_a is not None),
            _trial(run_b, measured=loaded_b is not None),
            plan,
            settled=lambda pairs: decided(timings(pairs)),
            on_pair=lambda done, planned: report(
                0.1 + 0.8 * min(done / planned, 1), f"trial {done + 1} of {max(planned, done + 1)}"
            ),
        )
    a_runs, b_runs = [p.a.result for p in pairs], [p.b.result for p in pairs]
    report(0.9, "quality: B scores A's output")
    local = loaded_a or loaded_b
    token_agreement, parted_at = agreement(first_a, first_b, local.tokenizer if local else None)
    if loaded_a is None or loaded_b is None:
        scored = Scored(None, "a remote server sends text, not the probabilities of A's tokens.")
    else:
        scorers = (Scorer.of_run(loaded_a, run_a), Scorer.of_run(loaded_b, run_b))
        scored = engine.runner.call(lambda _: score_sides(*scorers, first_a, first_b, parted_at))
    report(1.0, "done")
    yield Comparison(
        axis=admission.axis or "",
        a_label=run_a.label,
        b_label=run_b.label,
        a=first_a,
        b=first_b,
        prefill=_timing(a_runs, b_runs, "prefill_ms"),
        ttft=compare_timing([r.metrics.ttft_ms for r in a_runs], [r.metrics.ttft_ms for r in b_runs]),
        decode=_timing(a_runs, b_runs, "decode_tokens_per_s", higher_is_better=True),
        total=compare_timing([r.metrics.total_ms for r in a_runs], [r.metrics.total_ms for r in b_runs]),
        quality=scored.quality,
        token_agreement=token_agreement,
        first_divergence=parted_at,
        density=first_b.metrics.density,
        quality_note=scored.note,
        other_work_ms=[ms for p in pairs if (ms := p.other_ms) is not None],
        redone=sum(p.redone for p in pairs),
        disturbed=sum(p.disturbed for p in pairs),
        divergence=scored.divergence,
    )


def _trial(run: Run, measured: bool) -> Callable[[], Trial]:
    """One timed run of a side; a local side's with the CPU other work took meanwhile."""

    def trial() -> Trial:
        result = _last(_run(run))  # run alone: the engine measures other work from its start (Ticket)
        return Trial(result, result.metrics.other_work_ms if measured else None)

    return trial
