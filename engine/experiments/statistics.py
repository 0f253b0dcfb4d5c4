"""The statistics of a comparison: how many trials, paired ratios with bootstrap intervals and a
verdict, and the quality cost of two next-token distributions."""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch

from engine.api.results import Quality, Result, Timing, Verdict

BUDGET_S = 20.0  # timed trials fill about this long...
MIN_TRIALS = 3  # ...but at least this many, unless one run alone outlasts the budget (then one)
MAX_TRIALS = 20
UNMEASURED_NOISE = 0.10  # one trial measures no noise: differences under 10% are called `same`
MIN_NOISE = 0.01  # no measurement is steadier than 1%
BOOTSTRAP = 2000


def trial_count(requested: int, first_a: Result, first_b: Result) -> int:
    if requested > 0:
        return requested
    longest = max(first_a.metrics.total_ms, first_b.metrics.total_ms) / 1000
    if longest > BUDGET_S:
        return 1
    pair = (first_a.metrics.total_ms + first_b.metrics.total_ms) / 1000
    return min(MAX_TRIALS, max(MIN_TRIALS, math.floor(BUDGET_S / pair)))


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
    if low / (1 + noise) > 1:
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
