"""Instructions executed per phase of a bench, counted by valgrind's callgrind.

Wall and CPU time on a shared 2-core machine move by more than the few percent a bench may
need to resolve. The number of instructions a phase executes does not depend on what else the
machine is doing: running the same phase twice counts nearly the same total. A bench run with
``--instructions`` re-runs itself under ``valgrind --tool=callgrind --instr-atstart=no`` (so
the imports and set-up run uninstrumented) and brackets each measured phase with
:func:`start` and :func:`stop`, which issue callgrind's client requests through a tiny C
library compiled on first use (it needs gcc and valgrind's ``callgrind.h``). Each
:func:`stop` dumps the counts of that phase, every thread included, under its label;
:func:`totals` reads them back, for every thread and for the main one (the event loop's, the
serial part of a serving worker: what bounds one worker's throughput).

Under valgrind the program runs some 50 times slower, so work driven by wall-clock timers (a
log writer waking every 0.2 s) is counted more often per request than it runs natively; it is
the same in every state of one run, which is why the bench compares states of the same run.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ENV = "SLIPWAY_BENCH_CALLGRIND"  # set in the re-run: "<library>:<dump directory>"

_SOURCE = """
#include <valgrind/callgrind.h>
void bench_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void bench_stop(const char *label) {
    CALLGRIND_STOP_INSTRUMENTATION;
    CALLGRIND_DUMP_STATS_AT(label);
}
"""

_lib: ctypes.CDLL | None = None


def active() -> bool:
    """Whether this process runs under the bench's callgrind re-run."""
    return ENV in os.environ


def start() -> None:
    """Zero the counts and count instructions from here (no-op outside the re-run)."""
    if active():
        _library().bench_start()


def stop(label: str) -> None:
    """Stop counting and dump the counts since :func:`start` under ``label``."""
    if active():
        _library().bench_stop(label.encode())


def rerun(argv: list[str], workdir: Path) -> int:
    """Run ``python argv`` again under callgrind, its dumps in ``workdir``; its exit code.

    Raises RuntimeError naming what is missing (valgrind, gcc, callgrind.h)."""
    missing = [tool for tool in ("valgrind", "gcc") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"--instructions needs {' and '.join(missing)} on PATH")
    if not Path("/usr/include/valgrind/callgrind.h").exists():
        raise RuntimeError("--instructions needs valgrind's headers (valgrind/callgrind.h)")
    source, library = workdir / "callgrind_requests.c", workdir / "libcallgrind_requests.so"
    source.write_text(_SOURCE)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
                   check=True)  # fmt: skip
    env = {**os.environ, ENV: f"{library}:{workdir}"}
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--separate-threads=yes",
        f"--callgrind-out-file={workdir}/callgrind.out.%p",
        sys.executable,
        *argv,
    ]
    return subprocess.run(command, env=env, stderr=subprocess.DEVNULL).returncode


def totals(workdir: Path) -> list[tuple[str, int, int]]:
    """``(label, instructions of every thread, of the main thread)`` of every phase dumped in
    ``workdir``, in the order dumped (the re-run separates threads: one file per thread and
    dump; the main thread, number 1, runs the event loop)."""
    phases: dict[int, list] = {}
    for path in workdir.glob("callgrind.out.*"):
        text = path.read_text(errors="replace")
        label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        part = re.search(r"^part: (\d+)", text, re.M)
        thread = re.search(r"^thread: (\d+)", text, re.M)
        if label and total and part:
            phase = phases.setdefault(int(part.group(1)), [label.group(1), 0, 0])
            phase[1] += int(total.group(1))
            if thread is None or thread.group(1) == "1":
                phase[2] += int(total.group(1))
    return [(label, every, main) for _, (label, every, main) in sorted(phases.items())]


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        library, _, _ = os.environ[ENV].partition(":")
        _lib = ctypes.CDLL(library)
        _lib.bench_stop.argtypes = [ctypes.c_char_p]
    return _lib
