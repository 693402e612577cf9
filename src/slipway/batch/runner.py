"""A batch run from start (or resume) to finish, on the local engine or on Dask.

The local engine reads chunk N+1 and scores it while a writer thread commits chunk N (two
writers, chunks N-1 and N, on PostgreSQL), so the database or the disk works while the model
predicts; only those few chunks are held at once, so memory stays bounded. Done chunks are
skipped on resume.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from slipway.batch.outputs import DatabaseOutput, Output, RunContext, open_output
from slipway.batch.runs import (
    DEFAULT_CHUNK_SIZE,
    BatchRun,
    ChunkRecord,
    RunLog,
    check_run_id,
    current_owner,
    new_run_id,
)
from slipway.batch.scoring import predict_chunk
from slipway.batch.sources import Source, check_columns, open_source
from slipway.exceptions import (
    BatchFailed,
    BatchInputError,
    ConfigError,
    RunConflict,
    SlipwayError,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from slipway.predict import Model
    from slipway.registry import Registry

Engine = Literal["local", "dask"]
# (rows done, total rows or None when unknown): called after each chunk commits.
ProgressCallback = Callable[[int, "int | None"], None]


@dataclass
class Job:
    """Everything a run needs, resolved: model, source, output, run record and its chunks."""

    registry: Registry
    model: Model
    source: Source
    output: Output
    run: BatchRun
    ctx: RunContext
    key_column: str | None
    chunk_size: int
    done: dict[int, ChunkRecord] = field(default_factory=dict)

    @property
    def runs(self) -> RunLog:
        """The run log in the registry's store."""
        return RunLog(self.registry.store)


def score_file(
    model: Model | str,
    input: str | Path | None = None,
    *,
    output: str | Path = "db",
    key_column: str | None = None,
    chunk_size: int | None = None,
    engine: Engine = "local",
    scheduler: str | None = None,
    run_id: str | None = None,
    query: str | None = None,
    overwrite: bool = False,
    progress: bool | ProgressCallback = False,
    registry: Registry | None = None,
    keep_inputs: bool = False,
) -> BatchRun:
    """Score a file, directory, glob or query in chunks, record the run, return it.

    ``output`` is ``"db"`` (the store's ``batch_predictions``), a ``.parquet`` file, or a
    directory. ``run_id`` names the run; giving the id of a run that died resumes it, and a
    run that already succeeded is returned as it is. Failures raise :class:`BatchFailed`
    after recording them; the run can then be resumed with the same id. ``keep_inputs``
    stores each scored row's contract fields beside its prediction (``input:<field>``
    columns in Parquet, the ``batch_inputs`` table in the database), for
    ``slipway monitor --source batch``.
    """
    from slipway.registry import Registry

    reg = registry or Registry()
    loaded = _load(model, reg)
    if engine not in ("local", "dask"):
        raise ConfigError(f"engine must be 'local' or 'dask', not {engine!r}.")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive number of rows, not {chunk_size}.")
    if scheduler is not None and engine != "dask":
        raise BatchInputError("--scheduler is the address of a Dask cluster: add --engine dask.")
    source = open_source(input, query, reg.store)
    out = open_output(output)
    if run_id is not None:
        check_run_id(run_id)
    job = _start(
        reg, loaded, source, out, key_column, chunk_size, engine, run_id, overwrite, keep_inputs
    )
    if job.run.status == "succeeded":
        return job.run
    report = _progress(progress)
    try:
        with report as on_progress:
            if engine == "dask":
                from slipway.batch.cluster import run_on_dask

                run_on_dask(job, scheduler, on_progress)
            else:
                _run_local(job, on_progress)
        job.output.finish(job.ctx.run_id, _empty_schema(job.model, job.ctx.keep_inputs))
    except KeyboardInterrupt as stop:
        note = f"Batch run {job.ctx.run_id} interrupted; resume it with --run-id {job.ctx.run_id}."
        job.runs.finish(job.ctx.run_id, "failed", note)
        stop.add_note(note)
        raise
    except Exception as exc:
        return _fail(job, exc)
    finished = job.runs.finish(job.ctx.run_id, "succeeded")
    job.output.cleanup(job.ctx.run_id)
    return finished


