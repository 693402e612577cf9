"""The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched).

Sections: the verdict and its reasons; the per-feature table; reference vs current
distributions of flagged features; each statistic over time; performance over time; data
quality over time. "Over time" covers the earlier stored runs of the model and the run's own
windows.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from slipway.monitoring import svg
from slipway.monitoring.drift import FeatureResult

if TYPE_CHECKING:
    from slipway.monitoring.report import DriftReport

_COLORS = {"OK": "#2b8a3e", "WARN": "#e67700", "ALERT": "#c92a2a"}
_STATS = [
    ("mean_shift", "Mean shift (reference SD)"),
    ("variance_ratio", "Variance ratio"),
    ("wasserstein", "Wasserstein (reference SD)"),
    ("psi", "PSI over reference deciles"),
    ("js", "Jensen-Shannon distance"),
    ("p_adjusted", "Corrected p-value"),
]
_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#212529;max-width:1100px}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #dee2e6}
.badge{color:#fff;padding:.15rem .6rem;border-radius:.3rem;font-weight:bold}
table{border-collapse:collapse;font-size:.85rem}
td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}
.drift{color:#c92a2a;font-weight:bold}.minor{color:#1971c2}.grid{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0}figcaption{font-size:.8rem;color:#495057}
"""


def render_html(report: DriftReport) -> str:
    """The whole page as a string."""
    latest = report.deciding  # the window the verdict comes from
    who = escape(f"{report.model}:{report.version}" if report.model else "data")
    span = ""
    if latest.start and latest.end:
        span = f" &#183; {latest.start:%Y-%m-%d %H:%M:%S} to {latest.end:%Y-%m-%d %H:%M:%S} UTC"
    if len(report.windows) > 1:
        span += f" &#183; {escape(report.decision)}"
    color = _COLORS[report.status]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        f"<title>Slipway monitoring: {who} {report.status}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1><span class="badge" style="background:{color}">{report.status}</span> {who}</h1>',
        f"<p>{latest.rows:,} rows{span} &#183; baseline: {escape(report.baseline)} &#183; "
        f"alpha {report.policy.get('alpha')} ({escape(str(report.policy.get('correction')))})</p>",
        _reasons(report),
        "<h2>Features</h2>",
        _table([*latest.features, *latest.prediction]),
        "<h2>Distributions of flagged features</h2>",
        _distributions([*latest.features, *latest.prediction]),
    ]
    if report.skew is not None:
        from slipway.monitoring.terminal import skew_line

        parts += ["<h2>Feature skew</h2>", f"<p>{escape(skew_line(report.skew))}</p>"]
    timeline = [*report.history, *(w.to_dict(histograms=False) for w in report.windows)]
    labels = [_label(w) for w in timeline]
    parts += ["<h2>Statistics over time</h2>", _statistics(timeline, labels)]
    parts += ["<h2>Performance over time</h2>", _performance(timeline, labels, report.version)]
    parts += [
        "<h2>Estimated performance over time</h2>",
        _estimated(timeline, labels, report.version),
    ]
    parts += ["<h2>Data quality over time</h2>", _quality(timeline, labels)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _reasons(report: DriftReport) -> str:
    if not report.reasons:
        return "<p>No issues found.</p>"
    items = "".join(
        f'<li><b style="color:{_COLORS[r.severity]}">{r.severity}</b> {escape(r.message)}</li>'
        for r in report.reasons
    )
    return f"<ul>{items}</ul>"


def _table(results: list[FeatureResult]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("name", "status", "test", "p (corrected)", "effects", "detects", "n", "note")
    )
    rows = []
    for r in results:
        name = r.name if r.group == "feature" else f"prediction {r.name} vs {r.baseline}"
        effects = ", ".join(
            f"{escape(k)} {_num(v)}" + (" &#9650;" if k in r.exceeded else "")
            for k, v in r.effects.items()
        )
        unit = {"sd": " SD", "js": " JS"}.get(r.detectable_unit or "", "")
        detects = "" if r.min_detectable is None else f"&#8805; {r.min_detectable:.3g}{unit}"
        rows.append(
            f'<tr><td>{escape(name)}</td><td class="{escape(r.status)}">{escape(r.status)}</td>'
            f"<td>{escape(r.test or '-')}</td><td>{_num(r.p_adjusted)}</td><td>{effects}</td>"
            f"<td>{detects}</td><td>{r.current_rows:,}</td><td>{escape(r.message)}</td></tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _distributions(results: list[FeatureResult]) -> str:
    figures = []
    for r in results:
        h = r.histogram
        if not r.flagged or not h:
            continue
        if "edges" in h:
            chart = svg.histogram(h["edges"], h["reference"], h["current"])
            out = h.get("current_below", 0) + h.get("current_above", 0)
            note = f"; {out:.1%} of current values outside the reference range" if out else ""
        else:
            chart = svg.categories(h["categories"], h["reference"], h["current"])
            note = ""
        caption = escape(f"{r.name} vs {r.baseline}: {r.message}{note}")
        figures.append(f"<figure>{chart}<figcaption>{caption}</figcaption></figure>")
    if not figures:
        return "<p>No feature is flagged in the deciding window.</p>"
    return f'<div class="grid">{"".join(figures)}</div>'


def _statistics(timeline: list[dict[str, Any]], labels: list[str]) -> str:
    names = list(dict.fromkeys(f["name"] for w in timeline for f in w.get("features", [])))
    charts = []
    for key, title in _STATS:
        series: dict[str, list[float | None]] = {}
        floor = None
        for name in names:
            values: list[float | None] = []
            for w in timeline:
                f = next((x for x in w.get("features", []) if x["name"] == name), None)
                if f is None:
                    values.append(None)
                elif key == "p_adjusted":
                    values.append(f.get("p_adjusted"))
                else:
                    values.append((f.get("effects") or {}).get(key))
                    floor = (f.get("floors") or {}).get(key, floor)
            if any(v is not None for v in values):
                series[name] = values
        if series:
            guide = 0.05 if key == "p_adjusted" else floor
            label = "alpha" if key == "p_adjusted" else "floor"
            chart = svg.lines(series, labels, guide=guide, guide_label=label)
            charts.append(f"<figure>{chart}<figcaption>{escape(title)}</figcaption></figure>")
    return (
        f'<div class="grid">{"".join(charts)}</div>' if charts else "<p>No tested features yet.</p>"
    )


def _performance(timeline: list[dict[str, Any]], labels: list[str], version: int | None) -> str:
    metrics: dict[str, dict[str, Any]] = {}
    for i, w in enumerate(timeline):
        for perf in w.get("performance", []):
            if perf.get("version") != version:
                continue
            for name, m in perf.get("metrics", {}).items():
                entry = metrics.setdefault(
                    name, {"v": [None] * len(timeline), "b": [(None, None)] * len(timeline)}
                )
                entry["v"][i] = m.get("value")
                entry["b"][i] = (m.get("low"), m.get("high"))
                entry["registered"] = m.get("registered")
    if not metrics:
        return (
            "<p>No labeled predictions yet: send ground truth as feedback to see performance.</p>"
        )
    charts = [
        "<figure>"
        + svg.lines(
            {name: e["v"]},
            labels,
            bands={name: e["b"]},
            guide=e.get("registered"),
            guide_label="at registration",
        )
        + f"<figcaption>{escape(name)} with its 95% interval (version {version})"
        + "</figcaption></figure>"
        for name, e in metrics.items()
    ]
    return f'<div class="grid">{"".join(charts)}</div>'


def _estimated(timeline: list[dict[str, Any]], labels: list[str], version: int | None) -> str:
    """Each estimated metric with its band, the realized value where labels exist, and the
    value on validation dashed."""
    metrics: dict[str, dict[str, Any]] = {}
    n = len(timeline)
    for i, w in enumerate(timeline):
        est = w.get("estimation") or {}
        if est.get("version") != version or est.get("status") != "ok":
            continue
        realized = est.get("labeled", {}).get("metrics", {})
        for name, m in est.get("metrics", {}).items():
            e = metrics.setdefault(
                name, {"est": [None] * n, "real": [None] * n, "band": [(None, None)] * n}
            )
            e["est"][i], e["band"][i] = m.get("value"), (m.get("low"), m.get("high"))
            e["reference"] = m.get("reference")
            if name in realized:
                e["real"][i] = realized[name].get("realized")
    if not metrics:
        return (
            "<p>No estimate: the version has no estimator (registered without validation data).</p>"
        )
    charts = [
        "<figure>"
        + svg.lines(
            {"estimated": e["est"], "realized": e["real"]},
            labels,
            bands={"estimated": e["band"]},
            guide=e.get("reference"),
            guide_label="on validation",
        )
        + f"<figcaption>{escape(name)}: estimated without labels (95% band) and realized where "
        f"labels arrived (version {version})</figcaption></figure>"
        for name, e in metrics.items()
    ]
    return f'<div class="grid">{"".join(charts)}</div>'


def _quality(timeline: list[dict[str, Any]], labels: list[str]) -> str:
    nulls: dict[str, list[float | None]] = {}
    other: dict[str, list[float | None]] = {"contract violations": []}
    for i, w in enumerate(timeline):
        q = w.get("quality") or {}
        for name, entry in (q.get("features") or {}).items():
            nulls.setdefault(name, [None] * len(timeline))[i] = entry.get("null_rate")
        v = q.get("violations")
        other["contract violations"].append(None if not v else v.get("rate"))
        for check in ("out_of_range", "unseen_category"):
            worst = [
                e.get(check) for e in (q.get("features") or {}).values() if e.get(check) is not None
            ]
            other.setdefault(f"max {check.replace('_', ' ')}", [None] * len(timeline))[i] = (
                max(worst) if worst else None
            )
    charts = [
        f"<figure>{svg.lines(nulls, labels)}"
        "<figcaption>Null rate per feature</figcaption></figure>",
        f"<figure>{svg.lines(other, labels)}<figcaption>Contract-violation, out-of-range and "
        "unseen-category rates</figcaption></figure>",
    ]
    return f'<div class="grid">{"".join(charts)}</div>'


def _label(window: dict[str, Any]) -> str:
    end = window.get("end")
    return end[:19].replace("T", " ") if end else "now"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else escape(str(v))
