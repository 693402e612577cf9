"""Honest at any sample size: few false alarms, real shifts found, tiny ones ignored."""

from __future__ import annotations

import numpy as np

from slipway.monitoring import monitor


def test_no_drift_alerts_in_at_most_5_percent_of_200_windows(make_table):
    """200 windows from the reference distribution, 100 to 100,000 rows: <= 5% end in ALERT."""
    reference = make_table(10_000, seed=1)
    sizes = np.geomspace(100, 100_000, 200).astype(int)
    statuses, flagged = [], 0
    for i, n in enumerate(sizes):
        report = monitor(reference, make_table(int(n), seed=1000 + i))
        statuses.append(report.status)
        flagged += bool(report.flagged)
    assert statuses.count("ALERT") <= 10
    assert flagged <= 10
    assert statuses.count("OK") >= 180  # no-drift windows are neither flagged nor warned about


def test_a_02_sd_mean_shift_in_one_of_20_features_at_n_5000_is_found(make_table):
    """The shifted feature is flagged in every run; no other feature in most runs."""
    reference = make_table(10_000, seed=2)
    runs, hit, clean = 30, 0, 0
    for i in range(runs):
        report = monitor(reference, make_table(5_000, seed=2000 + i, shift={3: 0.2}))
        hit += "normal_3" in report.flagged
        clean += report.flagged == ["normal_3"]
        assert report.status == "ALERT"
    assert hit == runs
    assert clean >= 0.9 * runs


def test_a_tiny_shift_in_a_huge_sample_is_significant_but_not_flagged():
    """At n = 200,000 a 0.03 SD shift is significant, below the floor, and says so."""
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=200_000), rng.normal(0.03, 1, size=200_000)
    report = monitor(ref, cur)
    result = report.features["feature_0"]
    assert result.p_adjusted < 1e-6
    assert result.status == "minor" and not result.flagged
    assert report.status == "OK"
    assert "below its floor" in result.message


def test_a_small_window_says_insufficient_data_never_a_verdict():
    """A window under min_rows gets no p-value and no flag, whatever its values, and WARNs."""
    rng = np.random.default_rng(4)
    report = monitor(rng.normal(size=5_000), rng.normal(50, 1, size=20))
    result = report.features["feature_0"]
    assert result.status == "insufficient_data" and result.p_value is None
    assert report.status == "WARN" and report.reasons[0].code == "insufficient_data"


def test_minimum_detectable_shift_is_reported_and_shrinks_with_the_sample():
    """Each tested feature reports the smallest shift its sample could detect."""
    rng = np.random.default_rng(5)
    ref = rng.normal(size=10_000)
    small = monitor(ref, rng.normal(size=200)).features["feature_0"]
    large = monitor(ref, rng.normal(size=20_000)).features["feature_0"]
    assert small.detectable_unit == "sd" and large.detectable_unit == "sd"
    assert small.min_detectable > large.min_detectable >= 0.1  # never below the floor


def test_variance_doubling_is_flagged_by_the_variance_rule():
    """A 1.5x spread (2.25x variance) with the same mean is flagged through variance_ratio."""
    rng = np.random.default_rng(6)
    report = monitor(rng.normal(size=10_000), rng.normal(0, 1.5, size=3_000))
    result = report.features["feature_0"]
    assert result.flagged and "variance_ratio" in result.exceeded
    assert result.effects["variance_ratio"] > 2
