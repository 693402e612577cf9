"""The reference model under BentoML 1.4 (a ``@bentoml.service`` class), adaptive batching on.

A joblib-loaded pipeline (the same file the naive server loads) behind one batchable API: the
dispatcher merges concurrent requests along the first axis, calls ``predict`` once and splits
the labels back. Runs from its own virtualenv (see bench/README.md):

    SLIPWAY_BENCH_MODEL=model.joblib .venv-bentoml/bin/bentoml serve bentoml_ref:Reference \
        --working-dir bench/servers --port 3000

Request: ``POST /predict`` with ``{"rows": [[...20 floats...]]}``; answer: ``[label]``.
"""

from __future__ import annotations

import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=int(os.environ.get("SLIPWAY_BENCH_WORKERS", "1")))
class Reference:
    """The reference pipeline; ``predict`` is batchable (adaptive batching)."""

    def __init__(self) -> None:
        self.model = joblib.load(os.environ["SLIPWAY_BENCH_MODEL"])

    @bentoml.api(batchable=True, batch_dim=0)
    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Labels for a batch of rows (BentoML merges concurrent requests into one call)."""
        return np.asarray(self.model.predict(rows))
