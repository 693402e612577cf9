"""The access log: one JSON line per request, written in blocks, cheap on the request path.

A ``logging.StreamHandler`` writes and flushes each line as it comes: at thousands of requests
a second that is a system call per request (measured: about a third of the access log's cost).
:class:`BufferedLineHandler` appends each formatted line to a buffer and writes the buffer when
it holds ``capacity`` bytes, every ``flush_seconds`` (a daemon thread), on ``flush()`` and on
``close()`` (``logging.shutdown`` at exit, or the logging configuration being replaced). A line
is therefore on its stream at most ``flush_seconds`` after its request finished. A process
killed with SIGKILL loses what the buffer held, as it would lose what a pipe held.

``slipway serve`` configures the ``slipway.access`` logger with it (see ``server.log_config``);
anything else that configures logging keeps working, since this is an ordinary handler.

:class:`AccessLog` makes the lines. When that logger's only handler is a plain
:class:`BufferedLineHandler` (as ``slipway serve`` sets it up) it hands the line straight to
the handler's buffer: the same text at the same place, without a ``LogRecord`` and a formatter
in between (about half the cost of a line). With any other configuration (a handler of your
own, tests capturing logs) it logs an ordinary INFO record on ``slipway.access``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

import orjson

logger = logging.getLogger("slipway.access")


class BufferedLineHandler(logging.Handler):
    """Writes formatted records to ``stream`` in blocks (see the module docstring)."""

    terminator = "\n"

    def __init__(
        self,
        stream: IO[str] | None = None,
        capacity: int = 64 * 1024,
        flush_seconds: float = 0.2,
    ) -> None:
        super().__init__()
        self.stream: IO[str] = stream if stream is not None else sys.stdout
        self.capacity, self.flush_seconds = capacity, flush_seconds
        self._lines: list[str] = []
        self._size = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._flusher, name="slipway-access", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line)

    @property
    def plain(self) -> bool:
        """Whether a record is written as its bare message (no filter, no format of its own)."""
        fmt = self.formatter
        return not self.filters and (
            fmt is None or (type(fmt) is logging.Formatter and fmt._fmt == "%(message)s")
        )

    def write_line(self, line: str) -> None:
        """Buffer one line (the terminator is added here)."""
        line += self.terminator
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._lines.append(line)
            self._size += len(line)
            if self._size >= self.capacity:
                self._write()

    def flush(self) -> None:
        """Write what the buffer holds now."""
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def close(self) -> None:
        """Write what is left and stop the flusher thread."""
        self._stopping.set()
        self.flush()
        super().close()

    def _write(self) -> None:
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        self._size = 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # a closed or broken stream must not break requests
            self.handleError(logging.makeLogRecord({"msg": "access log write failed"}))

    def _flusher(self) -> None:
        while not self._stopping.wait(self.flush_seconds):
            self.flush()

    def __repr__(self) -> str:
        name: Any = getattr(self.stream, "name", "")
        return f"<{type(self).__name__} {name} ({logging.getLevelName(self.level)})>"


def flush_access_log() -> None:
    """Write what the access log's handlers hold now: the service's last step on shutdown, so
    the last requests' lines are on their stream before the process exits, whatever happens
    after (a supervisor's SIGKILL, an exit path that skips ``logging.shutdown``)."""
    for handler in logger.handlers:
        handler.flush()


def lean_log_records() -> None:
    """Skip the log-record fields no Slipway or uvicorn format uses (thread and process names,
    the caller's source line): the logging documentation's own "Optimization" advice, worth a
    couple of microseconds on each access-log line. Called in served processes only."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # documented under "Optimization" in the logging HOWTO


class AccessLog:
    """Makes each request's JSON line and writes it (see the module docstring)."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # which worker answered, with --workers N
        self._second = -1
        self._prefix = ""

    @property
    def enabled(self) -> bool:
        """Whether lines are wanted (``--no-access-log`` raises the logger's level)."""
        return logger.isEnabledFor(logging.INFO)

    def write(self, line: dict[str, Any]) -> None:
        """Write one request's line; ``ts`` and ``pid`` are filled in here."""
        line["ts"] = self._now()
        line["pid"] = self.pid
        text = orjson.dumps(line).decode()
        handlers = logger.handlers
        if (
            len(handlers) == 1
            and not logger.propagate
            and type(handlers[0]) is BufferedLineHandler
            and handlers[0].plain
            and handlers[0].level <= logging.INFO
            and not logger.filters
        ):
            handlers[0].write_line(text)
        else:
            logger.info(text)

    def _now(self) -> str:
        """``datetime.now(UTC).isoformat(timespec="milliseconds")``, formatted once a second."""
        t = time.time()
        second = int(t)
        if second != self._second:
            stamp = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")
            self._second, self._prefix = second, stamp[:19]  # without "+00:00"
        return f"{self._prefix}.{int((t - second) * 1000):03d}+00:00"
