"""A ``slipway`` command for tests that run the CLI in real processes, starting in milliseconds.

The docs' shell blocks run ~65 ``slipway`` commands, the lifecycle's real-process test half a
dozen; each fresh interpreter spends 1-3 s importing the CLI, pandas, scikit-learn and pyarrow
before it does anything. :class:`CliZygote` imports them once
in a server process; the ``slipway`` script it writes (first on the blocks' ``PATH``) sends
its argv, working directory, environment and stdin/stdout/stderr to that server, which forks a
child that runs ``slipway.cli.main`` exactly as the console script would (``sys.argv``, the
environment and the directory replaced, ``SystemExit`` turned into the exit code, ``atexit``
handlers run) and reports the exit code back. Every command still runs in its own process that
ends with it, so nothing one command does leaks into the next.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

# Imported before forking, so no command pays for them. None starts a thread on import.
PRELOAD = (
    "slipway.cli",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.isotonic",
    "scipy.stats",
    "slipway.registration",
    "slipway.monitoring",
    "slipway.lifecycle",
    "slipway.batch.runner",
)

SHIM = """\
#!{python} -I
import json, os, socket, struct, sys

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect({socket_path!r})
request = json.dumps({{"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(sock, [struct.pack("!I", len(request)) + request], [0, 1, 2])
data = b""
while len(data) < 4:
    chunk = sock.recv(4 - len(data))
    if not chunk:
        sys.exit("slipway (tests/fast_cli.py): the command's process died without an exit code")
    data += chunk
sys.exit(struct.unpack("!i", data)[0])
"""


def _recv_exact(conn: socket.socket, n: int, first: bytes = b"") -> bytes:
    data = first
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("the shim hung up")
        data += chunk
    return data


def _run_command(conn: socket.socket, request: dict, fds: list[int], base: list[str]) -> None:
    """In the forked child: become the command's process, run the CLI, report the exit code."""
    import atexit
    import traceback

    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    # sys.path as the console script would start with: its own directory, PYTHONPATH, the rest
    pythonpath = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    sys.path[:] = [os.path.dirname(sys.argv[0]), *(p for p in pythonpath if p), *base]
    code: int
    try:
        from slipway.cli import main

        result = main()
        code = 0 if result is None else int(result)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        conn.sendall(struct.pack("!i", code))
        os._exit(code & 0xFF)


def serve(socket_path: str) -> None:
    """The zygote: preload, listen, fork one child per command."""
    import importlib
    import threading

    for name in PRELOAD:
        importlib.import_module(name)
    assert threading.active_count() == 1, "a preloaded module started a thread: unsafe to fork"
    # what a console script's sys.path holds besides its directory and PYTHONPATH
    own = {"", os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)}
    base = [p for p in sys.path if p not in own]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(16)
    server.settimeout(0.5)
    sys.stdout.flush()
    sys.stderr.flush()
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        conn.settimeout(None)
        head, fds, _, _ = socket.recv_fds(conn, 4, 3)
        head = _recv_exact(conn, 4, head)
        (size,) = struct.unpack("!I", head)
        request = json.loads(_recv_exact(conn, size))
        if os.fork() == 0:
            server.close()
            _run_command(conn, request, fds, base)
        for fd in fds:
            os.close(fd)
        conn.close()


class CliZygote:
    """The server process and the ``slipway`` script pointing at it, in ``directory``."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.bin = directory / "bin"
        self.socket_path = str(directory / "slipway.sock")
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> CliZygote:
        """Start the server, wait until it listens, write ``bin/slipway``."""
        self.bin.mkdir(parents=True, exist_ok=True)
        root = str(Path(__file__).resolve().parents[1])
        log = open(self.directory / "zygote.log", "wb")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from tests.fast_cli import serve; serve({self.socket_path!r})",
            ],
            cwd=root,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket_path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "the tests' slipway zygote did not start:\n"
                    + (self.directory / "zygote.log").read_text(errors="replace")
                )
            time.sleep(0.05)
        shim = self.bin / "slipway"
        shim.write_text(SHIM.format(python=sys.executable, socket_path=self.socket_path))
        shim.chmod(0o755)
        return self

    def stop(self) -> None:
        """Stop the server (commands still running finish on their own)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
