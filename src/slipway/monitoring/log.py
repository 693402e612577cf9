"""The prediction log as columns: the store's JSON lines parsed by Arrow, a block at a time.

:func:`read_log` turns what :func:`slipway.store.predictions.log_lines` streams into Arrow
tables with one column per thing the monitor reads (:data:`TIME`, :data:`VERSION`, one
``input:<field>`` column per contract field, ``label``, ``proba:<class>``, ``value``; with
labels ``feedback``, ``feedback_value`` for regressors and ``feedback_at``) without a Python
object per row: the database writes the lines, Arrow's JSON reader parses each block in C++
while the next block is fetched.
``slipway predictions export`` writes the same tables to Parquet or CSV, and the Dask engine
reads them back, so every path sees the same values.

The values are the ones the row-by-row reading gives, exactly: numbers as float64 (null, NaN
and infinities are missing for the checks), and categories, booleans, predicted labels and
feedback labels as the text ``str(value)`` of the JSON value (``True``, ``1``, ``1.0``,
``fraud``), which is how the monitor compares them with the training data. Arrow is told each
field's type from the contract; a block holding a value of another type (a number in a field
of string categories, say) is read row by row instead, with the same result, only slower.
"""

from __future__ import annotations

import io
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from slipway.monitoring.columns import as_float, is_missing
from slipway.predict import PROBA_PREFIX
from slipway.store import Store
from slipway.store.predictions import log_lines
from slipway.versions import ModelVersion

TIME = "created_at"
VERSION = "version"
INPUT = "input:"
PROBA = PROBA_PREFIX  # the log's column of each class's probability: proba:<class>
DETAILS = ("prediction_id", "variant", "experiment", "unit_id", "latency_ms")
_PARSE_BLOCK = 1 << 22  # bytes per block Arrow parses in parallel
_PREFETCH = 2  # blocks fetched from the database ahead of the parser


@dataclass(frozen=True)
class LogSchema:
    """How one model's log is read: the fields of the monitored version (name and contract
    kind), and the outputs of every version of the model."""

    fields: tuple[tuple[str, str], ...]
    classes: tuple[str, ...] = ()
    label_type: str | None = None  # "str", "int", "bool", "float", "mixed"; None: no classifier
    regression: bool = False
    string_categories: frozenset[str] = frozenset()

    @classmethod
    def of(cls, mv: ModelVersion, versions: Iterable[ModelVersion] = ()) -> LogSchema:
        """The schema for monitoring ``mv``: its fields, the outputs of it and ``versions``."""
        every = [mv, *versions]
        classes: list[str] = []
        types: set[str] = set()
        for v in every:
            for c in v.classes or []:
                if str(c) not in classes:
                    classes.append(str(c))
                types.add(_type_name(c))
        contract = mv.contract
        return cls(
            fields=tuple((f.name, f.kind) for f in contract.fields),
            classes=tuple(classes),
            label_type=None if not types else (types.pop() if len(types) == 1 else "mixed"),
            regression=any(v.task == "regression" for v in every),
            string_categories=frozenset(
                f.name
                for f in contract.fields
                if f.kind == "category"
                and f.categories is not None
                and all(isinstance(c, str) for c in f.categories)
            ),
        )

    @property
    def names(self) -> list[str]:
        """The input fields, in contract order."""
        return [name for name, _ in self.fields]

    def columns(self, *, labels: bool, details: bool) -> pa.Schema:
        """The tables :func:`parse` returns."""
        cols: list[tuple[str, pa.DataType]] = [
            (TIME, pa.timestamp("us")),
            (VERSION, pa.int64()),
        ]
        if details:
            cols += [(d, pa.float64() if d == "latency_ms" else pa.string()) for d in DETAILS]
        for name, kind in self.fields:
            cols.append((INPUT + name, pa.float64() if kind in _NUMBERS else pa.string()))
        if self.label_type is not None:
            cols.append(("label", pa.string()))
        cols += [(PROBA + k, pa.float64()) for k in self.classes]
        if self.regression:
            cols.append(("value", pa.float64()))
        if labels:
            cols.append(("feedback", pa.string()))
            if self.regression:
                cols.append(("feedback_value", pa.float64()))
            cols.append(("feedback_at", pa.timestamp("us")))
        return pa.schema(cols)

    def _json_schema(self, labels: bool, details: bool) -> pa.Schema:
        """What Arrow's JSON reader is told; other keys are ignored."""
        inputs = []
        for name, kind in self.fields:
            if kind in _NUMBERS:
                inputs.append((name, pa.float64()))
            elif kind == "boolean":
                inputs.append((name, pa.bool_()))
            else:  # string categories and date-times; any other type reads row by row
                inputs.append((name, pa.string()))
        outputs: list[tuple[str, pa.DataType]] = []
        if self.label_type is not None:
            outputs.append(("label", _LABEL_TYPES.get(self.label_type, pa.string())))
        if self.classes:
            outputs.append(("probabilities", pa.struct([(k, pa.float64()) for k in self.classes])))
        if self.regression:
            outputs.append(("value", pa.float64()))
        top: list[tuple[str, pa.DataType]] = [
            ("t", pa.timestamp("us")),
            ("v", pa.int64()),
            ("i", pa.struct(inputs)),
            ("o", pa.struct(outputs)),
        ]
        if details:
            top += [("id", pa.string()), ("var", pa.string()), ("exp", pa.string())]
            top += [("u", pa.string()), ("ms", pa.float64())]
        if labels:
            top += [("l", pa.string()), ("r", pa.timestamp("us"))]
        return pa.schema(top)


