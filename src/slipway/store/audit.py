"""The audit trail (``audit_events``): one row per change, newest first when read.

The registry records registrations and alias moves, the key store key creations and
revocations, the console its reloads. :func:`record_event` writes inside the caller's
transaction, so a change and its audit row commit together. ``detail`` carries what fits no
column, such as ``{"via": "ui"}`` for an action taken in the web console.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from slipway.clock import utcnow
from slipway.store.engine import Store
from slipway.store.schema import audit_events


def record_event(
    conn: sa.Connection,
    actor: str,
    action: str,
    name: str | None,
    *,
    version: int | None = None,
    alias: str | None = None,
    from_version: int | None = None,
    to_version: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Insert one audit event (``name`` is the model, None for events about no model)."""
    conn.execute(
        audit_events.insert().values(
            at=utcnow(),
            actor=actor,
            action=action,
            model_name=name,
            version=version,
            alias=alias,
            from_version=from_version,
            to_version=to_version,
            detail=dict(detail or {}),
        )
    )


def add_event(store: Store, actor: str, action: str, name: str | None, **fields: Any) -> None:
    """:func:`record_event` in a transaction of its own (an event that changes nothing else)."""
    with store.write() as conn:
        record_event(conn, actor, action, name, **fields)


def audit_log(store: Store, name: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
    """Audit events, newest first (of one model, when given), keyed by AuditEvent's fields."""
    query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
    if name is not None:
        query = query.where(audit_events.c.model_name == name)
    with store.read() as conn:
        rows = conn.execute(query).all()
    same = ("at", "actor", "action", "version", "alias", "from_version", "to_version", "detail")
    return [{"model": r.model_name, **{f: r._mapping[f] for f in same}} for r in rows]
