"""The record of batch runs and their chunks, and the lookup of stored predictions.

A run row says what was scored with which version into where, and how it went. A chunk row
says one chunk is done; counts on the run are kept in step with the chunk rows and recomputed
from them when a run finishes or resumes. ``owner`` names the process holding a run, so a
resume can tell a dead run (kill -9, a reboot) from one still going.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from slipway.clock import utcnow
from slipway.exceptions import InvalidReference, PredictionNotFound, RunConflict, RunNotFound
from slipway.store import Store
from slipway.store.schema import batch_chunks, batch_predictions, batch_runs

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Exit codes of `slipway batch` (usage errors exit 2, as for every command).
EXIT_OK, EXIT_FAILED, EXIT_REJECTS = 0, 1, 3
# A run owned by another host counts as dead once its heartbeat is this old.
STALE_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class ChunkRecord:
    """One finished chunk of a run."""

    chunk: int
    first_row: int
    rows_in: int
    rows_scored: int
    rows_rejected: int


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


@dataclass(frozen=True)
class StoredPrediction:
    """A precomputed batch prediction of one key, with its lineage."""

    model_name: str
    key: str
    version: int
    run_id: str
    sha256: str
    scored_at: datetime
    label: Any = None
    probabilities: dict[str, float] | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view: label and probabilities (or value), version, run id, scored_at."""
        out = dict(self.__dict__)
        out["scored_at"] = self.scored_at.isoformat()
        return out


def latest_prediction(store: Store, model_name: str, key: str) -> StoredPrediction:
    """The newest batch prediction of ``key`` by ``model_name``, from any run.

    Raises :class:`PredictionNotFound` (a ``NotFound``) when no batch run stored one.
    """
    query = (
        sa.select(batch_predictions)
        .where(batch_predictions.c.model_name == model_name, batch_predictions.c.key == key)
        .order_by(batch_predictions.c.scored_at.desc(), batch_predictions.c.version.desc())
        .limit(1)
    )
    with store.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise PredictionNotFound(
            f"Model {model_name!r} has no batch prediction for key {key!r}. Batch runs store "
            f"them: slipway batch {model_name} INPUT --key-column COLUMN --output db"
        )
    return StoredPrediction(
        row.model_name,
        row.key,
        row.version,
        row.run_id,
        row.sha256,
        row.scored_at,
        row.label,
        row.probabilities,
        row.value,
    )


class RunLog:
    """Batch runs and their chunks in the metadata store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, run_id: str) -> BatchRun:
        """The run with that id."""
        runs = self._select(batch_runs.c.run_id == run_id, limit=1)
        if not runs:
            raise RunNotFound(
                f"No batch run {run_id!r}; `slipway batch runs list` shows the recent ones."
            )
        return runs[0]

    def find(self, run_id: str) -> BatchRun | None:
        """The run with that id, or None."""
        runs = self._select(batch_runs.c.run_id == run_id, limit=1)
        return runs[0] if runs else None

    def recent(self, *, model: str | None = None, limit: int = 50) -> list[BatchRun]:
        """Recent runs, newest first (of one model, when given)."""
        where = sa.true() if model is None else batch_runs.c.model_name == model
        return self._select(where, limit=limit)

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
        now = utcnow()
        with self.store.write() as conn:
            conn.execute(
                batch_runs.insert().values(
                    run_id=run_id,
                    model_name=model_name,
                    version=version,
                    sha256=sha256,
                    source=source,
                    input_fingerprint=fingerprint,
                    output=output,
                    status="running",
                    started_at=now,
                    progress=progress,
                    owner=owner,
                    heartbeat_at=now,
                )
            )
        return self.get(run_id)

    def claim(self, run_id: str, owner: str) -> None:
        """Take over a run to resume it: running again, held by ``owner``."""
        with self.store.write() as conn:
            conn.execute(
                batch_runs.update()
                .where(batch_runs.c.run_id == run_id)
                .values(
                    status="running", owner=owner, heartbeat_at=utcnow(), ended_at=None, error=None
                )
            )

    def set_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        """Replace the run's progress facts (engine, chunk size, chunk total)."""
        with self.store.write() as conn:
            conn.execute(
                batch_runs.update().where(batch_runs.c.run_id == run_id).values(progress=progress)
            )

    def chunks(self, run_id: str) -> dict[int, ChunkRecord]:
        """The run's finished chunks by number."""
        cols = [batch_chunks.c[n] for n in ChunkRecord.__dataclass_fields__]
        with self.store.read() as conn:
            rows = conn.execute(sa.select(*cols).where(batch_chunks.c.run_id == run_id)).all()
        return {r.chunk: ChunkRecord(*r) for r in rows}

    def record_chunk(self, conn: sa.Connection, run_id: str, owner: str, rec: ChunkRecord) -> None:
        """Mark a chunk done, inside the caller's transaction, if ``owner`` still holds the run.

        The run's row is updated last so that, on PostgreSQL, its row lock is held only for
        the moment before commit and parallel writers do not queue behind each other.
        """
        conn.execute(batch_chunks.insert().values(run_id=run_id, done_at=utcnow(), **rec.__dict__))
        held = conn.execute(
            batch_runs.update()
            .where(batch_runs.c.run_id == run_id, batch_runs.c.owner == owner)
            .values(
                rows_in=batch_runs.c.rows_in + rec.rows_in,
                rows_scored=batch_runs.c.rows_scored + rec.rows_scored,
                rows_rejected=batch_runs.c.rows_rejected + rec.rows_rejected,
                heartbeat_at=utcnow(),
            )
        )
        if held.rowcount == 0:
            raise RunConflict(
                f"Batch run {run_id!r} was taken over by another process; this one stops here."
            )

    def forget_chunks(self, run_id: str, chunks: Iterable[int]) -> None:
        """Drop chunk rows whose output is gone, so those chunks are scored again."""
        numbers = list(chunks)
        if not numbers:
            return
        with self.store.write() as conn:
            conn.execute(
                batch_chunks.delete().where(
                    batch_chunks.c.run_id == run_id, batch_chunks.c.chunk.in_(numbers)
                )
            )

    def finish(self, run_id: str, status: str, error: str | None = None) -> BatchRun:
        """End a run; its counts are recomputed from its chunk rows."""
        totals = sa.select(
            sa.func.coalesce(sa.func.sum(batch_chunks.c.rows_in), 0),
            sa.func.coalesce(sa.func.sum(batch_chunks.c.rows_scored), 0),
            sa.func.coalesce(sa.func.sum(batch_chunks.c.rows_rejected), 0),
        ).where(batch_chunks.c.run_id == run_id)
        with self.store.write() as conn:
            rows_in, scored, rejected = conn.execute(totals).one()
            now = utcnow()
            conn.execute(
                batch_runs.update()
                .where(batch_runs.c.run_id == run_id)
                .values(
                    status=status,
                    error=error,
                    ended_at=now,
                    heartbeat_at=now,
                    rows_in=int(rows_in),
                    rows_scored=int(scored),
                    rows_rejected=int(rejected),
                )
            )
        return self.get(run_id)

    def _select(self, where: Any, *, limit: int) -> list[BatchRun]:
        done = (
            sa.select(sa.func.count())
            .where(batch_chunks.c.run_id == batch_runs.c.run_id)
            .scalar_subquery()
        )
        query = (
            sa.select(batch_runs, done.label("chunks_done"))
            .where(where)
            .order_by(batch_runs.c.started_at.desc(), batch_runs.c.run_id.desc())
            .limit(limit)
        )
        with self.store.read() as conn:
            rows = conn.execute(query).all()
        return [BatchRun(**row._mapping) for row in rows]


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
