"""Chart specifications for the browser, built from stored monitoring reports.

A spec is plain JSON that ``static/charts.js`` draws with uPlot; it travels in a
``data-chart`` attribute (escaped by the template), so no page needs an inline script.

* ``bars``: categories or bins on x, one bar series per group (reference, current);
* ``lines``: x in epoch seconds (drawn in the browser's zone), one line per series, each with
  an optional confidence band (``low``/``high``) and a dashed guide (a registered value).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

Spec = dict[str, Any]


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
    """Realized performance of the report's version over time, with its 95% intervals."""
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
    for spec in metrics.values():
        spec["x"] = [t for _, t in points]
    return list(metrics.values())


def _metric_spec(name: str, version: Any, n: int) -> Spec:
    return {
        "kind": "lines",
        "title": f"{name} (version {version}), 95% interval",
        "x": [],
        "time": True,
        "series": [{"label": name, "values": [None] * n, "low": [None] * n, "high": [None] * n}],
    }


def _epoch(text: str | None) -> float | None:
    return None if not text else datetime.fromisoformat(text).timestamp()


def _fmt(v: float) -> str:
    return f"{v:.3g}"
