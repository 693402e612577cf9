"""Performance estimation without labels: CBPE for classifiers, DLE for regressors.

**Confidence-based performance estimation (CBPE).** At registration the classifier's
probabilities on the validation data are calibrated (isotonic regression per class, fitted on
the validation labels) and the calibration is stored with the version. On served traffic the
calibrated probability ``q[i, c]`` is the expected share of rows like row ``i`` whose true class
is ``c``, so the expected confusion matrix follows from the probabilities alone: expected true
positives of class ``c`` are the sum of ``q[i, c]`` over the rows predicted ``c``, and so on.
Accuracy, precision, recall and F1 are ratios of these expectations; ROC-AUC is the
Mann-Whitney statistic of the raw scores with each row counted ``q`` times as a positive and
``1 - q`` times as a negative.

**Direct loss estimation (DLE).** For regressors a model of the error is fitted on the
validation data at registration: gradient-boosted trees predicting ``|y - ŷ|`` and
``(y - ŷ)²`` from the inputs and the prediction. MAE and RMSE of a window are the means of
its predicted losses.

**The band.** Each estimate comes with a 95% band for the *realized* value of the window: for
CBPE, labels are drawn from the calibrated probabilities (200 draws, seed 0; on windows above
10,000 rows a seeded subsample, its spread scaled by ``sqrt(m / n)``) and the realized metric
computed on each draw; for DLE, a normal band from the predicted loss variances. Realized
performance outside the band means the labels no longer follow the probabilities the model
learned: concept drift.

**The assumption.** Both methods assume no concept shift: ``P(y | x)`` on served traffic is
what it was on the validation data; only the inputs ``x`` may move. Under that assumption (and
a calibration that holds on the validation data's support) the estimate tracks realized
performance through covariate shift; under concept shift it does not, by construction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse")
DRAWS = 200
MAX_ROWS = 10_000
LEVEL = 0.95
_BLOCK = 50  # label draws per block: bounds memory at 50 x MAX_ROWS


@dataclass(frozen=True)
class Estimate:
    """An estimated metric and the band its realized value should fall in."""

    value: float
    low: float
    high: float

    def covers(self, realized: float) -> bool:
        """True when ``realized`` lies within the band."""
        return bool(self.low <= realized <= self.high)

    def to_dict(self) -> dict[str, float]:
        """JSON-ready view."""
        return {"value": self.value, "low": self.low, "high": self.high}


def weighted_auc(w: np.ndarray, score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC-AUC with row weights as positives, ``1 - positive`` weights as
    negatives; ``positive`` may be a probability, or one row of 0/1 per row of ``w``. Ties
    count half; NaN without either class.

    With 0/1 ``positive`` and unit weights this is scikit-learn's ``roc_auc_score``.
    """
    w = np.atleast_2d(w)
    pos = np.asarray(positive, dtype=float)
    order = np.argsort(score, kind="stable")
    s = np.asarray(score)[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    wo = w[:, order]
    po = pos[..., order]
    wp = np.add.reduceat(wo * po, starts, axis=1)
    wn = np.add.reduceat(wo * (1 - po), starts, axis=1)
    return auc_from_groups(wp, wn)


def _unit_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """``weighted_auc`` of one row of unit weights, equal to it, holding about a third of its
    temporaries (a window's whole traffic goes through here: ten million rows held a gigabyte
    of them)."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    new = np.empty(s.size, dtype=bool)
    new[:1] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    del s
    starts = np.flatnonzero(new)
    del new
    po = np.asarray(positive, dtype=float)[order]
    del order
    wp = np.add.reduceat(po, starts) if starts.size else po
    np.subtract(1.0, po, out=po)
    wn = np.add.reduceat(po, starts) if starts.size else po
    del po, starts
    pos_total, neg_total = float(wp.sum()), float(wn.sum())
    if not (pos_total > 0 and neg_total > 0):
        return math.nan
    below = np.cumsum(wn)
    below -= wn
    wn *= 0.5
    below += wn
    below *= wp
    return float(np.sum(below) / (pos_total * neg_total))


def auc_from_groups(wp: np.ndarray, wn: np.ndarray) -> np.ndarray:
    """ROC-AUC per row from positive and negative weights grouped by distinct score, groups in
    ascending score order (one row per resample); ties count half, NaN without either class."""
    below = np.cumsum(wn, axis=1) - wn
    pos_total, neg_total = wp.sum(axis=1), wn.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.sum(wp * (below + 0.5 * wn), axis=1) / (pos_total * neg_total)
    return np.where((pos_total > 0) & (neg_total > 0), auc, np.nan)


# -- CBPE: calibration -----------------------------------------------------------------------


Maps = tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]


@dataclass(frozen=True)
class Calibration:
    """Isotonic maps from a classifier's raw probabilities to calibrated ones, one per class
    (only the positive class for binary models), learned on the validation data.

    ``alternates`` are the same maps fitted on bootstrap resamples of the validation rows:
    how much the estimate moves between them is the band's share for the calibration's own
    uncertainty.
    """

    classes: tuple[str, ...]
    maps: Maps
    rows: int
    alternates: tuple[Maps, ...] = ()

    def apply(self, proba: np.ndarray, maps: Maps | None = None) -> np.ndarray:
        """Calibrated probabilities (rows x classes, each row summing to 1)."""
        maps = self.maps if maps is None else maps
        p = np.asarray(proba, dtype=float)
        if len(self.classes) == 2:
            xs, ys = maps[0]
            out = np.empty((len(p), 2))
            out[:, 1] = np.interp(p[:, 1], xs, ys)
            np.subtract(1.0, out[:, 1], out=out[:, 0])  # no temporaries beside the result
            return out
        out = np.column_stack([np.interp(p[:, k], xs, ys) for k, (xs, ys) in enumerate(maps)])
        total = out.sum(axis=1, keepdims=True)
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), p)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (stored as the version's ``estimator`` artifact)."""
        return {
            "method": "cbpe",
            "classes": list(self.classes),
            "maps": _maps_out(self.maps),
            "rows": self.rows,
            "alternates": [_maps_out(m) for m in self.alternates],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(data["classes"]),
            _maps_in(data["maps"]),
            int(data["rows"]),
            tuple(_maps_in(m) for m in data.get("alternates", [])),
        )

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes."""
        return json.dumps(self.to_dict(), sort_keys=True).encode()


def _maps_out(maps: Maps) -> list[dict[str, list[float]]]:
    return [{"x": list(x), "y": list(y)} for x, y in maps]


def _maps_in(data: list[dict[str, list[float]]]) -> Maps:
    return tuple((tuple(m["x"]), tuple(m["y"])) for m in data)


def _isotonic(y: np.ndarray, proba: np.ndarray, classes: list[Any]) -> Maps:
    from sklearn.isotonic import IsotonicRegression

    targets = [1] if len(classes) == 2 else list(range(len(classes)))
    maps = []
    for k in targets:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(np.asarray(proba[:, k], dtype=float), (y == classes[k]).astype(float))
        maps.append((tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_))))
    return tuple(maps)


def fit_calibration(
    y_true: Any, proba: np.ndarray, classes: Sequence[Any], *, resamples: int = 20, seed: int = 0
) -> Calibration:
    """Isotonic calibration of each class's probability on labeled validation rows, and the
    same fitted on ``resamples`` bootstrap resamples of them."""
    y, cls, p = np.asarray(y_true), list(classes), np.asarray(proba, dtype=float)
    rng = np.random.default_rng(seed)
    alternates = []
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        alternates.append(_isotonic(y[idx], p[idx], cls))
    return Calibration(tuple(str(c) for c in cls), _isotonic(y, p, cls), len(y), tuple(alternates))


# -- CBPE: estimation ------------------------------------------------------------------------


def expected_metrics(
    calibrated: np.ndarray, predicted: np.ndarray, scores: np.ndarray
) -> dict[str, float]:
    """Expected accuracy, precision, recall, F1 and ROC-AUC from calibrated probabilities.

    ``predicted`` holds each row's predicted class index, ``scores`` the raw probabilities
    that rank rows for ROC-AUC. Binary models score class 1 as positive; multiclass models
    average over classes (macro) and use one-vs-rest ROC-AUC.
    """
    q, n = calibrated, len(predicted)
    if n == 0:
        return {}
    k = q.shape[1]
    out = {"accuracy": float(np.mean(np.take_along_axis(q, predicted[:, None], axis=1)))}
    targets = [1] if k == 2 else range(k)
    prec, rec, f1, auc = [], [], [], []
    for c in targets:
        said = predicted == c
        tp, pp, p = float(q[said, c].sum()), float(said.sum()), float(q[:, c].sum())
        prec.append(tp / pp if pp else 0.0)
        rec.append(tp / p if p else 0.0)
        f1.append(2 * tp / (pp + p) if pp + p else 0.0)
        auc.append(_unit_auc(scores[:, c], q[:, c]))
    out.update(
        precision=float(np.mean(prec)),
        recall=float(np.mean(rec)),
        f1=float(np.mean(f1)),
    )
    if all(math.isfinite(a) for a in auc):
        out["roc_auc"] = float(np.mean(auc))
    return out


def _drawn_metrics(
    drawn: np.ndarray, predicted: np.ndarray, scores: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Realized metrics for each row of drawn labels (draws x rows of class indices)."""
    n = drawn.shape[1]
    out = {"accuracy": np.mean(drawn == predicted[None, :], axis=1)}
    targets = [1] if k == 2 else range(k)
    prec, rec, f1, auc = [], [], [], []
    ones = np.ones(drawn.shape)
    for c in targets:
        said = predicted == c
        is_c = drawn == c
        tp = np.sum(is_c & said[None, :], axis=1).astype(float)
        pp, p = float(said.sum()), np.sum(is_c, axis=1).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            prec.append(np.full(len(tp), 0.0) if pp == 0 else tp / pp)
            rec.append(np.where(p > 0, tp / np.where(p > 0, p, 1), 0.0))
            f1.append(np.where(pp + p > 0, 2 * tp / (pp + p), 0.0))
        auc.append(weighted_auc(ones, scores[:, c], is_c.astype(float)))
    out["precision"], out["recall"], out["f1"] = (
        np.mean(prec, axis=0),
        np.mean(rec, axis=0),
        np.mean(f1, axis=0),
    )
    out["roc_auc"] = np.mean(auc, axis=0)
    del n
    return out


def estimate_classification(
    calibration: Calibration,
    proba: np.ndarray,
    predicted: np.ndarray,
    *,
    draws: int = DRAWS,
    max_rows: int = MAX_ROWS,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, Estimate]:
    """CBPE of one window: each metric's expected value and the band of its realized value.

    ``proba`` are the served (raw) probabilities in the calibration's class order and
    ``predicted`` the served labels as class indices.
    """
    scores = np.asarray(proba, dtype=float)
    predicted = np.asarray(predicted, dtype=np.int64)
    n = len(predicted)
    if n == 0:
        return {}
    q = calibration.apply(scores)
    point = expected_metrics(q, predicted, scores)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, max_rows, replace=False)) if n > max_rows else np.arange(n)
    qs, ps, ss = q[idx], predicted[idx], scores[idx]
    cum = np.cumsum(qs, axis=1)
    cum[:, -1] = 1.0
    samples: dict[str, list[np.ndarray]] = {}
    for start in range(0, draws, _BLOCK):
        b = min(_BLOCK, draws - start)
        u = rng.random((b, len(idx)))
        drawn = np.sum(cum[None, :, :-1] < u[:, :, None], axis=2)
        for name, values in _drawn_metrics(drawn, ps, ss, q.shape[1]).items():
            samples.setdefault(name, []).append(values)
    # The calibration's own uncertainty: the estimate under each bootstrap calibration.
    moved = [expected_metrics(calibration.apply(ss, m), ps, ss) for m in calibration.alternates]
    scale = math.sqrt(len(idx) / n)
    tail = (1 - level) / 2 * 100
    z = _z(level)
    out: dict[str, Estimate] = {}
    for name, value in point.items():
        s = np.concatenate(samples[name])
        s = s[np.isfinite(s)]
        if s.size == 0:
            out[name] = Estimate(value, math.nan, math.nan)
            continue
        lo, hi = np.percentile(s, [tail, 100 - tail])
        if scale < 1.0:  # a subsample: its spread around its mean, shrunk to the window's size
            centre = float(np.mean(s))
            lo, hi = value + (lo - centre) * scale, value + (hi - centre) * scale
        alt = np.array([m[name] for m in moved if name in m], dtype=float)
        spread = z * float(np.std(alt, ddof=1)) if alt.size > 1 else 0.0
        below = math.hypot(max(value - float(lo), 0.0), spread)
        above = math.hypot(max(float(hi) - value, 0.0), spread)
        out[name] = Estimate(value, value - below, value + above)
    return out


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


