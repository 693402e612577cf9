"""The gate's label-based checks: metrics against the champion with a paired test, slice
metrics, and calibration. Each takes both models' answers on the same holdout rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from slipway.estimation import weighted_auc
from slipway.evaluation import calibration_error
from slipway.lifecycle import stats
from slipway.lifecycle.policy import CheckPolicy

LOWER_IS_BETTER = frozenset({"brier", "log_loss", "mae", "rmse", "absolute_error", "squared_error"})


@dataclass
class Answers:
    """One model's answers on the holdout rows: class indices and probabilities, or values."""

    predicted: np.ndarray | None = None  # class index per row (classification)
    proba: np.ndarray | None = None
    values: np.ndarray | None = None  # regression


@dataclass
class Outcome:
    """One check's verdict (``pass``, ``fail`` or ``skip``), a sentence, and its numbers."""

    name: str
    verdict: str
    summary: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "summary": self.summary,
            "details": self.details,
        }


# -- per-row quantities and weighted metrics ---------------------------------------------------


def row_losses(name: str, y: np.ndarray, a: Answers) -> np.ndarray:
    """A per-row quantity whose mean is the metric: hits, Brier, log-loss or errors."""
    if name == "accuracy":
        assert a.predicted is not None
        return (a.predicted == y).astype(float)
    if name in ("absolute_error", "squared_error"):
        assert a.values is not None
        err = a.values - y
        return np.abs(err) if name == "absolute_error" else err**2
    assert a.proba is not None
    k = a.proba.shape[1]
    if name == "brier":
        return stats.brier_rows(y, a.proba, np.arange(k))
    if name == "log_loss":
        eps = np.finfo(float).eps
        return -np.log(np.clip(a.proba[np.arange(len(y)), y], eps, 1 - eps))
    raise ValueError(f"unknown per-row metric {name!r}")


def weighted_metrics(task: str, y: np.ndarray, a: Answers) -> dict[str, stats.Weighted]:
    """Each reported metric as a function of bootstrap weights (resamples x rows)."""
    if task == "regression":
        assert a.values is not None
        err = a.values - y
        abs_err, sq_err = np.abs(err), err**2
        return {
            "mae": stats.weighted_mean(abs_err),
            "rmse": lambda w: np.sqrt((w @ sq_err) / w.sum(axis=1)),
        }
    assert a.predicted is not None
    out: dict[str, stats.Weighted] = {
        "accuracy": stats.weighted_mean((a.predicted == y).astype(float))
    }
    k = 2 if a.proba is None else a.proba.shape[1]
    targets = [1] if k == 2 else list(range(k))
    out["f1"] = _weighted_f1(y, a.predicted, targets)
    if a.proba is not None:
        proba = a.proba
        present = [c for c in targets if 0 < np.sum(y == c) < len(y)]
        if len(present) == len(targets):
            out["roc_auc"] = lambda w: np.mean(
                [weighted_auc(w, proba[:, c], (y == c).astype(float)) for c in targets], axis=0
            )
        out["brier"] = stats.weighted_mean(row_losses("brier", y, a))
        out["log_loss"] = stats.weighted_mean(row_losses("log_loss", y, a))
    return out


def _weighted_f1(y: np.ndarray, pred: np.ndarray, targets: list[int]) -> stats.Weighted:
    def f1(w: np.ndarray) -> np.ndarray:
        scores = []
        for c in targets:
            is_c, said_c = (y == c).astype(float), (pred == c).astype(float)
            tp, denom = w @ (is_c * said_c), w @ is_c + w @ said_c
            with np.errstate(divide="ignore", invalid="ignore"):
                scores.append(np.where(denom > 0, 2 * tp / denom, 0.0))
        return np.asarray(np.mean(scores, axis=0))

    return f1


# -- metrics vs the champion -------------------------------------------------------------------


