"""Alert sinks: a log line, a webhook retried with backoff; failures recorded, never raised."""

from __future__ import annotations

import json
import logging
import socket
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


SECRET_URL = (
    "https://alice:s3cr3t-pass@hooks.example.com/services/T0001/B0002/XXsecretXX?token=tok-9876"
)
SECRETS = ("alice", "s3cr3t-pass", "XXsecretXX", "tok-9876", "T0001/B0002")


def test_webhook_errors_never_show_credentials_or_secret_parts(alert):
    """A 500 and a connection error: recorded as scheme://host/… only, whatever the error says."""
    answers = iter([httpx.Response(500), httpx.ConnectError(f"cannot reach {SECRET_URL}")])

    def handler(request):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sink = WebhookSink(SECRET_URL, transport=httpx.MockTransport(handler))
    [record] = deliver(alert, [Route("webhook", sink)], attempts=2, sleep=lambda s: None)
    text = json.dumps(record) + repr(sink)
    assert not [s for s in SECRETS if s in text], text
    assert "https://hooks.example.com/…" in record["errors"][0]
    assert "500" in record["errors"][0] and "ConnectError" in record["errors"][1]


def test_monitor_output_and_stored_runs_never_show_the_webhook_secrets(
    capsys, env, registry, fraud, monkeypatch
):
    """`slipway monitor --format json`: stdout, stderr and the stored run (what GET
    /v1/models/{name}/monitoring returns) name the failing webhook without its secrets."""
    from tests.cli_helpers import run_cli

    server = HTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    url = (
        f"http://alice:s3cr3t-pass@127.0.0.1:{port}/services/T0001/B0002/XXsecretXX?token=tok-9876"
    )
    monkeypatch.setenv("SLIPWAY_ALERT_WEBHOOK_URL", url)
    monkeypatch.setenv("SLIPWAY_ALERT_MIN_STATUS", "OK")
    monkeypatch.setenv("SLIPWAY_ALERT_WEBHOOK_ATTEMPTS", "2")
    monkeypatch.setenv("SLIPWAY_ALERT_WEBHOOK_BACKOFF", "0")
    try:
        result = run_cli(capsys, "monitor", "fraud", "--format", "json")
    finally:
        server.shutdown()
        server.server_close()
    assert _Failing.hits >= 2
    stored = json.dumps(Monitor(registry, sinks=[]).latest("fraud"))
    alerts = json.loads(result.out)["alerts"]
    assert (
        alerts[-1]["delivered"] is False and f"http://127.0.0.1:{port}/…" in alerts[-1]["errors"][0]
    )
    for text in (result.out, result.err, stored):
        assert not [s for s in SECRETS if s in text], text


class _Failing(BaseHTTPRequestHandler):
    hits: ClassVar[int] = 0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        _Failing.hits += 1
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass


class Trickler:
    """A socket server that answers every request one byte every 0.2 s, for ever."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if self.what == "body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not self.stop.wait(0.2):
                try:
                    conn.sendall(b"x" if self.what == "body" else b"X-Slow: y\r\n"[:1])
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("what", ["headers", "body"])
def test_a_trickling_receiver_cannot_stretch_an_attempt_and_the_run_is_stored(
    registry, fraud, what
):
    """Headers or body arriving a byte at a time: each attempt ends at its deadline, the run
    is stored with the failure, and monitoring returns."""
    trickler = Trickler(what)
    sink = WebhookSink(trickler.url, timeout=1.0)
    m = Monitor(registry, clock=lambda: NOW, sinks=[Route("webhook", sink, "OK")],
                sleep=lambda s: None)  # fmt: skip
    done: list = []
    runner = threading.Thread(target=lambda: done.append(m.run("fraud", since=timedelta(hours=1))))
    runner.start()
    runner.join(timeout=60)  # each attempt takes 1 s; before the fix this never returned
    finished = not runner.is_alive()
    trickler.close()
    runner.join()
    assert finished, "a trickling webhook held the monitoring run"
    [record] = done[0].alerts
    assert record["delivered"] is False
    assert all("did not answer in full within 1 s" in e for e in record["errors"])
    [run] = m.history("fraud")
    assert run.alerts == done[0].alerts
