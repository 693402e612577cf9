"""What a model served, as arrays and frames: the prediction log, its labels, and refusals.

The rows come from :func:`slipway.monitoring.log.read_log` (or an exported copy of the log),
already as columns. A :class:`Traffic` holds them compactly: float64 for numbers, pandas
Categoricals for texts (a code per row, each distinct text once), datetime64 for times; ten
million predictions of a model with seven inputs take about 750 MB.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from slipway.monitoring.log import INPUT, PROBA, TIME, VERSION, LogSchema, read_log
from slipway.predict import Predictions
from slipway.store import Store, predictions


@dataclass
class Traffic:
    """Logged predictions of one model over a time range, oldest first, as arrays and frames.

    ``inputs`` has one column per contract field (float64 numbers, Categorical texts);
    ``outputs`` a ``label`` column (Categorical text), ``value`` (numbers) and one
    ``proba:<class>`` column per class key seen, whichever the log holds. ``feedback``, for
    labeled predictions only, holds each one's ground truth (``label`` as text, ``value`` as a
    number for regressors) and ``received_at``.
    """

    times: np.ndarray  # datetime64[us], UTC
    versions: np.ndarray
    inputs: pd.DataFrame
    outputs: pd.DataFrame
    feedback: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.times)

    def between(self, start: datetime, end: datetime) -> Traffic:
        """The rows logged in [start, end)."""
        lo, hi = np.datetime64(_naive(start), "us"), np.datetime64(_naive(end), "us")
        if _ascending(self.times):
            first, last = np.searchsorted(self.times, [lo, hi], side="left")
            return self._take(slice(int(first), int(last)))
        return self.where((self.times >= lo) & (self.times < hi))

    def where(self, mask: np.ndarray) -> Traffic:
        """The rows where ``mask`` is true."""
        if mask.all():
            return self
        return self._take(np.flatnonzero(mask))

    def _take(self, rows: slice | np.ndarray) -> Traffic:
        if isinstance(rows, slice) and rows == slice(0, len(self)):
            return self
        return Traffic(
            self.times[rows],
            self.versions[rows],
            self.inputs.iloc[rows].reset_index(drop=True),
            self.outputs.iloc[rows].reset_index(drop=True),
            None if self.feedback is None else self.feedback.iloc[rows].reset_index(drop=True),
        )

    def labels(self) -> np.ndarray:
        """Predicted labels as text (classification)."""
        if "label" not in self.outputs:
            return np.full(len(self), "None", dtype=object)
        return self.outputs["label"].to_numpy(dtype=object)

    def label_series(self) -> pd.Series:
        """Predicted labels as a Series of texts (Categorical when read from the log)."""
        if "label" not in self.outputs:
            return pd.Series(np.full(len(self), "None", dtype=object))
        return self.outputs["label"]

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

    def truth(self) -> np.ndarray:
        """Ground truth as text, ``str(label)`` of the label as sent (labeled traffic)."""
        assert self.feedback is not None, "truth() needs labeled traffic (read_labeled)"
        return self.feedback["label"].to_numpy(dtype=object)

    def truth_values(self) -> np.ndarray:
        """Ground truth as numbers for regressors (NaN where a label is not a number)."""
        assert self.feedback is not None, "truth_values() needs labeled traffic (read_labeled)"
        if "value" not in self.feedback:
            return np.full(len(self), np.nan)
        return self.feedback["value"].to_numpy(dtype=np.float64, na_value=np.nan)

    def received(self) -> np.ndarray:
        """When each label arrived (datetime64[us], UTC; labeled traffic)."""
        assert self.feedback is not None, "received() needs labeled traffic (read_labeled)"
        return self.feedback["received_at"].to_numpy(dtype="datetime64[us]")


def from_tables(tables: Iterable[pa.Table], schema: LogSchema) -> Traffic:
    """Traffic from tables of :meth:`LogSchema.columns` (read from the log or an export).

    Each table becomes numpy arrays of its own (texts: codes into one list of distinct texts)
    as it arrives, so what is held meanwhile is about the size of the result.
    """
    parts: dict[str, Any] = {}
    for table in tables:
        for name in table.column_names:
            column = table[name].combine_chunks()
            kept = parts.get(name)
            if kept is None:
                text = pa.types.is_string(column.type) or pa.types.is_dictionary(column.type)
                kept = parts[name] = _Texts() if text else []
            if isinstance(kept, _Texts):
                kept.add(column)
            else:
                # A copy, not a view: a view would keep the block's Arrow memory alive, and
                # with it the pages the parse used around it (about twice the data at volume).
                kept.append(np.array(column.to_numpy(zero_copy_only=False)))
    # Arrow keeps freed blocks for reuse; give them back, the tables are gone.
    pa.default_memory_pool().release_unused()
    give_back()
    times = _joined(parts.pop(TIME, []), "datetime64[us]")
    versions = _joined(parts.pop(VERSION, []), np.int64)
    inputs = pd.DataFrame(index=pd.RangeIndex(len(times)))
    for name, kind in schema.fields:
        kept = parts.pop(INPUT + name, [])
        if kind in ("number", "integer"):
            inputs[name] = _joined(kept, np.float64)
        else:
            inputs[name] = kept.categorical() if isinstance(kept, _Texts) else _no_texts(kept)
    outputs = pd.DataFrame(index=pd.RangeIndex(len(times)))
    if "label" in parts:
        outputs["label"] = parts.pop("label").categorical()
    for name in [n for n in list(parts) if n.startswith(PROBA) or n == "value"]:
        values = _joined(parts.pop(name), np.float64)
        # As in the row-by-row reading: an output the log never holds is no column at all.
        if not np.isnan(values).all():
            outputs[name] = values
    if "label" not in outputs and len(times) == 0:
        outputs["label"] = pd.Categorical([], categories=[])
    feedback = None
    if "feedback" in parts:
        feedback = pd.DataFrame(index=pd.RangeIndex(len(times)))
        feedback["label"] = parts.pop("feedback").categorical()
        if "feedback_value" in parts:
            feedback["value"] = _joined(parts.pop("feedback_value"), np.float64)
        feedback["received_at"] = _joined(parts.pop("feedback_at", []), "datetime64[us]")
    return Traffic(times, versions, inputs, outputs, feedback)


class _Texts:
    """A text column gathered as codes into one growing list of distinct texts."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.codes: list[np.ndarray] = []

    def add(self, column: pa.Array) -> None:
        encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
        texts = encoded.dictionary.to_pylist()
        mapping = np.array([self.index.setdefault(t, len(self.index)) for t in texts] + [-1])
        # Null positions take the last entry of the mapping: -1, pandas' code for missing.
        positions = pc.fill_null(encoded.indices, len(texts)).to_numpy(zero_copy_only=False)
        self.codes.append(mapping[positions].astype(np.int32))

    def categorical(self) -> pd.Categorical:
        codes = np.concatenate(self.codes) if self.codes else np.empty(0, dtype=np.int32)
        return pd.Categorical.from_codes(codes, categories=pd.Index(list(self.index), dtype=object))