def compare_metrics(
    task: str, y: np.ndarray, cand: Answers, champ: Answers | None, policy: CheckPolicy
) -> Outcome:
    """Each metric for both models; accuracy with McNemar's exact test, the others with a
    paired bootstrap interval of the difference. Gated metrics decide the verdict."""
    mine = weighted_metrics(task, y, cand)
    ones = np.ones((1, len(y)))
    gated = policy.gated(task)
    if champ is None:
        values = {k: float(f(ones)[0]) for k, f in mine.items()}
        return Outcome(
            "metrics",
            "skip",
            "no champion to compare with; candidate's metrics recorded",
            {"candidate": values, "gated": gated},
        )
    theirs = weighted_metrics(task, y, champ)
    rows: dict[str, Any] = {}
    worse: list[str] = []
    better: list[str] = []
    for name in mine:
        if name not in theirs:
            continue
        sign = -1.0 if name in LOWER_IS_BETTER else 1.0
        a, b = mine[name], theirs[name]
        entry: dict[str, Any] = {
            "candidate": float(a(ones)[0]),
            "champion": float(b(ones)[0]),
            "gated": name in gated,
        }
        entry["difference"] = entry["candidate"] - entry["champion"]
        improvement = sign * entry["difference"]
        if name == "accuracy":
            assert cand.predicted is not None and champ.predicted is not None
            test = stats.mcnemar(cand.predicted == y, champ.predicted == y)
            entry.update(test="mcnemar", **test.to_dict())
            significant = test.p_value < policy.alpha
            is_worse = significant and improvement < -policy.margin
            is_better = significant and improvement > 0
        else:
            interval = stats.paired_bootstrap(
                len(y),
                lambda w, a=a, b=b: a(w) - b(w),  # type: ignore[misc]
                resamples=policy.resamples,
                seed=policy.seed,
                level=1 - policy.alpha,
            )
            entry.update(test="paired bootstrap", low=interval.low, high=interval.high)
            lo, hi = sorted((sign * interval.low, sign * interval.high))
            is_worse = hi < -policy.margin
            is_better = lo > 0
        entry["verdict"] = "worse" if is_worse else "better" if is_better else "no difference"
        rows[name] = entry
        if name in gated:
            (worse if is_worse else better if is_better else []).append(name)
    missing = [m for m in gated if m not in rows]
    details = {"metrics": rows, "gated": gated, "missing": missing, "require": policy.require}
    if worse:
        return Outcome(
            "metrics", "fail", f"worse than the champion beyond noise: {_and(worse)}", details
        )
    if policy.require == "better" and not better:
        return Outcome(
            "metrics",
            "fail",
            "not better than the champion beyond noise on any gated metric",
            details,
        )
    text = f"better beyond noise: {_and(better)}" if better else "no gated metric worse"
    return Outcome("metrics", "pass", text, details)


# -- slices ------------------------------------------------------------------------------------


def slices_of(
    frame: pd.DataFrame, kinds: Mapping[str, str], policy: CheckPolicy
) -> list[tuple[str, str, np.ndarray]]:
    """(feature, slice label, row mask) for each category value and numeric quantile bin."""
    out = []
    sp = policy.slices
    for name, kind in kinds.items():
        if name not in frame:
            continue
        col = frame[name]
        if kind in ("category", "boolean"):
            text = col.astype(object).map(lambda v: "(null)" if v is None or v != v else str(v))
            for value in text.value_counts().index[: sp.max_categories]:
                out.append((name, f"= {value}", (text == value).to_numpy()))
        elif kind in ("number", "integer"):
            x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
            finite = x[np.isfinite(x)]
            if finite.size == 0:
                continue
            edges = np.unique(np.quantile(finite, np.linspace(0, 1, sp.bins + 1)[1:-1]))
            bounds = [-np.inf, *edges.tolist(), np.inf]
            for lo, hi in itertools.pairwise(bounds):
                mask = (x > lo) & (x <= hi)
                out.append((name, f"in ({_num(lo)}, {_num(hi)}]", mask))
    return out


