"""The statistics of a comparison: paired ratios, intervals, verdicts, and how many trials run."""

from __future__ import annotations

import pytest

from engine.api.results import Metrics, Result
from engine.experiments.statistics import MIN_TRIALS, UNMEASURED_NOISE, compare_timing, trial_count


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


def test_one_trial_has_no_measured_noise():
    assert compare_timing([100], [105]).verdict == "same" and compare_timing([100], [105]).noise == UNMEASURED_NOISE
    assert compare_timing([100], [50]).verdict == "faster"


def _result(total_ms: float) -> Result:
    metrics = Metrics(1, 1, None, total_ms, 1, 0, 1, 1, "cpu", "fp32", "dense")
    return Result("", metrics)


@pytest.mark.parametrize(
    ("requested", "a_ms", "b_ms", "expected"),
    [
        (5, 100, 100, 5),  # asked for: exactly that many
        (0, 500, 500, 20),  # short runs fill the budget (capped)
        (0, 4000, 4000, MIN_TRIALS),  # at least three
        (0, 25_000, 1000, 1),  # one run alone outlasts the budget
    ],
)
def test_trial_count(requested, a_ms, b_ms, expected):
    assert trial_count(requested, _result(a_ms), _result(b_ms)) == expected
