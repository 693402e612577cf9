"""Alert sinks: a log line, a webhook retried with backoff; failures recorded, never raised."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import httpx
import numpy as np
import pytest

from slipway.config import Settings
from slipway.monitoring import monitor
from slipway.monitoring.runner import Monitor
from slipway.monitoring.sinks import Route, WebhookSink, deliver, log_sink, routes
from tests.monitoring.helpers import NOW


@pytest.fixture
def alert():
    """A report that ends in ALERT."""
    rng = np.random.default_rng(0)
    report = monitor(rng.normal(size=2_000), rng.normal(2, 1, size=500))
    assert report.status == "ALERT"
    return report


def test_webhook_posts_the_verdict_as_json(alert):
    """One POST with the status, reasons and flagged features."""
    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        return httpx.Response(204)

    sink = WebhookSink("https://hooks.example/x", transport=httpx.MockTransport(handler))
    [record] = deliver(alert, [Route("webhook", sink)])
    assert record == {"sink": "webhook", "delivered": True, "attempts": 1, "errors": []}
    assert seen[0]["status"] == "ALERT" and seen[0]["flagged"] == ["feature_0"]
    assert seen[0]["reasons"][0]["code"] == "feature_drift"


def test_failing_webhook_is_retried_with_backoff_then_recorded(alert):
    """500, 500, 500: three attempts, waits of 1 s then 2 s, every error kept, nothing raised."""
    calls, waits = [], []

    def handler(request):
        calls.append(request)
        return httpx.Response(500)

    sink = WebhookSink("https://hooks.example/x", transport=httpx.MockTransport(handler))
    [record] = deliver(alert, [Route("webhook", sink)], attempts=3, backoff=1.0, sleep=waits.append)
    assert len(calls) == 3 and waits == [1.0, 2.0]
    assert record["delivered"] is False and record["attempts"] == 3
    assert len(record["errors"]) == 3 and "500" in record["errors"][0]


def test_a_sink_that_recovers_is_delivered_on_a_later_attempt(alert):
    """A connection error then success: delivered on attempt 2, the first error recorded."""
    answers = iter([httpx.ConnectError("refused"), httpx.Response(200)])

    def handler(request):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sink = WebhookSink("https://hooks.example/x", transport=httpx.MockTransport(handler))
    [record] = deliver(alert, [Route("webhook", sink)], sleep=lambda s: None)
    assert record["delivered"] and record["attempts"] == 2 and "refused" in record["errors"][0]


def test_min_status_filters_what_a_sink_receives(alert):
    """A sink for ALERT only does not hear about OK runs."""
    rng = np.random.default_rng(1)
    ok = monitor(rng.normal(size=2_000), rng.normal(size=500))
    got = []
    sinks = [Route("only-alerts", got.append, "ALERT")]
    assert deliver(ok, sinks) == [] and got == []
    deliver(alert, sinks)
    assert [p["status"] for p in got] == ["ALERT"]


def test_log_sink_writes_one_line_at_the_status_level(alert, caplog):
    """ALERT logs at ERROR on slipway.monitoring with the reasons."""
    with caplog.at_level(logging.INFO, logger="slipway.monitoring"):
        deliver(alert, [Route("log", log_sink())])
    [record] = caplog.records
    assert record.levelno == logging.ERROR and "feature_0" in record.getMessage()


def test_routes_come_from_settings(tmp_path):
    """The webhook is added only when SLIPWAY_ALERT_WEBHOOK_URL is set."""
    assert [r.name for r in routes(Settings(home=tmp_path))] == ["log"]
    settings = Settings(
        home=tmp_path, alert_webhook_url="http://127.0.0.1:9/x", alert_min_status="WARN"
    )
    webhook = routes(settings)[1]
    assert webhook.name == "webhook" and webhook.min_status == "WARN"


def test_a_dead_webhook_never_crashes_a_stored_run(registry, fraud, caplog):
    """The run is stored and its alert records say what failed."""
    dead = WebhookSink("http://127.0.0.1:9/hook", timeout=0.5)
    m = Monitor(
        registry, clock=lambda: NOW, sinks=[Route("webhook", dead, "OK")], sleep=lambda s: None
    )
    report = m.run("fraud", since=timedelta(hours=1))
    [record] = report.alerts
    assert (
        record["delivered"] is False
        and record["attempts"] == registry.settings.alert_webhook_attempts
    )
    [run] = m.history("fraud")
    assert run.alerts == report.alerts


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_webhook_against_a_real_local_server(alert):
    """A real HTTP server on 127.0.0.1 receives one JSON POST."""
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        [record] = deliver(alert, [Route("webhook", WebhookSink(url))])
    finally:
        server.shutdown()
        server.server_close()
    assert record["delivered"]
    content_type, body = _Hook.received[-1]
    assert content_type == "application/json" and body["status"] == "ALERT"
