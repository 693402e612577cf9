"""What a model served, as arrays and frames: the prediction log, feedback and refusals.

The rows come from :mod:`slipway.store.predictions`; their JSON shapes are the ones documented
in ``store/schema.py``: ``inputs`` is the validated row ``{field: value}``, ``outputs`` one
item of ``Predictions.records()`` (``{"label", "probabilities"}`` or ``{"value"}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from slipway.predict import Predictions
from slipway.store import Store, predictions


@dataclass
class Traffic:
    """Logged predictions of one model over a time range, as arrays and frames.

    ``outputs`` has a ``label`` column (text), ``value`` (numbers) and one ``proba:<class>``
    column per class key seen, whichever the log holds.
    """

    ids: np.ndarray
    times: np.ndarray  # datetime64[us], UTC
    versions: np.ndarray
    inputs: pd.DataFrame
    outputs: pd.DataFrame

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
            self.outputs.iloc[idx].reset_index(drop=True),
        )

    def labels(self) -> np.ndarray:
        """Predicted labels as text (classification)."""
        if "label" not in self.outputs:
            return np.full(len(self), "None", dtype=object)
        return self.outputs["label"].to_numpy(dtype=object)

    def probabilities(self, classes: Sequence[str]) -> np.ndarray | None:
        """Class probabilities in ``classes`` order, or None when the log holds none."""
        if len(self) == 0:
            return np.empty((0, len(classes)))
        names = [Predictions.proba_column(c) for c in classes]
        if not all(n in self.outputs for n in names):
            return None
        return self.outputs[names].to_numpy(dtype=np.float64, na_value=np.nan)

    def values(self) -> np.ndarray:
        """Predicted values (regression)."""
        if "value" not in self.outputs:
            return np.full(len(self), np.nan)
        return pd.to_numeric(self.outputs["value"], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )


def read_traffic(
    store: Store, model: str, start: datetime, end: datetime, fields: Sequence[str]
) -> Traffic:
    """Every logged prediction of ``model`` in [start, end), oldest first."""
    ids: list[str] = []
    times: list[str] = []
    versions: list[int] = []
    # Each chunk becomes columns right away, so at most one chunk of parsed dicts is alive.
    inputs_parts: list[pd.DataFrame] = []
    outputs_parts: list[pd.DataFrame] = []
    columns = list(fields)
    for chunk in predictions.read_log(store, model, start, end):
        ids.extend(chunk.ids)
        times.extend(chunk.times)
        versions.extend(chunk.versions)
        inputs_parts.append(pd.DataFrame.from_records(chunk.inputs, columns=columns))
        outputs_parts.append(_outputs(chunk.outputs))
    if inputs_parts:
        frame = pd.concat(inputs_parts, ignore_index=True)
        outputs = pd.concat(outputs_parts, ignore_index=True)
    else:
        frame = pd.DataFrame({f: pd.Series([], dtype=object) for f in fields})
        outputs = _outputs([])
    stamps = pd.to_datetime(pd.Series(times, dtype=object), format="ISO8601")
    return Traffic(
        np.array(ids, dtype=object),
        stamps.to_numpy(dtype="datetime64[us]"),
        np.array(versions, dtype=np.int64),
        frame,
        outputs,
    )


def _outputs(outputs: list[dict[str, Any]]) -> pd.DataFrame:
    """Flatten logged outputs into label, value and proba:<class> columns."""
    if not outputs:
        return pd.DataFrame({"label": pd.Series([], dtype=object)})
    raw = pd.DataFrame.from_records(outputs)
    out = pd.DataFrame(index=raw.index)
    if "label" in raw:
        out["label"] = raw["label"].map(str).astype(object)
    if "value" in raw:
        out["value"] = raw["value"]
    if "probabilities" in raw:
        probs = [p if isinstance(p, dict) else {} for p in raw["probabilities"].tolist()]
        proba = pd.DataFrame.from_records(probs)
        for col in proba.columns:
            out[Predictions.proba_column(col)] = pd.to_numeric(proba[col], errors="coerce")
    return out


def read_feedback(store: Store, model: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Ground truth for the predictions of ``model`` logged in [start, end): prediction_id
    (index), label and received_at."""
    rows = predictions.read_feedback(store, model, start, end)
    frame = pd.DataFrame(rows, columns=["prediction_id", "label", "received_at"])
    return frame.set_index("prediction_id")


def read_violations(store: Store, model: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Requests of ``model`` refused for breaking the contract in [start, end)."""
    rows = predictions.read_refusals(store, model, start, end)
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
