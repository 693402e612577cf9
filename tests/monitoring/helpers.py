"""Helpers shared by the monitoring tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from slipway.problems import jsonable
from slipway.store import schema

# The monitoring tests' "now": logs are written relative to it and Monitor's clock reads it.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


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
