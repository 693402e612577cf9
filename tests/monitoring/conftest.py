"""Factories for monitoring tests: seeded feature tables, and a logged model to monitor."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from slipway.problems import jsonable
from slipway.store import schema
from slipway.testing import register_reference_model

CATEGORIES = np.array(["grocery", "travel", "gaming", "fuel", "online"])
SHARES = np.array([0.4, 0.25, 0.15, 0.15, 0.05])


def table(n: int, rng: np.random.Generator, *, shift: dict[int, float] | None = None):
    """20 features of mixed shapes: normal, skewed, integer-valued and categorical.

    ``shift`` moves numeric feature i by that many of its own standard deviations.
    """
    cols: dict[str, np.ndarray] = {}
    for i in range(6):
        cols[f"normal_{i}"] = rng.normal(10 * i, 1 + i, n)
    for i in range(4):
        cols[f"lognormal_{i}"] = rng.lognormal(1, 0.5 + 0.2 * i, n)
    for i in range(3):
        cols[f"exponential_{i}"] = rng.exponential(1 + i, n)
    for i in range(3):
        cols[f"count_{i}"] = rng.poisson(3 + 5 * i, n).astype(float)
    for i in range(4):
        cols[f"category_{i}"] = CATEGORIES[rng.choice(5, n, p=SHARES)]
    frame = pd.DataFrame(cols)
    for i, sds in (shift or {}).items():
        name = frame.columns[i]
        sd = {"normal": 1 + i} if name.startswith("normal") else None
        assert sd is not None, "shifts are planted in normal features"
        frame[name] = frame[name] + sds * sd["normal"]
    return frame


@pytest.fixture
def make_table():
    """Factory: ``make_table(n, seed, shift={feature_index: sds})`` -> a 20-feature frame."""

    def make(n: int, seed: int = 0, shift: dict[int, float] | None = None) -> pd.DataFrame:
        return table(n, np.random.default_rng(seed), shift=shift)

    return make


class Log:
    """Writes prediction-log, feedback and refusal rows straight into the store's tables."""

    def __init__(self, registry):
        self.registry = registry
        self.count = 0

    def predictions(self, ref, frame, at, *, spread=timedelta(0)):
        """Score ``frame`` with the model and log each row between ``at`` and ``at + spread``;
        returns the prediction ids and the scored Predictions."""
        model = self.registry.load(ref)
        scored = model.score(frame)
        records = scored.records()
        inputs = frame.to_dict(orient="records")
        ids, rows = [], []
        n = len(frame)
        for i, (row, out) in enumerate(zip(inputs, records, strict=True)):
            self.count += 1
            pid = f"p{self.count:08d}"
            ids.append(pid)
            rows.append(
                {
                    "prediction_id": pid,
                    "created_at": at + spread * (i / max(n, 1)),
                    "model_name": model.name,
                    "version": model.version.version,
                    "inputs": {k: jsonable(v) if v == v else None for k, v in row.items()},
                    "outputs": out,
                    "latency_ms": 1.0,
                }
            )
        with self.registry.store.write() as conn:
            conn.execute(schema.predictions.insert(), rows)
        return ids, scored

    def feedback(self, ids, labels, at):
        """Ground truth for logged predictions, received at ``at``."""
        rows = [
            {"prediction_id": pid, "label": jsonable(lab), "received_at": at}
            for pid, lab in zip(ids, labels, strict=True)
        ]
        with self.registry.store.write() as conn:
            conn.execute(schema.feedback.insert(), rows)

    def refusal(self, model, version, at, problems, rows=1):
        """A request refused for breaking the contract."""
        with self.registry.store.write() as conn:
            conn.execute(
                schema.validation_failures.insert().values(
                    created_at=at, model_name=model, version=version, rows=rows, problems=problems
                )
            )


@pytest.fixture
def log(registry):
    """Factory for log rows in the test's store."""
    return Log(registry)


@pytest.fixture
def fraud(registry, make_fitted):
    """A registered, promoted binary classifier on mixed-type transactions: (registry, fitted)."""
    fitted = make_fitted("frame", n=3_000)
    register_reference_model(registry, fitted)
    return fitted
