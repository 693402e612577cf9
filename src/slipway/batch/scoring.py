"""One chunk of input -> its output rows and its rejects, through the one prediction core.

Rows are validated with ``Model.validate`` and predicted with ``Model.infer``, exactly as the
Python API and the HTTP service do, so a row gets the same answer in batch as online. The
output is built column-wise as an Arrow table (no Python object per row): the same table is
written as a Parquet part, loaded into the database, or returned by :func:`score`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from slipway.clock import utcnow
from slipway.exceptions import BatchInputError
from slipway.predict import Predictions
from slipway.problems import Problem, display, jsonable

if TYPE_CHECKING:
    from slipway.predict import Model

INPUT_PREFIX = "input:"  # with keep_inputs, each contract field's column: input:<field>
KEY_MAX = 200  # batch_predictions.key is VARCHAR(200)


@dataclass(frozen=True)
class Reject:
    """An input row that was not scored, with every reason (``row`` = input row number)."""

    row_number: int
    key: str | None
    row: dict[str, Any]
    reasons: list[dict[str, Any]]


@dataclass
class PredictedChunk:
    """The outcome of one chunk: output rows for the scored input rows, rejects for the rest."""

    index: int
    first_row: int
    rows_in: int
    predictions: pa.Table
    rejects: list[Reject] = field(default_factory=list)
    scored_at: datetime = field(default_factory=utcnow)

    @property
    def rows_scored(self) -> int:
        """Input rows that got a prediction."""
        return self.predictions.num_rows

    @property
    def rows_rejected(self) -> int:
        """Input rows that broke the contract or had no usable key."""
        return len(self.rejects)


@dataclass(frozen=True)
class Scores:
    """What :func:`slipway.score` returns: one frame of predictions, one of rejects.

    ``predictions`` has the columns of a batch Parquet output (``key``, ``label`` and one
    ``proba:<class>`` column per class, or ``value``; then the lineage columns) and the input's
    index for the scored rows, so ``frame.join(scores.predictions)`` lines them up.
    """

    predictions: pd.DataFrame
    rejects: pd.DataFrame


def score(model: Model, frame: pd.DataFrame, *, key_column: str | None = None) -> Scores:
    """Score a DataFrame in memory the way a batch run scores each chunk."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"score() takes a pandas DataFrame, not {type(frame).__name__}")
    from slipway.batch.sources import check_columns

    check_columns([str(c) for c in frame.columns], model.contract, key_column, "The frame")
    chunk = predict_chunk(model, frame, key_column=key_column)
    predictions = decode_constants(chunk.predictions).to_pandas()
    predictions.index = frame.index[chunk_positions(chunk)]
    rejects = pd.DataFrame(
        [dataclasses.asdict(r) for r in chunk.rejects],
        columns=["row_number", "key", "row", "reasons"],
    )
    return Scores(predictions, rejects)


def chunk_positions(chunk: PredictedChunk) -> np.ndarray:
    """Positions, within the chunk, of the rows that were scored."""
    rejected = np.fromiter((r.row_number - chunk.first_row for r in chunk.rejects), np.int64)
    keep = np.ones(chunk.rows_in, dtype=bool)
    keep[rejected] = False
    return np.flatnonzero(keep)


def predict_chunk(
    model: Model,
    frame: pd.DataFrame,
    *,
    index: int = 0,
    first_row: int = 0,
    key_column: str | None = None,
    run_id: str | None = None,
    keep_inputs: bool = False,
) -> PredictedChunk:
    """Validate and predict one chunk; rows that fail go to rejects with their reasons.

    ``keep_inputs`` adds each scored row's contract fields as read, as ``input:<field>``
    columns (what ``slipway monitor --source batch`` checks).
    """
    n = len(frame)
    scored_at = utcnow()
    keys, key_problems = chunk_keys(frame, key_column, first_row)
    checked = model.validate(frame[model.contract.names])
    bad = checked.bad_rows.copy()
    for p in key_problems:
        bad[p.row] = True
    all_keys = keys
    if bad.any():
        rows = np.flatnonzero(~bad)
        result = model.infer(checked, rows=rows)
        keys = keys.take(pa.array(rows))
    else:
        result = model.infer(checked)
    columns: dict[str, pa.Array] = {"key": keys}
    if result.task == "regression":
        assert result.values is not None
        columns["value"] = pa.array(np.asarray(result.values, dtype=np.float64))
    else:
        assert result.labels is not None
        columns["label"] = label_array(result.labels)
        if result.probabilities is not None:
            proba = np.asarray(result.probabilities, dtype=np.float64)
            for i, cls in enumerate(model.classes or []):
                columns[Predictions.proba_column(cls)] = pa.array(proba[:, i])
    m = len(keys)
    columns["model_name"] = _constant(model.name, m)
    columns["version"] = pa.array(np.full(m, model.version.version, dtype=np.int64))
    columns["sha256"] = _constant(model.version.sha256, m)
    columns["run_id"] = _constant(run_id, m)
    stamp = np.full(m, np.datetime64(scored_at.replace(tzinfo=None), "us"))
    columns["scored_at"] = pa.array(stamp, type=pa.timestamp("us", tz="UTC"))
    if keep_inputs:
        kept = frame[model.contract.names]
        if bad.any():
            kept = kept.iloc[np.flatnonzero(~bad)]
        for name in model.contract.names:
            columns[INPUT_PREFIX + name] = input_array(kept[name])
    problems = checked.errors + key_problems
    rejects = _rejects(frame, bad, problems, all_keys, first_row) if bad.any() else []
    return PredictedChunk(index, first_row, n, pa.table(columns), rejects, scored_at)


