"""The ``monitoring_runs`` table: one row per ``slipway monitor`` run, and the reads of it.

A run keeps its latest window without histograms (``summary``, what history listings and
"over time" plots read), the whole report, and each alert sink's delivery (filled in after the
row is written, since a report names its own run id).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from slipway.exceptions import ModelNotFound
from slipway.store.engine import Store
from slipway.store.schema import models, monitoring_runs

_RUN_FIELDS = (
    "id", "model_name", "version", "created_at", "status", "window_start", "window_end", "rows",
    "summary", "alerts",
)  # fmt: skip


def add_run(
    store: Store,
    report: Callable[[int], dict[str, Any]],
    *,
    model: str,
    version: int | None,
    created_at: datetime,
    status: str,
    window_start: datetime | None,
    window_end: datetime | None,
    rows: int,
    summary: dict[str, Any],
) -> int:
    """Record a run and return its id; ``report(id)`` is the whole report as JSON-ready data,
    stored in the same transaction."""
    with store.write() as conn:
        run_id = conn.execute(
            monitoring_runs.insert()
            .values(
                model_name=model,
                version=version,
                created_at=created_at,
                status=status,
                window_start=window_start,
                window_end=window_end,
                rows=rows,
                summary=summary,
                alerts=[],
                report={},
            )
            .returning(monitoring_runs.c.id)
        ).scalar_one()
        _update(conn, run_id, report=report(run_id))
    return int(run_id)


def set_alerts(
    store: Store, run_id: int, alerts: list[dict[str, Any]], report: dict[str, Any]
) -> None:
    """Record how the alerts of run ``run_id`` were delivered, and the report that says so."""
    with store.write() as conn:
        _update(conn, run_id, alerts=alerts, report=report)


def runs(store: Store, model: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Stored runs of ``model``, newest first, without their reports."""
    query = (
        sa.select(*(monitoring_runs.c[f] for f in _RUN_FIELDS))
        .where(monitoring_runs.c.model_name == model)
        .order_by(monitoring_runs.c.id.desc())
        .limit(limit)
    )
    with store.read() as conn:
        _known_model(conn, model)
        return [dict(r._mapping) for r in conn.execute(query)]


def latest_report(store: Store, model: str) -> dict[str, Any] | None:
    """The newest stored report of ``model``, or None before its first run."""
    query = (
        sa.select(monitoring_runs.c.report)
        .where(monitoring_runs.c.model_name == model)
        .order_by(monitoring_runs.c.id.desc())
        .limit(1)
    )
    with store.read() as conn:
        _known_model(conn, model)
        report = conn.execute(query).scalar()
    return None if report is None else dict(report)


def summaries(store: Store, model: str, before: datetime, limit: int) -> list[dict[str, Any]]:
    """The summaries of the latest ``limit`` runs of ``model`` whose window ended by
    ``before``, oldest first."""
    query = (
        sa.select(monitoring_runs.c.summary)
        .where(monitoring_runs.c.model_name == model, monitoring_runs.c.window_end <= before)
        .order_by(monitoring_runs.c.window_end.desc(), monitoring_runs.c.id.desc())
        .limit(limit)
    )
    with store.read() as conn:
        return [dict(s) for s in conn.execute(query).scalars()][::-1]


def _update(conn: sa.Connection, run_id: int, **values: Any) -> None:
    conn.execute(monitoring_runs.update().where(monitoring_runs.c.id == run_id).values(**values))


def _known_model(conn: sa.Connection, name: str) -> None:
    if conn.execute(sa.select(models.c.name).where(models.c.name == name)).first() is None:
        raise ModelNotFound(f"No model named {name!r}; `slipway models list` shows the registry.")
