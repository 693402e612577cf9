"""What experiment tests share: a candidate that can be broken on purpose, synthetic traffic."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from slipway.clock import utcnow
from slipway.store.experiments import Experiment
from slipway.store.schema import feedback, predictions

SWITCH = "SLIPWAY_TEST_CANDIDATE"


class Switch(BaseEstimator, TransformerMixin):
    """Passes rows through, unless ``SLIPWAY_TEST_CANDIDATE`` says ``raise`` (every call fails)
    or ``sleep:SECONDS`` (every call sleeps first). Read at each call, so a version registers
    and loads healthy and breaks on cue."""

    def fit(self, X, y=None):
        """Nothing to learn."""
        return self

    def transform(self, X):
        """X, or an error, or X after a nap."""
        mode = os.environ.get(SWITCH, "")
        if mode == "raise":
            raise RuntimeError("candidate broken on purpose")
        if mode.startswith("sleep:"):
            time.sleep(float(mode.removeprefix("sleep:")))
        return X


def switchable(fitted) -> Pipeline:
    """``fitted.pipeline`` with a :class:`Switch` in front."""
    return Pipeline([("switch", Switch()), *fitted.pipeline.steps])


def write_traffic(
    store,
    experiment: Experiment,
    rows: Sequence[dict[str, Any]],
) -> list[str]:
    """Log synthetic predictions of an experiment (with labels where given), as the serving log
    would: each row is {arm, version, inputs, label (predicted), truth (optional), unit}."""
    now = utcnow()
    logged, labels = [], []
    for i, r in enumerate(rows):
        pid = str(uuid.uuid4())
        logged.append(
            {
                "prediction_id": pid,
                "created_at": now + timedelta(microseconds=i),
                "model_name": experiment.model,
                "version": r["version"],
                "variant": r["arm"],
                "experiment": experiment.id,
                "unit_id": r.get("unit"),
                "inputs": r["inputs"],
                "outputs": {"label": r["label"]},
                "latency_ms": r.get("latency_ms", 1.0),
                "shadow_version": r.get("shadow_version"),
                "shadow_outputs": r.get("shadow_outputs"),
            }
        )
        if "truth" in r:
            labels.append({"prediction_id": pid, "label": r["truth"], "received_at": now})
    with store.write() as conn:
        conn.execute(predictions.insert(), logged)
        if labels:
            conn.execute(feedback.insert(), labels)
    return [row["prediction_id"] for row in logged]
