"""Console logins: an admin key in, a session cookie out; CSRF tokens; logout.

A login trades an admin API key for a random session token (256 bits) in a cookie that is
``Secure``, ``HttpOnly``, ``SameSite=Strict``, limited to ``/ui`` and expiring with the
session. The store keeps only the token's sha256, with the key's name and the expiry, so every
worker and replica sees every login and a logout or expiry holds everywhere at once. Each
request re-checks that the key is still active, so revoking it ends its sessions within
``serve_poll_seconds``.

Every state-changing request must carry the session's CSRF token (a form field ``csrf`` or an
``X-CSRF-Token`` header): an HMAC of the session token, so it needs no storage, differs per
session and cannot be derived without the cookie. The login form, which comes before any
session, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import cookie_parser
from starlette.types import Scope

from slipway.clock import utcnow
from slipway.exceptions import Forbidden, Unauthorized
from slipway.keys import ApiKey, hash_token
from slipway.serving.auth import ANONYMOUS, KeyCache
from slipway.store import Store
from slipway.store.console import SessionRecord, create_session, delete_session, find_session

PREFIX = "/ui"
COOKIE = "slipway_console"
LOGIN_COOKIE = "slipway_console_login"
SCOPE_KEY = "slipway.console.session"
# The role recorded for a login while authentication is off: such a session never counts
# once the server runs with keys again, even if a key happens to be named "anonymous".
OPEN = "open"


@dataclass(frozen=True)
class Session:
    """The login behind a console request: the key's name and role, expiry, CSRF token."""

    key_name: str
    role: str
    expires_at: datetime
    csrf: str
    token_hash: str


def csrf_of(token: str) -> str:
    """The CSRF token of the session whose cookie holds ``token``."""
    return hmac.new(token.encode(), b"slipway console csrf", hashlib.sha256).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def cookie(scope: Scope, name: str) -> str | None:
    """The value of cookie ``name`` in a request's headers, or None."""
    for header, value in scope["headers"]:
        if header == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(name)
            if found:
                return found
    return None


class Sessions:
    """Console sessions over the store, checked against the server's active keys.

    Calling the object is the gate's :class:`~slipway.serving.gate.SessionAuth` for ``/ui``.
    With authentication off (``keys`` is None) anyone may log in, as ``anonymous``.
    """

    def __init__(self, store: Store, keys: KeyCache | None, hours: float) -> None:
        self.store = store
        self.keys = keys
        self.lifetime = timedelta(hours=hours)

    async def __call__(self, scope: Scope) -> ApiKey | None:
        token = cookie(scope, COOKIE)
        if not token or len(token) > 100:
            return None
        record = await run_in_threadpool(find_session, self.store, hash_token(token), utcnow())
        if record is None:
            return None
        key = self._active(record)
        if key is None or not key.admin:
            return None  # revoked (or demoted) since the login: the session ends with the key
        scope[SCOPE_KEY] = Session(
            record.key_name, record.role, record.expires_at, csrf_of(token), record.token_hash
        )
        return key

    def login(self, plain_key: str) -> tuple[ApiKey, str, datetime]:
        """Check an admin key and open a session: (key, session token, expiry)."""
        key = self._check(plain_key)
        token = secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + self.lifetime
        role = OPEN if self.keys is None else key.role
        create_session(self.store, SessionRecord(hash_token(token), key.name, role, now, expires))
        return key, token, expires

    def logout(self, session: Session) -> None:
        """End a session on every worker."""
        delete_session(self.store, session.token_hash)

    @property
    def open(self) -> bool:
        """True when the server runs without authentication (anyone may log in)."""
        return self.keys is None

    def _check(self, plain_key: str) -> ApiKey:
        if self.keys is None:
            return ANONYMOUS
        plain_key = plain_key.strip()
        if not plain_key:
            raise Unauthorized("Enter an admin API key to log in.")
        key = self.keys.find(plain_key)
        if key is None:
            raise Unauthorized(
                "That API key is not valid: it is unknown or has been revoked (a key created "
                "in the last second or two may not have reached this server yet)."
            )
        if not key.admin:
            raise Forbidden(
                f"Key {key.name!r} has role {key.role!r}; the console needs an admin key "
                "(slipway keys create --name NAME --role admin)."
            )
        return key

    def _active(self, record: SessionRecord) -> ApiKey | None:
        if self.keys is None:
            return ANONYMOUS
        if record.role == OPEN:
            return None
        return self.keys.named(record.key_name)
