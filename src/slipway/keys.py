"""API keys for the HTTP service: created once, stored hashed, revoked by name.

A key is ``slw_`` followed by 256 random bits (URL-safe base64). Only its sha256 is stored:
with that much entropy a fast hash is enough, and a stolen database holds nothing that
authenticates. The plain key is returned once, by :meth:`KeyStore.create`, and never again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Literal

from slipway.clock import utcnow
from slipway.exceptions import ConfigError, KeyNotFound, RegistryConflict
from slipway.provenance import current_user
from slipway.store import Store
from slipway.store.keys import ApiKey, KeyAudit, active_keys, add_key, all_keys, revoke_key

Role = Literal["predict", "admin"]
ROLES: tuple[Role, ...] = ("predict", "admin")
TOKEN_PREFIX = "slw_"  # noqa: S105 - a marker that makes leaked keys greppable, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
# Shown in listings so a person can tell keys apart; 8 random characters reveal 48 of 256 bits.
_SHOWN = len(TOKEN_PREFIX) + 8


def hash_token(token: str) -> str:
    """The sha256 (hex) under which a key is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    """API keys: create, list, revoke, and the active keys by hash."""

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
        old = add_key(self.store, key, hash_token(token), audit=_audit(actor, via))
        if old is not None:
            state = "active" if old.active else f"revoked {old.revoked_at:%Y-%m-%d}"
            raise RegistryConflict(
                f"A key named {name!r} already exists ({state}); key names are never "
                "reused, so choose another name."
            )
        return key, token

    def list(self) -> list[ApiKey]:
        """Every key, active or revoked, by name."""
        return all_keys(self.store)

    def revoke(self, name: str, *, actor: str | None = None, via: str | None = None) -> ApiKey:
        """Revoke a key by name; revoking a revoked key changes nothing and returns it.

        A revocation is audited as a creation is.
        """
        key = revoke_key(self.store, name, utcnow(), audit=_audit(actor, via))
        if key is None:
            known = ", ".join(k.name for k in all_keys(self.store))
            hint = f" Known keys: {known}." if known else " There are no keys."
            raise KeyNotFound(f"No API key named {name!r}.{hint}")
        return key

    def active(self) -> dict[str, ApiKey]:
        """Active keys by the sha256 of the plain key: what a server checks requests against."""
        return active_keys(self.store)


def _audit(actor: str | None, via: str | None) -> KeyAudit:
    return KeyAudit(actor or current_user(), {"via": via} if via else {})