def _load(model: Model | str, reg: Registry) -> Model:
    if isinstance(model, str):
        return reg.load(model)
    return model


def _start(
    reg: Registry,
    model: Model,
    source: Source,
    output: Output,
    key_column: str | None,
    chunk_size: int | None,
    engine: Engine,
    run_id: str | None,
    overwrite: bool,
    keep_inputs: bool = False,
) -> Job:
    """Create the run, or check that an existing one can be resumed as asked and claim it.

    Problems found before any row is scored (missing columns, an output that exists) raise
    without recording a run.
    """
    runs = RunLog(reg.store)
    check_columns(source.columns(), model.contract, key_column, f"Input {_name(source)}")
    described = {**source.describe(), "key_column": key_column}
    fingerprint = source.fingerprint()
    owner = current_owner()
    run_id = run_id or new_run_id()
    existing = runs.find(run_id)
    if existing is None:
        size = chunk_size or DEFAULT_CHUNK_SIZE
        output.prepare(run_id, resume=False, overwrite=overwrite)
        run = runs.create(
            run_id,
            model_name=model.name,
            version=model.version.version,
            sha256=model.version.sha256,
            source=described,
            fingerprint=fingerprint,
            output=output.describe(),
            progress={
                "engine": engine,
                "chunk_size": size,
                "chunks_total": None,
                "keep_inputs": keep_inputs,
            },
            owner=owner,
        )
    else:
        _check_resumable(existing, model, described, fingerprint, output, engine, chunk_size)
        size = int(existing.progress["chunk_size"])
        # A resumed run keeps (or not) the inputs as it started: its chunks must agree.
        keep_inputs = bool(existing.progress.get("keep_inputs", False))
        run = existing
        if existing.status != "succeeded":
            output.prepare(run_id, resume=True, overwrite=overwrite)
            runs.claim(run_id, owner)
    ctx = RunContext(
        run_id, owner, model.name, model.version.version, model.version.sha256, keep_inputs
    )
    job = Job(reg, model, source, output, run, ctx, key_column, size)
    if run.status != "succeeded":
        try:
            job.done = _reconcile(job)
        except Exception as exc:
            _fail(job, exc)
    return job


def _check_resumable(
    run: BatchRun,
    model: Model,
    source: dict[str, Any],
    fingerprint: str,
    output: Output,
    engine: Engine,
    chunk_size: int | None,
) -> None:
    what = f"Batch run {run.run_id!r}"
    if run.status == "running" and run.owner_alive():
        raise RunConflict(
            f"{what} is still running (owner {run.owner}); wait for it, or stop that process first."
        )
    if (run.model_name, run.version) != (model.name, model.version.version):
        raise RunConflict(
            f"{what} scores with {run.ref}, not {model.ref}; resume it with MODEL_REF "
            f"{run.ref}, or start a new run without --run-id."
        )
    if run.sha256 != model.version.sha256:
        raise RunConflict(f"{what} used artifact {run.sha256}, now {model.version.sha256}.")
    if run.input_fingerprint != fingerprint or run.source.get("paths") != source.get("paths"):
        raise RunConflict(
            f"{what} read {run.source.get('input') or run.source.get('query')!r}, and that "
            "input has changed since (or a different input was given); a resumed run must read "
            "the same rows. Start a new run without --run-id."
        )
    if run.source.get("key_column") != source.get("key_column"):
        raise RunConflict(
            f"{what} keyed rows by {run.source.get('key_column') or 'row number'}; resume it "
            "with the same --key-column."
        )
    if run.output != output.describe():
        raise RunConflict(f"{what} writes to {run.output}; resume it with the same --output.")
    recorded = run.progress.get("engine")
    if recorded != engine:
        raise RunConflict(
            f"{what} ran on the {recorded} engine; resume it with --engine {recorded}."
        )
    if chunk_size is not None and chunk_size != run.progress.get("chunk_size"):
        raise RunConflict(
            f"{what} was cut into chunks of {run.progress.get('chunk_size')} rows; resume it "
            "without --chunk-size (or with that size)."
        )


