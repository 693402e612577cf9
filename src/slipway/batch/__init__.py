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

from typing import TYPE_CHECKING as _TYPE_CHECKING

from slipway import _lazy

if _TYPE_CHECKING:
    from slipway.batch.runner import score_file
    from slipway.batch.runs import (
        DEFAULT_CHUNK_SIZE,
        EXIT_FAILED,
        EXIT_OK,
        EXIT_REJECTS,
        BatchRun,
        RunLog,
        StoredPrediction,
        latest_prediction,
    )
    from slipway.batch.scoring import Scores, score

# Imported on first use: serving's routes import ``batch.runs`` (the stored predictions), which
# must not load the scoring engine (pyarrow, Parquet, Dask) into every worker.
__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "BatchRun": "slipway.batch.runs",
        "DEFAULT_CHUNK_SIZE": "slipway.batch.runs",
        "EXIT_FAILED": "slipway.batch.runs",
        "EXIT_OK": "slipway.batch.runs",
        "EXIT_REJECTS": "slipway.batch.runs",
        "RunLog": "slipway.batch.runs",
        "Scores": "slipway.batch.scoring",
        "StoredPrediction": "slipway.batch.runs",
        "latest_prediction": "slipway.batch.runs",
        "score": "slipway.batch.scoring",
        "score_file": "slipway.batch.runner",
    },
)

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
