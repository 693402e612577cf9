"""Chart specifications for the browser, built from stored monitoring reports.

A spec is plain JSON that ``static/charts.js`` draws with uPlot; it travels in a
``data-chart`` attribute (escaped by the template), so no page needs an inline script.

* ``bars``: categories or bins on x, one bar series per group (reference, current);
* ``lines``: x in epoch seconds (drawn in the browser's zone), one line per series, each with
  an optional confidence band (``low``/``high``) and a dashed guide (a registered value); a
  series with ``"points": true`` is drawn as markers only (no line).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

Spec = dict[str, Any]

# The series of a performance chart once an estimate is beside the realized values.
REALIZED = "realized"
ESTIMATED = "estimated"
DISAGREES = "realized outside the estimate's band"
ESTIMATE_COLOR = "#e8590c"
DISAGREE_COLOR = "#c92a2a"


def distribution(result: dict[str, Any]) -> Spec | None:
    """Reference vs current shares of one feature (or prediction) in the latest window."""
    h = result.get("histogram")
    if not h:
        return None
    name = (
        result["name"]
        if result.get("group", "feature") == "feature"
        else (f"prediction {result['name']} vs {result.get('baseline', 'reference')}")
    )
    if "edges" in h:
        edges = h["edges"]
        labels = [f"{_fmt(a)} – {_fmt(b)}" for a, b in itertools.pairwise(edges)]
        ticks = [_fmt(a) for a in edges[:-1]]
        outside = float(h.get("current_below", 0) or 0) + float(h.get("current_above", 0) or 0)
        note = f"{outside:.1%} of current values outside the reference range" if outside else ""
    else:
        labels = [str(c) for c in h["categories"]]
        ticks = labels
        note = ""
    return {
        "kind": "bars",
        "title": name,
        "status": result.get("status", ""),
        "message": result.get("message", ""),
        "note": note,
        "labels": labels,
        "ticks": ticks,
        "ylabel": "share",
        "series": [
            {"label": result.get("baseline", "reference"), "values": list(h["reference"])},
            {"label": "current", "values": list(h["current"])},
        ],
    }


def distributions(report: dict[str, Any]) -> list[Spec]:
    """Every distribution of the latest window: features first, then predictions."""
    latest = (report.get("windows") or [{}])[-1]
    results = [*latest.get("features", []), *latest.get("prediction", [])]
    return [s for s in (distribution(r) for r in results) if s is not None]


def timeline(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The windows behind "over time": earlier stored runs, then this run's windows."""
    return [*report.get("history", []), *report.get("windows", [])]


def performance(report: dict[str, Any]) -> list[Spec]:
    """Realized performance of the report's version over time, with its 95% intervals, and
    the performance estimated without labels (CBPE/DLE) beside it, with its band."""
    version = report.get("version")
    points = [(w, _epoch(w.get("end"))) for w in timeline(report)]
    points = [(w, t) for w, t in points if t is not None]
    metrics: dict[str, Spec] = {}
    for i, (w, _) in enumerate(points):
        for perf in w.get("performance", []):
            if perf.get("version") != version:
                continue
            for name, m in (perf.get("metrics") or {}).items():
                spec = metrics.setdefault(name, _metric_spec(name, version, len(points)))
                line = spec["series"][0]
                line["values"][i] = m.get("value")
                line["low"][i] = m.get("low")
                line["high"][i] = m.get("high")
                if m.get("registered") is not None:
                    spec["guide"] = {"value": m["registered"], "label": "at registration"}
    _add_estimates(metrics, [w for w, _ in points], version)
    for spec in metrics.values():
        spec["x"] = [t for _, t in points]
    return list(metrics.values())


def _add_estimates(metrics: dict[str, Spec], windows: list[dict[str, Any]], version: Any) -> None:
    """Add to each metric's chart the estimate of every window with its band and, where the
    labels disagreed with it beyond the band (concept drift), a marker at the realized value
    and an entry in ``disagreements`` (the window's end, realized, and the estimate on the
    labeled rows with its band, which the report judged it against)."""
    n = len(windows)
    for i, w in enumerate(windows):
        est = w.get("estimation") or {}
        if est.get("version") != version or est.get("status") != "ok":
            continue
        labeled = (est.get("labeled") or {}).get("metrics") or {}
        for name, m in (est.get("metrics") or {}).items():
            spec = metrics.setdefault(name, _metric_spec(name, version, n))
            line = _series(spec, ESTIMATED, n, band=True)
            line["values"][i], line["low"][i], line["high"][i] = (
                m.get("value"),
                m.get("low"),
                m.get("high"),
            )
            if "guide" not in spec and m.get("reference") is not None:
                spec["guide"] = {"value": m["reference"], "label": "estimated on validation"}
            against = labeled.get(name)
            if against is not None and against.get("agrees") is False:
                marks = _series(spec, DISAGREES, n, band=False)
                marks["values"][i] = against.get("realized")
                on_labeled = against.get("estimated") or {}
                spec.setdefault("disagreements", []).append(
                    {
                        "end": w.get("end"),
                        "realized": against.get("realized"),
                        "estimated": on_labeled.get("value"),
                        "low": on_labeled.get("low"),
                        "high": on_labeled.get("high"),
                    }
                )
    for spec in metrics.values():
        labels = [s["label"] for s in spec["series"]]
        if ESTIMATED in labels:
            spec["series"][0]["label"] = REALIZED
            spec["title"] = (
                f"{spec['metric']} (version {version}): realized and estimated, 95% bands"
            )


def _series(spec: Spec, label: str, n: int, *, band: bool) -> dict[str, Any]:
    """The series ``label`` of a chart, created (empty) on first use."""
    for found in spec["series"]:
        if found["label"] == label:
            return found
    line: dict[str, Any] = {"label": label, "values": [None] * n}
    if band:
        line.update(low=[None] * n, high=[None] * n, color=ESTIMATE_COLOR)
    else:
        line.update(points=True, color=DISAGREE_COLOR)
    spec["series"].append(line)
    return line


def _metric_spec(name: str, version: Any, n: int) -> Spec:
    return {
        "kind": "lines",
        "metric": name,
        "title": f"{name} (version {version}), 95% interval",
        "x": [],
        "time": True,
        "series": [{"label": name, "values": [None] * n, "low": [None] * n, "high": [None] * n}],
    }


def _epoch(text: str | None) -> float | None:
    return None if not text else datetime.fromisoformat(text).timestamp()


def _fmt(v: float) -> str:
    return f"{v:.3g}"
