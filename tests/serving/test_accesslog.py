"""The access log: lines buffered and written in blocks, straight to the buffer when it can."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

import pytest

from slipway.serving.accesslog import AccessLog, BufferedLineHandler
from slipway.serving.server import log_config


@pytest.fixture
def access_logger():
    """The ``slipway.access`` logger, restored after the test."""
    logger = logging.getLogger("slipway.access")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    yield logger
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.propagate = saved[:2]
    logger.setLevel(saved[2])  # setLevel, not `.level =`: it clears the isEnabledFor cache


def record(message):
    """An INFO record carrying ``message``."""
    return logging.makeLogRecord({"msg": message, "levelno": logging.INFO})


def test_lines_wait_in_the_buffer_until_flush_or_close():
    """Nothing reaches the stream per line; flush() and close() write everything, in order."""
    stream = io.StringIO()
    handler = BufferedLineHandler(stream, flush_seconds=3600)
    for i in range(3):
        handler.handle(record(f"line {i}"))
    assert stream.getvalue() == ""
    handler.flush()
    assert stream.getvalue() == "line 0\nline 1\nline 2\n"
    handler.handle(record("last"))
    handler.close()
    assert stream.getvalue().endswith("line 2\nlast\n")


def test_a_full_buffer_is_written_at_once():
    """Reaching ``capacity`` bytes writes the block without waiting for the flusher."""
    stream = io.StringIO()
    handler = BufferedLineHandler(stream, capacity=50, flush_seconds=3600)
    for _ in range(6):
        handler.handle(record("x" * 9))
    assert stream.getvalue().count("\n") == 5  # five 10-byte lines reached 50 bytes
    handler.close()
    assert stream.getvalue().count("\n") == 6


def test_the_flusher_thread_writes_without_more_traffic():
    """A quiet server's last lines still reach the stream within ``flush_seconds``."""
    stream = io.StringIO()
    handler = BufferedLineHandler(stream, flush_seconds=0.01)
    handler.handle(record("alone"))
    deadline = time.monotonic() + 10
    while stream.getvalue() == "" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue() == "alone\n"
    handler.close()


def test_access_lines_go_straight_to_a_plain_buffered_handler(access_logger):
    """As `slipway serve` configures it, a line skips the LogRecord and lands in the buffer."""
    stream = io.StringIO()
    handler = BufferedLineHandler(stream, flush_seconds=3600)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.handlers[:] = [handler]
    access_logger.propagate = False
    access_logger.setLevel(logging.INFO)  # clears the isEnabledFor cache an earlier test filled
    seen = []
    handler.emit = seen.append  # the LogRecord path, which this lane must not take
    AccessLog().write({"request_id": "r1", "status": 200})
    handler.flush()
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert seen == [] and line["request_id"] == "r1" and line["status"] == 200
    assert line["ts"].endswith("+00:00") and isinstance(line["pid"], int)


def test_access_lines_are_records_under_any_other_configuration(access_logger, caplog):
    """A formatter or handler of the user's own gets ordinary INFO records."""
    stream = io.StringIO()
    handler = BufferedLineHandler(stream, flush_seconds=3600)
    handler.setFormatter(logging.Formatter("access %(levelname)s %(message)s"))
    access_logger.handlers[:] = [handler]
    access_logger.propagate = False
    access_logger.setLevel(logging.INFO)  # clears the isEnabledFor cache an earlier test filled
    AccessLog().write({"request_id": "r2"})
    handler.flush()
    assert stream.getvalue().startswith('access INFO {"request_id":"r2"')
    handler.close()
    access_logger.handlers[:] = []
    access_logger.propagate = True
    with caplog.at_level(logging.INFO, logger="slipway.access"):
        AccessLog().write({"request_id": "r3"})
    # Only this logger's records: another test's background thread may log meanwhile.
    access = [r for r in caplog.records if r.name == "slipway.access"]
    assert json.loads(access[-1].message)["request_id"] == "r3"


def test_slipway_serve_logs_access_lines_through_the_buffered_handler():
    """The served logging configuration puts the buffered handler on stdout."""
    handler = log_config()["handlers"]["access"]
    assert handler["class"] == "slipway.serving.accesslog.BufferedLineHandler"
    assert handler["stream"] == "ext://sys.stdout"
    assert log_config(access_log=False)["loggers"]["slipway.access"]["level"] == "WARNING"


def test_a_flusher_that_starts_after_close_ends_cleanly():
    """A busy machine may run the flusher thread only after close(): it must end without an
    exception (``logging.Handler.close`` sets ``_closed = True``, so that name is not ours)."""
    gate = threading.Event()

    class Late(BufferedLineHandler):
        def _flusher(self) -> None:
            gate.wait(5)
            super()._flusher()

    errors = []
    previous = threading.excepthook
    threading.excepthook = errors.append
    try:
        handler = Late(io.StringIO(), flush_seconds=3600)
        handler.close()
        gate.set()
        handler._thread.join(5)
    finally:
        threading.excepthook = previous
    assert not handler._thread.is_alive()
    assert [e.exc_value for e in errors] == []


def test_the_service_writes_its_last_access_lines_when_it_stops(access_logger, tmp_path):
    """Stopping the service flushes the buffer, so the last requests' lines are on the stream
    before the process exits (whatever then happens to it), not up to ``flush_seconds`` later."""
    from fastapi.testclient import TestClient

    from slipway.config import Settings
    from slipway.registry import Registry
    from slipway.serving import create_app

    stream = io.StringIO()
    handler = BufferedLineHandler(stream, flush_seconds=3600)
    access_logger.handlers[:] = [handler]
    access_logger.propagate = False
    access_logger.setLevel(logging.INFO)
    s = Settings(home=tmp_path / "home", user="t", serve_auth=False)
    with TestClient(create_app(s)) as client:
        assert client.get("/v1/models").status_code == 200
        assert stream.getvalue() == ""  # still in the buffer while the service runs
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["path"] == "/v1/models" and line["status"] == 200
    Registry(s).store.dispose()
