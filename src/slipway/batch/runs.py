"""The record of batch runs and their chunks, and the lookup of stored predictions.

A run row says what was scored with which version into where, and how it went. A chunk row
says one chunk is done; counts on the run are kept in step with the chunk rows and recomputed
from them when a run finishes or resumes. ``owner`` names the process holding a run, so a
resume can tell a dead run (kill -9, a reboot) from one still going. The rows are kept by
:mod:`slipway.store.batch`; this module says what they mean.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from slipway.clock import utcnow
from slipway.exceptions import InvalidReference, PredictionNotFound, RunNotFound
from slipway.store import Store
from slipway.store import batch as tables
from slipway.store.batch import ChunkRecord, StoredPrediction

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Exit codes of `slipway batch` (usage errors exit 2, as for every command).
EXIT_OK, EXIT_FAILED, EXIT_REJECTS = 0, 1, 3
# Rows per chunk unless a run says otherwise (here, not in the runner, for the CLI's help).
DEFAULT_CHUNK_SIZE = 100_000
# A run owned by another host counts as dead once its heartbeat is this old.
STALE_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class BatchRun:
    """One batch run: model version, input, output, counts, timing and outcome."""

    run_id: str
    model_name: str
    version: int
    sha256: str
    source: dict[str, Any]
    input_fingerprint: str | None
    output: dict[str, Any]
    status: str  # running | succeeded | failed
    rows_in: int
    rows_scored: int
    rows_rejected: int
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    progress: dict[str, Any]
    owner: str | None
    heartbeat_at: datetime | None
    chunks_done: int = 0

    @property
    def ref(self) -> str:
        """``name:version`` of the model that scored the run."""
        return f"{self.model_name}:{self.version}"

    @property
    def exit_code(self) -> int:
        """0 all rows scored, 3 finished with rejects, 1 failed or not finished."""
        if self.status != "succeeded":
            return EXIT_FAILED
        return EXIT_REJECTS if self.rows_rejected else EXIT_OK

    @property
    def seconds(self) -> float | None:
        """Wall time from start to end (to the last heartbeat while running)."""
        end = self.ended_at or self.heartbeat_at
        return None if end is None else (end - self.started_at).total_seconds()

    def owner_alive(self) -> bool:
        """Whether the process that holds this run may still be working on it."""
        return self.status == "running" and owner_alive(self.owner, self.heartbeat_at)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, as printed by ``slipway batch runs show --json``."""
        out = dict(self.__dict__)
        for name in ("started_at", "ended_at", "heartbeat_at"):
            out[name] = None if out[name] is None else out[name].isoformat()
        out["ref"] = self.ref
        out["seconds"] = self.seconds
        out["exit_code"] = self.exit_code if self.status != "running" else None
        return out


def latest_prediction(store: Store, model_name: str, key: str) -> StoredPrediction:
    """The newest batch prediction of ``key`` by ``model_name``, from any run.

    Raises :class:`PredictionNotFound` (a ``NotFound``) when no batch run stored one.
    """
    found = tables.find_prediction(store, model_name, key)
    if found is None:
        raise PredictionNotFound(
            f"Model {model_name!r} has no batch prediction for key {key!r}. Batch runs store "
            f"them: slipway batch {model_name} INPUT --key-column COLUMN --output db"
        )
    return found


class RunLog:
    """Batch runs and their chunks in the metadata store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, run_id: str) -> BatchRun:
        """The run with that id."""
        run = self.find(run_id)
        if run is None:
            raise RunNotFound(
                f"No batch run {run_id!r}; `slipway batch runs list` shows the recent ones."
            )
        return run

    def find(self, run_id: str) -> BatchRun | None:
        """The run with that id, or None."""
        runs = tables.runs(self.store, run_id=run_id, limit=1)
        return BatchRun(**runs[0]) if runs else None

    def recent(self, *, model: str | None = None, limit: int = 50) -> list[BatchRun]:
        """Recent runs, newest first (of one model, when given)."""
        return [BatchRun(**run) for run in tables.runs(self.store, model=model, limit=limit)]

    def create(
        self,
        run_id: str,
        *,
        model_name: str,
        version: int,
        sha256: str,
        source: dict[str, Any],
        fingerprint: str | None,
        output: dict[str, Any],
        progress: dict[str, Any],
        owner: str,
    ) -> BatchRun:
        """Record a new run as running, held by ``owner``."""
        tables.add_run(
            self.store,
            run_id,
            model_name=model_name,
            version=version,
            sha256=sha256,
            source=source,
            input_fingerprint=fingerprint,
            output=output,
            progress=progress,
            owner=owner,
        )
        return self.get(run_id)

    def claim(self, run_id: str, owner: str) -> None:
        """Take over a run to resume it: running again, held by ``owner``."""
        tables.claim_run(self.store, run_id, owner)

    def set_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        """Replace the run's progress facts (engine, chunk size, chunk total)."""
        tables.set_progress(self.store, run_id, progress)

    def chunks(self, run_id: str) -> dict[int, ChunkRecord]:
        """The run's finished chunks by number."""
        return tables.chunks(self.store, run_id)

    def record_chunks(self, run_id: str, owner: str, records: Sequence[ChunkRecord]) -> bool:
        """Mark chunks done in one transaction if ``owner`` still holds the run (else
        :class:`RunConflict`); False, and nothing recorded, if one was recorded already."""
        return tables.record_chunks(self.store, run_id, owner, records)

    def forget_chunks(self, run_id: str, chunks: Iterable[int]) -> None:
        """Drop chunk rows whose output is gone, so those chunks are scored again."""
        tables.forget_chunks(self.store, run_id, chunks)

    def finish(self, run_id: str, status: str, error: str | None = None) -> BatchRun:
        """End a run; its counts are recomputed from its chunk rows."""
        tables.finish_run(self.store, run_id, status, error)
        return self.get(run_id)


def new_run_id() -> str:
    """A readable, sortable, unique id: UTC start time and 8 random hex digits."""
    return f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def check_run_id(run_id: str) -> None:
    """Run ids name files and directories, so they are kept to a safe alphabet."""
    if not RUN_ID.match(run_id):
        raise InvalidReference(
            f"{run_id!r} is not a valid run id: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )


def current_owner() -> str:
    """``host:pid:start:token`` for this process (start is the process start time)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or '-'}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str | None, heartbeat_at: datetime | None) -> bool:
    """Whether the owner process may still be running.

    On this host, the process is looked up (pid and start time, so a reused pid does not
    count); for another host only the heartbeat can tell, and a silent owner is dead after
    ``STALE_AFTER``.
    """
    if not owner:
        return False
    host, pid_text, start, _token = [*owner.split(":"), "", "", "", ""][:4]
    if host != socket.gethostname() or not pid_text.isdigit():
        return heartbeat_at is not None and utcnow() - heartbeat_at < STALE_AFTER
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now_start = _process_start(pid)
    if now_start is None:
        return True
    return now_start == start and not _is_zombie(pid)


def _process_start(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _is_zombie(pid: int) -> bool:
    fields = _proc_stat(pid)
    return fields is not None and bool(fields) and fields[0] == "Z"


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (Linux only; None elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()
