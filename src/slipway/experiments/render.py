"""Drawing an experiment report (its ``to_dict()``) for a terminal (rich) and as HTML.

Both views show the same things in the same order: the verdict, the test that decided and why;
each arm's traffic and metric; the difference with its intervals; the sample size planned and
still needed; the SRM check; agreement between the versions and what counting only their
disagreements would need; shadow health; guardrails; warnings.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

VERDICT_STYLE = {
    "better": "bold green",
    "worse": "bold red",
    "no_difference": "bold yellow",
    "cannot_trust": "bold magenta",
}
_COLORS = {"better": "#2b8a3e", "worse": "#c92a2a", "no_difference": "#e67700"}


def headline(data: dict[str, Any]) -> str:
    """One line naming the experiment: id, mode, versions, split, metric, state."""
    e = data["experiment"]
    mode = "shadow" if e["mode"] == "shadow" else f"A/B {e['split']:.0%} to the candidate"
    metric = e["metric"] + (f" of {e['outcome']!r}" if e.get("outcome") else "")
    state = "running" if e["status"] == "running" else f"stopped ({e['decision']})"
    return (
        f"{e['id']}: {e['model']}:{e['candidate_version']} vs {e['model']}:"
        f"{e['control_version']} (production), {mode}, metric {metric}, {state}, "
        f"started {e['started_at'][:16].replace('T', ' ')} UTC"
    )


def render_terminal(data: dict[str, Any]) -> RenderableType:
    """The report on one screen."""
    v = data["verdict"]
    title = Text()
    title.append(f" {v['text'].upper()} ", style=f"reverse {VERDICT_STYLE.get(v['code'], 'bold')}")
    title.append("  " + headline(data))
    parts: list[RenderableType] = [title]
    decided = f"decided by the {v['decided_by']}: " if v.get("decided_by") else ""
    parts.append(Text(f"  {decided}{v['why']}"))
    e = data["experiment"]
    if e["status"] != "running" and e.get("stop_reason"):
        parts.append(Text(f"  stopped: {e['stop_reason']}", style="bold"))
    parts.append(_arms_table(data))
    for line in lines(data):
        parts.append(Text("  " + line))
    if data["guardrails"]:
        table = Table(title="Guardrails (treatment minus control)", title_justify="left")
        for col in ("guardrail", "value", "bound", "state", "detail"):
            table.add_column(col)
        for c in data["guardrails"]:
            state = "TRIPPED" if c["tripped"] else ("waiting" if c["value"] is None else "ok")
            table.add_row(
                c["name"], _num(c["value"]), _num(c["bound"]), state, c["detail"], style=None
            )
        parts.append(table)
    for w in data["warnings"]:
        parts.append(Text(f"  warning: {w}", style="yellow"))
    return Group(*parts)


def _arms_table(data: dict[str, Any]) -> Table:
    table = Table(title=f"Arms ({data['metric']})", title_justify="left")
    for col in (
        "arm",
        "version",
        "predictions",
        "observations",
        data["metric"],
        "p50 ms",
        "p99 ms",
    ):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for arm, a in data["arms"].items():
        lat = a.get("latency_ms") or {}
        table.add_row(
            arm,
            str(a["version"]),
            f"{a['predictions']:,}",
            f"{a['observations']:,}",
            _num(a["value"]),
            _num(lat.get("p50")),
            _num(lat.get("p99")),
        )
    return table


def lines(data: dict[str, Any]) -> list[str]:
    """The numbers under the table, one sentence each."""
    out = []
    c = data.get("comparison")
    config = data["experiment"]["config"]
    alpha_ci = f"{1 - config.get('alpha', 0.05):.0%}"
    if c:
        seq = c["sequential"]
        out.append(
            f"difference (candidate - control): {_num(c['difference'], signed=True)} "
            f"({_pct(c['relative'])} relative); {alpha_ci} CI {_interval(c['interval'])}; "
            f"{c['test']}: statistic {_num(c['statistic'])}, p = {_num(c['p_value'])}"
        )
        out.append(
            f"always-valid sequential test: interval {_interval(seq['interval'])}, "
            f"p = {_num(seq['p_value'])} (valid however often it is looked at)"
        )
        planned = ", ".join(f"{k} {_int(v)}" for k, v in c["planned"].items())
        have = ", ".join(f"{k} {_int(v)}" for k, v in c["observations"].items())
        out.append(
            f"sample size for {config.get('power', 0.8):.0%} power at a difference of "
            f"{_num(c['min_effect'])}: {planned} "
            f"(have {have}; power now {_pct(c['power_now'])})"
        )
        if c.get("discordant"):
            d = c["discordant"]
            out.append(
                f"discordant pairs: control right and candidate wrong {d['control_only']}, "
                f"candidate right and control wrong {d['candidate_only']}"
            )
    srm = data.get("srm")
    if srm:
        counts = ", ".join(f"{k} {v:,}" for k, v in srm["counts"].items())
        state = "ok" if srm["ok"] else "FAILED: the result cannot be trusted"
        out.append(
            f"sample ratio check ({srm.get('counted', 'assignments')}): {counts} against "
            f"{srm['expected_shares']['treatment']:.0%} treatment; chi-square "
            f"{_num(srm['chi2'])}, p = {_num(srm['p_value'])}: {state}"
        )
    a = data.get("agreement")
    if a:
        out.append(
            f"agreement ({a['source']}): {_pct(a['rate'])} of {a['rows']:,} rows; mean largest "
            f"probability (or value) difference {_num(a['mean_diff'])}, "
            f"largest {_num(a['max_diff'])}"
        )
    d = data.get("disagreement_sample")
    if d:
        if "labeled_pairs_here" in d:
            out.append(
                f"only disagreements ({_pct(d['disagreement'])} of rows) carry information: "
                f"{_int(d['labeled_pairs_here'])} labeled pairs settle this comparison here, "
                f"where an A/B test would need {_int(d['ab_test_per_arm'])} labeled predictions "
                "per arm"
            )
        else:
            out.append(
                f"only disagreements ({_pct(d['disagreement'])} of rows) carry information: "
                f"counting only them needs {_fmt(d['on_disagreements'])} observations per arm "
                f"(from {_fmt(d['traffic_for_disagreements'])} of traffic), against "
                f"{_fmt(d['on_all_traffic'])} on all traffic"
            )
    t = data.get("triggered")
    if t:
        out.append(
            f"on disagreements only: control {_num(t['control'])}, candidate "
            f"{_num(t['treatment'])}, difference {_num(t['difference'], signed=True)}, "
            f"{t['test']} p = {_num(t['p_value'])} ({_fmt(t['observations'])})"
        )
    s = data.get("shadow")
    if s:
        lat = s["latency_ms"]
        out.append(
            f"shadow: {s['shadowed']:,} answered, {s['errors']:,} failed, {s['skipped']:,} not "
            f"scored (queue full, too late, or the shadow failing or stalled) of {s['rows']:,}; "
            f"latency p50/p99: production "
            f"{_num(lat['primary']['p50'])}/{_num(lat['primary']['p99'])} ms per request, "
            f"shadow {_num(lat['shadow']['p50'])}/{_num(lat['shadow']['p99'])} ms per model call"
        )
        for example in s["error_examples"]:
            out.append(f"shadow error: {example}")
    return out


def render_html(data: dict[str, Any]) -> str:
    """One self-contained page (inline CSS, no script, nothing fetched)."""
    v = data["verdict"]
    color = _COLORS.get(v["code"], "#862e9c")
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(x))}</td>"
            for x in (
                arm,
                a["version"],
                f"{a['predictions']:,}",
                f"{a['observations']:,}",
                _num(a["value"]),
                _num((a.get("latency_ms") or {}).get("p50")),
                _num((a.get("latency_ms") or {}).get("p99")),
            )
        )
        + "</tr>"
        for arm, a in data["arms"].items()
    )
    guard = "".join(
        f"<tr><td>{escape(c['name'])}</td><td>{_num(c['value'])}</td><td>{_num(c['bound'])}</td>"
        f"<td>{'TRIPPED' if c['tripped'] else 'ok'}</td><td>{escape(c['detail'])}</td></tr>"
        for c in data["guardrails"]
    )
    decided = f"Decided by the {escape(v['decided_by'])}. " if v.get("decided_by") else ""
    stop = data["experiment"].get("stop_reason")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        f"<title>Slipway experiment {escape(data['experiment']['id'])}: {escape(v['text'])}"
        "</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#212529;"
        "max-width:1100px}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;"
        "border-bottom:1px solid #dee2e6}.badge{color:#fff;padding:.15rem .6rem;"
        "border-radius:.3rem;font-weight:bold}table{border-collapse:collapse;font-size:.85rem}"
        "td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}</style>",
        "</head><body>",
        f'<h1><span class="badge" style="background:{color}">{escape(v["text"])}</span></h1>',
        f"<p>{escape(headline(data))}</p>",
        f"<p>{decided}{escape(v['why'])}</p>",
        f"<p><b>Stopped:</b> {escape(stop)}</p>" if stop else "",
        "<h2>Arms</h2><table><tr><th>arm</th><th>version</th><th>predictions</th>"
        f"<th>observations</th><th>{escape(data['metric'])}</th><th>p50 ms</th><th>p99 ms</th>"
        f"</tr>{rows}</table>",
        "<h2>Numbers</h2><ul>",
        *(f"<li>{escape(line)}</li>" for line in lines(data)),
        "</ul>",
    ]
    if guard:
        parts.append(
            "<h2>Guardrails</h2><table><tr><th>guardrail</th><th>value</th><th>bound</th>"
            f"<th>state</th><th>detail</th></tr>{guard}</table>"
        )
    if data["warnings"]:
        parts.append("<h2>Warnings</h2><ul>")
        parts.extend(f"<li>{escape(w)}</li>" for w in data["warnings"])
        parts.append("</ul>")
    parts.append(
        f"<p><small>Generated {escape(data['generated_at'][:19])} UTC by Slipway.</small></p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _num(v: Any, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return f"{v:+.4g}" if signed else f"{v:.4g}"


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _int(v: Any) -> str:
    return "unbounded" if v is None else f"{math.ceil(v):,}"


def _fmt(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_int(v)}" for k, v in values.items())


def _interval(pair: list[Any]) -> str:
    return f"[{_num(pair[0], signed=True)}, {_num(pair[1], signed=True)}]"
