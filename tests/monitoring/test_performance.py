"""Realized performance: metrics equal sklearn's, weighted ones too; intervals cover."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from statsmodels.stats.proportion import proportion_confint

from slipway.evaluation import calibration_error
from slipway.monitoring.performance import (
    _weighted_classification,
    classification_performance,
    regression_performance,
)
from slipway.monitoring.policy import Policy

CLASSES = np.array(["no", "yes"], dtype=object)


def binary(n, seed, *, skill=1.0):
    """Probabilities, sampled truth and argmax labels of a calibrated-ish binary scorer."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 3, n)
    y = np.where(rng.random(n) < np.clip(0.5 + skill * (p - 0.5), 0, 1), "yes", "no").astype(object)
    return y, np.where(p > 0.5, "yes", "no").astype(object), np.c_[1 - p, p]


def test_weighted_metrics_equal_sklearn_with_sample_weights():
    """Every bootstrap metric, with integer weights, equals sklearn's with sample_weight."""
    y, labels, proba = binary(800, 0)
    w = np.random.default_rng(1).integers(0, 4, size=(1, 800)).astype(float)
    got = {
        k: float(v[0]) for k, v in _weighted_classification(w, y, labels, proba, CLASSES).items()
    }
    sw, pos = w[0], y == "yes"
    assert got["accuracy"] == pytest.approx(
        skm.accuracy_score(y, labels, sample_weight=sw), rel=1e-9
    )
    assert got["precision"] == pytest.approx(
        skm.precision_score(y, labels, pos_label="yes", sample_weight=sw), rel=1e-9
    )
    assert got["recall"] == pytest.approx(
        skm.recall_score(y, labels, pos_label="yes", sample_weight=sw), rel=1e-9
    )
    assert got["f1"] == pytest.approx(
        skm.f1_score(y, labels, pos_label="yes", sample_weight=sw), rel=1e-9
    )
    assert got["roc_auc"] == pytest.approx(
        skm.roc_auc_score(pos, proba[:, 1], sample_weight=sw), rel=1e-9
    )
    assert got["log_loss"] == pytest.approx(
        skm.log_loss(y, proba, labels=CLASSES, sample_weight=sw), rel=1e-9
    )
    assert got["brier"] == pytest.approx(
        skm.brier_score_loss(pos, proba[:, 1], sample_weight=sw), rel=1e-9
    )


def test_multiclass_macro_metrics_equal_sklearn():
    """Macro F1 and one-vs-rest AUC at unit weights equal sklearn's."""
    rng = np.random.default_rng(2)
    classes = np.array(["a", "b", "c"], dtype=object)
    proba = rng.dirichlet([1, 1, 1], 600)
    y = classes[rng.integers(0, 3, 600)]
    labels = classes[proba.argmax(1)]
    got = _weighted_classification(np.ones((1, 600)), y, labels, proba, classes)
    assert got["f1"][0] == pytest.approx(skm.f1_score(y, labels, average="macro"), rel=1e-9)
    assert got["roc_auc"][0] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr"), rel=1e-9
    )


def test_calibration_error_of_a_calibrated_scorer_is_small_and_of_a_shifted_one_large():
    """ECE is near 0 when frequencies match probabilities and grows when they do not."""
    rng = np.random.default_rng(3)
    p = rng.uniform(size=20_000)
    y = np.where(rng.random(20_000) < p, "yes", "no")
    assert calibration_error(y, np.c_[1 - p, p], CLASSES) < 0.02
    q = np.clip(p + 0.2, 0, 1)
    assert calibration_error(y, np.c_[1 - q, q], CLASSES) > 0.15


def test_intervals_contain_the_estimate_and_cover_the_truth_about_95_percent():
    """Over 60 samples from one population, the AUC interval covers its large-sample value."""
    truth = classification_performance(*binary(200_000, 99), CLASSES, {}, Policy(bootstrap=20))
    true_auc = truth["roc_auc"]["value"]
    covered = 0
    for seed in range(60):
        out = classification_performance(*binary(400, seed), CLASSES, {}, Policy())
        auc = out["roc_auc"]
        assert auc["low"] <= auc["value"] <= auc["high"]
        covered += auc["low"] <= true_auc <= auc["high"]
    assert 51 <= covered <= 60  # ~95%, with slack for 60 draws