_NUMBERS = ("number", "integer")
_LABEL_TYPES = {"str": pa.string(), "int": pa.int64(), "bool": pa.bool_(), "float": pa.float64()}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str" if isinstance(value, str) else "mixed"


# -- reading ----------------------------------------------------------------------------------


def read_log(
    store: Store,
    schema: LogSchema,
    model: str,
    start: datetime,
    end: datetime,
    *,
    labels: bool | None = False,
    details: bool = False,
    newest: int | None = None,
) -> Iterator[pa.Table]:
    """Tables of the predictions of ``model`` logged in [start, end), oldest first.

    ``labels=True`` reads only labeled predictions, ``None`` every prediction with its label
    where it has one (the ``feedback`` columns are in the tables either way); ``details`` adds
    the id, variant, experiment, unit id and latency; ``newest=N`` reads the newest N only,
    newest first.
    """
    blocks = log_lines(store, model, start, end, labels=labels, details=details, newest=newest)
    for block in prefetched(blocks, _PREFETCH):
        yield parse(block, schema, labels=labels is not False, details=details)


def prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """The items of ``items``, produced by a thread of their own up to ``depth`` ahead."""
    done = object()
    box: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            box.put(_Failed(exc))

    worker = threading.Thread(target=produce, name="slipway-log-reader", daemon=True)
    worker.start()
    try:
        while (item := box.get()) is not done:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        close = getattr(items, "close", None)
        worker.join()
        if close is not None:
            close()


@dataclass
class _Failed:
    error: BaseException


def parse(block: bytes, schema: LogSchema, *, labels: bool, details: bool) -> pa.Table:
    """One block of JSON lines as a table of :meth:`LogSchema.columns`."""
    try:
        raw = pj.read_json(
            io.BytesIO(block),
            read_options=pj.ReadOptions(block_size=_PARSE_BLOCK),
            parse_options=pj.ParseOptions(
                explicit_schema=schema._json_schema(labels, details),
                unexpected_field_behavior="ignore",
            ),
        )
    except pa.ArrowInvalid:
        # A value of another type than the contract's (or an odd label): read the block row
        # by row, with the same rules.
        return _parse_rows(block, schema, labels, details)
    return _from_arrow(raw, schema, labels, details)


def _from_arrow(raw: pa.Table, schema: LogSchema, labels: bool, details: bool) -> pa.Table:
    cols: dict[str, Any] = {TIME: raw["t"], VERSION: raw["v"]}
    if details:
        for key, name in zip(("id", "var", "exp", "u", "ms"), DETAILS, strict=True):
            cols[name] = raw[key]
    inputs = _flatten(raw["i"])
    for name, kind in schema.fields:
        values = inputs[name]
        cols[INPUT + name] = _bool_texts(values) if kind == "boolean" else values
    outputs = _flatten(raw["o"])
    if schema.label_type is not None:
        cols["label"] = pc.fill_null(_texts(outputs["label"]), "None")
    if schema.classes:
        proba = _flatten(outputs["probabilities"])
        for k in schema.classes:
            cols[PROBA + k] = proba[k]
    if schema.regression:
        cols["value"] = outputs["value"]
    if labels:
        cols.update(_feedback(raw["l"], schema))
        cols["feedback_at"] = raw["r"]
    return pa.table(cols, schema=schema.columns(labels=labels, details=details))


