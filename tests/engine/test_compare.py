"""The statistics of a comparison: paired ratios, intervals, verdicts, and how many trials run."""

from __future__ import annotations

import itertools

import pytest

from engine.api.results import Metrics, Result
from engine.experiments.compare import Pair, Trial, timed_pairs
from engine.experiments.statistics import (
    DECIDED_WIDTH,
    MAX_TRIALS,
    SHORT_PAIRS,
    UNMEASURED_NOISE,
    TrialPlan,
    compare_timing,
    decided,
    trial_plan,
)


def test_identical_timings_are_the_same():
    timing = compare_timing([100, 104, 98, 101, 99], [101, 99, 103, 100, 98])
    assert timing.verdict == "same" and timing.low <= 1 <= timing.high and timing.trials == 5


def test_a_clear_gap_is_faster_or_slower_with_an_interval_around_it():
    faster = compare_timing([200, 205, 198, 202], [100, 101, 99, 103])  # B takes half the time
    assert faster.verdict == "faster" and 1.9 < faster.low <= faster.ratio <= faster.high < 2.1
    slower = compare_timing([100, 101, 99, 103], [200, 205, 198, 202])
    assert slower.verdict == "slower" and slower.high < 0.53


def test_rates_count_higher_as_faster():
    assert compare_timing([10.0, 10.2, 9.9], [20.0, 20.1, 19.8], higher_is_better=True).verdict == "faster"


def test_a_gap_inside_the_noise_is_the_same():
    # B is 3% faster on the median pair, but each side on its own moves by ~10% from run to run
    timing = compare_timing([100, 112, 90, 101, 110], [97, 109, 88, 98, 106])
    assert timing.noise > 0.05 and timing.ratio > 1 and timing.verdict == "same"


def test_under_three_pairs_is_indicative_never_faster_or_slower():
    assert compare_timing([100], [105]).noise == UNMEASURED_NOISE
    assert compare_timing([100], [50]).verdict == "indicative"
    assert compare_timing([100, 101], [50, 51]).verdict == "indicative"
    assert compare_timing([100, 101, 99], [50, 51, 50]).verdict == "faster"


def test_a_wide_same_is_undecided_and_a_narrow_one_or_a_verdict_is_decided():
    wide = compare_timing([100, 130, 90, 140, 95], [120, 100, 125, 90, 130])
    assert wide.verdict == "same" and wide.high / wide.low > DECIDED_WIDTH and not decided([wide])
    narrow = compare_timing([100, 101, 99, 100, 102], [100, 100, 101, 99, 101])
    assert decided([narrow]) and not decided([narrow, wide])
    assert decided([compare_timing([200, 205, 198], [100, 101, 99])])


def _result(total_ms: float) -> Result:
    metrics = Metrics(1, 1, None, total_ms, 1, 0, 1, 1, "cpu", "fp32", "dense")
    return Result("", metrics)


@pytest.mark.parametrize(
    ("requested", "a_ms", "b_ms", "planned"),
    [
        (5, 100, 100, 5),  # asked for: exactly that many
        (0, 500, 500, 20),  # short runs fill the budget
        (0, 4000, 4000, SHORT_PAIRS),  # at least five pairs...
        (0, 12_000, 12_000, 2),  # ...as far as the longest budget holds them (2 pairs: indicative)
        (0, 61_000, 1000, 1),  # one pair outlasts it: one
    ],
)
def test_trial_plan(requested, a_ms, b_ms, planned):
    plan = trial_plan(requested, _result(a_ms), _result(b_ms))
    assert plan.planned == planned and plan.most == (requested or MAX_TRIALS)


def _trials(totals, other_ms=None):
    """A side whose runs take `totals` ms in turn, with `other_ms` of other work during each."""
    values = iter(totals)
    others = iter(other_ms) if other_ms is not None else itertools.repeat(0.0)
    return lambda: Trial(_result(next(values)), next(others))


def test_a_disturbed_pair_is_run_again_once_and_the_rerun_kept():
    a = _trials([100, 100, 101, 99], other_ms=[0, 0, 0, 0])
    b = _trials([300, 100, 100, 100], other_ms=[90, 0, 0, 0])  # the first B run shared the CPU
    pairs = timed_pairs(a, b, TrialPlan(3, 3, 60.0), settled=lambda _: True)
    assert [p.redone for p in pairs] == [True, False, False]
    assert [p.b.result.metrics.total_ms for p in pairs] == [100, 100, 100] and not any(p.disturbed for p in pairs)


def test_pairs_alternate_their_order():
    calls = []

    def side(name):
        return lambda: calls.append(name) or Trial(_result(100), None)

    timed_pairs(side("a"), side("b"), TrialPlan(3, 3, 60.0), settled=lambda _: True)
    assert calls == ["a", "b", "b", "a", "a", "b"]


def test_pairs_are_added_while_undecided_up_to_the_most():
    a, b = _trials(itertools.repeat(100)), _trials(itertools.repeat(100))
    seen = []

    def settled(pairs: list[Pair]) -> bool:
        seen.append(len(pairs))
        return len(pairs) >= 7

    assert len(timed_pairs(a, b, TrialPlan(5, 30, 60.0), settled)) == 7 and seen == [5, 6, 7]
    assert len(timed_pairs(a, b, TrialPlan(5, 6, 60.0), lambda _: False)) == 6  # the most, undecided
    assert len(timed_pairs(a, b, TrialPlan(2, 30, 0.0), lambda _: False)) == 2  # no budget left for more
