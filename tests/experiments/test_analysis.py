"""The verdict rule on simulated outcomes: planted improvements are found, A/A tests are not
called, broken assignment and thin data are not trusted, and each verdict says what decided."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slipway.experiments import analysis
from slipway.experiments.analysis import Plan, compare_arms, decide
from slipway.experiments.comparison import agreement, compare_pairs
from slipway.experiments.metrics import METRICS

ACCURACY = METRICS["accuracy"]


def outcomes(rng, rate: float, n: int) -> np.ndarray:
    """n zeros and ones, each one with probability ``rate``."""
    return (rng.random(n) < rate).astype(float)


def test_a_planted_two_point_improvement_is_declared_better_with_enough_traffic():
    """Candidate accuracy 0.92 against 0.90, 20,000 labeled predictions per arm: better."""
    rng = np.random.default_rng(0)
    plan = Plan()
    result = compare_arms(
        ACCURACY, outcomes(rng, 0.92, 20_000), outcomes(rng, 0.90, 20_000), plan, 1.0
    )
    verdict = decide(ACCURACY, result, plan)
    assert verdict.code == analysis.BETTER, verdict.why
    assert verdict.decided_by in ("sequential test", "fixed-horizon test")
    assert result.difference == pytest.approx(0.02, abs=0.01)
    assert result.interval.low > 0


def test_the_same_improvement_with_little_traffic_is_no_detectable_difference_yet():
    """With 500 per arm the 2 points are not found, and the verdict says how many more and how
    long that takes."""
    rng = np.random.default_rng(1)
    plan = Plan()
    result = compare_arms(ACCURACY, outcomes(rng, 0.92, 500), outcomes(rng, 0.90, 500), plan, 1.0)
    verdict = decide(ACCURACY, result, plan, rates={"control": 1.0, "treatment": 1.0})
    assert verdict.code == analysis.NO_DIFFERENCE
    assert verdict.needed is not None
    planned = result.planned["control"]
    assert 3000 < planned < 4000  # 0.90 -> 0.92 at 80% power: about 3,200 per arm
    assert verdict.needed["observations"]["control"] == math.ceil(planned - 500)
    assert verdict.needed["seconds"] == pytest.approx(math.ceil(planned - 500), rel=0.01)
    assert "still needed" in verdict.why


def test_a_worse_candidate_is_declared_worse():
    """Accuracy 0.86 against 0.90 with plenty of traffic: worse."""
    rng = np.random.default_rng(2)
    plan = Plan()
    result = compare_arms(
        ACCURACY, outcomes(rng, 0.86, 10_000), outcomes(rng, 0.90, 10_000), plan, 1.0
    )
    assert decide(ACCURACY, result, plan).code == analysis.WORSE


def test_lower_is_better_for_the_error_rate():
    """An error rate that falls is better, one that rises is worse."""
    rng = np.random.default_rng(3)
    plan, m = Plan(), METRICS["error_rate"]
    lower = compare_arms(m, outcomes(rng, 0.08, 20_000), outcomes(rng, 0.10, 20_000), plan, 1.0)
    assert decide(m, lower, plan).code == analysis.BETTER
    higher = compare_arms(m, outcomes(rng, 0.12, 20_000), outcomes(rng, 0.10, 20_000), plan, 1.0)
    assert decide(m, higher, plan).code == analysis.WORSE


def test_a_sample_ratio_mismatch_means_cannot_trust_whatever_the_metric_says():
    """A 10% split whose treatment lost 15% of its rows: the verdict is cannot trust (SRM), even
    though the metric difference is large."""
    rng = np.random.default_rng(4)
    counts = {"control": 9000, "treatment": 850}
    srm = analysis.srm_check(counts, 0.1)
    assert srm.p_value < 1e-4
    plan = Plan()
    result = compare_arms(
        ACCURACY, outcomes(rng, 0.99, 850), outcomes(rng, 0.90, 9000), plan, 1 / 9
    )
    verdict = decide(ACCURACY, result, plan, srm=srm)
    assert verdict.code == analysis.CANNOT_TRUST
    assert "SRM" in verdict.text and verdict.decided_by == "SRM check"
    fine = analysis.srm_check({"control": 9000, "treatment": 1010}, 0.1)
    assert fine.p_value > plan.srm_alpha


def test_too_few_outcomes_means_cannot_trust():
    """Fewer than min_outcomes observations in an arm: no test is read."""
    plan = Plan(min_outcomes=100)
    result = compare_arms(ACCURACY, np.ones(40), np.zeros(400), plan, 1.0)
    verdict = decide(ACCURACY, result, plan)
    assert verdict.code == analysis.CANNOT_TRUST and "too few outcomes" in verdict.text
    assert verdict.needed == {"observations": {"control": 0, "treatment": 60}}


def test_the_fixed_horizon_test_decides_once_the_planned_size_is_reached():
    """At the planned sample size a difference the sequential test cannot yet confirm is
    decided by the z-test at its one planned look, and the report says so."""
    plan = Plan(min_effect=0.02, tuning_n=200_000)  # a sequence tuned for far later: wide now
    n = 4000
    treatment = np.r_[np.ones(int(0.925 * n)), np.zeros(n - int(0.925 * n))]
    control = np.r_[np.ones(int(0.91 * n)), np.zeros(n - int(0.91 * n))]
    result = compare_arms(ACCURACY, treatment, control, plan, 1.0)
    assert result.reached() and result.p_value < 0.05
    assert not result.sequential.interval.excludes(0.0)
    verdict = decide(ACCURACY, result, plan)
    assert (verdict.code, verdict.decided_by) == (analysis.BETTER, "fixed-horizon test")


def test_continuous_metrics_use_welch_and_a_relative_minimum_effect():
    """Mean absolute error: Welch's t-test, lower is better, min effect 5% of the control's
    mean unless the plan names one."""
    rng = np.random.default_rng(5)
    m, plan = METRICS["mae"], Plan()
    control = rng.exponential(1.0, 5000)
    result = compare_arms(m, rng.exponential(0.8, 5000), control, plan, 1.0)
    assert result.test == "Welch's t-test"
    assert result.min_effect == pytest.approx(0.05 * control.mean(), rel=1e-12)
    assert decide(m, result, plan).code == analysis.BETTER
    fixed = compare_arms(m, rng.exponential(0.8, 50), control, Plan(min_effect=0.3), 1.0)
    assert fixed.min_effect == 0.3


def test_paired_comparison_reads_the_discordant_pairs():
    """Shadow pairs: McNemar's exact test on the rows where exactly one version is right."""
    rng = np.random.default_rng(6)
    n = 6000
    control = outcomes(rng, 0.9, n)
    candidate = control.copy()
    right, wrong = np.flatnonzero(control == 1), np.flatnonzero(control == 0)
    candidate[rng.choice(right, 100, replace=False)] = 0  # breaks 100 rows the control got
    candidate[rng.choice(wrong, 250, replace=False)] = 1  # fixes 250 it missed
    plan = Plan()
    result = compare_pairs(ACCURACY, candidate, control, plan)
    assert result.test == "McNemar's exact test"
    b = int(np.sum((control == 1) & (candidate == 0)))
    c = int(np.sum((control == 0) & (candidate == 1)))
    assert result.extra["discordant"] == {"control_only": b, "candidate_only": c}
    assert result.statistic == min(b, c)
    assert decide(ACCURACY, result, plan, paired=True).code == analysis.BETTER


