"""Alert sinks: where a run's verdict goes. A sink is a plain callable ``(payload) -> None``
that raises on failure; :func:`deliver` retries each a bounded number of times with
exponential backoff and records every failure in the run, so a broken sink never breaks it.

Webhook URLs carry secrets (a Slack or Teams hook's path *is* its credential; others put a
token in the query or a password in the userinfo), and failure records are stored with the
run, returned by ``GET /v1/models/{name}/monitoring`` and printed by the CLI. So every error
text that leaves this module shows a URL as scheme, host and port only (:func:`redact`). And a
webhook attempt has one deadline for everything (connect, send, headers, body): a receiver
that answers one byte at a time cannot stretch it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slipway import _lazy
from slipway.config import Settings
from slipway.exceptions import DeliveryFailed
from slipway.monitoring.report import OK, DriftReport, worst

if TYPE_CHECKING:
    import httpx
else:  # imported when a webhook posts: serving workers load the sinks for guardrail alerts
    httpx = _lazy.Module("httpx")

AlertSink = Callable[[Mapping[str, Any]], None]
"""Receives the alert payload; raises to report a failed delivery."""

logger = logging.getLogger("slipway.monitoring")
_LEVELS = {"OK": logging.INFO, "WARN": logging.WARNING, "ALERT": logging.ERROR}


@dataclass(frozen=True)
class Route:
    """A sink, its name in the run's record, and the least serious status it receives."""

    name: str
    sink: AlertSink
    min_status: str = OK


def log_sink(log: logging.Logger | None = None) -> AlertSink:
    """One log line per run on the ``slipway.monitoring`` logger, at a level matching the status."""
    target = log or logger

    def write(payload: Mapping[str, Any]) -> None:
        reasons = "; ".join(r["message"] for r in payload.get("reasons", [])) or "no issues"
        target.log(
            _LEVELS.get(payload["status"], logging.WARNING),
            "monitoring %s %s:%s window %s..%s: %s",
            payload["status"],
            payload["model"],
            payload["version"],
            payload["window"]["start"],
            payload["window"]["end"],
            reasons,
        )

    return write


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_MIN_SECRET = 4  # shorter fragments (a path of "x") are not worth garbling the text over


def safe_url(url: str) -> str:
    """``scheme://host:port/…``: a URL without userinfo, path, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<url>"
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{rest}" if host else "<url>"


def redact(text: str, url: str | None = None) -> str:
    """``text`` with every URL in it reduced to :func:`safe_url`, and ``url``'s secret parts
    (user, password, path segments, query values) removed wherever else they appear."""
    text = _URL.sub(lambda m: safe_url(m.group(0)), text)
    if url:
        for secret in sorted(_secrets(url), key=len, reverse=True):
            text = text.replace(secret, "***")
    return text


def _secrets(url: str) -> set[str]:
    try:
        parts = urllib.parse.urlsplit(url)
        found = {parts.username or "", parts.password or ""}
    except ValueError:
        return set()
    found.update(parts.path.split("/"))
    found.update(v for _, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    found.add(parts.fragment)
    both = found | {urllib.parse.unquote(f) for f in found}
    return {f for f in both if len(f) >= _MIN_SECRET}


class WebhookSink:
    """POST the payload as JSON to a URL from settings; any non-2xx answer is a failure.

    ``timeout`` bounds the whole attempt (connect, send, and the full answer), not each read.
    Failures raise DeliveryFailed with the URL redacted.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.transport = transport

    def __call__(self, payload: Mapping[str, Any]) -> None:
        try:
            _run(self._post(dict(payload)), self.timeout)
        except TimeoutError:
            raise DeliveryFailed(
                f"{safe_url(self.url)} did not answer in full within {self.timeout:g} s "
                "(SLIPWAY_ALERT_WEBHOOK_TIMEOUT)"
            ) from None
        except httpx.HTTPStatusError as exc:
            raise DeliveryFailed(
                f"{safe_url(self.url)} answered {exc.response.status_code} "
                f"{exc.response.reason_phrase}"
            ) from None
        except Exception as exc:
            message = redact(f"{type(exc).__name__}: {exc}", self.url)
            raise DeliveryFailed(f"posting to {safe_url(self.url)} failed: {message}") from None

    async def _post(self, payload: dict[str, Any]) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            response = await client.post(self.url, json=payload)
            response.raise_for_status()

    def __repr__(self) -> str:
        return f"WebhookSink({safe_url(self.url)!r})"


