"""The statistics of the gate, as pure functions on arrays.

- :func:`mcnemar` compares two classifiers' hits on the same rows (exact binomial test on the
  discordant pairs; statsmodels' ``mcnemar(table, exact=True)``).
- :func:`paired_bootstrap` gives a percentile interval of a metric difference between two
  models resampled on the *same* rows (``scipy.stats.bootstrap(..., paired=True,
  method="percentile")`` draws the same resamples from the same generator).
- :func:`brier`, :func:`reliability` and :func:`expected_calibration_error` describe
  calibration (scikit-learn's ``brier_score_loss`` and ``calibration_curve``).
- :func:`weighted_auc` is the Mann-Whitney ROC-AUC with row weights, ties counted half: the
  bootstrap uses resample counts as weights, and CBPE uses calibrated probabilities.

Metrics inside the bootstrap are "weighted" functions: they take a matrix of row weights
(resamples x rows, each row the multiplicity of each input row in one resample) and return
one value per resample. A resample of rows and a row of counts give the same metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from slipway.estimation import weighted_auc
from slipway.evaluation import CALIBRATION_BINS

__all__ = [
    "Interval",
    "McNemar",
    "bootstrap_samples",
    "brier",
    "brier_rows",
    "confidence_and_hits",
    "mcnemar",
    "paired_bootstrap",
    "reliability",
    "resample_weights",
    "weighted_auc",
    "weighted_mean",
]

Weighted = Callable[[np.ndarray], np.ndarray]
# Resamples are drawn in blocks of at most this many cells (rows x resamples) of weights.
_BLOCK_CELLS = 1 << 22


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: ``only_a`` rows right by A alone, ``only_b`` by B alone."""

    only_a: int
    only_b: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"only_a": self.only_a, "only_b": self.only_b, "p_value": self.p_value}


def mcnemar(hits_a: np.ndarray, hits_b: np.ndarray) -> McNemar:
    """Exact two-sided McNemar test of two models' hits (booleans) on the same rows."""
    a, b = np.asarray(hits_a, dtype=bool), np.asarray(hits_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"hits of A ({a.shape}) and B ({b.shape}) must cover the same rows")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    p = 1.0 if n == 0 else min(1.0, 2.0 * float(sps.binom.cdf(min(only_a, only_b), n, 0.5)))
    return McNemar(only_a, only_b, p)


def resample_weights(n: int, resamples: int, seed: int) -> Any:
    """Blocks of bootstrap weights (resamples x n counts), drawn as index resamples.

    The indices are ``rng.integers(0, n, (block, n))`` from ``numpy.random.default_rng(seed)``,
    as ``scipy.stats.bootstrap`` draws them, so a single block reproduces scipy's resamples.
    """
    rng = np.random.default_rng(seed)
    block = max(1, min(resamples, _BLOCK_CELLS // max(n, 1)))
    for start in range(0, resamples, block):
        b = min(block, resamples - start)
        draws = rng.integers(0, n, (b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(float)


def bootstrap_samples(n: int, metric: Weighted, resamples: int, seed: int) -> np.ndarray:
    """``metric`` evaluated on ``resamples`` bootstrap resamples of ``n`` rows."""
    parts = [np.asarray(metric(w), dtype=float) for w in resample_weights(n, resamples, seed)]
    return np.concatenate(parts) if parts else np.empty(0)


@dataclass(frozen=True)
class Interval:
    """A point value and its percentile-bootstrap interval."""

    value: float
    low: float
    high: float
    level: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}


def paired_bootstrap(
    n: int,
    difference: Weighted,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile interval of ``difference`` (e.g. candidate's AUC minus champion's), both
    models resampled on the same rows; the value is the difference on all rows."""
    value = float(difference(np.ones((1, n)))[0])
    samples = bootstrap_samples(n, difference, resamples, seed)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return Interval(value, math.nan, math.nan, level)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(value, float(low), float(high), level)


# -- weighted metrics ------------------------------------------------------------------------


def weighted_mean(values: np.ndarray) -> Weighted:
    """The weighted mean of a per-row quantity (a loss, a hit)."""
    v = np.asarray(values, dtype=float)
    return lambda w: (w @ v) / w.sum(axis=1)


# -- calibration -------------------------------------------------------------------------------


def brier(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Brier score: the positive class's squared error for binary models (scikit-learn's
    ``brier_score_loss``), the sum over classes for multiclass ones."""
    return float(np.mean(brier_rows(y_true, proba, classes)))


def brier_rows(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each row's Brier loss (its mean is :func:`brier`)."""
    onehot = (np.asarray(y_true)[:, None] == np.asarray(classes)[None, :]).astype(float)
    if len(classes) == 2:
        return np.asarray((proba[:, 1] - onehot[:, 1]) ** 2)
    return np.asarray(np.sum((proba - onehot) ** 2, axis=1))


def confidence_and_hits(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What calibration compares: the positive class's probability and whether the row is
    positive (binary), or the top-label confidence and whether the top label is right."""
    y, cls = np.asarray(y_true), np.asarray(classes)
    if len(cls) == 2:
        return proba[:, 1], (y == cls[1]).astype(float)
    top = np.argmax(proba, axis=1)
    return proba[np.arange(len(y)), top], (cls[top] == y).astype(float)


def reliability(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict[str, Any]]:
    """The reliability table: per equal-width probability bin, rows, mean predicted
    probability and observed frequency (``calibration_curve(strategy="uniform")``'s bins)."""
    conf, hit = confidence_and_hits(y_true, proba, classes)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    counts = np.bincount(idx, minlength=bins)
    mean_p = np.bincount(idx, weights=conf, minlength=bins)
    freq = np.bincount(idx, weights=hit, minlength=bins)
    table = []
    for b in range(bins):
        n = int(counts[b])
        table.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "rows": n,
                "predicted": float(mean_p[b] / n) if n else None,
                "observed": float(freq[b] / n) if n else None,
            }
        )
    return table