def _flatten(column: pa.ChunkedArray | pa.Array) -> dict[str, pa.Array]:
    """A struct column's fields, null where the struct itself is null."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return {array.type.field(i).name: a for i, a in enumerate(array.flatten())}


def _bool_texts(values: pa.Array) -> pa.Array:
    return pc.if_else(values, "True", "False")


def _texts(values: pa.Array) -> pa.Array:
    """``str(value)`` of each value, as Python spells it (null stays null)."""
    if pa.types.is_string(values.type):
        return values
    if pa.types.is_boolean(values.type):
        return _bool_texts(values)
    if pa.types.is_integer(values.type):
        return pc.cast(values, pa.string())
    return _map_distinct(values, lambda v: str(v))


def _feedback(labels: pa.Array | pa.ChunkedArray, schema: LogSchema) -> dict[str, pa.Array]:
    """Feedback labels (JSON texts) as ``str(label)``, and for regressors as floats; each
    distinct text is decoded once."""
    out = {"feedback": _map_distinct(labels, lambda t: str(_json(t)), pa.string())}
    if schema.regression:
        out["feedback_value"] = _map_distinct(labels, lambda t: truth_float(_json(t)), pa.float64())
    return out


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def truth_float(value: Any) -> float:
    """A regressor's ground truth as a float: numbers and numeric text, NaN for the rest."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def _map_distinct(
    values: pa.Array | pa.ChunkedArray,
    fn: Callable[[Any], Any],
    type: pa.DataType | None = None,
) -> pa.Array:
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    encoded = pc.dictionary_encode(array)
    mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], type or pa.string())
    return mapped.take(encoded.indices)


# -- row by row (blocks Arrow cannot type) -----------------------------------------------------


def _parse_rows(block: bytes, schema: LogSchema, labels: bool, details: bool) -> pa.Table:
    rows = orjson.loads(b"[" + b",".join(block.splitlines()) + b"]")
    n = len(rows)
    cols: dict[str, Any] = {
        TIME: pa.array([r["t"] for r in rows]).cast(pa.timestamp("us")),
        VERSION: pa.array([r["v"] for r in rows], pa.int64()),
    }
    if details:
        for key, name in zip(("id", "var", "exp", "u"), DETAILS, strict=False):
            cols[name] = pa.array([r.get(key) for r in rows], pa.string())
        cols["latency_ms"] = pa.array(_numbers([r.get("ms") for r in rows]))
    inputs = [r.get("i") if isinstance(r.get("i"), dict) else {} for r in rows]
    for name, kind in schema.fields:
        values = [i.get(name) for i in inputs]
        if kind in _NUMBERS:
            cols[INPUT + name] = pa.array(_numbers(values))
        else:
            cols[INPUT + name] = pa.array(
                [None if is_missing(v) else str(v) for v in values], pa.string()
            )
    outputs = [r.get("o") if isinstance(r.get("o"), dict) else {} for r in rows]
    if schema.label_type is not None:
        cols["label"] = pa.array([str(o.get("label")) for o in outputs], pa.string())
    if schema.classes:
        probs = [o.get("probabilities") for o in outputs]
        probs = [p if isinstance(p, dict) else {} for p in probs]
        for k in schema.classes:
            cols[PROBA + k] = pa.array(_numbers([p.get(k) for p in probs]))
    if schema.regression:
        cols["value"] = pa.array(_numbers([o.get("value") for o in outputs]))
    if labels:
        cols.update(_feedback(pa.array([r.get("l") for r in rows], pa.string()), schema))
        cols["feedback_at"] = pa.array([r.get("r") for r in rows]).cast(pa.timestamp("us"))
    assert all(len(c) == n for c in cols.values())
    return pa.table(cols, schema=schema.columns(labels=labels, details=details))


def _numbers(values: list[Any]) -> np.ndarray:
    """Numbers as the row-by-row reading coerces them (what is not a number is missing)."""
    return as_float(pd.Series(values, dtype=None if values else object))
