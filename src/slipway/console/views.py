"""What the console's pages show, gathered through the same library calls as the CLI.

Functions here read (the registry, the monitoring runs, the batch-run log, the key store) and
return plain values for the templates; nothing here writes and nothing here speaks SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slipway.batch.runs import BatchRun, RunLog
from slipway.console.sections import MODEL_COLUMNS, Cell
from slipway.keys import ApiKey, KeyStore
from slipway.monitoring import Monitor, RunSummary
from slipway.serving.service import Service
from slipway.versions import DEFAULT_ALIAS, AuditEvent, ModelVersion

STATUS_CSS = {"OK": "ok", "WARN": "warn", "ALERT": "alert"}
# Metrics shown in the models table, the first two that a version has.
HEADLINE = ("roc_auc", "accuracy", "f1", "r2", "rmse", "mae")


@dataclass
class ModelRow:
    """One line of the models table."""

    name: str
    versions: int
    latest: int
    aliases: dict[str, int]
    production: ModelVersion | None
    backend: str
    served: int | None
    monitoring: RunSummary | None
    created_at: datetime
    extra: list[Cell] = field(default_factory=list)

    @property
    def headline(self) -> list[tuple[str, float]]:
        """Up to two metrics of the production version, the most telling first."""
        if self.production is None:
            return []
        metrics = self.production.metrics
        return [(m, metrics[m]) for m in HEADLINE if m in metrics][:2]


def backend_of(mv: ModelVersion) -> str:
    """``ONNX Runtime`` when the version's ONNX graph was accepted, else ``scikit-learn``."""
    return "ONNX Runtime" if mv.meta.get("backend") == "onnx" else "scikit-learn"


def model_rows(service: Service) -> list[ModelRow]:
    """Every model: versions, aliases, production's metrics and backend, monitoring status."""
    monitor = Monitor(service.registry, sinks=[])
    rows = []
    for m in service.registry.models():
        production = None
        if DEFAULT_ALIAS in m.aliases:
            production = service.registry.get(f"{m.name}:{m.aliases[DEFAULT_ALIAS]}")
        served = service.runtime.served.get(m.name)
        runs = monitor.history(m.name, limit=1)
        row = ModelRow(
            m.name,
            m.versions,
            m.latest_version,
            m.aliases,
            production,
            backend_of(production) if production else "-",
            None if served is None else served.version,
            runs[0] if runs else None,
            m.created_at,
        )
        row.extra = [cell(service, m) for _, cell in MODEL_COLUMNS]
        rows.append(row)
    return rows


def served_backend(service: Service, name: str) -> tuple[int, str] | None:
    """(version, backend) this server answers ``name`` with, or None when it does not serve it."""
    served = service.runtime.served.get(name)
    if served is None:
        return None
    return served.version, "ONNX Runtime" if served.model.backend == "onnx" else "scikit-learn"


def alias_moves(events: list[AuditEvent]) -> list[AuditEvent]:
    """The promote and rollback events among ``events``: the history of the aliases."""
    return [e for e in events if e.action in ("promote", "rollback") and e.alias]


def touching(events: list[AuditEvent], version: int) -> list[AuditEvent]:
    """The events about ``version``: its registration, archive, and alias moves to or from it."""
    return [e for e in events if version in (e.version, e.from_version, e.to_version)]


def audit_of(service: Service, name: str, limit: int = 500) -> list[AuditEvent]:
    """A model's audit trail, newest first (ModelNotFound for an unknown model)."""
    service.registry.resolve(name)
    return service.registry.audit(name, limit=limit)