def _joined(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
    if not arrays:
        return np.empty(0, dtype=dtype)
    out = np.concatenate(arrays).astype(dtype, copy=False)
    arrays.clear()
    give_back()
    return out


def give_back() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere).

    A column arrives as one small array per block, which the C library keeps in its heap; once
    they are joined into one array (allocated apart, being large) and freed, their pages stay
    in the process unless trimmed, and every column would count twice in its peak memory.
    """
    if _TRIM is not None:
        _TRIM(0)


@contextmanager
def heap_pool() -> Iterator[None]:
    """Arrow allocates from the C library's heap (``pa.system_memory_pool``) inside the block,
    then the heap's free pages are given back.

    Arrow's default pool (mimalloc) keeps what a read of the log freed for reuse, and at ten
    million rows that was about 200 MB of the run's peak memory that nothing used again; the
    heap's free pages go back to the system with :func:`give_back`. The default pool is
    process-wide, so another thread's Arrow work meanwhile uses the heap too (the same
    results, from another allocator); the previous pool is put back on the way out.
    """
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
        give_back()


def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return None


_TRIM = _malloc_trim()


def _no_texts(arrays: list[np.ndarray]) -> pd.Categorical:
    """A text column with no rows, or only nulls the reader typed otherwise."""
    n = sum(len(a) for a in arrays)
    return pd.Categorical.from_codes(np.full(n, -1, dtype=np.int32), categories=[])


def read_traffic(
    store: Store, schema: LogSchema, model: str, start: datetime, end: datetime
) -> Traffic:
    """Every logged prediction of ``model`` in [start, end), oldest first."""
    return from_tables(read_log(store, schema, model, start, end), schema)


def read_labeled(
    store: Store, schema: LogSchema, model: str, start: datetime, end: datetime
) -> Traffic:
    """The predictions of ``model`` logged in [start, end) that have ground truth, oldest
    first, each with its label: joined to the log in the database, by prediction id."""
    return from_tables(read_log(store, schema, model, start, end, labels=True), schema)


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


def _ascending(times: np.ndarray) -> bool:
    return times.size < 2 or bool((times[1:] >= times[:-1]).all())


def _naive(t: datetime) -> datetime:
    """UTC wall time without a zone, as numpy's datetime64 wants it."""
    return t if t.tzinfo is None else t.astimezone(UTC).replace(tzinfo=None)