def input_array(values: pd.Series) -> pa.Array:
    """An input column as Arrow stores it: its own type, or JSON text of each value when its
    values mix types Arrow cannot hold in one column."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        texts = [None if v is None else orjson.dumps(jsonable(v)).decode() for v in values]
        return pa.array(texts, pa.string())


def label_array(labels: np.ndarray) -> pa.Array:
    """Labels as an Arrow array of the classes' own type (JSON text when types are mixed)."""
    try:
        return pa.array(labels)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([orjson.dumps(jsonable(v)).decode() for v in labels.tolist()])


def chunk_keys(
    frame: pd.DataFrame, key_column: str | None, first_row: int
) -> tuple[pa.Array, list[Problem]]:
    """Each row's key as text, and problems (chunk row positions) for unusable keys.

    Without a key column the key is the input row number. Numbers are written the same way
    whatever dtype a chunk was read with (``7``, never ``7.0``), so keys are stable across
    chunks, formats and engines. A key repeated within a chunk stops the run: keys must
    identify rows for lookups to mean anything.
    """
    n = len(frame)
    if key_column is None:
        return pc.cast(pa.array(np.arange(first_row, first_row + n)), pa.string()), []
    col = frame[key_column]
    try:
        keys = pc.cast(pa.array(col, from_pandas=True), pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        keys = pa.array([None if _isna(v) else str(v) for v in col.tolist()], pa.string())
    problems: list[Problem] = []
    if keys.null_count:
        for i in np.flatnonzero(keys.is_null().to_numpy(zero_copy_only=False)).tolist():
            expected = f"a key in column {key_column!r}"
            problems.append(Problem("missing_key", expected, i, key_column, None))
    lengths = pc.utf8_length(keys).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(np.nan_to_num(lengths, nan=0) > KEY_MAX).tolist():
        expected = f"a key of at most {KEY_MAX} characters"
        problems.append(Problem("key_too_long", expected, i, key_column, keys[i].as_py()))
    _refuse_duplicates(keys, key_column, first_row)
    return keys, problems


def _refuse_duplicates(keys: pa.Array, key_column: str, first_row: int) -> None:
    if pc.count_distinct(keys, mode="only_valid").as_py() == len(keys) - keys.null_count:
        return
    values = pd.Series(keys.to_pandas(), dtype=object)
    dupes = values[values.notna() & values.duplicated(keep=False)]
    if dupes.empty:
        return
    first = dupes.iloc[0]
    where = [int(i) + first_row for i in dupes.index[dupes == first][:2]]
    raise BatchInputError(
        f"Key column {key_column!r} is not unique: {first!r} is at input rows {where[0]} and "
        f"{where[1]}. Keys must identify rows; choose another --key-column, or omit it to key "
        "rows by their row number."
    )


def _rejects(
    frame: pd.DataFrame,
    bad: np.ndarray,
    problems: list[Problem],
    keys: pa.Array,
    first_row: int,
) -> list[Reject]:
    by_row: dict[int, list[dict[str, Any]]] = {}
    everywhere: list[dict[str, Any]] = []
    for p in problems:
        if p.row is None:  # a whole-input problem: every row carries it
            everywhere.append(p.to_dict())
            continue
        row = first_row + p.row
        by_row.setdefault(row, []).append(dataclasses.replace(p, row=row).to_dict())
    positions = np.flatnonzero(bad)
    records = frame.iloc[positions].to_dict("records")
    out = []
    for i, record in zip(positions.tolist(), records, strict=True):
        values = {str(k): display(v) for k, v in record.items()}  # shown to people
        row = first_row + i
        out.append(Reject(row, keys[i].as_py(), values, everywhere + by_row.get(row, [])))
    return out


def _constant(value: str | None, n: int) -> pa.Array:
    # A dictionary of one value costs 4 bytes a row instead of a copy of the string per row.
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string())
    )


def decode_constants(table: pa.Table) -> pa.Table:
    """The table with its one-value dictionary columns as plain strings."""
    fields = [
        pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False
