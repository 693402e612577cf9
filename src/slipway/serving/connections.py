"""Connection-level limits uvicorn lacks: time to send headers, time to send a body, peers.

uvicorn times out idle keep-alive connections, but not a request that stops arriving: a client
that sends half its headers, or declares a body and sends six bytes of it, holds its connection
(and, before the gate read bodies first, a concurrency slot) for as long as it likes.
:class:`GuardedHttpTools` is uvicorn's httptools protocol with three more rules, read from
:class:`ConnectionLimits` (built from settings, handed over in the app's lifespan state):

- the headers of a request must arrive within ``header_timeout`` seconds, counted from the
  connection (first request) or the request's first byte (later ones);
- its body within ``body_timeout`` seconds after the headers;
- one client address may hold at most ``max_per_peer`` open connections in this worker.

A request past a deadline is answered ``408`` (``503`` for one connection too many) when no
response has started, and its connection is closed. Requests that arrive whole in one read,
the usual case, cost an attribute write or two: a timer is armed only when a read ends in the
middle of a request. ``slipway serve`` runs uvicorn with this protocol; under another server
(your own uvicorn command line) these rules are off, and the gate's limits still hold.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STATE_KEY = "slipway.connection_limits"
PROTOCOL = "slipway.serving.connections:GuardedHttpTools"

logger = logging.getLogger("slipway.serving")


class ConnectionLimits:
    """The limits, and the open connections per client address, of one worker."""

    def __init__(self, header_timeout: float, body_timeout: float, max_per_peer: int) -> None:
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        self.max_per_peer = max_per_peer
        self.open: dict[str, int] = {}  # only the event loop's thread touches it

    def admit(self, peer: str) -> bool:
        """Count a new connection from ``peer``; False if it has ``max_per_peer`` already."""
        n = self.open.get(peer, 0)
        if self.max_per_peer and n >= self.max_per_peer:
            return False
        self.open[peer] = n + 1
        return True

    def release(self, peer: str) -> None:
        """Forget one closed connection from ``peer``."""
        n = self.open.get(peer, 0) - 1
        if n > 0:
            self.open[peer] = n
        else:
            self.open.pop(peer, None)


def raw_response(status: int, reason: str, message: str, code: str, extra: bytes = b"") -> bytes:
    """A whole HTTP/1.1 JSON error response that closes the connection."""
    body = orjson.dumps({"error": message, "code": code})
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n%s\r\n" % (status, reason.encode(), len(body), extra) + body
    )


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a per-peer cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits: ConnectionLimits | None = None
        self._peer: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_headers = False
        self._timed: Any = None  # the request cycle whose body the timer watches

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse a peer with too many connections; start the clock on the first headers."""
        super().connection_made(transport)
        limits = self.app_state.get(STATE_KEY)
        if not isinstance(limits, ConnectionLimits):
            return
        self._limits = limits
        peer = self.client[0] if self.client else None
        if peer is not None:
            if not limits.admit(peer):
                message = (
                    f"Too many connections from this address ({limits.max_per_peer} open in "
                    "this worker, SLIPWAY_SERVE_MAX_CONNECTIONS_PER_PEER); reuse connections "
                    "or retry shortly."
                )
                transport.write(
                    raw_response(
                        503, "Service Unavailable", message, "overloaded", b"retry-after: 1\r\n"
                    )
                )
                transport.close()
                return
            self._peer = peer
        self._arm(limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock and forget the connection."""
        self._disarm()
        if self._peer is not None and self._limits is not None:
            self._limits.release(self._peer)
            self._peer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse, then start a clock if the read ended inside a request's headers or body."""
        super().data_received(data)
        limits = self._limits
        if limits is None or self._timer is not None:
            return
        if self._in_headers:
            self._arm(limits.header_timeout)
            return
        cycle = self.cycle
        if cycle is not None and cycle.more_body and self._timed is not cycle:
            self._timed = cycle
            self._arm(limits.body_timeout)

    def on_message_begin(self) -> None:
        """A request's first byte: its headers are now on the clock (if they do not finish)."""
        super().on_message_begin()
        self._in_headers = True

    def on_headers_complete(self) -> None:
        """The headers are in: stop their clock."""
        self._in_headers = False
        if self._timer is not None:
            self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The body is in: stop its clock."""
        if self._timer is not None:
            self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._limits is None:
            return
        cycle = self.cycle
        if self._in_headers or cycle is None or cycle is not self._timed:
            what, seconds = "headers", self._limits.header_timeout
            setting = "SLIPWAY_SERVE_HEADER_TIMEOUT_SECONDS"
            answer = cycle is None or cycle.response_complete
        else:
            what, seconds = "body", self._limits.body_timeout
            setting = "SLIPWAY_SERVE_BODY_TIMEOUT_SECONDS"
            answer = not cycle.response_started
            cycle.scope["slipway.timed_out"] = True  # the gate records 408, not a disconnect
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.info(
            "closing the connection of %s: request %s incomplete after %g s", client, what, seconds
        )
        if answer:
            message = (
                f"The request {what} did not arrive within {seconds:g} s ({setting}); "
                "the connection is closed."
            )
            self.transport.write(raw_response(408, "Request Timeout", message, "request_timeout"))
        self.transport.close()