@pytest.mark.parametrize("seed", [0, 1])
def test_bootstrap_intervals_are_95_percent_intervals(seed):
    """For metrics that are means over rows the percentile interval is the normal one of a
    mean, 1.96 standard errors each side, within Monte Carlo noise (a 90% interval is 16%
    narrower, a 99% one 31% wider); its middle is the estimate."""
    y, labels, proba = binary(2_000, seed)
    out = classification_performance(y, labels, proba, CLASSES, {}, Policy(bootstrap=2_000))
    pos = y == "yes"
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=2_000)
    pred = truth + rng.normal(0, 0.5, 2_000)
    mae = regression_performance(truth, pred, {}, Policy(bootstrap=2_000))["mae"]
    per_row = {
        "brier": (out["brier"], (proba[:, 1] - pos) ** 2),
        "log_loss": (out["log_loss"], -np.log(np.where(pos, proba[:, 1], proba[:, 0]))),
        "mae": (mae, np.abs(pred - truth)),
    }
    for name, (got, values) in per_row.items():
        se = values.std() / np.sqrt(values.size)  # the bootstrap's standard error of a mean
        width = got["high"] - got["low"]
        assert got["value"] == pytest.approx(values.mean(), rel=1e-9), name
        assert width / (2 * 1.959964 * se) == pytest.approx(1.0, abs=0.07), name
        assert abs((got["low"] + got["high"]) / 2 - got["value"]) < 0.1 * width, name
        assert got["interval"] == "bootstrap"


def test_proportions_get_the_wilson_interval_of_statsmodels():
    """Accuracy, and binary precision and recall, carry Wilson 95% intervals."""
    y, labels, proba = binary(700, 3)
    out = classification_performance(y, labels, proba, CLASSES, {}, Policy())
    said, true = labels == "yes", y == "yes"
    counts = {
        "accuracy": (int(np.sum(y == labels)), len(y)),
        "precision": (int(np.sum(said & true)), int(np.sum(said))),
        "recall": (int(np.sum(said & true)), int(np.sum(true))),
    }
    for name, (k, n) in counts.items():
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert out[name]["interval"] == "wilson"
        assert out[name]["low"] == pytest.approx(low, rel=1e-9), name
        assert out[name]["high"] == pytest.approx(high, rel=1e-9), name
        assert out[name]["value"] == pytest.approx(k / n, rel=1e-12), name


def test_degraded_needs_the_whole_interval_beyond_the_tolerance():
    """A registration value inside the interval is not degraded; far above it is."""
    y, labels, proba = binary(2_000, 4)
    acc = float(np.mean(y == labels))
    near = classification_performance(y, labels, proba, CLASSES, {"accuracy": acc + 0.01}, Policy())
    far = classification_performance(y, labels, proba, CLASSES, {"accuracy": acc + 0.2}, Policy())
    assert not near["accuracy"]["degraded"] and far["accuracy"]["degraded"]
    assert far["accuracy"]["interval"] == "wilson" and far["f1"]["interval"] == "bootstrap"


