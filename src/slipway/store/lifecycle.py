"""Queries of the lifecycle capability: stored `slipway check` results, and the labeled
traffic a check can use as its holdout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pandas as pd
import sqlalchemy as sa

from slipway.clock import utcnow
from slipway.store.engine import Store
from slipway.store.schema import check_results, feedback, predictions


@dataclass(frozen=True)
class StoredCheck:
    """One stored gate result of a version."""

    id: int
    model: str
    version: int
    against: int | None
    created_at: datetime
    created_by: str
    passed: bool
    summary: dict[str, Any]
    result: dict[str, Any]

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """JSON-ready view; ``full`` adds the whole result."""
        out: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "against": self.against,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "passed": self.passed,
            "summary": self.summary,
        }
        if full:
            out["result"] = self.result
        return out


def record_check(
    store: Store,
    *,
    model: str,
    version: int,
    against: int | None,
    actor: str,
    passed: bool,
    summary: dict[str, Any],
    result: dict[str, Any],
) -> int:
    """Store one check result; returns its id."""
    with store.write() as conn:
        return int(
            conn.execute(
                check_results.insert()
                .values(
                    model_name=model,
                    version=version,
                    against_version=against,
                    created_at=utcnow(),
                    created_by=actor,
                    passed=passed,
                    summary=summary,
                    result=result,
                )
                .returning(check_results.c.id)
            ).scalar_one()
        )


def list_checks(
    store: Store, model: str, version: int | None = None, *, limit: int = 20
) -> list[StoredCheck]:
    """Stored checks of a model (or one version), newest first."""
    query = (
        sa.select(check_results)
        .where(check_results.c.model_name == model)
        .order_by(check_results.c.id.desc())
        .limit(limit)
    )
    if version is not None:
        query = query.where(check_results.c.version == version)
    with store.read() as conn:
        rows = conn.execute(query).all()
    return [_stored(r) for r in rows]


def latest_checks(store: Store, model: str) -> list[StoredCheck]:
    """The newest stored check of each version of a model, newest version first."""
    newest = (
        sa.select(sa.func.max(check_results.c.id))
        .where(check_results.c.model_name == model)
        .group_by(check_results.c.version)
    )
    query = (
        sa.select(check_results)
        .where(check_results.c.id.in_(newest.scalar_subquery()))
        .order_by(check_results.c.version.desc())
    )
    with store.read() as conn:
        return [_stored(r) for r in conn.execute(query).all()]


def _stored(r: sa.Row[Any]) -> StoredCheck:
    return StoredCheck(
        int(r.id),
        r.model_name,
        int(r.version),
        r.against_version,
        r.created_at,
        r.created_by,
        bool(r.passed),
        dict(r.summary),
        dict(r.result),
    )


def passing_check(conn: sa.Connection, model: str, version: int) -> int | None:
    """The id of the newest passing check of a version, or None (inside a transaction)."""
    return conn.execute(
        sa.select(sa.func.max(check_results.c.id)).where(
            check_results.c.model_name == model,
            check_results.c.version == version,
            check_results.c.passed == sa.true(),
        )
    ).scalar()


def labeled_traffic(
    store: Store, model: str, start: datetime, end: datetime
) -> tuple[pd.DataFrame, list[Any]]:
    """Logged inputs of ``model`` in [start, end) that have ground truth, and their labels."""
    query = (
        sa.select(sa.cast(predictions.c.inputs, sa.Text), feedback.c.label)
        .join(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
        .where(
            predictions.c.model_name == model,
            predictions.c.created_at >= start,
            predictions.c.created_at < end,
        )
        .order_by(predictions.c.created_at)
    )
    with store.read() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return pd.DataFrame(), []
    inputs = orjson.loads("[" + ",".join(r[0] for r in rows) + "]")
    return pd.DataFrame.from_records(inputs), [r[1] for r in rows]
