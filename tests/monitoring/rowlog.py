"""The monitor's reading as it was before columns, kept as the reference the columnar reading is
tested against: rows decoded one by one into dicts, frames built by pandas, labels matched to
predictions by id in Python (a hash join on the ids), everything held in memory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from slipway.monitoring.log import LogSchema
from slipway.monitoring.sources import _FromTables
from slipway.monitoring.traffic import Traffic, read_violations
from slipway.store import Store, predictions


class RowByRowLog:
    """A monitoring source that reads the log row by row (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _read(self, schema: LogSchema, model: str, start: datetime, end: datetime):
        ids: list[str] = []
        times: list[str] = []
        versions: list[int] = []
        inputs: list[pd.DataFrame] = []
        outputs: list[pd.DataFrame] = []
        for chunk in predictions.read_log(self.store, model, start, end):
            ids.extend(chunk.ids)
            times.extend(chunk.times)
            versions.extend(chunk.versions)
            inputs.append(pd.DataFrame.from_records(chunk.inputs, columns=schema.names))
            outputs.append(_outputs(chunk.outputs))
        if inputs:
            frame = pd.concat(inputs, ignore_index=True)
            out = pd.concat(outputs, ignore_index=True)
        else:
            frame = pd.DataFrame({f: pd.Series([], dtype=object) for f in schema.names})
            out = _outputs([])
        stamps = pd.to_datetime(pd.Series(times, dtype=object), format="ISO8601")
        traffic = Traffic(
            stamps.to_numpy(dtype="datetime64[us]"),
            np.array(versions, dtype=np.int64),
            frame,
            out,
        )
        return np.array(ids, dtype=object), traffic

    def traffic(self, schema: LogSchema, model: str, start: datetime, end: datetime) -> Traffic:
        """Every prediction, as frames of Python objects."""
        return self._read(schema, model, start, end)[1]

    # The two reads, each as above (the sources' own two-read default).
    traffic_and_labeled = _FromTables.traffic_and_labeled

    def labeled(self, schema: LogSchema, model: str, start: datetime, end: datetime) -> Traffic:
        """The labeled predictions: feedback matched to the log by prediction id."""
        ids, traffic = self._read(schema, model, start, end)
        rows = predictions.read_feedback(self.store, model, start, end)
        feedback = pd.DataFrame(rows, columns=["prediction_id", "label", "received_at"])
        feedback = feedback.set_index("prediction_id")
        labeled = pd.Index(feedback.index).get_indexer(ids) >= 0
        part = traffic.where(labeled) if len(ids) else traffic
        got = feedback.loc[ids[labeled]]
        truth = got["label"].tolist()
        received = pd.to_datetime(got["received_at"], utc=True)
        part.feedback = pd.DataFrame(
            {
                "label": np.array([str(v) for v in truth], dtype=object),
                "value": np.array([_float(v) for v in truth], dtype=np.float64),
                "received_at": received.dt.tz_localize(None).to_numpy(dtype="datetime64[us]"),
            }
        )
        return part

    def refusals(self, model: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Refused requests, from the store."""
        return read_violations(self.store, model, start, end)


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
            out[f"proba:{col}"] = pd.to_numeric(proba[col], errors="coerce")
    return out


def _float(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
