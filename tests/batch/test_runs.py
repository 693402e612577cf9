"""The run record: what a run's fields mean, run ids, and telling a live owner from a dead one."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slipway.batch import runs
from slipway.batch.runs import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTS,
    BatchRun,
    check_run_id,
    current_owner,
    new_run_id,
    owner_alive,
)
from slipway.clock import utcnow
from slipway.exceptions import InvalidReference

STARTED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def a_run(**changes) -> BatchRun:
    """A finished run with rejects; ``changes`` override its fields."""
    run = BatchRun(
        run_id="nightly",
        model_name="fraud",
        version=3,
        sha256="ab" * 32,
        source={"kind": "file"},
        input_fingerprint="f",
        output={"kind": "db"},
        status="succeeded",
        rows_in=10,
        rows_scored=8,
        rows_rejected=2,
        started_at=STARTED,
        ended_at=STARTED + timedelta(seconds=90),
        error=None,
        progress={},
        owner=None,
        heartbeat_at=STARTED + timedelta(seconds=80),
    )
    return replace(run, **changes)


def test_exit_codes_say_succeeded_with_or_without_rejects_or_not():
    """0 all scored, 3 succeeded with rejects, 1 for a failed or still running run."""
    assert a_run().exit_code == EXIT_REJECTS == 3
    assert a_run(rows_rejected=0).exit_code == EXIT_OK == 0
    for status in ("failed", "running"):
        assert a_run(status=status, rows_rejected=0).exit_code == EXIT_FAILED == 1


def test_seconds_run_to_the_end_or_to_the_last_heartbeat():
    """Wall time to ended_at, to heartbeat_at while running, None with neither."""
    assert a_run().seconds == 90.0
    assert a_run(ended_at=None).seconds == 80.0
    assert a_run(ended_at=None, heartbeat_at=None).seconds is None


def test_to_dict_is_json_ready_with_ref_seconds_and_exit_code():
    """Times as ISO text, the ref and seconds added; no exit code while running."""
    out = a_run().to_dict()
    assert out["started_at"] == "2026-03-01T12:00:00+00:00"
    assert out["ended_at"] == "2026-03-01T12:01:30+00:00"
    assert out["heartbeat_at"] == "2026-03-01T12:01:20+00:00"
    assert (out["ref"], out["seconds"], out["exit_code"]) == ("fraud:3", 90.0, 3)
    assert out["run_id"] == "nightly" and out["rows_rejected"] == 2
    running = a_run(status="running", ended_at=None, heartbeat_at=None).to_dict()
    assert (running["exit_code"], running["ended_at"], running["heartbeat_at"]) == (
        None,
        None,
        None,
    )


def test_run_ids_are_kept_to_a_safe_alphabet():
    """1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    for good in ("a", "7", "nightly-2026.03_01", "x" * 64):
        check_run_id(good)
    for bad in ("", "x" * 65, "-a", ".a", "a/b", "a b", "../etc"):
        with pytest.raises(InvalidReference, match="is not a valid run id"):
            check_run_id(bad)


def test_new_run_ids_are_utc_start_times_with_a_random_suffix():
    """YYYYmmddTHHMMSS-8 hex digits, valid, different each time, in order of time."""
    first, second = new_run_id(), new_run_id()
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{8}", first) and first != second
    check_run_id(first)
    assert first[:15] <= second[:15] <= f"{utcnow():%Y%m%dT%H%M%S}"


def test_this_process_is_a_live_owner_and_a_changed_start_or_no_owner_is_not():
    """host:pid:start:token of this process is alive; the same pid with another start time
    (a reused pid) and a missing owner are not."""
    owner = current_owner()
    host, pid, start, token = owner.split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert start.isdigit() and re.fullmatch(r"[0-9a-f]{8}", token)
    assert owner_alive(owner, None)
    assert not owner_alive(f"{host}:{pid}:{int(start) + 1}:{token}", None)
    assert not owner_alive(None, utcnow()) and not owner_alive("", utcnow())


def test_a_dead_or_zombie_process_is_a_dead_owner():
    """A pid that no longer runs, or one that exited and was not reaped yet, is dead."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while (runs._proc_stat(proc.pid) or ["?"])[0] != "Z":  # exited, not reaped: a zombie
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    start = runs._process_start(proc.pid)
    owner = f"{socket.gethostname()}:{proc.pid}:{start}:token"
    assert start is not None and not owner_alive(owner, utcnow())
    proc.wait()
    assert not owner_alive(owner, utcnow())


def test_an_owner_that_cannot_be_inspected_counts_as_alive(monkeypatch):
    """A process of another user, or no /proc to read its start: assume it still works."""
    host = socket.gethostname()
    monkeypatch.setattr(runs, "_proc_stat", lambda pid: None)
    assert owner_alive(f"{host}:{os.getpid()}:123:token", None)
    monkeypatch.undo()

    def forbidden(pid: int, signal: int) -> None:
        raise PermissionError(pid)

    monkeypatch.setattr(runs.os, "kill", forbidden)
    assert owner_alive(f"{host}:1:123:token", None)


def test_an_owner_on_another_host_is_alive_until_its_heartbeat_is_ten_minutes_old():
    """Only the heartbeat tells: fresh is alive, older than STALE_AFTER or none is dead."""
    assert timedelta(minutes=10) == runs.STALE_AFTER
    other = "elsewhere.example:123:456:token"
    now = utcnow()
    assert owner_alive(other, now - timedelta(minutes=9, seconds=50))
    assert not owner_alive(other, now - timedelta(minutes=10, seconds=10))
    assert not owner_alive(other, None)
    exactly = now - runs.STALE_AFTER
    with pytest.MonkeyPatch.context() as patch:  # a heartbeat exactly STALE_AFTER old is dead
        patch.setattr(runs, "utcnow", lambda: now)
        assert not owner_alive(other, exactly)
        assert owner_alive(other, exactly + timedelta(microseconds=1))
    # an owner on this host without a pid is judged by its heartbeat, too
    assert owner_alive(f"{socket.gethostname()}:nopid", now)
    assert not owner_alive(f"{socket.gethostname()}:nopid", None)


def test_a_run_owner_is_alive_only_while_the_run_is_running():
    """BatchRun.owner_alive: a finished run's owner never holds it."""
    owner = current_owner()
    assert a_run(status="running", owner=owner).owner_alive()
    assert not a_run(status="failed", owner=owner).owner_alive()


def test_an_owners_start_is_the_process_start_time_in_ticks_since_boot():
    """The start that tells a reused pid apart is /proc's start time (not another field that
    changes while the process runs): a process started just now started about uptime ago."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        start = runs._process_start(proc.pid)
        assert start is not None
        assert uptime - 10 <= int(start) / os.sysconf("SC_CLK_TCK") <= uptime + 1
    finally:
        proc.kill()
        proc.wait()
