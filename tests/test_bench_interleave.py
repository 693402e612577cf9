"""The benches' interleaved rounds: run order, ratios to adjacent baselines, medians, verdicts."""

from __future__ import annotations

import math

import pytest
from bench.interleave import Interval, bracketed_ratios, median_interval, schedule, verdict


def test_schedule_puts_every_state_between_two_baseline_runs_and_shuffles_each_round():
    """Each round runs every state once, each with a baseline run on both sides; the order
    changes between rounds and is the same for the same seed."""
    order = schedule("B", ["x", "y", "z"], rounds=20, seed=3)
    assert len(order) == 20 * 6 + 1
    assert order[::2] == ["B"] * 61
    rounds = [tuple(order[1 + 6 * r : 6 * (r + 1) : 2]) for r in range(20)]
    assert all(sorted(r) == ["x", "y", "z"] for r in rounds)
    assert len(set(rounds)) > 1
    assert schedule("B", ["x", "y", "z"], rounds=20, seed=3) == order
    with pytest.raises(ValueError, match="at least 1, not 0"):
        schedule("B", ["x"], rounds=0)
    with pytest.raises(ValueError, match="'B' is not one of the states"):
        schedule("B", ["B", "x"], rounds=1)


def test_ratios_use_the_geometric_mean_of_the_baseline_runs_right_before_and_after():
    """A state's run is divided by the geometric mean of its two neighbouring baseline runs,
    not by farther ones; at an end the one neighbour there is serves."""
    runs = [("B", 100.0), ("x", 50.0), ("B", 25.0), ("y", 40.0), ("B", 400.0), ("x", 7.0)]
    got = bracketed_ratios(runs, "B")
    assert got["x"] == pytest.approx([50 / 50, 7 / 400])
    assert got["y"] == pytest.approx([40 / 100])


def test_ratios_survive_a_missing_or_zero_baseline():
    """No baseline run: no ratio; a baseline of 0 gives NaN rather than an error."""
    assert bracketed_ratios([("x", 1.0)], "B") == {"x": []}
    got = bracketed_ratios([("B", 0.0), ("x", 1.0), ("B", 0.0)], "B")
    assert math.isnan(got["x"][0])


@pytest.mark.parametrize(
    ("n", "low_rank", "coverage"),
    [(8, 2, 1 - 2 * 9 / 256), (10, 2, 1 - 2 * 11 / 1024), (12, 3, 1 - 2 * 79 / 4096)],
)
def test_median_interval_takes_the_narrowest_order_statistics_covering_90_percent(
    n, low_rank, coverage
):
    """The interval runs from the k-th smallest to the k-th largest value, k as large as the
    sign test allows for 90% coverage; the median is the middle value."""
    values = [float(v) for v in range(n, 0, -1)]  # n..1, unsorted on purpose
    got = median_interval(values, 0.9)
    assert got.low == low_rank and got.high == n + 1 - low_rank
    assert got.coverage == pytest.approx(coverage) and got.coverage >= 0.9
    assert got.median == pytest.approx((n + 1) / 2)
    assert got.n == n


def test_median_interval_with_few_values_spans_them_all_and_says_its_coverage():
    """Below 5 values no interval reaches 90%: min to max, with the coverage it has; NaNs
    are dropped; no values at all is an empty summary, not an error."""
    got = median_interval([3.0, math.nan, 1.0, 2.0])
    assert (got.median, got.low, got.high, got.n) == (2.0, 1.0, 3.0, 3)
    assert got.coverage == pytest.approx(0.75)
    assert median_interval([]).n == 0 and str(median_interval([])) == "no data"
    with pytest.raises(ValueError, match="coverage must be in"):
        median_interval([1.0], 1.0)


@pytest.mark.parametrize(
    ("low", "median", "high", "at_most", "expected"),
    [
        (0.96, 0.98, 1.01, False, "met"),
        (0.90, 0.92, 0.94, False, "missed"),
        (0.93, 0.96, 0.99, False, "cannot tell at this noise (median leans met)"),
        (0.90, 0.94, 0.99, False, "cannot tell at this noise (median leans missed)"),
        (1.00, 1.10, 1.19, True, "met"),
        (1.21, 1.30, 1.40, True, "missed"),
        (1.10, 1.25, 1.40, True, "cannot tell at this noise (median leans missed)"),
    ],
)
def test_verdict_is_met_or_missed_only_when_the_whole_interval_agrees(
    low, median, high, at_most, expected
):
    """Against 0.95 (at least) or 1.2 (at most): the interval decides, the median leans."""
    limit = 1.2 if at_most else 0.95
    assert verdict(Interval(median, low, high, 0.93, 8), limit, at_most=at_most) == expected


def test_verdict_without_data_says_so():
    """An empty summary decides nothing."""
    assert verdict(median_interval([]), 0.95, at_most=False) == "cannot tell: no data"
