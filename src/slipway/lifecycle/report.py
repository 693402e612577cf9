"""Renderings of a gate result: a terminal table and a self-contained HTML page."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from slipway.lifecycle.check import CheckResult

_STYLE = {"pass": "green", "fail": "bold red", "skip": "dim"}
_COLOR = {"pass": "#1a7f37", "fail": "#cf222e", "skip": "#6e7781"}


def render_table(result: CheckResult) -> Group:
    """The verdict, one row per check, and the metric comparison."""
    head = Text.assemble(
        (f"{result.status.upper()} ", _STYLE[result.status]),
        f"{result.candidate} against {result.champion or 'no champion'} on "
        f"{result.holdout.get('rows', 0):,} holdout rows ({result.holdout.get('source')})",
    )
    table = Table(title_justify="left", show_header=True)
    for col in ("check", "verdict", "what was found"):
        table.add_column(col)
    for c in result.checks:
        table.add_row(c.name, f"[{_STYLE[c.verdict]}]{c.verdict}[/]", c.summary)
    parts: list[Any] = [head, table]
    metrics = next((c for c in result.checks if c.name == "metrics"), None)
    if metrics is not None and metrics.details.get("metrics"):
        mt = Table(title="metrics on the same rows", title_justify="left")
        for col in ("metric", "candidate", "champion", "difference", "test", "verdict"):
            mt.add_column(col)
        for name, m in metrics.details["metrics"].items():
            mt.add_row(
                name + (" *" if m["gated"] else ""),
                f"{m['candidate']:.4f}",
                f"{m['champion']:.4f}",
                f"{m['difference']:+.4f}",
                _test(m),
                m["verdict"],
            )
        parts.append(mt)
        parts.append(Text("* gated metric", style="dim"))
    return Group(*parts)


def _test(m: dict[str, Any]) -> str:
    if m.get("test") == "mcnemar":
        return f"McNemar p={m['p_value']:.3g}"
    low, high = m.get("low"), m.get("high")
    if low is None or high is None:
        return "paired bootstrap"
    return f"95% CI [{low:+.4f}, {high:+.4f}]"


def render_html(result: CheckResult) -> str:
    """One HTML page with inline CSS: the verdict, each check with its numbers."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(c.name)}</td><td style='color:{_COLOR[c.verdict]};font-weight:bold'>"
        f"{e(c.verdict)}</td><td>{e(c.summary)}</td></tr>"
        for c in result.checks
    )
    sections = []
    for c in result.checks:
        body = _details_html(c.name, c.details)
        if body:
            sections.append(f"<h2>{e(c.name)}</h2>{body}")
    title = f"Check of {result.candidate}: {result.status.upper()}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left}"
        "th{background:#f6f8fa}</style></head><body>"
        f"<h1 style='color:{_COLOR[result.status]}'>{e(title)}</h1>"
        f"<p>Against {e(result.champion or 'no champion')} on "
        f"{result.holdout.get('rows', 0):,} holdout rows ({e(str(result.holdout))}), "
        f"{e(result.created_at.isoformat())}.</p>"
        f"<table><tr><th>check</th><th>verdict</th><th>what was found</th></tr>{rows}</table>"
        + "".join(sections)
        + "</body></html>"
    )


def _details_html(name: str, details: dict[str, Any]) -> str:
    if name == "metrics" and details.get("metrics"):
        return _table(
            ["metric", "candidate", "champion", "difference", "test", "verdict"],
            [
                [
                    k,
                    _f(m["candidate"]),
                    _f(m["champion"]),
                    _f(m["difference"]),
                    _test(m),
                    m["verdict"],
                ]
                for k, m in details["metrics"].items()
            ],
        )
    if name == "slices" and details.get("slices"):
        return _table(
            ["feature", "slice", "rows", "candidate", "champion", "p (BH)", "status"],
            [
                [
                    s["feature"],
                    s["slice"],
                    s["rows"],
                    _f(s.get("candidate")),
                    _f(s.get("champion")),
                    _f(s.get("p_adjusted")),
                    s["status"],
                ]
                for s in details["slices"]
            ],
        )
    if name == "calibration" and details.get("candidate"):
        out = []
        for role in ("candidate", "champion"):
            if role in details:
                d = details[role]
                out.append(f"<h3>{role}: Brier {_f(d['brier'])}, ECE {_f(d['ece'])}</h3>")
                out.append(
                    _table(
                        ["bin", "rows", "mean predicted", "observed"],
                        [
                            [
                                f"{r['low']:.1f}-{r['high']:.1f}",
                                r["rows"],
                                _f(r["predicted"]),
                                _f(r["observed"]),
                            ]
                            for r in d["reliability"]
                        ],
                    )
                )
        return "".join(out)
    if name == "contract" and details.get("problems"):
        return "<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in details["problems"]) + "</ul>"
    if name == "invariance" and details.get("perturbations"):
        keys = sorted({k for p in details["perturbations"] for k in p})
        return _table(keys, [[_f(p.get(k)) for k in keys] for p in details["perturbations"]])
    if name == "speed":
        rows = [
            [role, _f(d.get("row_ms")), _f(d.get("batch_1000_ms")), d.get("backend", "")]
            for role, d in details.items()
            if role in ("candidate", "champion")
        ]
        return _table(["version", "ms per row", "ms per 1,000 rows", "backend"], rows)
    return ""


def _table(head: list[str], rows: list[list[Any]]) -> str:
    e = html.escape
    th = "".join(f"<th>{e(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _f(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
