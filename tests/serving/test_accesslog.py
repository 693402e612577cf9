"""The access log: lines buffered and written in blocks, straight to the buffer when it can."""

from __future__ import annotations

import io
import json
import logging
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
    logger.handlers[:], logger.propagate, logger.level = saved


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
    access_logger.propagate, access_logger.level = False, logging.INFO
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
    access_logger.propagate, access_logger.level = False, logging.INFO
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
