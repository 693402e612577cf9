"""Alert sinks: where a run's verdict goes. A sink is a plain callable ``(payload) -> None``
that raises on failure; :func:`deliver` retries each a bounded number of times with
exponential backoff and records every failure in the run, so a broken sink never breaks it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from slipway.config import Settings
from slipway.monitoring.report import OK, DriftReport, worst

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


class WebhookSink:
    """POST the payload as JSON to a URL from settings; any non-2xx answer is a failure."""

    def __init__(
        self, url: str, *, timeout: float = 5.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.transport = transport

    def __call__(self, payload: Mapping[str, Any]) -> None:
        with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
            response = client.post(self.url, json=dict(payload))
        response.raise_for_status()

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r})"


def routes(settings: Settings) -> list[Route]:
    """The sinks settings ask for: always the log line; the webhook when a URL is set."""
    out = [Route("log", log_sink())]
    if settings.alert_webhook_url:
        sink = WebhookSink(settings.alert_webhook_url, timeout=settings.alert_webhook_timeout)
        out.append(Route("webhook", sink, settings.alert_min_status))
    return out


def payload(report: DriftReport) -> dict[str, Any]:
    """What sinks receive: who, when, the verdict and its reasons, and the run's id."""
    latest = report.latest
    return {
        "model": report.model,
        "version": report.version,
        "run_id": report.run_id,
        "status": report.status,
        "reasons": [r.to_dict() for r in report.reasons],
        "window": {
            "start": None if latest.start is None else latest.start.isoformat(),
            "end": None if latest.end is None else latest.end.isoformat(),
            "rows": latest.rows,
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
                errors.append(f"attempt {attempt + 1}: {type(exc).__name__}: {exc}")
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
