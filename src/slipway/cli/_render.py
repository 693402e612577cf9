"""Rich renderings of registry objects: the model card and the tables of `slipway models`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from slipway.versions import ArtifactCheck, AuditEvent, ModelSummary, ModelVersion


def model_card(mv: ModelVersion) -> RenderableType:
    """Everything a reviewer asks about a version, on one screen."""
    meta = mv.meta
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("version", f"{mv.ref}  [dim]({mv.status})[/]")
    facts.add_row("aliases", ", ".join(mv.aliases) or "-")
    # Which engine answers, and why, near the top: a refused ONNX graph is a slower service.
    onnx = meta.get("onnx")
    backend = meta.get("backend", "sklearn")
    facts.add_row("serving backend", f"{backend}" + (f" ({onnx['reason']})" if onnx else ""))
    facts.add_row("description", mv.description or "-")
    facts.add_row("created", f"{mv.created_at:%Y-%m-%d %H:%M:%S} UTC by {mv.created_by}")
    task = mv.task
    if mv.classes is not None:
        task += f" (classes: {', '.join(str(c) for c in mv.classes)})"
    facts.add_row("task", task)
    facts.add_row("pipeline", " → ".join(s["class"].rsplit(".", 1)[-1] for s in meta["steps"]))
    training = meta["training"]
    facts.add_row(
        "training data", f"{training['rows']:,} rows, sha256 {training['fingerprint'][:16]}…"
    )
    if "validation" in meta:
        facts.add_row("validation data", f"{meta['validation']['rows']:,} rows")
    facts.add_row("artifact", f"{mv.format}, sha256 {mv.sha256}")
    if meta.get("git"):
        dirty = " (uncommitted changes)" if meta["git"]["dirty"] else ""
        facts.add_row("git commit", meta["git"]["commit"][:12] + dirty)
    env = meta.get("env", {})
    facts.add_row("libraries", ", ".join(f"{k} {v}" for k, v in env.items()))
    local = meta.get("local_modules") or {}
    if local:
        own = ", ".join(f"{m} (from {d})" if d else m for m, d in local.items())
        facts.add_row("own code", own + " [dim]must be importable where it is served[/]")
    if mv.tags:
        facts.add_row("tags", ", ".join(f"{k}={v}" for k, v in mv.tags.items()))

    parts: list[RenderableType] = [facts]
    if mv.metrics or meta.get("cv"):
        parts.append(_metrics_table(mv.metrics, meta.get("cv", {})))
    parts.append(_features_table(meta["contract"]))
    allowances = _allowances(meta["contract"]["fields"])
    if allowances:
        parts.append(allowances)
    return Panel(Group(*parts), title=f"[bold]Model card: {mv.name}[/]", expand=False)


def _metrics_table(metrics: dict[str, float], cv: dict[str, dict[str, float]]) -> Table:
    table = Table(title="Metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("validation", justify="right")
    table.add_column("cross-validation", justify="right")
    for name in dict.fromkeys([*metrics, *cv]):
        val = f"{metrics[name]:.4f}" if name in metrics else "-"
        cvs = f"{cv[name]['mean']:.4f} ± {cv[name]['std']:.4f}" if name in cv else "-"
        table.add_row(name, val, cvs)
    return table


def _features_table(contract: dict[str, Any]) -> Table:
    table = Table(title="Input contract", title_justify="left")
    table.add_column("field")
    table.add_column("kind")
    table.add_column("training values")
    table.add_column("nulls")
    table.add_column("unseen")
    for f in contract["fields"]:
        if f["min"] is not None:
            seen = f"{f['min']:.6g} … {f['max']:.6g}"
        elif f["categories"] is not None:
            cats = [str(c) for c in f["categories"]]
            seen = ", ".join(cats[:6]) + (f" (+{len(cats) - 6})" if len(cats) > 6 else "")
        else:
            seen = "-"
        unseen = "-"
        if f["kind"] == "category" and f["categories"] is not None:
            unseen = f.get("unseen") or contract.get("unseen", "reject")
        nulls = "allowed" if f["nullable"] else "refused"
        table.add_row(f["name"], f["kind"], seen, nulls, unseen)
    return table


def _allowances(fields: Sequence[dict[str, Any]]) -> RenderableType | None:
    """Why fields take nulls, flag unseen categories or have explicit limits, grouped."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for f in fields:
        for what, key in (
            ("nulls allowed", "null_reason"),
            ("unseen categories flagged", "unseen_reason"),
            ("explicit range", "range_reason"),
        ):
            if f.get(key):
                grouped.setdefault((what, f[key]), []).append(f["name"])
    if not grouped:
        return None
    lines = [f"{what} in {', '.join(names)}: {why}" for (what, why), names in grouped.items()]
    return Text("\n".join(lines))


