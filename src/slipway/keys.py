"""API keys for the HTTP service: created once, stored hashed, revoked by name.

A key is ``slw_`` followed by 256 random bits (URL-safe base64). Only its sha256 is stored:
with that much entropy a fast hash is enough, and a stolen database holds nothing that
authenticates. The plain key is returned once, by :meth:`KeyStore.create`, and never again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from slipway.exceptions import ConfigError, KeyNotFound, RegistryConflict
from slipway.provenance import current_user
from slipway.store import Store
from slipway.store.audit import record_event
from slipway.store.schema import api_keys, utcnow

Role = Literal["predict", "admin"]
ROLES: tuple[Role, ...] = ("predict", "admin")
TOKEN_PREFIX = "slw_"  # noqa: S105 - a marker that makes leaked keys greppable, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
# Shown in listings so a person can tell keys apart; 8 random characters reveal 48 of 256 bits.
_SHOWN = len(TOKEN_PREFIX) + 8


def hash_token(token: str) -> str:
    """The sha256 (hex) under which a key is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


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


class KeyStore:
    """The ``api_keys`` table: create, list, revoke, and the active keys by hash."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self, name: str, role: str, *, actor: str | None = None, via: str | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; return its record and the plain key, which is never shown again.

        The audit trail records the creation by ``actor`` (default: the OS user), ``via`` a
        channel when given (``"ui"``).
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(
                f"{name!r} is not a valid key name: use letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit, at most 100 characters."
            )
        if role not in ROLES:
            raise ConfigError(f"Role {role!r} is not one of {', '.join(ROLES)}.")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(name, role, token[:_SHOWN], utcnow())
        with self.store.write() as conn:
            old = conn.execute(sa.select(api_keys).where(api_keys.c.name == name)).first()
            if old is not None:
                state = "active" if old.revoked_at is None else f"revoked {old.revoked_at:%Y-%m-%d}"
                raise RegistryConflict(
                    f"A key named {name!r} already exists ({state}); key names are never "
                    "reused, so choose another name."
                )
            conn.execute(
                api_keys.insert().values(
                    name=name,
                    role=role,
                    key_hash=hash_token(token),
                    prefix=key.prefix,
                    created_at=key.created_at,
                )
            )
            _audit(conn, "create_key", key, actor, via)
        return key, token

    def list(self) -> list[ApiKey]:
        """Every key, active or revoked, by name."""
        with self.store.read() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.name)).all()
        return [_key(r) for r in rows]

    def revoke(self, name: str, *, actor: str | None = None, via: str | None = None) -> ApiKey:
        """Revoke a key by name; revoking a revoked key changes nothing and returns it.

        A revocation is audited as a creation is.
        """
        with self.store.write() as conn:
            row = conn.execute(
                sa.select(api_keys).where(api_keys.c.name == name).with_for_update()
            ).first()
            if row is None:
                names = conn.execute(sa.select(api_keys.c.name).order_by(api_keys.c.name))
                known = ", ".join(names.scalars())
                hint = f" Known keys: {known}." if known else " There are no keys."
                raise KeyNotFound(f"No API key named {name!r}.{hint}")
            if row.revoked_at is None:
                conn.execute(
                    api_keys.update().where(api_keys.c.name == name).values(revoked_at=utcnow())
                )
                row = conn.execute(sa.select(api_keys).where(api_keys.c.name == name)).one()
                _audit(conn, "revoke_key", _key(row), actor, via)
        return _key(row)

    def active(self) -> dict[str, ApiKey]:
        """Active keys by the sha256 of the plain key: what a server checks requests against."""
        with self.store.read() as conn:
            rows = conn.execute(sa.select(api_keys).where(api_keys.c.revoked_at.is_(None))).all()
        return {r.key_hash: _key(r) for r in rows}


def _audit(
    conn: sa.Connection, action: str, key: ApiKey, actor: str | None, via: str | None
) -> None:
    detail = {"key": key.name, "role": key.role, **({"via": via} if via else {})}
    record_event(conn, actor or current_user(), action, None, detail=detail)


def _key(row: Any) -> ApiKey:
    return ApiKey(row.name, row.role, row.prefix, row.created_at, row.revoked_at)
