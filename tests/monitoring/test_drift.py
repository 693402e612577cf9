"""decide(): the run's p-values corrected exactly as statsmodels does, for every policy."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from slipway.monitoring import monitor
from slipway.monitoring.drift import FeatureResult, decide
from slipway.monitoring.policy import Policy

METHODS = {"bh": "fdr_bh", "bonferroni": "bonferroni"}


def pending(p_values):
    """Undecided KS results whose effects all exceed their floors: p alone decides the flag."""
    return [
        FeatureResult(
            f"f{i}",
            "numeric",
            test="ks",
            p_value=float(p),
            reference_rows=1_000,
            current_rows=500,
            floors={"mean_shift": 0.1},
            effects={"mean_shift": 1.0},
            exceeded=["mean_shift"],
        )
        for i, p in enumerate(p_values)
    ]


# Spread so that Benjamini-Hochberg, Bonferroni and no correction each flag a different set.
P_VALUES = np.array([0.001, 0.004, 0.006, 0.012, 0.02, 0.03, 0.045, 0.2, 0.5, 0.8])


@pytest.mark.parametrize("correction", ["bh", "bonferroni", "none"])
def test_decide_corrects_like_statsmodels_and_flags_what_it_rejects(correction):
    """p_adjusted equals multipletests' for bh and bonferroni (raw p for none); flags follow."""
    results = pending(P_VALUES)
    decide(results, Policy(correction=correction))
    got = np.array([r.p_adjusted for r in results])
    if correction == "none":
        expected, reject = P_VALUES, P_VALUES <= 0.05
    else:
        reject, expected, _, _ = multipletests(P_VALUES, alpha=0.05, method=METHODS[correction])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert [r.flagged for r in results] == reject.tolist()
    assert sum(reject) == {"bh": 6, "bonferroni": 2, "none": 7}[correction]


def test_significance_is_judged_at_the_policys_alpha_inclusive():
    """A corrected p exactly at alpha is significant; alpha is the policy's, not 0.05."""
    results = pending([0.01, 0.2])
    decide(results, Policy(alpha=0.02, correction="bonferroni"))
    assert [r.p_adjusted for r in results] == [0.02, 0.4]
    assert [r.status for r in results] == ["drift", "ok"]


def test_a_significant_result_below_every_floor_is_minor_not_flagged():
    """Significance alone never flags: without an exceeded effect the status is minor."""
    results = pending([1e-6, 0.5])
    results[0].exceeded = []
    decide(results, Policy())
    assert [r.status for r in results] == ["minor", "ok"]


def test_the_minimum_detectable_shift_uses_the_corrected_level():
    """With k tests the detectable shift is computed at alpha / k, never below the floor."""
    from slipway.monitoring import stats

    for k in (1, 20):
        results = pending([0.5] * k)
        decide(results, Policy())
        expected = stats.detectable_mean_shift(1_000, 500, 0.05 / k)
        assert results[0].min_detectable == pytest.approx(expected, rel=1e-12)
        assert results[0].detectable_unit == "sd"


@pytest.mark.parametrize("correction", ["bh", "bonferroni", "none"])
def test_a_monitoring_run_corrects_across_features_and_predictions(make_table, correction):
    """monitor() pools every tested feature and prediction output into one correction."""
    rng = np.random.default_rng(8)
    reference = make_table(3_000, seed=8)
    current = make_table(600, seed=9, shift={0: 0.12, 1: 0.15, 3: 0.3})
    report = monitor(
        reference,
        current,
        correction=correction,
        reference_predictions=rng.beta(2, 5, 3_000),
        current_predictions=rng.beta(2.2, 5, 600),
    )
    window = report.latest
    tested = [r for r in [*window.features, *window.prediction] if r.p_value is not None]
    assert len(tested) == 21  # 20 features and the prediction
    p = np.array([r.p_value for r in tested])
    got = np.array([r.p_adjusted for r in tested])
    expected = p if correction == "none" else multipletests(p, method=METHODS[correction])[1]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