def test_regression_performance_and_lower_is_better():
    """MAE/RMSE/R² equal sklearn's; a worse MAE than registered is degraded."""
    rng = np.random.default_rng(5)
    y = rng.normal(size=1_000)
    pred = y + rng.normal(0, 0.5, 1_000)
    out = regression_performance(y, pred, {"mae": 0.1, "rmse": 0.5, "r2": 0.8}, Policy())
    assert out["mae"]["value"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert out["r2"]["value"] == pytest.approx(skm.r2_score(y, pred))
    assert out["mae"]["degraded"] and not out["rmse"]["degraded"]


def test_bootstrap_is_reproducible():
    """The fixed seed gives the same interval twice."""
    args = (*binary(500, 6), CLASSES, {}, Policy())
    assert classification_performance(*args)["f1"] == classification_performance(*args)["f1"]


def test_weighted_calibration_error_equals_the_registration_definition():
    """The bootstrap's calibration error (runs of score-sorted rows) equals evaluation's."""
    y, labels, proba = binary(3_000, 8)
    w = np.random.default_rng(1).integers(0, 3, size=(4, 3_000)).astype(float)
    got = _weighted_classification(w, y, labels, proba, CLASSES)["calibration_error"]
    assert got == pytest.approx(calibration_error(y, proba, CLASSES, w), rel=1e-9)


def resamples(n, bootstrap, seed=0):
    """The bootstrap's resamples as row positions: blocks of 25 rows of ``rng.integers``."""
    rng = np.random.default_rng(seed)
    blocks = [
        rng.integers(0, n, size=(min(25, bootstrap - start), n))
        for start in range(0, bootstrap, 25)
    ]
    return np.concatenate(blocks)


def reference_interval(values):
    """The 95% percentile interval of a reference bootstrap's values."""
    low, high = np.nanquantile(np.asarray(values, dtype=float), [0.025, 0.975])
    return pytest.approx([low, high], rel=1e-9)


def test_binary_bootstrap_intervals_equal_sklearn_over_the_same_resamples():
    """Each bootstrap interval of a binary model is the 2.5-97.5 percentile of sklearn's metric
    over the resamples (positions in the score's order, as the bootstrap draws them), with tied
    scores, probabilities of exactly 0 and 1, and tiny ones whose complements are all 1.0."""
    rng = np.random.default_rng(11)
    p = rng.beta(2, 3, 301).round(2)
    p[:6] = [1e-18, 2e-18, 3e-18, 4e-18, 1.0, 0.0]
    y = np.where(rng.random(301) < p, "yes", "no").astype(object)
    y[:4] = ["no", "no", "yes", "yes"]  # ordered by the tiny scores, not tied
    labels, proba = np.where(p > 0.5, "yes", "no").astype(object), np.c_[1 - p, p]
    out = classification_performance(y, labels, proba, CLASSES, {}, Policy(bootstrap=60, seed=3))
    order = np.argsort(proba[:, 1], kind="stable")
    ref = {"f1": [], "roc_auc": [], "log_loss": [], "brier": [], "calibration_error": []}
    for rows in order[resamples(301, 60, seed=3)]:
        t, lab, p = y[rows], labels[rows], proba[rows]
        ref["f1"].append(skm.f1_score(t, lab, pos_label="yes", zero_division=0))
        ref["roc_auc"].append(skm.roc_auc_score(t == "yes", p[:, 1]))
        ref["log_loss"].append(skm.log_loss(t, p, labels=CLASSES))
        ref["brier"].append(skm.brier_score_loss(t == "yes", p[:, 1]))
        ref["calibration_error"].append(calibration_error(t, p, CLASSES))
    for name, values in ref.items():
        assert out[name]["interval"] == "bootstrap", name
        assert [out[name]["low"], out[name]["high"]] == reference_interval(values), name


def test_multiclass_bootstrap_intervals_equal_sklearn_over_the_same_resamples():
    """Multiclass precision, recall, F1, AUC, log-loss, Brier and calibration intervals are the
    percentiles of sklearn's macro metrics over the resamples, rows in their given order."""
    rng = np.random.default_rng(12)
    classes = np.array(["a", "b", "c"], dtype=object)
    proba = rng.dirichlet([2, 2, 2], 299)
    y = classes[[rng.choice(3, p=row) for row in proba]]
    labels = classes[proba.argmax(1)]
    out = classification_performance(y, labels, proba, classes, {}, Policy(bootstrap=40))
    macro = {"average": "macro", "zero_division": 0}
    ref = {k: [] for k in ("precision", "recall", "f1", "roc_auc", "log_loss", "brier")}
    ref["calibration_error"] = []
    for rows in resamples(299, 40):
        t, lab, p = y[rows], labels[rows], proba[rows]
        onehot = (t[:, None] == classes[None, :]).astype(float)
        ref["precision"].append(skm.precision_score(t, lab, **macro))
        ref["recall"].append(skm.recall_score(t, lab, **macro))
        ref["f1"].append(skm.f1_score(t, lab, **macro))
        ref["roc_auc"].append(skm.roc_auc_score(t, p, multi_class="ovr", labels=classes))
        ref["log_loss"].append(skm.log_loss(t, p, labels=classes))
        ref["brier"].append(np.mean(np.sum((p - onehot) ** 2, axis=1)))
        ref["calibration_error"].append(calibration_error(t, p, classes))
    assert out["accuracy"]["interval"] == "wilson"
    for name, values in ref.items():
        assert out[name]["interval"] == "bootstrap", name
        assert [out[name]["low"], out[name]["high"]] == reference_interval(values), name


def test_regression_bootstrap_intervals_equal_sklearn_over_the_same_resamples():
    """MAE, RMSE and R² intervals are the percentiles of sklearn's metrics over the resamples."""
    rng = np.random.default_rng(13)
    y = rng.normal(3.0, 2.0, 257)
    pred = y + rng.normal(0.5, 1.0, 257)
    out = regression_performance(y, pred, {}, Policy(bootstrap=50, seed=4))
    ref = {"mae": [], "rmse": [], "r2": []}
    for rows in resamples(257, 50, seed=4):
        ref["mae"].append(skm.mean_absolute_error(y[rows], pred[rows]))
        ref["rmse"].append(np.sqrt(skm.mean_squared_error(y[rows], pred[rows])))
        ref["r2"].append(skm.r2_score(y[rows], pred[rows]))
    for name, values in ref.items():
        assert out[name]["interval"] == "bootstrap", name
        assert [out[name]["low"], out[name]["high"]] == reference_interval(values), name


def test_bootstrap_blocks_shrink_to_the_memory_bound_and_draw_the_same_resamples(monkeypatch):
    """Past the bound on weights per block, a block holds as many resamples as fit (at least
    one), and the intervals are those of the resamples drawn block by block."""
    from slipway.monitoring import performance

    monkeypatch.setattr(performance, "_CELLS", 5_000)
    rng = np.random.default_rng(14)
    for n, per_block in ((1_001, 4), (6_001, 1)):
        y = rng.normal(size=n)
        pred = y + rng.normal(0, 0.5, n)
        out = regression_performance(y, pred, {}, Policy(bootstrap=22))
        draw = np.random.default_rng(0)
        rows = np.concatenate(
            [draw.integers(0, n, size=(min(per_block, 22 - s), n)) for s in range(0, 22, per_block)]
        )
        mae = [skm.mean_absolute_error(y[r], pred[r]) for r in rows]
        assert [out["mae"]["low"], out["mae"]["high"]] == reference_interval(mae), n


def test_without_probabilities_only_the_label_metrics_are_reported():
    """A classifier without predict_proba gets accuracy, precision, recall and F1, nothing else."""
    y, labels, _ = binary(500, 10)
    out = classification_performance(y, labels, None, CLASSES, {}, Policy())
    assert set(out) == {"accuracy", "precision", "recall", "f1"}
    assert out["f1"]["value"] == pytest.approx(skm.f1_score(y, labels, pos_label="yes"))
    assert out["f1"]["low"] < out["f1"]["value"] < out["f1"]["high"]


def test_truth_outside_the_classes_keeps_its_own_identity():
    """Values the model does not know (a class new since registration) are never taken for
    one of its classes: the point metrics equal sklearn's on the original values."""
    rng = np.random.default_rng(9)
    classes = np.array(["a", "b", "c"], dtype=object)
    y, labels = classes[rng.integers(0, 3, 300)], classes[rng.integers(0, 3, 300)]
    y[[0, 5, 7]], labels[[0, 5, 7]] = "maybe", ["a", "b", "c"]
    y[[1, 6, 8]], labels[[1, 6, 8]] = "perhaps", ["a", "b", "c"]
    out = classification_performance(y, labels, None, classes, {}, Policy())
    assert out["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, labels), rel=1e-12)
    for name, metric in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        want = metric(y, labels, average="macro", zero_division=0)
        assert out[name]["value"] == pytest.approx(want, rel=1e-12), name


def test_degraded_is_the_whole_interval_past_registration_by_the_tolerance():
    """Bounded metrics use an absolute tolerance, log-loss, MAE and RMSE a relative one; a
    registration value exactly at the interval's edge (tolerance 0) is not degraded."""
    y, labels, proba = binary(2_000, 4)
    first = classification_performance(y, labels, proba, CLASSES, {}, Policy())
    hi = {k: first[k]["high"] for k in ("accuracy", "precision")}
    lo = {k: first[k]["low"] for k in ("brier", "calibration_error")}
    registered = {
        "accuracy": hi["accuracy"] + 0.01,  # higher is better: within 0.02 of the interval
        "precision": hi["precision"] + 0.03,  # 0.03 above the interval: degraded
        "brier": lo["brier"] - 0.01,  # lower is better: within 0.02
        "calibration_error": lo["calibration_error"] - 0.03,
    }
    out = classification_performance(y, labels, proba, CLASSES, registered, Policy())
    assert {k: out[k]["degraded"] for k in registered} == {
        "accuracy": False,
        "precision": True,
        "brier": False,
        "calibration_error": True,
    }
    for name, ref in registered.items():
        assert out[name]["registered"] == ref
        assert out[name]["delta"] == pytest.approx(out[name]["value"] - ref, rel=1e-12)
    assert out["f1"]["registered"] is None and out["f1"]["delta"] is None
    assert not out["f1"]["degraded"]
    edges = {"accuracy": hi["accuracy"], "brier": lo["brier"]}
    exact = classification_performance(
        y, labels, proba, CLASSES, edges, Policy(performance_tolerance=0.0)
    )
    assert not exact["accuracy"]["degraded"] and not exact["brier"]["degraded"]
    rng = np.random.default_rng(15)
    truth = rng.normal(0, 100, 1_000)
    pred = truth + rng.normal(0, 50, 1_000)
    reg = regression_performance(truth, pred, {}, Policy())
    relative = {  # 2% of the registered value, not 0.02
        "mae": reg["mae"]["low"] / 1.03,  # 3% better than the interval: degraded
        "rmse": reg["rmse"]["low"] / 1.01,  # 1%: within the tolerance
    }
    out = regression_performance(truth, pred, relative, Policy())
    assert out["mae"]["degraded"] and not out["rmse"]["degraded"]


def test_label_metrics_of_a_rare_class_count_zero_where_a_resample_lacks_it():
    """A class predicted twice and seen twice: resamples without it (or with one) give it a
    precision, recall and F1 of 0 (or their counts), as sklearn's zero_division=0 does."""
    rng = np.random.default_rng(16)
    classes = np.array(["a", "b", "c", "d"], dtype=object)
    y, labels = classes[rng.integers(0, 3, 200)], classes[rng.integers(0, 3, 200)]
    y[[0, 1]], labels[[1, 2]] = "d", "d"
    out = classification_performance(y, labels, None, classes, {}, Policy(bootstrap=60))
    options = {"labels": classes, "average": "macro", "zero_division": 0}
    for name, metric in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        values = [metric(y[r], labels[r], **options) for r in resamples(200, 60)]
        assert [out[name]["low"], out[name]["high"]] == reference_interval(values), name


def test_an_r2_no_resample_defines_has_no_interval_and_is_not_judged():
    """Constant truth predicted exactly: every resample's R² is 0/0, so R² gets no interval
    and no verdict, while MAE and RMSE are 0 with a zero-width interval."""
    y = np.full(100, 3.0)
    out = regression_performance(y, y.copy(), {"r2": 0.9, "mae": 0.0}, Policy())
    assert np.isnan(out["r2"]["low"]) and np.isnan(out["r2"]["high"])
    assert out["r2"]["degraded"] is False
    assert (out["mae"]["low"], out["mae"]["high"], out["mae"]["degraded"]) == (0.0, 0.0, False)


def _normal_width(values):
    """The width of a normal 95% interval of the mean of ``values``."""
    return 2 * 1.959964 * values.std() / np.sqrt(values.size)


def _delong_width(score, positive):
    """The width of DeLong's normal 95% interval of the AUC of ``score`` for ``positive``."""
    from scipy.stats import rankdata

    pos, neg = score[positive], score[~positive]
    every = rankdata(score)
    v10 = (every[positive] - rankdata(pos)) / neg.size  # each positive's share of negatives below
    v01 = 1 - (every[~positive] - rankdata(neg)) / pos.size
    return 2 * 1.959964 * np.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)


def _assert_interval(got, value, width, name):
    """The interval is centred on ``value`` and as wide as ``width``, within Monte Carlo noise
    of 2,000 resamples."""
    assert got["interval"] == "bootstrap", name
    assert got["value"] == pytest.approx(value, rel=1e-9), name
    assert (got["high"] - got["low"]) / width == pytest.approx(1.0, abs=0.08), name
    assert abs((got["low"] + got["high"]) / 2 - got["value"]) < 0.1 * width, name


def test_past_the_exact_bound_intervals_keep_the_width_of_all_rows(monkeypatch):
    """Past the bound, F1 resamples the confusion matrix and the probability metrics a
    subsample with scaled deviations, and each interval has the width of all rows' (the
    delta method's for F1, calibration error, log-loss and Brier, DeLong's for the AUC), not
    the subsample's, wider by sqrt(6)."""
    from slipway.monitoring import performance

    monkeypatch.setattr(performance, "_EXACT", 10_000)
    rng = np.random.default_rng(21)
    n = 60_000
    p = rng.beta(2, 3, n)
    y = np.where(rng.random(n) < p, "yes", "no").astype(object)
    q = 0.1 + 0.9 * p  # over-confident in "yes": every bin's gap is mostly of one sign
    labels, proba = np.where(q > 0.5, "yes", "no").astype(object), np.c_[1 - q, q]
    out = classification_performance(y, labels, proba, CLASSES, {}, Policy(bootstrap=2_000))
    pos, said = y == "yes", labels == "yes"
    f1 = skm.f1_score(y, labels, pos_label="yes")
    both, either = 2.0 * (pos & said), pos.astype(float) + said
    bins = np.minimum((q * 10).astype(int), 9)
    gap = q - pos
    sign = np.sign(np.bincount(bins, weights=gap, minlength=10))[bins]
    references = {
        "f1": (f1, _normal_width(both - f1 * either) / either.mean()),
        "roc_auc": (skm.roc_auc_score(pos, q), _delong_width(q, pos)),
        "log_loss": (skm.log_loss(pos, q), _normal_width(-np.log(np.where(pos, q, 1 - q)))),
        "brier": (skm.brier_score_loss(pos, q), _normal_width((q - pos) ** 2)),
        "calibration_error": (calibration_error(y, proba, CLASSES), _normal_width(sign * gap)),
    }
    for name, (value, width) in references.items():
        _assert_interval(out[name], value, width, name)
    again = classification_performance(y, labels, proba, CLASSES, {}, Policy(bootstrap=2_000))
    assert again == out


def test_past_the_exact_bound_regression_intervals_keep_the_width_of_all_rows(monkeypatch):
    """MAE and RMSE intervals past the bound have the delta method's width over all rows."""
    from slipway.monitoring import performance

    monkeypatch.setattr(performance, "_EXACT", 10_000)
    rng = np.random.default_rng(22)
    truth = rng.normal(3.0, 2.0, 60_000)
    pred = truth + rng.normal(0.3, 1.0, 60_000)
    out = regression_performance(truth, pred, {}, Policy(bootstrap=2_000))
    err = pred - truth
    rmse = np.sqrt(np.mean(err**2))
    _assert_interval(out["mae"], np.mean(np.abs(err)), _normal_width(np.abs(err)), "mae")
    _assert_interval(out["rmse"], rmse, _normal_width(err**2) / (2 * rmse), "rmse")


def test_past_the_exact_bound_label_metrics_are_the_row_bootstrap_of_their_cells(monkeypatch):
    """Multiclass precision, recall and F1 drawn over the confusion matrix's cells give the
    intervals of the row bootstrap, within Monte Carlo noise, with a label outside the
    classes among the truth."""
    from slipway.monitoring import performance

    rng = np.random.default_rng(23)
    classes = np.array(["a", "b", "c"], dtype=object)
    n = 20_000
    y = classes[rng.choice(3, n, p=[0.6, 0.3, 0.1])]
    labels = np.where(rng.random(n) < 0.7, y, classes[rng.integers(0, 3, n)])
    y[rng.random(n) < 0.01] = "new"
    policy = Policy(bootstrap=2_000)
    rows = classification_performance(y, labels, None, classes, {}, policy)
    monkeypatch.setattr(performance, "_EXACT", 1_000)
    cells = classification_performance(y, labels, None, classes, {}, policy)
    for name in ("precision", "recall", "f1"):
        width = rows[name]["high"] - rows[name]["low"]
        assert cells[name]["value"] == rows[name]["value"], name
        assert cells[name]["low"] == pytest.approx(rows[name]["low"], abs=0.1 * width), name
        assert cells[name]["high"] == pytest.approx(rows[name]["high"], abs=0.1 * width), name
