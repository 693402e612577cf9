"""The skew audit: recompute served features offline, point in time, and compare.

For a sample of a model's logged predictions (raw request fields and the features serving
computed), :func:`audit` recomputes every feature with the version's definitions *as
registered*, through :func:`~slipway.features.training_frame` over the sources as training
reads them, and compares feature by feature: counts exactly, numbers within a relative
tolerance (1e-9 by default), nulls as nulls. A feature that differs on any row is skew.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from slipway.clock import utcnow
from slipway.exceptions import FeatureDefinitionError
from slipway.features.offline import training_frame
from slipway.features.versions import definitions
from slipway.store import Store
from slipway.store import features as sql

if TYPE_CHECKING:
    from slipway.versions import ModelVersion

EXIT_OK, EXIT_SKEW, EXIT_NOTHING = 0, 2, 3
EXAMPLES = 3


@dataclass
class FeatureAudit:
    """One feature: rows compared, rows that differ, and a few of them."""

    name: str
    rows: int
    mismatches: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return dict(self.__dict__)


@dataclass
class AuditReport:
    """The audit of one model's served features over a time range."""

    model: str
    start: datetime
    end: datetime
    rows: int
    versions: list[int]
    features: list[FeatureAudit]
    tolerance: float
    skipped: int = 0  # predictions of versions without features

    @property
    def mismatches(self) -> int:
        """Feature values that differ, over every feature."""
        return sum(f.mismatches for f in self.features)

    @property
    def status(self) -> str:
        """``"ok"``, ``"skew"``, or ``"nothing"`` (no served prediction with features)."""
        if not self.rows:
            return "nothing"
        return "skew" if self.mismatches else "ok"

    @property
    def exit_code(self) -> int:
        """0 identical, 2 skew, 3 nothing to audit."""
        return {"ok": EXIT_OK, "skew": EXIT_SKEW, "nothing": EXIT_NOTHING}[self.status]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (``slipway features audit --json``, the monitoring report)."""
        return {
            "model": self.model,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "status": self.status,
            "rows": self.rows,
            "versions": self.versions,
            "tolerance": self.tolerance,
            "mismatches": self.mismatches,
            "skipped": self.skipped,
            "features": [f.to_dict() for f in self.features],
        }


def audit(
    store: Store,
    model: str,
    version_of: Callable[[int], ModelVersion],
    *,
    since: timedelta = timedelta(days=1),
    sample: int | None = 10_000,
    tolerance: float = 1e-9,
    end: datetime | None = None,
) -> AuditReport:
    """Recompute the features of (a sample of) ``model``'s predictions over the last ``since``
    and compare them with what serving computed. ``version_of(n)`` returns version ``n``."""
    end = end or utcnow()
    start = end - since
    served = sql.served_inputs(store, model, start, end, sample)
    by_version: dict[int, list[dict[str, Any]]] = {}
    for _pid, _at, version, inputs in served:
        by_version.setdefault(version, []).append(orjson.loads(inputs))
    results: dict[str, FeatureAudit] = {}
    rows = skipped = 0
    audited = []
    for version, records in sorted(by_version.items()):
        mv = version_of(version)
        if "features" not in mv.meta:
            skipped += len(records)
            continue
        audited.append(version)
        rows += len(records)
        for name, (n, bad, examples) in _compare(store, mv, records, tolerance).items():
            have = results.setdefault(name, FeatureAudit(name, 0, 0))
            have.rows += n
            have.mismatches += bad
            have.examples.extend(examples[: EXAMPLES - len(have.examples)])
    return AuditReport(model, start, end, rows, audited, list(results.values()), tolerance, skipped)


def _compare(
    store: Store, mv: ModelVersion, records: list[dict[str, Any]], tolerance: float
) -> dict[str, tuple[int, int, list[dict[str, Any]]]]:
    meta = mv.meta["features"]
    defs = definitions(mv)
    at = meta["at"]
    frame = pd.DataFrame.from_records(records)
    raw = [n for n in mv.request_contract.names if n in frame.columns]
    if at not in frame.columns:
        raise FeatureDefinitionError(
            f"{mv.ref}: logged predictions lack the time field {at!r}; cannot audit."
        )
    given = frame[raw].copy()
    given[at] = pd.to_datetime(given[at], utc=True, format="ISO8601")
    offline = training_frame(given, defs, at=at, store=store)
    out = {}
    keys = [*defs.entities, at]
    for name in defs.names:
        served = frame[name].to_numpy() if name in frame.columns else np.full(len(frame), None)
        fresh = offline[name].to_numpy()
        bad = ~_equal(served, fresh, tolerance)
        examples = [
            {
                **{k: _plain(given[k].iloc[i]) for k in keys},
                "served": _plain(served[i]),
                "offline": _plain(fresh[i]),
            }
            for i in np.flatnonzero(bad)[:EXAMPLES].tolist()
        ]
        out[name] = (len(frame), int(bad.sum()), examples)
    return out


def _equal(served: np.ndarray, fresh: np.ndarray, tolerance: float) -> np.ndarray:
    """Per row: the served value equals the recomputed one (numbers within tolerance)."""
    a = pd.Series(served, dtype=object)
    b = pd.Series(fresh, dtype=object)
    both_null = a.isna().to_numpy() & b.isna().to_numpy()
    try:
        x = pd.to_numeric(a).to_numpy(dtype=float)
        y = pd.to_numeric(b).to_numpy(dtype=float)
    except (ValueError, TypeError):
        same = (a == b).to_numpy(dtype=bool)
        return same | both_null
    scale = np.maximum(1.0, np.maximum(np.abs(np.nan_to_num(x)), np.abs(np.nan_to_num(y))))
    with np.errstate(invalid="ignore"):
        close = np.abs(x - y) <= tolerance * scale
    return np.where(np.isnan(x) | np.isnan(y), both_null, close)


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
