"""The terminal rendering of a report (rich): verdict, reasons, per-feature table, predictions,
performance, data quality and, for several windows, the timeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from slipway.monitoring.drift import FeatureResult

if TYPE_CHECKING:
    from slipway.monitoring.report import DriftReport

TIME = "%Y-%m-%d %H:%M:%S"
STATUS_STYLE = {"OK": "bold green", "WARN": "bold yellow", "ALERT": "bold red"}
FEATURE_STYLE = {
    "ok": "green",
    "drift": "bold red",
    "minor": "cyan",
    "insufficient_data": "yellow",
    "empty": "yellow",
    "all_null": "yellow",
    "not_in_reference": "yellow",
    "missing": "yellow",
}
_SHORT = {
    "mean_shift": "mean",
    "variance_ratio": "var",
    "wasserstein": "W",
    "psi": "PSI",
    "js": "JS",
    "unseen_share": "unseen",
}


def render_terminal(report: DriftReport) -> RenderableType:
    """Everything a person on call needs from one run, on one screen."""
    latest = report.deciding  # the window the verdict comes from
    title = Text()
    title.append(f" {report.status} ", style=f"reverse {STATUS_STYLE[report.status]}")
    who = f"{report.model}:{report.version}" if report.model else "data"
    span = ""
    if latest.start and latest.end:
        span = f"  {latest.start:{TIME}} → {latest.end:{TIME}} UTC"
    title.append(f"  {who}{span}  {latest.rows:,} rows  baseline: {report.baseline}")
    parts: list[RenderableType] = [title]
    if len(report.windows) > 1:
        parts.append(Text(f"  {report.decision}", style="dim"))
    for r in report.reasons:
        parts.append(Text(f"  • [{r.severity}] {r.message}", style=STATUS_STYLE[r.severity]))
    if not report.reasons:
        parts.append(Text("  • no issues found", style="green"))
    parts.append(_results_table("Features", latest.features))
    if latest.prediction:
        parts.append(_results_table("Predictions", latest.prediction))
    for perf in latest.performance:
        parts.append(_performance_table(perf))
    if latest.estimation:
        parts.append(_estimation_table(latest.estimation))
    violations = latest.quality.get("violations")
    if violations and violations.get("requests"):
        codes = ", ".join(f"{k} {v}" for k, v in violations.get("codes", {}).items())
        parts.append(
            Text(
                f"Contract violations: {violations['requests']} request(s), "
                f"{violations['rows']} row(s) refused ({violations['rate']:.2%})"
                + (f"; {codes}" if codes else "")
            )
        )
    elif violations:
        parts.append(Text("Contract violations: no request refused"))
    if report.skew is not None:
        parts.append(Text(skew_line(report.skew), style="red" if report.skew["mismatches"] else ""))
    if len(report.windows) > 1:
        parts.append(_timeline(report))
    return Group(*parts)


def skew_line(skew: dict[str, Any]) -> str:
    """One line on the skew audit of a monitoring run."""
    if not skew.get("rows"):
        return "Feature skew audit: no served prediction with features in the window"
    bad = [f"{f['name']} ({f['mismatches']})" for f in skew["features"] if f["mismatches"]]
    if not bad:
        return (
            f"Feature skew audit: {skew['rows']:,} predictions recomputed offline, every "
            "feature identical"
        )
    return f"Feature skew audit: {skew['rows']:,} predictions; differing: {', '.join(bad)}"


def _results_table(title: str, results: Sequence[FeatureResult]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("name", "status", "p (corrected)", "effects", "detects ≥", "n"):
        table.add_column(col, justify="right" if col == "n" else "left")
    for r in results:
        name = r.name if r.group == "feature" else f"{r.name} vs {r.baseline}"
        effects = ", ".join(
            f"{'[bold]' if k in r.exceeded else ''}{_SHORT.get(k, k)} {_num(v)}"
            f"{'[/bold]' if k in r.exceeded else ''}"
            for k, v in r.effects.items()
        )
        unit = {"sd": " SD", "js": " JS"}.get(r.detectable_unit or "", "")
        table.add_row(
            name,
            Text(r.status, style=FEATURE_STYLE.get(r.status, "")),
            "-" if r.p_adjusted is None else f"{r.test} {r.p_adjusted:.2g}",
            effects or r.message,
            "-" if r.min_detectable is None else f"{r.min_detectable:.3g}{unit}",
            f"{r.current_rows:,}",
        )
    return table


def _performance_table(perf: dict[str, Any]) -> RenderableType:
    delay = perf.get("delay_seconds") or {}
    caption = (
        f"{perf['labeled']:,} of {perf['rows']:,} predictions labeled ({perf['coverage']:.1%})"
        + (f"; label delay median {_duration(delay['median'])}" if delay else "")
        + (
            f"; {perf['unknown_labels']:,} label(s) not among the classes, left out"
            if perf.get("unknown_labels")
            else ""
        )
    )
    if perf["status"] != "ok":
        return Text(f"Performance of version {perf['version']}: {perf['status']} ({caption})")
    table = Table(
        title=f"Performance of version {perf['version']}", caption=caption, title_justify="left"
    )
    for col in ("metric", "value", "95% interval", "at registration", "change", ""):
        table.add_column(col)
    for name, m in perf["metrics"].items():
        table.add_row(
            name,
            _num(m["value"]),
            f"{_num(m['low'])} – {_num(m['high'])} ({m['interval']})",
            _num(m["registered"]),
            "-" if m["delta"] is None else f"{m['delta']:+.3g}",
            Text("degraded", style="bold red") if m["degraded"] else "",
        )
    return table


def _estimation_table(est: dict[str, Any]) -> RenderableType:
    """Estimated performance (no labels needed) beside realized performance where labels are."""
    version = est.get("version")
    if est.get("status") != "ok":
        why = est.get("reason") or est.get("status")
        return Text(f"Estimated performance of version {version}: {why}")
    labeled = est.get("labeled", {})
    realized = labeled.get("metrics", {})
    table = Table(
        title=f"Estimated performance of version {version} ({est.get('method', '').upper()}, "
        f"{est['rows']:,} rows, no labels needed)",
        caption=f"realized: on the {labeled.get('rows', 0):,} labeled rows, against the "
        "estimate for those rows",
        title_justify="left",
    )
    for col in ("metric", "estimated", "95% band", "on validation", "realized", ""):
        table.add_column(col)
    for name, m in est["metrics"].items():
        r = realized.get(name)
        note = Text("below validation", style="bold red") if m["drop"] else Text("")
        if r is not None and not r["agrees"]:
            note.append(" realized outside the band", style="yellow")
        table.add_row(
            name,
            _num(m["value"]),
            f"{_num(m['low'])} – {_num(m['high'])}",
            _num(m["reference"]),
            "-" if r is None else _num(r["realized"]),
            note,
        )
    return table


def _timeline(report: DriftReport) -> Table:
    table = Table(title="Windows (UTC)", title_justify="left")
    for col in ("start", "end", "rows", "status", "flagged"):
        table.add_column(col)
    deciding = report.decided_by
    for i, w in enumerate(report.windows):
        flagged = [f.name for f in [*w.features, *w.prediction] if f.flagged]
        status = Text(w.status, style=STATUS_STYLE[w.status])
        if i == deciding:
            status.append(" ← verdict", style="bold")
        table.add_row(
            "-" if w.start is None else f"{w.start:{TIME}}",
            "-" if w.end is None else f"{w.end:{TIME}}",
            f"{w.rows:,}",
            status,
            ", ".join(flagged) or "-",
        )
    return table


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v != v:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
