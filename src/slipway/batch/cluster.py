"""The Dask engine: the same chunk scoring and writers, applied per partition on a cluster.

Each partition is a chunk (for Parquet, exactly the local engine's chunk), scored with
:func:`~slipway.batch.scoring.predict_chunk` through ``map_partitions`` and written by the
run's output on the worker, so results equal the local engine's row by row. Workers never
receive a pickled model: each loads the version through the registry, which checks the
artifact's sha256 before deserializing it, and refuses a version whose recorded sha256 is not
the run's.
Workers need the same ``SLIPWAY_HOME`` artifacts and database as the client (a shared
filesystem, or PostgreSQL and a shared artifacts directory).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq

from slipway.batch.outputs import Output, RunContext
from slipway.batch.scoring import predict_chunk
from slipway.batch.sources import (
    FileSource,
    ParquetRange,
    conform,
    needed_columns,
    parquet_ranges,
)
from slipway.exceptions import BatchInputError, MissingDependency, RunConflict

if TYPE_CHECKING:
    from slipway.batch.runner import Job, ProgressCallback
    from slipway.predict import Model
    from slipway.registry import Registry

_SUMMARY = {"chunk": "int64", "rows_in": "int64", "rows_scored": "int64", "rows_rejected": "int64"}


@dataclass(frozen=True)
class PartitionTask:
    """What every partition needs, sent to workers once with the graph (no model inside)."""

    settings: str  # Settings as JSON
    ref: str
    sha256: str
    key_column: str | None
    csv: bool
    offsets: tuple[int, ...]
    output: Output
    ctx: RunContext
    done: frozenset[int]


def run_on_dask(job: Job, scheduler: str | None, on_progress: ProgressCallback) -> None:
    """Score every partition not done yet on the cluster at ``scheduler`` (or a local one)."""
    dd, distributed = _dask()
    source = job.source
    if not isinstance(source, FileSource):
        raise BatchInputError("The Dask engine reads files; use --engine local for --query.")
    client, cluster = _connect(distributed, scheduler)
    try:
        frame, offsets, total = _partitions(dd, client, job, source)
        count = len(offsets)
        recorded = job.run.progress.get("partitions")
        if recorded is not None and recorded != count:
            raise RunConflict(
                f"Batch run {job.ctx.run_id!r} had {recorded} partitions, the input now reads as "
                f"{count}; resume it with the same Dask version and settings, or start a new run."
            )
        job.runs.set_progress(
            job.ctx.run_id, {**job.run.progress, "partitions": count, "chunks_total": count}
        )
        task = PartitionTask(
            job.registry.settings.model_dump_json(),
            job.model.ref,
            job.model.version.sha256,
            job.key_column,
            source.format == "csv",
            offsets,
            job.output,
            job.ctx,
            frozenset(job.done),
        )
        meta = pd.DataFrame({k: pd.Series(dtype=v) for k, v in _SUMMARY.items()})
        parts = frame.map_partitions(predict_partition, task, meta=meta).to_delayed()
        if len(parts) != count:
            raise RunConflict(f"Dask planned {len(parts)} partitions after counting {count}.")
        rows_done = sum(rec.rows_in for rec in job.done.values())
        on_progress(rows_done, total)
        for future in distributed.as_completed(client.compute(parts)):
            summary = future.result()
            rows_done += int(summary["rows_in"].sum())
            on_progress(rows_done, total)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _partitions(
    dd: Any, client: Any, job: Job, source: FileSource
) -> tuple[Any, tuple[int, ...], int]:
    """The input as a Dask collection, each partition's first row number, and the row total.

    Parquet partitions are exactly the local engine's chunks (row ranges read from the
    footers), so both engines see the same rows in the same batches. CSV cannot be cut by
    rows without reading it, so Dask's byte blocks are used and counted in one extra pass.
    """
    columns = needed_columns(job.model.contract, job.key_column)
    if source.format == "parquet":
        ranges = parquet_ranges(source.paths, job.chunk_size, columns)
        meta = pq.read_schema(source.paths[0]).empty_table().select(columns).to_pandas()
        frame = dd.from_map(ParquetRange.read, ranges, meta=meta, enforce_metadata=False)
        total = sum(r.stop - r.start for r in ranges)
        return frame, tuple(r.first_row for r in ranges), total
    text = {
        s.name: "str"
        for s in job.model.contract.fields
        if s.kind == "category"
        and (s.categories is None or all(isinstance(c, str) for c in s.categories))
    }
    if job.key_column is not None:
        text[job.key_column] = "str"
    paths = [str(p) for p in source.paths]
    frame = dd.read_csv(paths, usecols=columns, dtype=text)[columns]
    lengths = [int(n) for n in client.compute(frame.map_partitions(len)).result()]
    offsets = tuple(int(x) for x in pd.Series(lengths, dtype="int64").cumsum().shift(fill_value=0))
    return frame, offsets, sum(lengths)


def predict_partition(
    frame: pd.DataFrame, task: PartitionTask, partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Score and write one partition on a worker; return its counts (zero if done before)."""
    assert partition_info is not None, "Dask passes partition_info to map_partitions functions"
    index = int(partition_info["number"])
    if index in task.done:
        return pd.DataFrame({k: [index if k == "chunk" else 0] for k in _SUMMARY})
    registry = _registry(task.settings)
    model = _model(task.settings, task.ref, task.sha256)
    if task.csv:
        frame = conform(frame, model.contract, task.key_column)
    chunk = predict_chunk(
        model,
        frame.reset_index(drop=True),
        index=index,
        first_row=task.offsets[index],
        key_column=task.key_column,
        run_id=task.ctx.run_id,
        keep_inputs=task.ctx.keep_inputs,
    )
    task.output.write(registry.store, chunk, task.ctx)
    counts = [index, chunk.rows_in, chunk.rows_scored, chunk.rows_rejected]
    return pd.DataFrame({k: [v] for k, v in zip(_SUMMARY, counts, strict=True)})


# One registry and one loaded model per worker process, reused by every partition it scores:
# loading (and hashing) the artifact once per partition would dominate small partitions.
@functools.lru_cache(maxsize=4)
def _registry(settings: str) -> Registry:
    from slipway.config import Settings
    from slipway.registry import Registry

    return Registry(Settings(**json.loads(settings)))


@functools.lru_cache(maxsize=8)
def _model(settings: str, ref: str, sha256: str) -> Model:
    model = _registry(settings).load(ref)  # verifies the artifact against its recorded sha256
    if model.version.sha256 != sha256:
        raise RunConflict(
            f"{ref} now records artifact {model.version.sha256}, but the run scores with "
            f"{sha256}; refusing to mix artifacts in one run."
        )
    return model


def _connect(distributed: Any, scheduler: str | None) -> tuple[Any, Any]:
    if scheduler:
        return distributed.Client(scheduler), None
    # Loopback only, on free ports: a local cluster is not a network service, and a fixed
    # port (8787) may be taken by another cluster on the machine.
    cluster = distributed.LocalCluster(
        threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    )
    return distributed.Client(cluster), cluster


def _dask() -> tuple[Any, Any]:
    try:
        import dask.dataframe as dd
        import distributed
    except ImportError:
        raise MissingDependency("dask and distributed", "dask", "The Dask batch engine") from None
    return dd, distributed