def card(mv: ModelVersion) -> dict[str, Any]:
    """The model card of a version as the template draws it."""
    meta = mv.meta
    facts: list[tuple[str, str]] = [
        ("reference", mv.ref),
        ("status", mv.status),
        ("aliases", ", ".join(mv.aliases) or "-"),
        ("description", mv.description or "-"),
        ("created by", mv.created_by),
        (
            "task",
            mv.task + (f" (classes: {', '.join(map(str, mv.classes))})" if mv.classes else ""),
        ),
        ("pipeline", " → ".join(s["class"].rsplit(".", 1)[-1] for s in meta.get("steps", []))),
        ("serving backend", backend_of(mv) + _onnx_note(meta.get("onnx"))),
        ("artifact", f"{mv.format}, sha256 {mv.sha256}"),
    ]
    training = meta.get("training") or {}
    if training:
        facts.append(("training data", f"{training.get('rows', 0):,} rows"))
        facts.append(("data fingerprint", f"sha256 {training.get('fingerprint', '-')}"))
    if "validation" in meta:
        facts.append(("validation data", f"{meta['validation']['rows']:,} rows"))
    git = meta.get("git")
    if git:
        facts.append(
            ("git commit", git["commit"] + (" (uncommitted changes)" if git["dirty"] else ""))
        )
    else:
        facts.append(("git commit", "- (registered outside a git work tree)"))
    cv = meta.get("cv") or {}
    metrics = [
        (name, mv.metrics.get(name), cv.get(name, {}).get("mean"), cv.get(name, {}).get("std"))
        for name in dict.fromkeys([*mv.metrics, *cv])
    ]
    folds = next((c.get("folds") for c in cv.values()), None)
    return {
        "facts": facts,
        "tags": mv.tags,
        "metrics": metrics,
        "folds": folds,
        "contract": [
            _field(f, meta.get("contract", {}).get("unseen", "reject"))
            for f in meta.get("contract", {}).get("fields", [])
        ],
        "params": sorted((k, _short(v)) for k, v in (meta.get("params") or {}).items()),
        "libraries": sorted((meta.get("env") or {}).items()),
        "artifacts": sorted((meta.get("artifacts") or {}).items()),
    }


def _onnx_note(onnx: dict[str, Any] | None) -> str:
    return f" ({onnx['reason']})" if onnx and onnx.get("reason") else ""


def _field(f: dict[str, Any], unseen: str = "reject") -> dict[str, str]:
    if f.get("min") is not None:
        seen = f"{f['min']:.6g} … {f['max']:.6g}"
        limits = f"{f['low']:.6g} … {f['high']:.6g}" if f.get("low") is not None else "-"
    elif f.get("categories") is not None:
        cats = [str(c) for c in f["categories"]]
        seen = ", ".join(cats[:8]) + (f" (+{len(cats) - 8} more)" if len(cats) > 8 else "")
        limits = "listed values"
        if (f.get("unseen") or unseen) == "flag":
            limits += "; others flagged: " + (f.get("unseen_reason") or "set at registration")
    else:
        seen, limits = "-", "-"
    if f.get("nullable"):
        nulls = "allowed: " + (f.get("null_reason") or "in the training data")
    else:
        nulls = "refused"
    return {
        "name": str(f["name"]),
        "kind": str(f["kind"]),
        "dtype": str(f.get("dtype", "-")),
        "seen": seen,
        "accepted": limits,
        "nulls": nulls,
    }


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def monitoring_rows(service: Service) -> list[tuple[str, RunSummary | None]]:
    """Each model with its latest monitoring run (None before any)."""
    monitor = Monitor(service.registry, sinks=[])
    out: list[tuple[str, RunSummary | None]] = []
    for m in service.registry.models():
        runs = monitor.history(m.name, limit=1)
        out.append((m.name, runs[0] if runs else None))
    return out


def monitoring_of(service: Service, name: str) -> tuple[dict[str, Any] | None, list[RunSummary]]:
    """A model's newest stored report and its run history (ModelNotFound if unknown)."""
    monitor = Monitor(service.registry, sinks=[])
    return monitor.latest(name), monitor.history(name, limit=50)


def batch_runs(service: Service, model: str | None = None) -> list[BatchRun]:
    """Recent batch runs, newest first."""
    if model is not None:
        service.registry.resolve(model)
    return RunLog(service.registry.store).recent(model=model, limit=100)


def batch_run(service: Service, run_id: str) -> BatchRun:
    """One batch run (RunNotFound names the problem)."""
    return RunLog(service.registry.store).get(run_id)


def api_keys(service: Service) -> list[ApiKey]:
    """Every API key, active or revoked, without the keys themselves."""
    return KeyStore(service.registry.store).list()


def key_events(service: Service, limit: int = 50) -> list[AuditEvent]:
    """Key creations and revocations, newest first."""
    events = service.registry.audit(None, limit=1000)
    return [e for e in events if e.action in ("create_key", "revoke_key")][:limit]
