"""Authentication against an in-memory copy of the key table, refreshed in the background.

Each worker re-reads the active keys every ``poll_seconds`` (one small query), so a revoked key
stops working on every worker within seconds, without a restart, and no request touches the
database. If the database is unreachable the last copy keeps serving and a warning is logged.
"""

from __future__ import annotations

import logging
import threading

from slipway.clock import utcnow
from slipway.exceptions import Unauthorized
from slipway.keys import ApiKey, KeyStore, hash_token
from slipway.serving.metrics import Metrics

logger = logging.getLogger("slipway.serving.auth")

ANONYMOUS = ApiKey("anonymous", "admin", "-", utcnow())


class KeyCache:
    """The active keys by sha256, and the thread that keeps them current."""

    def __init__(
        self, keys: KeyStore, poll_seconds: float = 1.0, metrics: Metrics | None = None
    ) -> None:
        self.keys = keys
        self.poll_seconds = poll_seconds
        self.metrics = metrics
        self.died: str | None = None  # why the refresher thread stopped, if it did
        self._by_hash: dict[str, ApiKey] = {}
        self._by_name: dict[str, ApiKey] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """Whether the refresher runs (True before it is started)."""
        return self.died is None

    def __len__(self) -> int:
        return len(self._by_hash)

    def refresh(self) -> None:
        """Re-read the active keys now."""
        by_hash = self.keys.active()
        self._by_hash, self._by_name = by_hash, {k.name: k for k in by_hash.values()}

    def find(self, token: str) -> ApiKey | None:
        """The active key whose plain text is ``token``, or None."""
        return self._by_hash.get(hash_token(token))

    def named(self, name: str) -> ApiKey | None:
        """The active key called ``name``, or None (unknown or revoked)."""
        return self._by_name.get(name)

    def authenticate(self, headers: list[tuple[bytes, bytes]]) -> ApiKey:
        """The key a request carries (``Authorization: Bearer`` or ``X-API-Key``), or raise."""
        token = None
        for name, value in headers:
            if name == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer" and rest.strip():
                    token = rest.strip()
                    break
            elif name == b"x-api-key" and value.strip():
                token = value.strip()
        if token is None:
            raise Unauthorized(
                "This route needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY` "
                "(create one with `slipway keys create --name NAME --role predict`)."
            )
        key = self._by_hash.get(hash_token(token.decode("latin-1")))
        if key is None:
            raise Unauthorized("The API key is not valid: it is unknown or has been revoked.")
        return key

    def start(self) -> None:
        """Start refreshing in the background."""
        if self._thread is None:
            self._stop.clear()
            self.died = None
            if self.metrics is not None:
                self.metrics.thread_alive.labels("key_refresher").set(1)
            self._thread = threading.Thread(target=self._run, name="slipway-keys", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop refreshing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.poll_seconds):
                try:
                    self.refresh()
                except Exception as exc:
                    logger.warning("could not refresh API keys (keeping the last copy): %s", exc)
        except BaseException as exc:
            # Revoked keys would keep working unnoticed: say so loudly, and stop being ready.
            self.died = f"{type(exc).__name__}: {exc}"
            logger.critical(
                "the API key refresher stopped (%s); this worker is not ready",
                self.died,
                exc_info=True,
            )
            if self.metrics is not None:
                self.metrics.thread_alive.labels("key_refresher").set(0)
            # Not re-raised: the traceback is in the log above, and readiness reports it.
