"""The audit trail's writer: one row per change, in the caller's transaction.

The registry records registrations and alias moves, the key store key creations and
revocations, the console its reloads. ``detail`` carries what fits no column, such as
``{"via": "ui"}`` for an action taken in the web console.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from slipway.store.schema import audit_events, utcnow


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
