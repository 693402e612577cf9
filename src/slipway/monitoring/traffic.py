"""Reading what a model served from the store: the prediction log, feedback and refusals.

The log's JSON shapes are the ones documented in ``store/schema.py``: ``inputs`` is the
validated row ``{field: value}``, ``outputs`` one item of ``Predictions.records()``
(``{"label", "probabilities"}`` or ``{"value"}``). JSON is fetched as text and parsed with
orjson in chunks, which is several times faster than per-row JSON decoding by the driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa

from slipway.store import Store
from slipway.store.schema import feedback, predictions, validation_failures

_CHUNK = 50_000


@dataclass
class Traffic:
    """Logged predictions of one model over a time range, as arrays and a frame of inputs."""

    ids: np.ndarray
    times: np.ndarray  # datetime64[us], UTC
    versions: np.ndarray
    inputs: pd.DataFrame
    outputs: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)

    def between(self, start: datetime, end: datetime) -> Traffic:
        """The rows logged in [start, end)."""
        lo, hi = np.datetime64(_naive(start), "us"), np.datetime64(_naive(end), "us")
        return self.where((self.times >= lo) & (self.times < hi))

    def where(self, mask: np.ndarray) -> Traffic:
        """The rows where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        return Traffic(
            self.ids[idx],
            self.times[idx],
            self.versions[idx],
            self.inputs.iloc[idx].reset_index(drop=True),
            [self.outputs[i] for i in idx],
        )

    def labels(self) -> np.ndarray:
        """Predicted labels as text (classification)."""
        return np.array([str(o.get("label")) for o in self.outputs], dtype=object)

    def probabilities(self, classes: Sequence[str]) -> np.ndarray | None:
        """Class probabilities in ``classes`` order, or None when the log holds none."""
        if not self.outputs:
            return np.empty((0, len(classes)))
        if "probabilities" not in self.outputs[0]:
            return None
        out = np.full((len(self.outputs), len(classes)), np.nan)
        for i, o in enumerate(self.outputs):
            probs = o.get("probabilities") or {}
            out[i] = [probs.get(c, np.nan) for c in classes]
        return out

    def values(self) -> np.ndarray:
        """Predicted values (regression)."""
        return np.array([_number(o.get("value")) for o in self.outputs], dtype=np.float64)


def read_traffic(
    store: Store, model: str, start: datetime, end: datetime, fields: Sequence[str]
) -> Traffic:
    """Every logged prediction of ``model`` in [start, end), oldest first."""
    query = (
        sa.select(
            predictions.c.prediction_id,
            predictions.c.created_at,
            predictions.c.version,
            sa.cast(predictions.c.inputs, sa.Text),
            sa.cast(predictions.c.outputs, sa.Text),
        )
        .where(
            predictions.c.model_name == model,
            predictions.c.created_at >= start,
            predictions.c.created_at < end,
        )
        .order_by(predictions.c.created_at)
    )
    ids: list[str] = []
    times: list[datetime] = []
    versions: list[int] = []
    records: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    with store.read() as conn:
        result = conn.execution_options(yield_per=_CHUNK).execute(query)
        for chunk in result.partitions():
            for pid, at, version, inputs, output in chunk:
                ids.append(pid)
                times.append(at)
                versions.append(version)
                records.append(orjson.loads(inputs))
                outputs.append(orjson.loads(output))
    frame = pd.DataFrame.from_records(records, columns=list(fields)) if records else None
    if frame is None:
        frame = pd.DataFrame({f: pd.Series([], dtype=object) for f in fields})
    return Traffic(
        np.array(ids, dtype=object),
        np.array([_naive(t) for t in times], dtype="datetime64[us]"),
        np.array(versions, dtype=np.int64),
        frame,
        outputs,
    )


def read_feedback(store: Store, model: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Ground truth for the predictions of ``model`` logged in [start, end): prediction_id
    (index), label and received_at."""
    query = (
        sa.select(feedback.c.prediction_id, feedback.c.label, feedback.c.received_at)
        .join(predictions, predictions.c.prediction_id == feedback.c.prediction_id)
        .where(
            predictions.c.model_name == model,
            predictions.c.created_at >= start,
            predictions.c.created_at < end,
        )
    )
    with store.read() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["prediction_id", "label", "received_at"])
    return frame.set_index("prediction_id")


def read_violations(store: Store, model: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Requests of ``model`` refused for breaking the contract in [start, end)."""
    query = sa.select(
        validation_failures.c.created_at, validation_failures.c.rows, validation_failures.c.problems
    ).where(
        validation_failures.c.model_name == model,
        validation_failures.c.created_at >= start,
        validation_failures.c.created_at < end,
    )
    with store.read() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=["created_at", "rows", "problems"])


def violation_summary(frame: pd.DataFrame, start: datetime, end: datetime) -> dict[str, Any]:
    """Refused requests and rows in [start, end), and problem counts by code."""
    if len(frame):
        at = frame["created_at"]
        part = frame[(at >= start) & (at < end)]
    else:
        part = frame
    codes: dict[str, int] = {}
    for problems in part["problems"] if len(part) else []:
        for p in problems or []:
            code = str(p.get("code", "unknown")) if isinstance(p, dict) else "unknown"
            codes[code] = codes.get(code, 0) + 1
    return {
        "requests": len(part),
        "rows": int(part["rows"].sum()) if len(part) else 0,
        "codes": codes,
    }


def _naive(t: datetime) -> datetime:
    """UTC wall time without a zone, as numpy's datetime64 wants it."""
    return t if t.tzinfo is None else t.astimezone(UTC).replace(tzinfo=None)


def _number(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if v in ("NaN", "Infinity", "-Infinity"):
        return float(v.replace("Infinity", "inf"))
    return float("nan")