def test_agreement_counts_labels_and_probability_gaps():
    """Two versions' answers: the share with the same label and the largest probability gaps."""
    first = [
        {"label": 1, "probabilities": {"0": 0.2, "1": 0.8}},
        {"label": 0, "probabilities": {"0": 0.6, "1": 0.4}},
    ]
    second = [
        {"label": 1, "probabilities": {"0": 0.3, "1": 0.7}},
        {"label": 1, "probabilities": {"0": 0.4, "1": 0.6}},
    ]
    a = agreement(first, second)
    assert (a.rows, a.rate) == (2, 0.5)
    assert a.mean_diff == pytest.approx(0.15) and a.max_diff == pytest.approx(0.2)


def test_regressor_shadows_compare_absolute_errors_with_a_paired_test():
    """mae pairs: the paired t-test on the differences of absolute errors, lower is better."""
    rng = np.random.default_rng(7)
    truth = rng.normal(0, 1, 3000)
    control = np.abs(truth + rng.normal(0, 0.5, 3000) - truth)
    candidate = np.abs(truth + rng.normal(0, 0.4, 3000) - truth)
    plan, m = Plan(), METRICS["mae"]
    result = compare_pairs(m, candidate, control, plan)
    assert result.test == "paired t-test" and result.observations == {"pairs": 3000}
    assert result.difference == pytest.approx(candidate.mean() - control.mean())
    assert decide(m, result, plan, paired=True).code == analysis.BETTER
