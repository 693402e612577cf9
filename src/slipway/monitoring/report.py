"""The report of a monitoring run: one verdict per window, the reasons for it, and renderings.

A run covers one window (``--since 24h``) or consecutive windows (``--window 1d --since 30d``).
Its verdict comes from one window, the *deciding* window: the worst of the windows that hold
enough rows to judge (``min_rows``), the latest of those when several are equally bad; when no
window holds enough rows, the latest window. So a run that ends on an empty window right after
traffic stopped still reports the ALERT of the days before, and says which window it was.
Earlier windows and earlier stored runs make the "over time" part of the HTML report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slipway.monitoring import drift
from slipway.monitoring.drift import FeatureResult
from slipway.problems import jsonable

OK, WARN, ALERT = "OK", "WARN", "ALERT"
_RANK = {OK: 0, WARN: 1, ALERT: 2}
SCHEMA = 1


@dataclass(frozen=True)
class Reason:
    """Why a window is not OK: how serious, a stable code, and a sentence for people."""

    severity: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready view."""
        return {"severity": self.severity, "code": self.code, "message": self.message}


@dataclass
class WindowReport:
    """Everything checked in one window of the prediction log (or one pair of frames)."""

    start: datetime | None
    end: datetime | None
    rows: int
    features: list[FeatureResult] = field(default_factory=list)
    prediction: list[FeatureResult] = field(default_factory=list)
    performance: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    estimation: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """OK, WARN or ALERT: the most serious reason, OK without any."""
        return max((r.severity for r in self.reasons), key=_RANK.__getitem__, default=OK)

    def judge(self) -> None:
        """Turn what the checks found into reasons (called once the checks are decided)."""
        reasons: list[Reason] = []
        if self.rows == 0:
            reasons.append(Reason(WARN, "empty_window", "the window has no rows"))
        for r in [*self.features, *self.prediction]:
            if r.flagged:
                code = "feature_drift" if r.group == "feature" else "prediction_drift"
                severity = ALERT if r.severity == "alert" or r.group != "feature" else WARN
                where = r.name if r.group == "feature" else f"prediction {r.name} vs {r.baseline}"
                reasons.append(Reason(severity, code, f"{where}: {r.message}"))
        if self.rows:
            for status, code, text in (
                (drift.INSUFFICIENT, "insufficient_data", "too few values to judge"),
                (drift.NOT_IN_REFERENCE, "not_in_reference", "never seen in the baseline"),
                (drift.MISSING, "missing_feature", "absent from the window"),
            ):
                names = [r.name for r in self.features if r.status == status]
                if names:
                    detail = next(r.message for r in self.features if r.status == status)
                    reasons.append(Reason(WARN, code, f"{_names(names)}: {text} ({detail})"))
        for flag in self.quality.get("flags", []):
            reasons.append(Reason(WARN, f"quality_{flag['check']}", flag["message"]))
        for perf in self.performance:
            if perf.get("unknown_labels"):
                reasons.append(_unknown_labels(perf))
            for name, m in perf.get("metrics", {}).items():
                if m.get("degraded"):
                    reasons.append(
                        Reason(
                            ALERT,
                            "performance_drop",
                            f"version {perf['version']}: {name} {m['value']:.3g} "
                            f"(95% CI {m['low']:.3g}-{m['high']:.3g}) vs {m['registered']:.3g} "
                            "at registration",
                        )
                    )
        reasons.extend(_estimation_reasons(self.estimation))
        self.reasons = reasons

    def to_dict(self, *, histograms: bool = True) -> dict[str, Any]:
        """JSON-ready view; ``histograms=False`` keeps only the numbers plotted over time."""
        return jsonable(
            {
                "start": _iso(self.start),
                "end": _iso(self.end),
                "rows": self.rows,
                "status": self.status,
                "reasons": [r.to_dict() for r in self.reasons],
                "features": [f.to_dict(histogram=histograms) for f in self.features],
                "prediction": [f.to_dict(histogram=histograms) for f in self.prediction],
                "performance": self.performance,
                "quality": self.quality,
                "estimation": self.estimation,
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowReport:
        """Inverse of :meth:`to_dict`."""
        return cls(
            start=_parse(data.get("start")),
            end=_parse(data.get("end")),
            rows=int(data["rows"]),
            features=[FeatureResult.from_dict(f) for f in data.get("features", [])],
            prediction=[FeatureResult.from_dict(f) for f in data.get("prediction", [])],
            performance=list(data.get("performance", [])),
            quality=dict(data.get("quality", {})),
            reasons=[Reason(**r) for r in data.get("reasons", [])],
            estimation=dict(data.get("estimation", {})),
        )


@dataclass
class DriftReport:
    """The outcome of one monitoring run.

    ``status`` is OK, WARN or ALERT with ``reasons``; ``features`` maps each feature to its
    :class:`FeatureResult` in the latest window; ``windows`` holds every window, oldest first.
    Render with :meth:`to_json`, :meth:`to_html` or ``rich.print(report)``.
    """

    windows: list[WindowReport]
    policy: dict[str, Any]
    model: str | None = None
    version: int | None = None
    baseline: str = "reference"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    history: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    run_id: int | None = None
    # The skew audit of the latest window (models with features): AuditReport.to_dict().
    skew: dict[str, Any] | None = None

    @property
    def latest(self) -> WindowReport:
        """The most recent window."""
        return self.windows[-1]

    @property
    def decided_by(self) -> int:
        """Index in ``windows`` of the window the verdict comes from: the worst window with at
        least ``min_rows`` rows (the latest of equals), else the latest window."""
        enough = int(self.policy.get("min_rows", 0) or 0)
        judged = [i for i, w in enumerate(self.windows) if w.rows and w.rows >= enough]
        if not judged:
            return len(self.windows) - 1
        return max(judged, key=lambda i: (_RANK[self.windows[i].status], i))

    @property
    def deciding(self) -> WindowReport:
        """The window the verdict comes from (see :attr:`decided_by`); for one window, it."""
        return self.windows[self.decided_by]

    @property
    def decision(self) -> str:
        """Which window the verdict comes from, in a sentence (for several windows)."""
        i, n = self.decided_by, len(self.windows)
        w, latest = self.deciding, self.latest
        enough = int(self.policy.get("min_rows", 0) or 0)
        where = f"window {i + 1} of {n} ({_span(w)})"
        if w.rows < enough or not w.rows:
            return f"verdict from the latest {where}: no window has {enough:,} rows to judge"
        text = f"verdict from {where}, the worst with at least {enough:,} rows"
        if i != n - 1 and latest.rows < max(enough, 1):
            text += f"; the latest window has {latest.rows:,} rows, too few to judge"
        return text

    @property
    def status(self) -> str:
        """OK, WARN or ALERT, from the deciding window."""
        return self.deciding.status

    @property
    def reasons(self) -> list[Reason]:
        """Why the deciding window is not OK (empty when it is)."""
        return self.deciding.reasons

    @property
    def features(self) -> dict[str, FeatureResult]:
        """Per-feature results of the deciding window, by feature name."""
        return {f.name: f for f in self.deciding.features}

    @property
    def flagged(self) -> list[str]:
        """Names of the features flagged in the deciding window."""
        return [f.name for f in self.deciding.features if f.flagged]

    @property
    def exit_code(self) -> int:
        """0 for OK, 1 for WARN, 2 for ALERT: what ``slipway monitor`` exits with."""
        return _RANK[self.status]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view: the deciding and the latest window in full, others without
        histograms."""
        full = {self.decided_by, len(self.windows) - 1}
        deciding = self.deciding
        return jsonable(
            {
                "schema": SCHEMA,
                "model": self.model,
                "version": self.version,
                "created_at": _iso(self.created_at),
                "run_id": self.run_id,
                "status": self.status,
                "reasons": [r.to_dict() for r in self.reasons],
                "decided_by": {
                    "window": self.decided_by,
                    "start": _iso(deciding.start),
                    "end": _iso(deciding.end),
                    "rows": deciding.rows,
                },
                "baseline": self.baseline,
                "policy": self.policy,
                "windows": [w.to_dict(histograms=i in full) for i, w in enumerate(self.windows)],
                "history": self.history,
                "alerts": self.alerts,
                "skew": self.skew,
            }
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as strict JSON (no NaN or Infinity)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_html(self) -> str:
        """One self-contained HTML page with inline SVG plots; opens offline."""
        from slipway.monitoring.html import render_html

        return render_html(self)

    def summary(self) -> dict[str, Any]:
        """The deciding window without histograms: what history and timelines keep."""
        return self.deciding.to_dict(histograms=False)

    def __rich__(self) -> Any:
        from slipway.monitoring.terminal import render_terminal

        return render_terminal(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        """Inverse of :meth:`to_dict`."""
        return cls(
            windows=[WindowReport.from_dict(w) for w in data["windows"]],
            policy=dict(data.get("policy", {})),
            model=data.get("model"),
            version=data.get("version"),
            baseline=data.get("baseline", "reference"),
            created_at=_parse(data.get("created_at")) or datetime.now(UTC),
            history=list(data.get("history", [])),
            alerts=list(data.get("alerts", [])),
            run_id=data.get("run_id"),
            skew=data.get("skew"),
        )


def _estimation_reasons(est: dict[str, Any]) -> list[Reason]:
    """Estimated performance below the reference (ALERT); labels disagreeing with the estimate
    beyond its band (WARN: concept drift)."""
    out = []
    version = est.get("version")
    for name, m in est.get("metrics", {}).items():
        if m.get("drop"):
            out.append(
                Reason(
                    ALERT,
                    "estimated_performance_drop",
                    f"version {version}: estimated {name} {m['value']:.3g} (95% band "
                    f"{m['low']:.3g}-{m['high']:.3g}) vs {m['reference']:.3g} on validation, "
                    "before any label",
                )
            )
    for name, m in est.get("labeled", {}).get("metrics", {}).items():
        if not m.get("agrees", True):
            e = m["estimated"]
            out.append(
                Reason(
                    WARN,
                    "estimate_disagrees",
                    f"version {version}: realized {name} {m['realized']:.3g} is outside the "
                    f"estimate's band {e['low']:.3g}-{e['high']:.3g}: the labels no longer "
                    "follow the model's probabilities (concept drift)",
                )
            )
    return out


def worst(statuses: Sequence[str]) -> str:
    """The most serious of several statuses."""
    return max(statuses, key=_RANK.__getitem__, default=OK)


def _unknown_labels(perf: dict[str, Any]) -> Reason:
    """Feedback whose labels the version cannot score: a data problem, never silence."""
    n, labeled = perf["unknown_labels"], perf["labeled"]
    examples = ", ".join(repr(v) for v in perf.get("unknown_examples", []))
    classes = perf.get("classes")
    expected = (
        "its classes " + ", ".join(repr(c) for c in classes) if classes else "numbers (a regressor)"
    )
    return Reason(
        WARN,
        "unknown_labels",
        f"version {perf['version']}: {n:,} of {labeled:,} feedback labels are not {expected}"
        + (f" (got {examples})" if examples else "")
        + "; they are left out of performance: send labels as the model's classes",
    )


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _span(w: WindowReport) -> str:
    if w.start is None or w.end is None:
        return "the whole data"
    return f"{w.start:%Y-%m-%d %H:%M:%S} → {w.end:%Y-%m-%d %H:%M:%S} UTC"


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
