"""Realized performance from ground truth: metrics with confidence intervals, compared with
the validation metrics recorded at registration.

Point estimates use the same definitions as registration (``slipway.evaluation``; binary
problems score the second class as positive, multiclass ones use macro averages). Intervals
are 95%: Wilson for accuracy and binary precision and recall (proportions), a percentile
bootstrap with a fixed seed for the rest. The bootstrap is vectorized: every metric is written
as a weighted sum, and each resample is a row of multinomial counts.

Past ``_EXACT`` labeled rows (100,000) the bootstrap's cost stops growing with the rows:

- the label metrics (accuracy, precision, recall, F1) depend on the rows only through the
  confusion matrix, so a resample draws the matrix's cells (multinomial counts over the
  distinct (truth, label) pairs), which is the row bootstrap's distribution exactly, at the
  cost of a few cells at any number of rows;
- the others (ROC-AUC, log-loss, Brier, calibration error; MAE, RMSE, R²) are bootstrapped
  over a random subsample of ``_EXACT`` rows, and each resample's distance from the
  subsample's value is scaled by sqrt(subsample / rows) around the value of all rows: the
  spread of a statistic that settles as 1/sqrt(rows), read off the subsample.

A metric is "degraded" when its whole interval lies on the worse side of the registration
value by more than the policy's tolerance (absolute for metrics bounded by 0 and 1, relative
for log-loss, MAE and RMSE): the same "significant and large enough" rule as drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from slipway.estimation import auc_from_groups
from slipway.evaluation import CALIBRATION_BINS, classification_metrics, regression_metrics
from slipway.monitoring.policy import Policy
from slipway.monitoring.stats import wilson_interval

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "calibration_error", "mae", "rmse"})
UNBOUNDED = frozenset({"log_loss", "mae", "rmse"})
_CHUNK = 25  # resamples per block, bounding memory at 25 x n weights
_CELLS = 5_000_000  # weights per block once 25 resamples would hold more
_EXACT = 100_000  # rows the bootstrap resamples whole; above, see the module docstring


def classification_performance(
    y_true: np.ndarray,
    labels: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any],
    registered: Mapping[str, float],
    policy: Policy,
) -> dict[str, dict[str, Any]]:
    """Each metric's value, 95% interval and comparison with registration."""
    cls = np.asarray(classes, dtype=object)
    # Integer codes in place of the labels: the same metrics (they only compare labels), and
    # at a million labels the difference between seconds and minutes.
    y, said = _codes(y_true, labels, cls)
    codes = np.arange(len(cls))
    values = classification_metrics(y, said, proba, codes)
    boot = _classification_bootstrap(y, said, proba, codes, values, policy)
    out: dict[str, dict[str, Any]] = {}
    binary = len(cls) == 2
    for name, value in values.items():
        if name == "accuracy":
            low, high = wilson_interval(int(np.sum(y == said)), len(y))
            method = "wilson"
        elif binary and name in ("precision", "recall"):
            hits = int(np.sum((said == 1) & (y == 1)))
            n = int(np.sum(said == 1)) if name == "precision" else int(np.sum(y == 1))
            low, high = wilson_interval(hits, n)
            method = "wilson"
        else:
            low, high = _percentiles(boot.get(name))
            method = "bootstrap"
        out[name] = _compare(name, value, low, high, method, registered, policy)
    return out