def _run(work: Coroutine[Any, Any, None], seconds: float) -> None:
    """Run ``work`` to completion or cancel it after ``seconds`` (raising TimeoutError).

    Sinks are called from plain code; if this thread already runs an event loop (an async
    caller), the work gets a loop of its own on a helper thread.
    """

    async def bounded() -> None:
        await asyncio.wait_for(work, seconds)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(bounded())
        return
    with ThreadPoolExecutor(1, thread_name_prefix="slipway-alert") as pool:
        pool.submit(asyncio.run, bounded()).result()


def routes(settings: Settings) -> list[Route]:
    """The sinks settings ask for: always the log line; the webhook when a URL is set."""
    out = [Route("log", log_sink())]
    if settings.alert_webhook_url:
        sink = WebhookSink(settings.alert_webhook_url, timeout=settings.alert_webhook_timeout)
        out.append(Route("webhook", sink, settings.alert_min_status))
    return out


def payload(report: DriftReport) -> dict[str, Any]:
    """What sinks receive: who, when, the verdict and its reasons, and the run's id."""
    deciding = report.deciding  # the window the verdict comes from
    return {
        "model": report.model,
        "version": report.version,
        "run_id": report.run_id,
        "status": report.status,
        "reasons": [r.to_dict() for r in report.reasons],
        "window": {
            "start": None if deciding.start is None else deciding.start.isoformat(),
            "end": None if deciding.end is None else deciding.end.isoformat(),
            "rows": deciding.rows,
        },
        "flagged": report.flagged,
        "created_at": report.created_at.isoformat(),
    }


def deliver(
    report: DriftReport,
    sinks: Sequence[Route],
    *,
    attempts: int = 3,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Send the report to every sink whose threshold it meets; one record per sink.

    A failing sink is tried ``attempts`` times in all, waiting ``backoff``, then twice that,
    and so on between tries. Failures are recorded, never raised.
    """
    return send(
        payload(report), report.status, sinks, attempts=attempts, backoff=backoff, sleep=sleep
    )


def send(
    data: Mapping[str, Any],
    status: str,
    sinks: Sequence[Route],
    *,
    attempts: int = 3,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Send any alert payload of ``status`` as :func:`deliver` sends a report's."""
    records = []
    for route in sinks:
        if worst([status, route.min_status]) != status:
            continue
        errors: list[str] = []
        delivered = False
        for attempt in range(attempts):
            try:
                route.sink(data)
            except Exception as exc:  # any failure of a sink is recorded, never raised
                # Redacted again here: a sink of the user's own may put a URL in its error.
                errors.append(redact(f"attempt {attempt + 1}: {type(exc).__name__}: {exc}"))
                if attempt + 1 < attempts:
                    sleep(backoff * 2**attempt)
                continue
            delivered = True
            break
        records.append(
            {
                "sink": route.name,
                "delivered": delivered,
                "attempts": len(errors) + delivered,
                "errors": errors,
            }
        )
        if not delivered:
            logger.warning("alert sink %s failed %d times: %s", route.name, attempts, errors[-1])
    return records


def alerter(settings: Settings) -> Callable[[Mapping[str, Any]], list[dict[str, Any]]]:
    """``(payload) -> delivery records``: an ALERT payload to the sinks settings ask for,
    retried as monitoring runs retry (used by experiment guardrails)."""
    sinks = routes(settings)

    def alert(data: Mapping[str, Any]) -> list[dict[str, Any]]:
        return send(
            data,
            str(data.get("status", "ALERT")),
            sinks,
            attempts=settings.alert_webhook_attempts,
            backoff=settings.alert_webhook_backoff,
        )

    return alert
