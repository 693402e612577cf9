"""Request limits: per-key rate, concurrency, body size, rows and JSON nesting depth.

Everything here is in memory and per worker, so no request waits on the database. With
``--workers N`` each worker enforces ``rate / N`` for a key: the total equals the configured
rate when connections spread evenly over the workers (the kernel balances accepts).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope

from slipway.exceptions import MalformedRequest, Overloaded, RateLimited, RequestTooLarge

# Idle buckets are forgotten after this long, so per-client buckets (no-auth mode) stay bounded.
_IDLE_SECONDS = 300.0


class TokenBuckets:
    """One token bucket per client: ``rate`` requests per second, at most ``burst`` at once.

    ``rate == 0`` disables the limit.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._clock = float(rate), float(burst), clock
        self._buckets: dict[str, list[float]] = {}  # client -> [tokens, last refill time]
        self._lock = threading.Lock()
        self._swept = clock()

    def take(self, client: str) -> None:
        """Spend one token of ``client``'s bucket; raise RateLimited when it is empty."""
        if self.rate <= 0:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = [self.burst, now]
                if now - self._swept > _IDLE_SECONDS:
                    self._sweep(now)
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return
            bucket[0] = tokens
        wait = math.ceil((1.0 - tokens) / self.rate)
        raise RateLimited(
            f"Rate limit exceeded for {client}: {self.rate:g} requests per second "
            f"(bursts of {self.burst:g}); retry after {wait} s.",
            retry_after=wait,
        )

    def _sweep(self, now: float) -> None:
        self._swept = now
        stale = [c for c, (_, t) in self._buckets.items() if now - t > _IDLE_SECONDS]
        for client in stale:
            del self._buckets[client]


class ConcurrencyCap:
    """Counts requests in flight in this worker and sheds the ones beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> None:
        """Admit a request or raise Overloaded (503) when ``limit`` are already in flight."""
        # Only the event-loop thread calls enter/leave, so a plain integer is safe.
        if self.in_flight >= self.limit:
            raise Overloaded(
                f"The server is at capacity ({self.limit} requests in flight in this worker); "
                "retry shortly.",
                retry_after=1,
            )
        self.in_flight += 1

    def leave(self) -> None:
        """Mark one admitted request as finished."""
        self.in_flight -= 1

    @contextmanager
    def lent(self) -> Iterator[None]:
        """Give an admitted request's slot back while it waits (on the event loop, not working).

        The request takes it back afterwards without being refused (it was admitted once), so
        the count may pass ``limit`` by the number of requests just back from waiting.
        """
        self.in_flight -= 1
        try:
            yield
        finally:
            self.in_flight += 1


def check_content_length(headers: list[tuple[bytes, bytes]], limit: int) -> int | None:
    """Refuse a declared body above ``limit`` bytes before reading any of it; the declared size.

    The HTTP parser never delivers more than a declared length, so only bodies without one
    (chunked) need :func:`limited_receive`.
    """
    for name, value in headers:
        if name == b"content-length":
            try:
                size = int(value)
            except ValueError:
                raise MalformedRequest(f"Content-Length {value[:40]!r} is not a number.") from None
            if size > limit:
                raise RequestTooLarge(_too_large(limit, f"declares {size:,} bytes"))
            return size
    return None


def limited_receive(receive: Receive, limit: int) -> Receive:
    """Wrap ``receive`` so a body streaming past ``limit`` bytes stops with RequestTooLarge."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise RequestTooLarge(_too_large(limit, f"sent more than {limit:,} bytes"))
        return message

    return wrapped


async def read_body_first(
    scope: Scope, receive: Receive, declared: int | None, limit: int, replay: bool = True
) -> Receive:
    """Read the whole request body now; a ``receive`` that hands it to the app, then goes on.

    The body is also left in ``scope["slipway.body"]``; with ``replay=False`` (an app that
    reads it there: the direct lane) the original ``receive`` is returned. A body without a
    declared length stops with RequestTooLarge as soon as it passes ``limit`` bytes; one
    with a declared length cannot (the HTTP parser delivers no more than declared).
    """
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnect()
    body: bytes = message.get("body", b"")
    whole = message
    if message.get("more_body", False):
        chunks, seen = [body], len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            seen += len(chunk)
            if declared is None and seen > limit:
                raise RequestTooLarge(_too_large(limit, f"sent more than {limit:,} bytes"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        whole = {"type": "http.request", "body": body, "more_body": False}
    elif declared is None and len(body) > limit:
        raise RequestTooLarge(_too_large(limit, f"sent more than {limit:,} bytes"))
    scope["slipway.body"] = body
    if not replay:
        return receive
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()  # after the body: a disconnect, when it comes
        given = True
        return whole

    return replayed


def _too_large(limit: int, what: str) -> str:
    return (
        f"The request body {what}; this server accepts at most {limit:,} bytes "
        "(SLIPWAY_SERVE_MAX_BODY_BYTES). Split the rows over several requests."
    )


def check_rows(n: int, limit: int) -> None:
    """Refuse a request with more than ``limit`` rows."""
    if n > limit:
        raise RequestTooLarge(
            f"The request has {n:,} rows; this server accepts at most {limit:,} per request "
            "(SLIPWAY_SERVE_MAX_ROWS). Split them over several requests, or use `slipway batch`."
        )


def check_depth(obj: Any, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit`` levels (the body itself is level 1).

    Walks level by level and only descends into containers, so a flat body costs one type
    check per value.
    """
    level = [obj] if type(obj) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise MalformedRequest(
                f"The request body is nested more than {limit} levels deep "
                "(SLIPWAY_SERVE_MAX_JSON_DEPTH); input rows are flat objects."
            )
        nxt: list[Any] = []
        for item in level:
            values = item.values() if type(item) is dict else item
            nxt.extend([v for v in values if type(v) is dict or type(v) is list])
        level = nxt