def _reconcile(job: Job) -> dict[int, ChunkRecord]:
    """Bring the chunk rows in line with what the output holds; return the done chunks."""
    done = job.output.done(job.runs, job.ctx.run_id)
    recorded = job.runs.chunks(job.ctx.run_id)
    job.runs.forget_chunks(job.ctx.run_id, set(recorded) - set(done))
    missing = [rec for n, rec in done.items() if n not in recorded]
    if missing and not job.runs.record_chunks(job.ctx.run_id, job.ctx.owner, missing):
        raise RunConflict(
            f"Batch run {job.ctx.run_id!r}: another process recorded its chunks meanwhile; "
            "this one stops here."
        )
    return done


def _run_local(job: Job, on_progress: ProgressCallback) -> None:
    total = job.source.total_rows()
    rows_done = sum(rec.rows_in for rec in job.done.values())
    on_progress(rows_done, total)
    store = job.registry.store
    # PostgreSQL ingests in its own server process: two chunks loading at once over two
    # connections keep it busy while this process scores the next one. Each chunk is still
    # one transaction with its done-marker, so the order they commit in does not matter.
    depth = 2 if isinstance(job.output, DatabaseOutput) and store.dialect == "postgresql" else 1
    pending: deque[tuple[Future[None], int]] = deque()
    with ThreadPoolExecutor(depth, thread_name_prefix="slipway-batch-writer") as writer:
        for chunk in job.source.chunks(job.chunk_size, job.model.contract, job.key_column):
            if chunk.index in job.done:
                continue
            scored = predict_chunk(
                job.model,
                chunk.frame,
                index=chunk.index,
                first_row=chunk.first_row,
                key_column=job.key_column,
                run_id=job.ctx.run_id,
                keep_inputs=job.ctx.keep_inputs,
            )
            while len(pending) >= depth:
                rows_done += _wait(pending.popleft())
                on_progress(rows_done, total)
            pending.append(
                (writer.submit(job.output.write, store, scored, job.ctx), scored.rows_in)
            )
        while pending:
            rows_done += _wait(pending.popleft())
            on_progress(rows_done, total)


def _wait(pending: tuple[Future[None], int]) -> int:
    pending[0].result()
    return pending[1]


def _fail(job: Job, exc: Exception) -> Any:
    message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, SlipwayError) else str(exc)
    job.runs.finish(job.ctx.run_id, "failed", message)
    raise BatchFailed(
        job.ctx.run_id,
        f"Batch run {job.ctx.run_id} failed: {message}\nChunks already written are kept; fix "
        f"the cause and resume with --run-id {job.ctx.run_id}.",
    ) from exc


def _empty_schema(model: Model, keep_inputs: bool = False) -> pa.Schema:
    frame = pd.DataFrame({name: pd.Series([], dtype=object) for name in model.contract.names})
    return predict_chunk(model, frame, keep_inputs=keep_inputs).predictions.schema


def _name(source: Source) -> str:
    described = source.describe()
    return repr(described.get("input") or described.get("query"))


class _Silent:
    def __enter__(self) -> ProgressCallback:
        return lambda done, total: None

    def __exit__(self, *exc: object) -> None:
        return None


class _Callback:
    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback

    def __enter__(self) -> ProgressCallback:
        return self.callback

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(progress: bool | ProgressCallback) -> Any:
    if progress is True:
        from slipway.batch.progress import ProgressBar

        return ProgressBar()
    if callable(progress):
        return _Callback(progress)
    return _Silent()