def _codes(
    y_true: np.ndarray, labels: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Truth and predicted labels as codes: a class's position in ``classes``, and distinct
    negative codes for anything else, so that equal values keep equal codes."""
    known = {c: i for i, c in enumerate(classes.tolist())}
    both = pd.Series(np.concatenate([np.asarray(y_true, object), np.asarray(labels, object)]))
    found, uniques = pd.factorize(both)
    mapping = np.array([known.get(u, -1 - i) for i, u in enumerate(uniques.tolist())])
    codes = mapping[found] if len(mapping) else np.zeros(0, dtype=np.int64)
    return codes[: len(y_true)], codes[len(y_true) :]


def regression_performance(
    y_true: np.ndarray, values: np.ndarray, registered: Mapping[str, float], policy: Policy
) -> dict[str, dict[str, Any]]:
    """MAE, RMSE and R² with bootstrap intervals, compared with registration."""
    point = regression_metrics(y_true, values)
    n = len(y_true)
    if n <= _EXACT:
        boot = _bootstrap(n, policy, _WeightedRegression(y_true, values))
    else:
        rows = _subsample(n, policy)
        part = _WeightedRegression(y_true[rows], values[rows])
        boot = _scaled(point, _bootstrap(rows.size, policy, part), part, n)
    return {
        name: _compare(name, value, *_percentiles(boot.get(name)), "bootstrap", registered, policy)
        for name, value in point.items()
    }


def _classification_bootstrap(
    y: np.ndarray,
    said: np.ndarray,
    proba: np.ndarray | None,
    codes: np.ndarray,
    values: Mapping[str, float],
    policy: Policy,
) -> dict[str, np.ndarray]:
    """Every bootstrapped metric's resampled values: over the rows up to ``_EXACT`` of them,
    past it over the confusion matrix's cells and (metrics of the probabilities) a subsample."""
    n = len(y)
    if n <= _EXACT:
        return _bootstrap(n, policy, _Weighted(y, said, proba, codes))
    # Distinct (truth, label) pairs and their rows: drawing n rows with replacement draws
    # these cells' counts from a multinomial, so resampling the cells is the row bootstrap.
    low = min(int(y.min()), int(said.min()))
    span = max(int(y.max()), int(said.max())) - low + 1
    pairs, counts = np.unique((y - low) * span + (said - low), return_counts=True)
    cell_y, cell_said = pairs // span + low, pairs % span + low
    rng = np.random.default_rng(policy.seed)
    draws = rng.multinomial(n, counts / n, size=policy.bootstrap).astype(float)
    boot = _Weighted(cell_y, cell_said, None, codes)(draws)
    if proba is not None:
        rows = _subsample(n, policy)
        part = _Weighted(y[rows], said[rows], proba[rows], codes)
        scored = _scaled(values, _bootstrap(rows.size, policy, part), part, n)
        boot.update({k: v for k, v in scored.items() if k not in boot})
    return boot


def _subsample(n: int, policy: Policy) -> np.ndarray:
    """``_EXACT`` of ``n`` row positions, drawn without replacement, in order."""
    rng = np.random.default_rng([policy.seed, 1])  # a stream apart from the resamples'
    return np.sort(rng.choice(n, size=_EXACT, replace=False))


def _scaled(
    point: Mapping[str, float], boot: dict[str, np.ndarray], part: Any, n: int
) -> dict[str, np.ndarray]:
    """A subsample's resamples as resamples of all ``n`` rows: each one's distance from the
    subsample's own value, shrunk by sqrt(subsample / n), around the value of all rows."""
    m = len(part)
    centre = part(np.ones((1, m)))
    scale = math.sqrt(m / n)
    return {
        name: point[name] + scale * (samples - centre[name][0])
        for name, samples in boot.items()
        if name in point
    }


# -- weighted metrics (rows of weights = bootstrap resamples) --------------------------------


class _WeightedRegression:
    """MAE, RMSE and R² as functions of row weights."""

    def __init__(self, y: np.ndarray, values: np.ndarray) -> None:
        err = values - y
        self.y, self.squares, self.err2, self.abs_err = y, y**2, err**2, np.abs(err)

    def __len__(self) -> int:
        return len(self.y)

    def __call__(self, w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        mean_y = (w @ self.y) / total
        sst = w @ self.squares - total * mean_y**2
        sse = w @ self.err2
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = 1 - sse / sst
        return {"mae": (w @ self.abs_err) / total, "rmse": np.sqrt(sse / total), "r2": r2}


def _weighted_classification(
    w: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    proba: np.ndarray | None,
    classes: np.ndarray,
) -> dict[str, np.ndarray]:
    """Every bootstrap metric of each row of weights ``w`` (resamples x rows)."""
    metrics = _Weighted(y, labels, proba, classes)
    return metrics(w if metrics.perm is None else w[:, metrics.perm])


class _Weighted:
    """The classification metrics as functions of row weights.

    Everything that does not depend on the weights (comparisons, logarithms, sort orders) is
    computed once here, and each block of resamples only takes weighted sums.
    """

    def __init__(
        self, y: np.ndarray, labels: np.ndarray, proba: np.ndarray | None, classes: np.ndarray
    ) -> None:
        self.binary = len(classes) == 2
        self.rows = len(y)
        # Rows are held in the order of the binary score, and a resample draws positions in
        # that order: the AUC then sums weights as they come, with no gather per resample.
        self.perm: np.ndarray | None = None
        if proba is not None and self.binary:
            self.perm = np.argsort(proba[:, 1], kind="stable")
            y, labels, proba = y[self.perm], labels[self.perm], proba[self.perm]
        self.hit = (y == labels).astype(float)
        targets = [classes[1]] if self.binary else list(classes)
        self.per_class = []
        for c in targets:
            is_c, said_c = (y == c).astype(float), (labels == c).astype(float)
            self.per_class.append((is_c * said_c, said_c, is_c))
        self.proba = proba
        if proba is None:
            return
        eps = np.finfo(proba.dtype).eps
        onehot = (y[:, None] == classes[None, :]).astype(float)
        clipped = np.clip(proba, eps, 1 - eps)
        self.log_loss = -np.sum(onehot * np.log(clipped), axis=1)
        if self.binary:
            self.brier = (proba[:, 1] - onehot[:, 1]) ** 2
            self.aucs = [_AucOrder(proba[:, 1], onehot[:, 1].astype(bool), ordered=True)]
        else:
            self.brier = np.sum((proba - onehot) ** 2, axis=1)
            self.aucs = [
                _AucOrder(proba[:, k], onehot[:, k].astype(bool)) for k in range(len(classes))
            ]
        self.calibration = _calibration_terms(y, proba, classes, ordered=self.perm is not None)

    def __len__(self) -> int:
        return self.rows

    def __call__(self, w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        out = {"accuracy": (w @ self.hit) / total}
        precisions, recalls, f1s = [], [], []
        for both, said_c, is_c in self.per_class:
            tp, pp, p = w @ both, w @ said_c, w @ is_c
            with np.errstate(divide="ignore", invalid="ignore"):
                precisions.append(np.where(pp > 0, tp / pp, 0.0))
                recalls.append(np.where(p > 0, tp / p, 0.0))
                f1s.append(np.where(pp + p > 0, 2 * tp / (pp + p), 0.0))
        out["precision"] = np.mean(precisions, axis=0)
        out["recall"] = np.mean(recalls, axis=0)
        out["f1"] = np.mean(f1s, axis=0)
        if self.proba is None:
            return out
        out["log_loss"] = (w @ self.log_loss) / total
        out["brier"] = (w @ self.brier) / total
        aucs = [auc(w) for auc in self.aucs]
        out["roc_auc"] = aucs[0] if self.binary else np.mean(aucs, axis=0)
        hits, confidences, starts, used = self.calibration
        if starts is None:
            gap = np.abs(w @ hits - w @ confidences)
        else:  # rows sorted by the score: each bin is a run of rows
            gap = np.zeros((w.shape[0], CALIBRATION_BINS))
            if starts.size:
                gap[:, used] = np.abs(
                    np.add.reduceat(w * hits, starts, axis=1)
                    - np.add.reduceat(w * confidences, starts, axis=1)
                )
        out["calibration_error"] = gap.sum(axis=1) / total
        return out


def _calibration_terms(
    y: np.ndarray, proba: np.ndarray, classes: np.ndarray, *, ordered: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """What the calibration error, as :func:`slipway.evaluation.calibration_error` defines it,
    takes from the rows: each row's hit and confidence, as (rows x bins) matrices, or (when
    ``ordered``: a binary score, rows sorted by it) as vectors with the start of each bin's run
    of rows."""
    if len(classes) == 2:
        conf, hit = proba[:, 1], (y == classes[1]).astype(float)
    else:
        top = np.argmax(proba, axis=1)
        conf, hit = proba[np.arange(len(y)), top], (classes[top] == y).astype(float)
    bins = np.minimum((conf * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    if ordered and len(classes) == 2:
        starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]]) if bins.size else bins
        return hit, conf, starts, bins[starts]
    onehot = np.zeros((conf.size, CALIBRATION_BINS))
    onehot[np.arange(conf.size), bins] = 1.0
    return onehot * hit[:, None], onehot * conf[:, None], None, None


class _AucOrder:
    """A score's sort order and tie groups, for the weighted AUC of many resamples
    (``ordered``: the rows, and so the weights, come sorted by the score already)."""

    def __init__(self, score: np.ndarray, positive: np.ndarray, *, ordered: bool = False) -> None:
        self.order = None if ordered else np.argsort(score, kind="stable")
        s = score if self.order is None else score[self.order]
        self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        self.ties = self.starts.size < s.size
        self.positive = positive if self.order is None else positive[self.order]
        self.negative = ~self.positive

    def __call__(self, w: np.ndarray) -> np.ndarray:
        ordered = w if self.order is None else w[:, self.order]
        wp, wn = ordered * self.positive, ordered * self.negative
        if self.ties:  # one group per distinct score
            wp = np.add.reduceat(wp, self.starts, axis=1)
            wn = np.add.reduceat(wn, self.starts, axis=1)
        return auc_from_groups(wp, wn)


def _bootstrap(n: int, policy: Policy, metrics: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(policy.seed)
    blocks: dict[str, list[np.ndarray]] = {}
    # Up to 25 resamples a block; fewer at hundreds of thousands of labels, so that a block's
    # weights stay near 40 MB (which resamples are drawn does not depend on it below that).
    chunk = _CHUNK if n <= _CELLS // _CHUNK else max(1, _CELLS // max(n, 1))
    for start in range(0, policy.bootstrap, chunk):
        b = min(chunk, policy.bootstrap - start)
        draws = rng.integers(0, n, size=(b, n))
        draws += (np.arange(b) * n)[:, None]
        w = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(float)
        del draws
        for name, values in metrics(w).items():
            blocks.setdefault(name, []).append(np.asarray(values, dtype=float))
    return {k: np.concatenate(v) for k, v in blocks.items()}


def _percentiles(samples: np.ndarray | None) -> tuple[float, float]:
    if samples is None or np.all(np.isnan(samples)):
        return (math.nan, math.nan)
    low, high = np.nanquantile(samples, [0.025, 0.975])
    return float(low), float(high)


def _compare(
    name: str,
    value: float,
    low: float,
    high: float,
    method: str,
    registered: Mapping[str, float],
    policy: Policy,
) -> dict[str, Any]:
    ref = registered.get(name)
    out: dict[str, Any] = {
        "value": value,
        "low": low,
        "high": high,
        "interval": method,
        "registered": ref,
        "delta": None if ref is None else value - ref,
        "degraded": False,
    }
    if ref is None or math.isnan(low) or math.isnan(high):
        return out
    tol = policy.performance_tolerance * (abs(ref) if name in UNBOUNDED else 1.0)
    if name in LOWER_IS_BETTER:
        out["degraded"] = low > ref + tol
    else:
        out["degraded"] = high < ref - tol
    return out
