"""The gate's statistics agree with statsmodels, scipy and scikit-learn on seeded data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from slipway.estimation import weighted_auc
from slipway.evaluation import calibration_error
from slipway.lifecycle import stats


def _table(a, b):
    return [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]


@pytest.mark.parametrize(
    ("n", "p_a", "p_b", "seed"),
    [(40, 0.7, 0.6, 0), (500, 0.8, 0.75, 1), (5000, 0.9, 0.9, 2), (30, 0.5, 0.5, 3)],
)
def test_mcnemar_matches_statsmodels_exact(n, p_a, p_b, seed):
    """The exact McNemar p-value equals statsmodels' mcnemar(exact=True) to 1e-12."""
    rng = np.random.default_rng(seed)
    a, b = rng.random(n) < p_a, rng.random(n) < p_b
    ours = stats.mcnemar(a, b)
    ref = sm_mcnemar(_table(a, b), exact=True)
    assert ours.only_a == int(np.sum(a & ~b)) and ours.only_b == int(np.sum(~a & b))
    assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-12)


def test_mcnemar_without_discordant_pairs_is_one():
    """Two models right on the same rows cannot differ: p = 1."""
    hits = np.array([True, False, True])
    assert stats.mcnemar(hits, hits).p_value == 1.0


def _scipy_interval(statistic, data, seed, resamples=999):
    res = sps.bootstrap(
        data,
        statistic,
        paired=True,
        vectorized=False,
        method="percentile",
        n_resamples=resamples,
        rng=np.random.default_rng(seed),
    )
    return res.confidence_interval


def test_paired_bootstrap_of_accuracy_difference_matches_scipy():
    """Same resamples, same percentile interval as scipy.stats.bootstrap(paired=True)."""
    rng = np.random.default_rng(4)
    hits_a, hits_b = rng.random(300) < 0.8, rng.random(300) < 0.7
    diff = stats.weighted_mean(hits_a.astype(float) - hits_b.astype(float))
    ours = stats.paired_bootstrap(300, diff, resamples=999, seed=7)
    ref = _scipy_interval(lambda a, b: np.mean(a) - np.mean(b), (hits_a, hits_b), 7)
    assert ours.value == pytest.approx(np.mean(hits_a) - np.mean(hits_b), abs=1e-12)
    assert (ours.low, ours.high) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_paired_bootstrap_of_auc_difference_matches_scipy_and_sklearn():
    """An AUC difference bootstrapped as weights equals scipy resampling with sklearn's AUC."""
    rng = np.random.default_rng(5)
    n = 200
    y = rng.random(n) < 0.4
    s_a = y * 0.8 + rng.normal(size=n)
    s_b = np.round(y * 0.5 + rng.normal(size=n), 1)  # ties on purpose
    diff = lambda w: weighted_auc(w, s_a, y) - weighted_auc(w, s_b, y)  # noqa: E731
    ours = stats.paired_bootstrap(n, diff, resamples=300, seed=11)
    ref = _scipy_interval(
        lambda a, b, t: roc_auc_score(t, a) - roc_auc_score(t, b), (s_a, s_b, y), 11, 300
    )
    assert ours.value == pytest.approx(roc_auc_score(y, s_a) - roc_auc_score(y, s_b), abs=1e-12)
    assert (ours.low, ours.high) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_weighted_auc_with_unit_weights_is_sklearns_auc():
    """Mann-Whitney with ties counted half is roc_auc_score."""
    rng = np.random.default_rng(6)
    y = rng.random(1000) < 0.1
    score = np.round(rng.random(1000) + y * 0.3, 2)
    assert weighted_auc(np.ones((1, 1000)), score, y)[0] == pytest.approx(
        roc_auc_score(y, score), abs=1e-12
    )


def test_brier_matches_sklearn():
    """The binary Brier score is brier_score_loss of the positive class."""
    rng = np.random.default_rng(8)
    p = rng.random(700)
    y = (rng.random(700) < p).astype(int)
    proba = np.column_stack([1 - p, p])
    assert stats.brier(y, proba, np.array([0, 1])) == pytest.approx(
        brier_score_loss(y, p), abs=1e-12
    )


def test_reliability_table_and_ece_match_calibration_curve():
    """Non-empty bins equal calibration_curve(uniform); ECE is their row-weighted gap."""
    rng = np.random.default_rng(9)
    p = rng.beta(2, 5, 3000)
    y = (rng.random(3000) < np.clip(p * 1.2, 0, 1)).astype(int)
    proba = np.column_stack([1 - p, p])
    table = stats.reliability(y, proba, np.array([0, 1]))
    filled = [r for r in table if r["rows"]]
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert [r["observed"] for r in filled] == pytest.approx(list(prob_true), abs=1e-12)
    assert [r["predicted"] for r in filled] == pytest.approx(list(prob_pred), abs=1e-12)
    counts = np.histogram(p, bins=np.linspace(0, 1, 11))[0]
    counts = counts[counts > 0]
    ece = float(np.sum(counts * np.abs(prob_true - prob_pred)) / counts.sum())
    assert calibration_error(y, proba, np.array([0, 1])) == pytest.approx(ece, abs=1e-12)
