"""Data quality of a window: missing values, values outside the training range, categories
never seen in training, and requests refused for breaking the contract.

Each rate is compared with its reference (the training data's null rate; zero for the others)
and flagged only when the lower end of its 95% Wilson interval exceeds the reference plus the
floor, so a few odd rows in a small window are reported but do not raise a flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from slipway.monitoring.columns import Column
from slipway.monitoring.policy import QualityFloors
from slipway.monitoring.stats import wilson_interval


@dataclass(frozen=True)
class Expectation:
    """What training showed about a feature: its range (numbers) or categories, its null rate."""

    null_rate: float = 0.0
    low: float | None = None
    high: float | None = None
    categories: frozenset[str] | None = None

    @classmethod
    def of(cls, reference: Column) -> Expectation:
        """Learn the expectation from a prepared reference column."""
        if reference.kind == "numeric" and reference.values.size:
            return cls(reference.null_rate, float(reference.values[0]), float(reference.values[-1]))
        if reference.kind == "categorical":
            return cls(reference.null_rate, categories=frozenset(map(str, reference.categories)))
        return cls(reference.null_rate)


@dataclass(frozen=True)
class Tally:
    """What the quality check takes from one prepared column: its rows, its present values,
    and how many of them fall outside the training range (numbers) or are categories training
    never saw; None where that does not apply."""

    rows: int
    present: int
    outside: int | None = None
    unseen: int | None = None

    @property
    def null_rate(self) -> float:
        """Share of rows without a usable value (0 for an empty sample)."""
        return 1 - self.present / self.rows if self.rows else 0.0


def tally(col: Column, exp: Expectation) -> Tally:
    """Count in ``col`` what :func:`check_quality` rates against ``exp``."""
    present = col.present
    if col.kind == "numeric" and exp.low is not None and exp.high is not None and present:
        inside = np.searchsorted(col.values, exp.high, side="right") - np.searchsorted(
            col.values, exp.low, side="left"
        )
        return Tally(col.rows, present, outside=int(present - inside))
    if col.kind == "categorical" and exp.categories is not None and present:
        known = np.array([str(c) in exp.categories for c in col.categories], dtype=bool)
        return Tally(col.rows, present, unseen=int(col.counts[~known].sum()))
    return Tally(col.rows, present)


def check_quality(
    columns: Mapping[str, Column | Tally],
    expected: Mapping[str, Expectation],
    floors: QualityFloors,
    violations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Rates per feature and the contract violations of one window, with the flags they raise.

    ``columns`` holds each feature's prepared column, or its :func:`tally` when the column
    itself is gone (the runner keeps one window's sorted numbers one feature at a time).
    """
    features: dict[str, dict[str, Any]] = {}
    flags: list[dict[str, Any]] = []
    rows = max((c.rows for c in columns.values()), default=0)
    for name, col in columns.items():
        exp = expected.get(name, Expectation())
        counted = col if isinstance(col, Tally) else tally(col, exp)
        entry: dict[str, Any] = {
            "null_rate": counted.null_rate,
            "reference_null_rate": exp.null_rate,
        }
        nulls = counted.rows - counted.present
        _flag(flags, name, "null_rate", nulls, counted.rows, exp.null_rate, floors.null_rate)
        if counted.outside is not None:
            outside, present = counted.outside, counted.present
            entry["out_of_range"] = outside / present
            _flag(flags, name, "out_of_range", outside, present, 0.0, floors.out_of_range)
        elif counted.unseen is not None:
            unseen, present = counted.unseen, counted.present
            entry["unseen_category"] = unseen / present
            _flag(flags, name, "unseen_category", unseen, present, 0.0, floors.unseen_category)
        features[name] = entry
    out: dict[str, Any] = {"rows": rows, "features": features, "violations": None, "flags": flags}
    if violations is not None:
        refused = int(violations.get("rows", 0))
        total = refused + rows
        out["violations"] = {**violations, "rate": refused / total if total else 0.0}
        _flag(flags, None, "contract_violations", refused, total, 0.0, floors.contract_violations)
    return out


_WHAT = {
    "null_rate": "missing values",
    "out_of_range": "values outside the training range",
    "unseen_category": "categories never seen in training",
    "contract_violations": "rows refused for breaking the contract",
}


def _flag(
    flags: list[dict[str, Any]],
    feature: str | None,
    check: str,
    count: int,
    n: int,
    reference: float,
    floor: float,
) -> None:
    if n == 0 or count == 0:
        return
    low, _ = wilson_interval(count, n)
    if low <= reference + floor:
        return
    where = f"{feature}: " if feature else ""
    flags.append(
        {
            "feature": feature,
            "check": check,
            "rate": count / n,
            "reference": reference,
            "floor": floor,
            "message": (
                f"{where}{count / n:.1%} {_WHAT[check]} (reference {reference:.1%}, "
                f"floor +{floor:.0%}; 95% interval from {low:.1%})"
            ),
        }
    )