def compare_slices(
    task: str,
    y: np.ndarray,
    frame: pd.DataFrame,
    kinds: Mapping[str, str],
    cand: Answers,
    champ: Answers | None,
    policy: CheckPolicy,
) -> Outcome:
    """Flag slices where the candidate is worse than the champion by more than the tolerance,
    significantly after Benjamini-Hochberg across slices (McNemar for accuracy, a paired
    t-test for per-row losses)."""
    sp = policy.slices
    metric = sp.metric or ("accuracy" if task == "classification" else "absolute_error")
    if champ is None:
        return Outcome("slices", "skip", "no champion to compare with", {"metric": metric})
    if metric in ("brier", "log_loss") and (cand.proba is None or champ.proba is None):
        return Outcome("slices", "skip", f"{metric} needs probabilities", {"metric": metric})
    mine, theirs = row_losses(metric, y, cand), row_losses(metric, y, champ)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rows: list[dict[str, Any]] = []
    for feature, label, mask in slices_of(frame, kinds, policy):
        n = int(mask.sum())
        entry: dict[str, Any] = {"feature": feature, "slice": label, "rows": n}
        if n < sp.min_rows:
            entry.update(status="too_few_rows")
            rows.append(entry)
            continue
        a, b = mine[mask], theirs[mask]
        entry.update(candidate=float(a.mean()), champion=float(b.mean()))
        entry["difference"] = entry["candidate"] - entry["champion"]
        if metric == "accuracy":
            p = stats.mcnemar(a.astype(bool), b.astype(bool)).p_value
        else:
            d = a - b
            p = 1.0 if np.allclose(d, d[0]) else float(sps.ttest_rel(a, b).pvalue)
        entry.update(p_value=p, status="tested")
        rows.append(entry)
    tested = [r for r in rows if r["status"] == "tested"]
    if tested:
        adjusted = sps.false_discovery_control([r["p_value"] for r in tested], method="bh")
        for r, p_adj in zip(tested, adjusted, strict=True):
            r["p_adjusted"] = float(p_adj)
            worse = sign * r["difference"] < -sp.tolerance and p_adj < policy.alpha
            r["status"] = "worse" if worse else "ok"
    flagged = [r for r in rows if r["status"] == "worse"]
    details = {"metric": metric, "tolerance": sp.tolerance, "slices": rows}
    if flagged:
        shown = _and([f"{r['feature']} {r['slice']}" for r in flagged])
        return Outcome("slices", "fail", f"worse than the champion on {shown}", details)
    return Outcome(
        "slices", "pass", f"{len(tested)} slices tested, none worse beyond the tolerance", details
    )


# -- calibration -------------------------------------------------------------------------------


def compare_calibration(
    y: np.ndarray, cand: Answers, champ: Answers | None, policy: CheckPolicy
) -> Outcome:
    """Brier score, ECE and the reliability table of both models; fails when the candidate's
    ECE exceeds the champion's by more than the tolerance beyond noise."""
    if cand.proba is None:
        return Outcome("calibration", "skip", "the candidate gives no probabilities", {})
    bins = policy.calibration.bins
    k = cand.proba.shape[1]
    classes = np.arange(k)

    def describe(a: Answers) -> dict[str, Any]:
        assert a.proba is not None
        return {
            "brier": stats.brier(y, a.proba, classes),
            "ece": float(calibration_error(y, a.proba, classes)),
            "reliability": stats.reliability(y, a.proba, classes, bins),
        }

    details: dict[str, Any] = {
        "candidate": describe(cand),
        "tolerance": policy.calibration.ece_tolerance,
    }
    if champ is None or champ.proba is None or champ.proba.shape[1] != k:
        return Outcome(
            "calibration",
            "pass",
            f"ECE {details['candidate']['ece']:.4f}, Brier {details['candidate']['brier']:.4f}"
            " (no champion to compare with)",
            details,
        )
    details["champion"] = describe(champ)
    pa, pb = cand.proba, champ.proba
    interval = stats.paired_bootstrap(
        len(y),
        lambda w: calibration_error(y, pa, classes, w) - calibration_error(y, pb, classes, w),
        resamples=policy.resamples,
        seed=policy.seed,
        level=1 - policy.alpha,
    )
    details["ece_difference"] = interval.to_dict()
    c, h = details["candidate"], details["champion"]
    text = f"ECE {c['ece']:.4f} vs {h['ece']:.4f}, Brier {c['brier']:.4f} vs {h['brier']:.4f}"
    if interval.low > policy.calibration.ece_tolerance:
        return Outcome(
            "calibration", "fail", "worse calibrated than the champion: " + text, details
        )
    return Outcome("calibration", "pass", text, details)


def _and(items: list[str]) -> str:
    return ", ".join(items[:6]) + (f" and {len(items) - 6} more" if len(items) > 6 else "")


def _num(x: float) -> str:
    return "inf" if math.isinf(x) and x > 0 else "-inf" if math.isinf(x) else f"{x:.6g}"
