"""``slipway serve`` as a child process on a free loopback port: start, wait ready, stop.

Used by ``slipway quickstart``, the end-to-end tests and ``bench/serve.py``; usable from any
script that needs a real server for a while::

    with ServerProcess(env={"SLIPWAY_HOME": "..."}) as server:
        httpx.post(server.url + "/v1/models/fraud/predict", ...)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from slipway.exceptions import SlipwayError


class ServerFailed(SlipwayError, RuntimeError):
    """The server process exited, or never became ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A ``slipway serve`` child process; ``stdout``/``stderr`` go to files in ``log_dir``."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_dir: Path | None = None,
        ready_timeout: float = 90.0,
        poll_seconds: float = 0.1,
    ) -> None:
        self.args, self.host = list(args), host
        self.port = port or free_port(host)
        self.env = {**os.environ, **(env or {})}
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="slipway-serve-"))
        self.ready_timeout, self.poll_seconds = ready_timeout, poll_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_after: float | None = None  # seconds from start() to the first ready answer

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def stdout_path(self) -> Path:
        """Where the JSON access log goes."""
        return self.log_dir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        """Where uvicorn and Slipway log."""
        return self.log_dir / "stderr.log"

    def start(self) -> ServerProcess:
        """Start the server and wait until ``/ready`` answers 200."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        command = [sys.executable, "-m", "slipway", "serve", "--host", self.host,
                   "--port", str(self.port), *self.args]  # fmt: skip
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=self.env)
        try:
            self._wait_ready()
        except BaseException:  # Ctrl-C included: never leave a server behind
            self.stop()
            raise
        self.ready_after = time.perf_counter() - started
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(
                    f"slipway serve exited with code {self.process.returncode}:\n{self.stderr()}"
                )
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(self.poll_seconds)
        raise ServerFailed(
            f"slipway serve was not ready after {self.ready_timeout:.0f} s:\n{self.stderr()}"
        )

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait for the graceful shutdown (SIGKILL after ``timeout``); the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def stderr(self) -> str:
        """Everything the server logged so far."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        """The access log so far, complete lines only: a worker may be writing a block of lines
        while this reads, and the line it is in the middle of is left for the next read."""
        if not self.stdout_path.exists():
            return ""
        text = self.stdout_path.read_text(errors="replace")
        return text[: text.rfind("\n") + 1]

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
