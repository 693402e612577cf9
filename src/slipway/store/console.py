"""The web console's sessions: create one at login, find it per request, delete it at logout.

Callers hand in the sha256 of the session token, never the token: the table holds nothing
that logs anyone in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from slipway.store.engine import Store
from slipway.store.schema import console_sessions


@dataclass(frozen=True)
class SessionRecord:
    """One console login: who (the key's name and role) and until when."""

    token_hash: str
    key_name: str
    role: str
    created_at: datetime
    expires_at: datetime


def create_session(store: Store, record: SessionRecord) -> None:
    """Store a new session, and drop every session that has expired by its creation."""
    with store.write() as conn:
        conn.execute(
            console_sessions.delete().where(console_sessions.c.expires_at <= record.created_at)
        )
        conn.execute(console_sessions.insert().values(**record.__dict__))


def find_session(store: Store, token_hash: str, now: datetime) -> SessionRecord | None:
    """The live session with that token hash, or None (unknown, logged out or expired)."""
    query = sa.select(console_sessions).where(
        console_sessions.c.token_hash == token_hash, console_sessions.c.expires_at > now
    )
    with store.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return SessionRecord(row.token_hash, row.key_name, row.role, row.created_at, row.expires_at)


def delete_session(store: Store, token_hash: str) -> bool:
    """Forget a session (logout); True when there was one."""
    with store.write() as conn:
        result = conn.execute(
            console_sessions.delete().where(console_sessions.c.token_hash == token_hash)
        )
    return bool(result.rowcount)


def delete_sessions_of(store: Store, key_name: str) -> int:
    """Forget every session a key opened (the key was revoked); how many there were."""
    with store.write() as conn:
        result = conn.execute(
            console_sessions.delete().where(console_sessions.c.key_name == key_name)
        )
    return int(result.rowcount)
