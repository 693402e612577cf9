"""What an experiment measures, and the per-prediction values it is measured on.

A metric is either computed from labels sent to ``/v1/feedback`` (``accuracy``, ``error_rate``
for classifiers; ``mae`` for regressors) or from business outcomes (``conversion``: the share of
predictions followed by an outcome of the experiment's name with a positive value; ``value``:
the mean value of that outcome per prediction, 0 where none came). Label metrics are observed
on labeled predictions only; outcome metrics on every prediction, since "no conversion" is an
observation too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slipway.exceptions import ConfigError


@dataclass(frozen=True)
class Metric:
    """A metric's name and how to read it."""

    name: str
    binary: bool  # 0/1 per observation: compared with the two-proportion z-test, else Welch
    higher_is_better: bool
    source: str  # "labels" or "outcome"
    tasks: tuple[str, ...]
    default_min_effect: float | None  # None: 5% of the control's mean (analysis.py)
    unit: str

    @property
    def direction(self) -> int:
        """+1 when higher is better, -1 when lower is."""
        return 1 if self.higher_is_better else -1


METRICS: Mapping[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", True, True, "labels", ("classification",), 0.02, "share"),
        Metric("error_rate", True, False, "labels", ("classification",), 0.02, "share"),
        Metric("mae", False, False, "labels", ("regression",), None, "absolute error"),
        Metric(
            "conversion", True, True, "outcome", ("classification", "regression"), 0.01, "share"
        ),
        Metric("value", False, True, "outcome", ("classification", "regression"), None, "value"),
    )
}


def metric(name: str, task: str, outcome: str | None) -> Metric:
    """The metric ``name`` for a model of ``task``; ConfigError says which ones fit."""
    found = METRICS.get(name)
    fits = [m.name for m in METRICS.values() if task in m.tasks]
    if found is None or task not in found.tasks:
        raise ConfigError(
            f"Metric {name!r} does not fit a {task} model; choose one of {', '.join(fits)}."
        )
    if found.source == "outcome" and not outcome:
        raise ConfigError(
            f"Metric {name!r} is read from business outcomes: name the outcome with --outcome "
            "(e.g. --outcome converted), as sent to /v1/feedback in "
            '{"prediction_id": ..., "outcome": "converted", "value": 1.0}.'
        )
    if found.source == "labels" and outcome:
        raise ConfigError(
            f"Metric {name!r} is read from labels, not outcomes; drop --outcome {outcome!r} or "
            "use --metric conversion or value."
        )
    return found


def same_label(output: Mapping[str, Any], label: Any) -> bool:
    """Whether a logged output's label equals a true label (compared as text, as monitoring
    does, so ``1`` and ``"1"`` agree)."""
    return str(output.get("label")) == str(label)


def label_values(
    m: Metric, outputs: Sequence[Mapping[str, Any]], labels: Sequence[Any]
) -> np.ndarray:
    """Per labeled prediction: 1/0 correct (accuracy), 1/0 wrong (error rate) or the absolute
    error (mae); NaN where the label cannot be read (a non-number for a regressor)."""
    if m.name == "mae":
        pairs = zip(outputs, labels, strict=True)
        return np.array([abs(_float(y) - _float(o.get("value"))) for o, y in pairs])
    right = np.array([same_label(o, y) for o, y in zip(outputs, labels, strict=True)], dtype=float)
    return right if m.name == "accuracy" else 1.0 - right


def outcome_values(
    m: Metric, ids: Sequence[str], values: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction: the metric value (conversion 1/0, or the outcome's value, 0 if none) and
    whether an outcome was recorded for it."""
    got = np.array([values.get(i, math.nan) for i in ids], dtype=float)
    seen = ~np.isnan(got)
    filled = np.where(seen, got, 0.0)
    if m.name == "conversion":
        return (filled > 0).astype(float), seen
    return filled, seen


def _float(v: Any) -> float:
    if isinstance(v, bool) or v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
