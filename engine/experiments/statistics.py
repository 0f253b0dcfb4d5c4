"""The statistics of a comparison: how many trials, paired ratios with bootstrap intervals and a
verdict (with fewer than three pairs: indicative), when a trial was disturbed, and the quality
cost of two next-token distributions."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
import torch

from engine.api.results import Quality, Result, Timing, Verdict

BUDGET_S = 20.0  # the planned pairs fill about this long...
SHORT_PAIRS = 5  # ...but at least this many...
MAX_BUDGET_S = 60.0  # ...as far as this holds them; pairs are added up to it while the interval is wide
MAX_TRIALS = 30
VERDICT_PAIRS = 3  # fewer pairs give an `indicative` ratio, never a verdict
DECIDED_WIDTH = 1.2  # a `same` interval wider than high/low = 1.2 (about +-9%) is worth more pairs
UNMEASURED_NOISE = 0.10  # one trial measures no noise: differences under 10% are called `same`
MIN_NOISE = 0.01  # no measurement is steadier than 1%
BOOTSTRAP = 2000
# A run during which other work took more than a tenth of a core, and more than the kernel's
# 10 ms ticks can blur (two reads), was disturbed: its pair is run again once.
DISTURBED_SHARE, DISTURBED_MIN_MS = 0.10, 30.0


@dataclass(frozen=True)
class TrialPlan:
    """How many paired trials: `planned` always (short of `budget_s`), more up to `most` while the
    timings are undecided and the budget allows."""

    planned: int
    most: int
    budget_s: float


def trial_plan(requested: int, first_a: Result, first_b: Result) -> TrialPlan:
    """Pairs sized by the warm-up runs: as many as BUDGET_S holds, at least SHORT_PAIRS, and no more
    than MAX_BUDGET_S holds (under VERDICT_PAIRS for a request that long: an indicative ratio).
    Asked for (`requested` > 0): exactly that many."""
    if requested > 0:
        return TrialPlan(requested, requested, math.inf)
    pair_s = (first_a.metrics.total_ms + first_b.metrics.total_ms) / 1000
    fits = max(1, math.floor(MAX_BUDGET_S / pair_s)) if pair_s > 0 else MAX_TRIALS
    planned = min(MAX_TRIALS, fits, max(SHORT_PAIRS, math.floor(BUDGET_S / pair_s) if pair_s > 0 else MAX_TRIALS))
    return TrialPlan(planned, MAX_TRIALS, MAX_BUDGET_S)


def decided(timings: list[Timing]) -> bool:
    """Whether more pairs would tell nothing new: each timing has a verdict, or an interval narrow
    enough to call `same` with confidence."""
    return all(t.verdict in ("faster", "slower") or t.high / t.low <= DECIDED_WIDTH for t in timings)


def disturbed(other_ms: float, wall_ms: float) -> bool:
    """Whether other work took enough CPU during a run (engine.platform.measure.OtherWork) to spoil it."""
    return other_ms > max(DISTURBED_MIN_MS, DISTURBED_SHARE * wall_ms)


def _spread(values: list[float]) -> float:
    """Relative run-to-run spread of one side: median absolute deviation over the median."""
    middle = statistics.median(values)
    return statistics.median(abs(v - middle) for v in values) / middle if middle else 0.0


def compare_timing(a: list[float], b: list[float], higher_is_better: bool = False) -> Timing:
    """B vs A over paired trials (a[i] and b[i] ran next to each other); above 1 = B faster."""
    pairs = np.array([(y / x) if higher_is_better else (x / y) for x, y in zip(a, b, strict=True)])
    ratio = float(np.median(pairs))
    if len(pairs) == 1:
        low = high = ratio
        noise = UNMEASURED_NOISE
    else:
        rng = np.random.default_rng(0)  # a fixed seed: the same trials always give the same interval
        medians = np.median(rng.choice(pairs, size=(BOOTSTRAP, len(pairs)), replace=True), axis=1)
        low, high = (float(x) for x in np.percentile(medians, [2.5, 97.5]))
        noise = max(MIN_NOISE, _spread(a), _spread(b))
    verdict: Verdict = "same"
    if len(pairs) < VERDICT_PAIRS:
        verdict = "indicative"
    elif low / (1 + noise) > 1:
        verdict = "faster"
    elif high * (1 + noise) < 1:
        verdict = "slower"
    return Timing(ratio, low, high, verdict, len(pairs), noise, list(a), list(b))


def distribution_quality(logp_a: torch.Tensor, logp_b: torch.Tensor, targets: torch.Tensor | None) -> Quality:
    """KL(A || B) per row, top-1 agreement, and (given the tokens A emitted) each side's perplexity."""
    kl = (logp_a.exp() * (logp_a - logp_b)).sum(-1).clamp_min(0)  # (rows,); clamp: rounding can go below 0
    top1 = (logp_a.argmax(-1) == logp_b.argmax(-1)).float()
    perplexity: list[float | None] = [None, None]
    if targets is not None:
        perplexity = [float(torch.exp(-lp.gather(-1, targets[:, None]).mean())) for lp in (logp_a, logp_b)]
    return Quality(float(kl.mean()), float(top1.mean()), perplexity[0], perplexity[1], tokens=logp_a.shape[0])
