"""True labels of batch-scored rows (``batch_feedback``), sent by the row's key.

A batch run writing to the database records one ``batch_predictions`` row per key, so a label
sent as ``{"model", "batch_key", "run_id"?, "label"}`` names one row: :func:`scored_rows` finds
it (in the run named, or else in the latest run of the model that scored the key),
:func:`add_batch_feedback` stores one label per row (a repeat is a duplicate), and
:func:`key_runs` says which runs of a model exist and where they wrote, and
:func:`rejected_keys` which keys a run rejected, so a key that is not found can be reported
with its reason. The monitor reads the labels joined to the rows
(:func:`slipway.store.batch.kept_lines` with ``labels=True``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from slipway.store.engine import Store, upsert
from slipway.store.schema import batch_feedback, batch_predictions, batch_rejects, batch_runs

_KEYS_PER_QUERY = 500  # keys per IN (...): well under every driver's parameter limit


@dataclass(frozen=True)
class BatchRow:
    """One scored row of a batch run: the model, the row's key, the run and its version."""

    model: str
    key: str
    run_id: str
    version: int


@dataclass(frozen=True)
class KeyRun:
    """A batch run of a model, and whether its keys are in the database (``output`` "db")."""

    run_id: str
    output: str  # "db", "parquet"
    path: str | None = None  # where a Parquet output went


def scored_rows(
    store: Store, model: str, keys: Iterable[str], run_id: str | None = None
) -> dict[str, BatchRow]:
    """``key -> BatchRow`` for those of ``keys`` that a batch run of ``model`` stored in the
    database: the run ``run_id``'s row, or else the row of the latest run that scored the key
    (the newest ``scored_at``; the greater run id among equals)."""
    wanted = list(dict.fromkeys(keys))
    best: dict[str, tuple[datetime, str, int]] = {}
    p = batch_predictions.c
    with store.read() as conn:
        for i in range(0, len(wanted), _KEYS_PER_QUERY):
            query = sa.select(p.key, p.scored_at, p.run_id, p.version).where(
                p.model_name == model, p.key.in_(wanted[i : i + _KEYS_PER_QUERY])
            )
            if run_id is not None:
                query = query.where(p.run_id == run_id)
            for r in conn.execute(query):
                seen = best.get(r.key)
                if seen is None or (r.scored_at, r.run_id) > seen[:2]:
                    best[r.key] = (r.scored_at, r.run_id, int(r.version))
    return {key: BatchRow(model, key, run, version) for key, (_, run, version) in best.items()}


def key_runs(store: Store, model: str, run_id: str | None = None) -> list[KeyRun]:
    """The batch runs of ``model`` (or the one ``run_id``), newest first, with their output."""
    query = (
        sa.select(batch_runs.c.run_id, batch_runs.c.output)
        .where(batch_runs.c.model_name == model)
        .order_by(batch_runs.c.started_at.desc(), batch_runs.c.run_id.desc())
    )
    if run_id is not None:
        query = query.where(batch_runs.c.run_id == run_id)
    with store.read() as conn:
        rows = conn.execute(query).all()
    out = []
    for r in rows:
        output = r.output or {}
        out.append(KeyRun(r.run_id, str(output.get("kind", "db")), output.get("path")))
    return out


def rejected_keys(
    store: Store, model: str, keys: Iterable[str], run_id: str | None = None
) -> dict[str, str]:
    """``key -> run_id`` for those of ``keys`` whose row a batch run of ``model`` (or the run
    ``run_id``) rejected, so it has no prediction; the newest such run."""
    wanted = list(dict.fromkeys(keys))
    found: dict[str, tuple[datetime, str]] = {}
    r, runs = batch_rejects.c, batch_runs.c
    with store.read() as conn:
        for i in range(0, len(wanted), _KEYS_PER_QUERY):
            query = (
                sa.select(r.key, runs.started_at, r.run_id)
                .join(batch_runs, runs.run_id == r.run_id)
                .where(runs.model_name == model, r.key.in_(wanted[i : i + _KEYS_PER_QUERY]))
            )
            if run_id is not None:
                query = query.where(r.run_id == run_id)
            for row in conn.execute(query):
                seen = found.get(row.key)
                if seen is None or (row.started_at, row.run_id) > seen:
                    found[row.key] = (row.started_at, row.run_id)
    return {key: run for key, (_, run) in found.items()}


def add_batch_feedback(
    store: Store, labels: Sequence[tuple[BatchRow, Any]], received_at: datetime
) -> int:
    """Store each ``(row, label)`` unless that row has a label already; how many were stored."""
    if not labels:
        return 0
    rows = [
        {
            "model_name": row.model,
            "key": row.key,
            "run_id": row.run_id,
            "label": label,
            "received_at": received_at,
        }
        for row, label in labels
    ]
    with store.write() as conn:
        stmt = (
            upsert(conn, batch_feedback)
            .on_conflict_do_nothing(index_elements=["model_name", "key", "run_id"])
            .returning(batch_feedback.c.key)
        )
        return len(conn.execute(stmt, rows).all())


def batch_labels(store: Store, model: str) -> dict[tuple[str, str], Any]:
    """``(run_id, key) -> label`` of every stored batch label of ``model`` (for checks and
    small reports; the monitor reads labels joined to their rows instead)."""
    f = batch_feedback.c
    with store.read() as conn:
        rows = conn.execute(sa.select(f.run_id, f.key, f.label).where(f.model_name == model))
        return {(r.run_id, r.key): r.label for r in rows}
