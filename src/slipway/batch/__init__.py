"""Batch scoring: files, directories, globs or a query, in chunks, into the database or Parquet.

Every row is predicted by the one prediction core (``Model.validate`` + ``Model.infer``), so a
batch answer equals the online answer for the same row. Runs are recorded (``batch_runs``),
resumable by run id and exactly-once: each output row appears once per input row, whatever
instant a run died at. The Dask engine applies the same core per partition.

Modules: ``sources`` (inputs, chunking, fingerprints), ``scoring`` (a chunk -> output rows and
rejects), ``outputs`` (database and Parquet writers), ``runs`` (the run record and stored
predictions), ``runner`` (the local engine), ``cluster`` (the Dask engine), ``progress`` (the
progress bar). Their rows are kept by :mod:`slipway.store.batch`.
"""

from __future__ import annotations

from slipway.batch.runner import DEFAULT_CHUNK_SIZE, score_file
from slipway.batch.runs import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTS,
    BatchRun,
    RunLog,
    StoredPrediction,
    latest_prediction,
)
from slipway.batch.scoring import Scores, score

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REJECTS",
    "BatchRun",
    "RunLog",
    "Scores",
    "StoredPrediction",
    "latest_prediction",
    "score",
    "score_file",
]