def models_table(models: Sequence[ModelSummary]) -> Table:
    """One row per model."""
    table = Table(title="Models", title_justify="left")
    for col in ("name", "versions", "latest", "aliases", "created"):
        table.add_column(col)
    for m in models:
        aliases = ", ".join(f"{a} → {v}" for a, v in m.aliases.items()) or "-"
        table.add_row(
            m.name, str(m.versions), str(m.latest_version), aliases, f"{m.created_at:%Y-%m-%d}"
        )
    return table


def versions_table(versions: Sequence[ModelVersion]) -> Table:
    """One row per version of a model."""
    table = Table(title=f"Versions of {versions[0].name}" if versions else "Versions")
    for col in ("version", "status", "aliases", "created", "by", "description", "sha256"):
        table.add_column(col)
    for v in versions:
        table.add_row(
            str(v.version),
            v.status,
            ", ".join(v.aliases) or "-",
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.created_by,
            v.description or "-",
            v.sha256[:12],
        )
    return table


def checks_table(checks: Sequence[ArtifactCheck]) -> Table:
    """The outcome of `slipway models verify`."""
    table = Table(title="Artifact integrity", title_justify="left")
    for col in ("model", "version", "artifact", "sha256", "status", "detail"):
        table.add_column(col)
    style = {"ok": "green", "missing": "red", "corrupted": "bold red", "unloadable": "bold red"}
    for c in checks:
        status = f"[{style[c.status]}]{c.status}[/]"
        table.add_row(c.model, str(c.version), c.role, c.sha256[:16], status, escape(c.detail))
    return table


def audit_table(events: Sequence[AuditEvent]) -> Table:
    """Registry changes, newest first."""
    table = Table(title="Audit trail", title_justify="left")
    for col in ("at", "actor", "action", "model", "alias", "from", "to"):
        table.add_column(col)
    for e in events:
        via = e.detail.get("via")
        if e.model is not None:
            subject = f"{e.model}:{e.version}" if e.version else e.model
        else:
            subject = f"key {e.detail['key']!r}" if "key" in e.detail else "-"
        table.add_row(
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            f"{e.actor} ({via})" if via else e.actor,
            e.action,
            subject,
            e.alias or "-",
            "-" if e.from_version is None else str(e.from_version),
            "-" if e.to_version is None else str(e.to_version),
        )
    return table


def served_predictions(demo: Any) -> Table:
    """The quickstart's served predictions: inputs, answer, id (a ``ServingDemo``)."""
    body = demo.predictions
    table = Table(
        title=f"POST {demo.url}/v1/models/{body['model']}/predict -> version {body['version']}",
        title_justify="left",
    )
    for column in ("amount", "merchant", "country", "label", "p(fraud)", "prediction_id", "truth"):
        table.add_column(column, justify="right" if column in ("amount", "p(fraud)") else "left")
    for row, item, truth in zip(demo.rows, body["predictions"], demo.labels, strict=True):
        p = item.get("probabilities", {}).get("1")
        table.add_row(
            f"{row['amount']:.2f}",
            str(row["merchant_category"]),
            str(row["country"]),
            str(item["label"]),
            "-" if p is None else f"{p:.3f}",
            item["prediction_id"],
            str(truth),
        )
    return table


def checks_of_version(mv: ModelVersion, checks: Sequence[Any]) -> RenderableType:
    """The version's stored gate results (`slipway check`), newest first."""
    if not checks:
        return f"[dim]No checks of {mv.ref} yet; run `slipway check {mv.ref}`.[/]"
    table = Table(title=f"Checks of {mv.ref}", title_justify="left")
    for col in ("id", "at", "against", "result", "failed checks"):
        table.add_column(col)
    for c in checks:
        failed = [k for k, v in c.summary.get("checks", {}).items() if v["verdict"] == "fail"]
        table.add_row(
            str(c.id),
            f"{c.created_at:%Y-%m-%d %H:%M}",
            f"{mv.name}:{c.against}" if c.against is not None else "-",
            "[green]pass[/]" if c.passed else "[bold red]fail[/]",
            ", ".join(failed) or "-",
        )
    return table
