"""The ``api_keys`` table: key records by name, and the active ones by the hash of the key.

The plain key never reaches this module; :mod:`slipway.keys` makes keys and checks names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from slipway.store.audit import record_event
from slipway.store.engine import Store
from slipway.store.schema import api_keys


@dataclass(frozen=True)
class ApiKey:
    """What is known about a key without the key itself."""

    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """True until the key is revoked."""
        return self.revoked_at is None

    @property
    def admin(self) -> bool:
        """Admin keys may also use admin routes (reload)."""
        return self.role == "admin"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, as printed by ``slipway keys list --json``."""
        return {
            "name": self.name,
            "role": self.role,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


@dataclass(frozen=True)
class KeyAudit:
    """Who changes a key, recorded in the audit trail with the change (``detail``: the channel,
    e.g. ``{"via": "ui"}``)."""

    actor: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def record(self, conn: sa.Connection, action: str, key: ApiKey) -> None:
        """Write the audit event of ``action`` on ``key`` in the caller's transaction."""
        detail = {"key": key.name, "role": key.role, **self.detail}
        record_event(conn, self.actor, action, None, detail=detail)


def add_key(
    store: Store, key: ApiKey, key_hash: str, *, audit: KeyAudit | None = None
) -> ApiKey | None:
    """Store ``key`` under ``key_hash``; if its name is taken, store nothing and return the
    key that holds the name (names are never reused, revoked keys included)."""
    with store.write() as conn:
        old = conn.execute(sa.select(api_keys).where(api_keys.c.name == key.name)).first()
        if old is not None:
            return _key(old)
        conn.execute(
            api_keys.insert().values(
                name=key.name,
                role=key.role,
                key_hash=key_hash,
                prefix=key.prefix,
                created_at=key.created_at,
            )
        )
        if audit is not None:
            audit.record(conn, "create_key", key)
    return None


def all_keys(store: Store) -> list[ApiKey]:
    """Every key, active or revoked, by name."""
    with store.read() as conn:
        rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.name)).all()
    return [_key(r) for r in rows]


def revoke_key(
    store: Store, name: str, at: datetime, *, audit: KeyAudit | None = None
) -> ApiKey | None:
    """Mark key ``name`` revoked at ``at`` unless it already is; the key as it now stands, or
    None when there is no key of that name."""
    with store.write() as conn:
        row = conn.execute(
            sa.select(api_keys).where(api_keys.c.name == name).with_for_update()
        ).first()
        if row is None:
            return None
        if row.revoked_at is None:
            conn.execute(api_keys.update().where(api_keys.c.name == name).values(revoked_at=at))
            row = conn.execute(sa.select(api_keys).where(api_keys.c.name == name)).one()
            if audit is not None:
                audit.record(conn, "revoke_key", _key(row))
    return _key(row)


def active_keys(store: Store) -> dict[str, ApiKey]:
    """Active keys by the sha256 of the plain key."""
    with store.read() as conn:
        rows = conn.execute(sa.select(api_keys).where(api_keys.c.revoked_at.is_(None))).all()
    return {r.key_hash: _key(r) for r in rows}


def _key(row: Any) -> ApiKey:
    return ApiKey(row.name, row.role, row.prefix, row.created_at, row.revoked_at)