# -- DLE -------------------------------------------------------------------------------------

PREDICTION_COLUMN = "__prediction__"
_MAX_CATEGORIES = 250  # histogram gradient boosting's limit for categorical features


@dataclass
class LossModel:
    """A regressor's expected absolute and squared error as a function of its inputs and
    prediction (two gradient-boosted tree models), fitted on the validation data."""

    model: Any
    numeric: list[str]
    categorical: list[str]
    kurtosis: float
    rows: int
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What is kept in the version's metadata (the fitted trees are an artifact)."""
        return {
            "method": "dle",
            "numeric": self.numeric,
            "categorical": self.categorical,
            "kurtosis": self.kurtosis,
            "rows": self.rows,
        }

    def design(self, X: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
        """The loss model's input: categories as text, numbers, and the prediction."""
        frame = pd.DataFrame(index=range(len(values)))
        for c in self.categorical:
            frame[c] = X[c].astype(object).map(lambda v: None if v is None else str(v)).values
        for c in self.numeric:
            frame[c] = pd.to_numeric(X[c], errors="coerce").astype(float).values
        frame[PREDICTION_COLUMN] = np.asarray(values, dtype=float)
        return frame

    def losses(self, X: pd.DataFrame, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's expected absolute error and expected squared error."""
        if len(values) == 0:
            return np.empty(0), np.empty(0)
        pred = np.asarray(self.model.predict(self.design(X, values)), dtype=float)
        m = np.clip(pred[:, 0], 0.0, None)
        s = np.maximum(pred[:, 1], m**2)
        return m, s


def fit_loss_model(
    X_val: pd.DataFrame, y_val: Any, values: np.ndarray, kinds: Mapping[str, str], seed: int = 0
) -> LossModel:
    """Fit DLE's loss models on validation rows (``kinds``: field -> contract kind)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.multioutput import MultiOutputRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    categorical = [
        c
        for c, k in kinds.items()
        if k == "category" and X_val[c].astype(object).nunique() <= _MAX_CATEGORIES
    ]
    numeric = [c for c, k in kinds.items() if k in ("number", "integer", "boolean")]
    err = np.asarray(y_val, dtype=float) - np.asarray(values, dtype=float)
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    pre = ColumnTransformer(
        [("cat", encoder, categorical), ("num", "passthrough", [*numeric, PREDICTION_COLUMN])]
    )
    trees = HistGradientBoostingRegressor(
        max_iter=100,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        early_stopping=False,
        categorical_features=list(range(len(categorical))) or None,
        random_state=seed,
    )
    model = Pipeline([("pre", pre), ("trees", MultiOutputRegressor(trees))])
    loss = LossModel(model, numeric, categorical, 3.0, len(err))
    design = loss.design(X_val, values)
    model.fit(design, np.column_stack([np.abs(err), err**2]))
    _, s = loss.losses(X_val, values)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = err**4 / s**2
    ratio = ratio[np.isfinite(ratio)]
    loss.kurtosis = float(max(np.mean(ratio), 1.0)) if ratio.size else 3.0
    return loss


def estimate_regression(
    loss: LossModel, X: pd.DataFrame, values: np.ndarray, *, level: float = LEVEL
) -> dict[str, Estimate]:
    """DLE of one window: expected MAE and RMSE with normal bands for their realized values.

    The band of MAE uses each row's predicted variance of its absolute error
    (``E[e²] - E[|e|]²``); the band of RMSE that of the squared error, ``(κ - 1)·E[e²]²``, with
    the kurtosis κ of the validation errors.
    """
    n = len(values)
    if n == 0:
        return {}
    m, s = loss.losses(X, values)
    z = _z(level)
    mae = float(m.mean())
    sd_mae = math.sqrt(float(np.sum(s - m**2))) / n
    mse = float(s.mean())
    sd_mse = math.sqrt(float(np.sum((loss.kurtosis - 1) * s**2))) / n
    return {
        "mae": Estimate(mae, max(0.0, mae - z * sd_mae), mae + z * sd_mae),
        "rmse": Estimate(
            math.sqrt(mse), math.sqrt(max(0.0, mse - z * sd_mse)), math.sqrt(mse + z * sd_mse)
        ),
    }


# -- storage ---------------------------------------------------------------------------------


def dump_estimator(estimator: Calibration | LossModel, fmt: str) -> bytes:
    """Bytes of the version's ``estimator`` artifact: JSON for a calibration, the fitted loss
    model in the version's own artifact format (joblib or skops) for DLE."""
    from slipway.artifacts import dump_model

    if isinstance(estimator, Calibration):
        return estimator.to_bytes()
    return dump_model(estimator.model, fmt)  # type: ignore[arg-type]


def load_estimator(
    data: bytes, meta: dict[str, Any], fmt: str, *, trusted: Sequence[str] = (), source: str = ""
) -> Calibration | LossModel:
    """Inverse of :func:`dump_estimator`; ``meta`` is the version's ``meta["estimation"]``."""
    from slipway.artifacts import load_model

    if meta.get("method") == "cbpe":
        return Calibration.from_dict(json.loads(data))
    model = load_model(data, fmt, trusted=trusted, source=source)  # type: ignore[arg-type]
    return LossModel(
        model,
        list(meta["numeric"]),
        list(meta["categorical"]),
        float(meta["kurtosis"]),
        int(meta["rows"]),
    )
