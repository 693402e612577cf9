"""Validation of rows against a contract: every problem, at once, and fast when there is none.

Most requests are clean, so :func:`validate` first tries a fast path that builds the typed
columns with a few numpy operations and bails out at the first doubt; the general path then
examines every value and reports every problem with its row, field, value and expectation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from slipway.exceptions import ContractViolation
from slipway.problems import MISSING, Problem

if TYPE_CHECKING:
    from slipway.contract import Contract, FieldSpec

_MISSING = MISSING


@dataclass
class Validated:
    """The outcome of validating a batch: typed columns, problems, and which rows are bad."""

    contract: Contract
    columns: dict[str, np.ndarray]
    n_rows: int
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    bad_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # The all-numeric fast path keeps the row-major matrix it built the columns from.
    matrix: np.ndarray | None = None
    # The caller's own DataFrame or array when it already is exactly what the pipeline was
    # fitted on (names, order, dtypes): handed over as given, so the pipeline sees the same
    # memory layout and answers bit for bit what it answers when called directly.
    source: pd.DataFrame | np.ndarray | None = None

    @property
    def ok(self) -> bool:
        """True when no row has an error."""
        return not self.errors

    def raise_for_errors(self, model: str = "model") -> None:
        """Raise ContractViolation listing every error, if there is any."""
        if self.errors:
            raise ContractViolation(self.errors, model)

    def frame(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """The rows as a DataFrame with the training column order and dtypes."""
        if isinstance(self.source, pd.DataFrame):
            return self.source if rows is None else self.source.iloc[rows]
        cols = self.columns if rows is None else {k: v[rows] for k, v in self.columns.items()}
        if not cols:  # a contract without fields: as many rows as asked for, no columns
            index = pd.RangeIndex(self.n_rows)
            return pd.DataFrame(index=index if rows is None else index[rows])
        out = pd.DataFrame(cols, copy=False)
        for spec in self.contract.fields:
            if spec.dtype == "category" and spec.categories is not None:
                out[spec.name] = pd.Categorical(out[spec.name], categories=list(spec.categories))
            elif spec.kind == "category" and spec.dtype not in ("object", "category"):
                out[spec.name] = out[spec.name].astype(spec.dtype)
        return out

    def model_input(self, rows: np.ndarray | None = None) -> pd.DataFrame | np.ndarray:
        """What the pipeline was fitted on: a DataFrame, or a 2-D array for array-trained models."""
        if self.contract.input_kind == "frame":
            return self.frame(rows)
        dtype = self.contract.array_dtype
        if isinstance(self.source, np.ndarray):
            return self.source if rows is None else self.source[rows]
        if self.matrix is not None:
            chosen = self.matrix if rows is None else self.matrix[rows]
            return chosen.astype(dtype, copy=False)
        cols = [self.columns[s.name] for s in self.contract.fields]
        if not cols:  # a contract without fields: one empty row per row asked for
            empty = np.empty((self.n_rows, 0), dtype=dtype)
            return empty if rows is None else empty[rows]
        if rows is not None:
            cols = [c[rows] for c in cols]
        return np.column_stack(cols).astype(dtype, copy=False)


def _has_names(frame: pd.DataFrame) -> bool:
    return not isinstance(frame.columns, pd.RangeIndex)


# -- validation helpers --------------------------------------------------------------------


def _field_set_problems(
    given: set[str], names: list[str], row: int | None, errors: list[Problem]
) -> None:
    for name in names:
        if name not in given:
            errors.append(Problem("missing_field", "this required field is missing", row, name))
    known = set(names)
    for name in sorted(given - known, key=str):
        errors.append(
            Problem("unknown_field", "this field is not part of the model's input", row, name)
        )


def _from_records(
    rows: Sequence[Mapping[str, Any]], names: list[str], errors: list[Problem]
) -> tuple[dict[str, np.ndarray], int]:
    expected = set(names)
    for i, r in enumerate(rows):
        if r.keys() != expected:
            _field_set_problems(set(r.keys()), names, i, errors)
    cols: dict[str, np.ndarray] = {}
    for name in names:
        col = np.empty(len(rows), dtype=object)
        col[:] = [r.get(name, _MISSING) for r in rows]
        cols[name] = col
    return cols, len(rows)


def _check_numeric(
    contract: Contract, spec: FieldSpec, values: np.ndarray, out: Validated
) -> np.ndarray:
    """Numbers: strict type, null, finiteness and plausibility band; returns float64 values."""
    if values.dtype.kind in "iuf":
        arr = values.astype(np.float64, copy=False)
        type_ok = None
    else:
        arr = np.full(len(values), np.nan)
        type_ok = np.ones(len(values), dtype=bool)
        for i, v in enumerate(values):
            if v is None or v is _MISSING:
                continue
            if isinstance(v, int | float | np.integer | np.floating) and not isinstance(
                v, bool | np.bool_
            ):
                try:
                    arr[i] = v
                except OverflowError:  # an int beyond float range: keep NaN, report it
                    type_ok[i] = False
                    _error(out, Problem("out_of_range", spec.expectation(), i, spec.name, v))
            elif v is pd.NA or v is pd.NaT:
                continue
            else:
                type_ok[i] = False
                _error(out, Problem("wrong_type", spec.expectation(), i, spec.name, v))
    finite = np.isfinite(arr)
    if finite.all():
        issues = _range_issues(contract, spec, arr)
    else:
        nan = np.isnan(arr) if type_ok is None else np.isnan(arr) & type_ok
        if not spec.nullable:
            for i in np.flatnonzero(nan).tolist():
                if values[i] is not _MISSING:
                    _error(out, Problem("null", _null_expected(spec), i, spec.name, values[i]))
        for i in np.flatnonzero(np.isinf(arr)).tolist():
            _error(out, Problem("not_finite", spec.expectation(), i, spec.name, arr[i]))
        # Only finite values are range-checked: a null (NaN) is no number out of range, and
        # infinity is already "not finite".
        issues = _range_issues(contract, spec, np.where(finite, arr, np.nan))
    for i in issues.tolist():
        _error(out, Problem("out_of_range", spec.expectation(), i, spec.name, values[i]))
    if spec.kind == "integer":
        frac = np.flatnonzero(finite & (arr != np.round(arr)))
        for i in frac.tolist():
            _error(out, Problem("wrong_type", spec.expectation(), i, spec.name, values[i]))
        clean = finite.all() and not issues.size and not frac.size
        if clean and spec.dtype.startswith(("int", "uint")):
            return arr.astype(spec.dtype)
    return arr


def _range_issues(contract: Contract, spec: FieldSpec, arr: np.ndarray) -> np.ndarray:
    bad = np.abs(arr) > contract.abs_limit
    if spec.low is not None:
        bad |= arr < spec.low
    if spec.high is not None:
        bad |= arr > spec.high
    return np.flatnonzero(bad)


def _check_boolean(
    contract: Contract, spec: FieldSpec, values: np.ndarray, out: Validated
) -> np.ndarray:
    """Booleans: only true/false (never 0/1 or strings)."""
    if values.dtype.kind == "b":
        return values
    result = np.zeros(len(values), dtype=object)
    for i, v in enumerate(values):
        if isinstance(v, bool | np.bool_):
            result[i] = bool(v)
        elif v is None or v is _MISSING or (isinstance(v, float) and math.isnan(v)):
            result[i] = None
            if not spec.nullable and v is not _MISSING:
                _error(out, Problem("null", _null_expected(spec), i, spec.name, v))
        else:
            _error(out, Problem("wrong_type", spec.expectation(), i, spec.name, v))
    if not spec.nullable:
        return np.array([bool(v) for v in result], dtype=bool)
    return result


def _check_category(
    contract: Contract, spec: FieldSpec, values: np.ndarray, out: Validated
) -> np.ndarray:
    """Categories: the training value type, and a known category (or a flag when allowed)."""
    cats = None if spec.categories is None else set(spec.categories)
    str_only = spec.categories is None or all(isinstance(c, str) for c in spec.categories)
    result = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is _MISSING:
            result[i] = None
            continue
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            result[i] = None
            if not spec.nullable:
                _error(out, Problem("null", _null_expected(spec), i, spec.name, v))
            continue
        if isinstance(v, np.generic):
            v = v.item()
        if (str_only and not isinstance(v, str)) or isinstance(v, list | dict | tuple):
            _error(out, Problem("wrong_type", spec.expectation(), i, spec.name, v))
            result[i] = None
            continue
        result[i] = v
        if cats is not None and v not in cats:
            if contract.unseen_for(spec) == "reject":
                expected = spec.expectation() + spec.how_to_allow("unseen_category")
                _error(out, Problem("unseen_category", expected, i, spec.name, v))
            else:
                out.warnings.append(Problem("unseen_category", spec.expectation(), i, spec.name, v))
    return result


def _check_datetime(
    contract: Contract, spec: FieldSpec, values: np.ndarray, out: Validated
) -> np.ndarray:
    """Date-times: datetime objects or ISO 8601 strings."""
    if values.dtype.kind == "M":
        return values
    result = np.empty(len(values), dtype="datetime64[ns]")
    for i, v in enumerate(values):
        if v is None or v is _MISSING:
            result[i] = np.datetime64("NaT")
            if not spec.nullable and v is None:
                _error(out, Problem("null", _null_expected(spec), i, spec.name, v))
            continue
        try:
            if not isinstance(v, str | pd.Timestamp | np.datetime64) and not hasattr(v, "year"):
                raise TypeError
            result[i] = pd.Timestamp(v).to_datetime64()
        except (TypeError, ValueError):
            result[i] = np.datetime64("NaT")
            _error(out, Problem("wrong_type", spec.expectation(), i, spec.name, v))
    return result


_CHECKS = {
    "number": _check_numeric,
    "integer": _check_numeric,
    "boolean": _check_boolean,
    "category": _check_category,
    "datetime": _check_datetime,
}


def _null_expected(spec: FieldSpec) -> str:
    return spec.expectation() + spec.how_to_allow("null")


def _error(out: Validated, problem: Problem) -> None:
    out.errors.append(problem)
    if problem.row is not None:
        out.bad_rows[problem.row] = True


def validate(contract: Contract, rows: Any) -> Validated:
    """Check rows (records, one mapping, a DataFrame or a 2-D array) against ``contract``."""
    fast = contract.plan.try_fast(contract, rows)
    if fast is not None:
        return fast
    result = _validate_general(contract, rows)
    if result.ok and isinstance(rows, pd.DataFrame | np.ndarray):
        result.source = _as_fitted(contract, rows)
    return result


def _as_fitted(contract: Contract, rows: pd.DataFrame | np.ndarray) -> Any:
    """``rows`` itself when it has exactly the names, order and dtypes of the training data."""
    if isinstance(rows, np.ndarray):
        fits = contract.input_kind == "array" and str(rows.dtype) == contract.array_dtype
        return rows if fits and rows.ndim == 2 else None
    if contract.input_kind != "frame" or list(rows.columns) != contract.names:
        return None
    for spec, dtype in zip(contract.fields, rows.dtypes, strict=True):
        if str(dtype) != spec.dtype:
            return None
        if spec.dtype == "category" and tuple(dtype.categories) != spec.categories:
            return None
    return rows


_NUMBER_TYPES = frozenset({int, float})
_SCALAR_TYPES = frozenset({int, float, str, bool})


class FastPlan:
    """What the fast path needs from a contract, computed once per contract.

    The fast path accepts only clean requests (records or value lists whose every value has
    the exact expected type and lies within the band); anything else goes to the general path,
    which finds and describes every problem.
    """

    def __init__(self, contract: Contract) -> None:
        fields = contract.fields
        self.names = contract.names
        self.keys = frozenset(self.names)
        self.numeric = all(f.kind in ("number", "integer") for f in fields)
        self.supported = all(
            f.kind in ("number", "integer", "category", "boolean", "datetime") for f in fields
        )
        self.low = np.array([-np.inf if f.low is None else f.low for f in fields])
        self.high = np.array([np.inf if f.high is None else f.high for f in fields])
        self.limit = contract.abs_limit
        self.integral = np.array([f.kind == "integer" for f in fields], dtype=bool)
        self.any_integral = bool(self.integral.any())
        self.int_dtypes = {
            f.name: f.dtype
            for f in fields
            if f.kind == "integer" and f.dtype.startswith(("int", "uint"))
        }
        self.categories = [
            None if f.categories is None else frozenset(f.categories) for f in fields
        ]
        self.str_only = [
            f.categories is None or all(isinstance(c, str) for c in f.categories) for f in fields
        ]

    def try_fast(self, contract: Contract, rows: Any) -> Validated | None:
        """Validated columns for a clean request, or None to take the general path."""
        if not self.supported:
            return None
        if type(rows) is dict:
            rows = [rows]
        if type(rows) is not list or not rows:
            return None
        width = len(self.names)
        first = rows[0]
        if type(first) is dict:
            keys = self.keys
            for r in rows:
                if type(r) is not dict or r.keys() != keys:
                    return None
            by_name = True
        elif type(first) is list:
            for r in rows:
                if type(r) is not list or len(r) != width:
                    return None
            by_name = False
        else:
            return None
        n = len(rows)
        if self.numeric:
            if by_name:
                names = self.names
                flat = [r[name] for r in rows for name in names]
            else:
                flat = [v for r in rows for v in r]
            matrix = self._numbers(flat, n, width)
            if matrix is None:
                return None
            columns = {name: matrix[:, j] for j, name in enumerate(self.names)}
            for name, dtype in self.int_dtypes.items():
                columns[name] = columns[name].astype(dtype)
            keep = matrix if contract.input_kind == "array" else None
            return Validated(contract, columns, n, bad_rows=np.zeros(n, dtype=bool), matrix=keep)
        columns = {}
        for j, spec in enumerate(contract.fields):
            key: Any = spec.name if by_name else j
            col = [r[key] for r in rows]
            out = self._column(j, spec, col, n)
            if out is None:
                return None
            columns[spec.name] = out
        return Validated(contract, columns, n, bad_rows=np.zeros(n, dtype=bool))

    def _numbers(self, flat: list[Any], n: int, width: int) -> np.ndarray | None:
        matrix = _as_floats(flat, (n, width))
        if matrix is None:
            return None
        if (matrix < self.low).any() or (matrix > self.high).any():
            return None
        if (np.abs(matrix) > self.limit).any():
            return None
        if self.any_integral:
            sub = matrix[:, self.integral]
            if (sub != np.round(sub)).any():
                return None
        return matrix

    def _column(self, j: int, spec: FieldSpec, col: list[Any], n: int) -> np.ndarray | None:
        if spec.kind in ("number", "integer"):
            arr = _as_floats(col, (n,))
            if arr is None:
                return None
            if (arr < self.low[j]).any() or (arr > self.high[j]).any():
                return None
            if (np.abs(arr) > self.limit).any():
                return None
            if spec.kind == "integer":
                if (arr != np.round(arr)).any():
                    return None
                if spec.name in self.int_dtypes:
                    return arr.astype(self.int_dtypes[spec.name])
            return arr
        if spec.kind == "boolean":
            if set(map(type, col)) != {bool}:
                return None
            return np.array(col, dtype=bool)
        if spec.kind == "datetime":
            return _utc_times(col)
        cats = self.categories[j]
        types = set(map(type, col))
        if types != {str} if self.str_only[j] else not types <= _SCALAR_TYPES:
            return None
        if cats is not None and not cats.issuperset(col):
            return None
        out = np.empty(n, dtype=object)
        out[:] = col
        return out


def _utc_times(values: list[Any]) -> np.ndarray | None:
    """ISO 8601 strings in UTC (``Z``, ``+00:00`` or no offset) as datetime64[ns], else None."""
    if set(map(type, values)) != {str}:
        return None
    cleaned = []
    for v in values:
        if v.endswith("Z"):
            v = v[:-1]
        elif v.endswith("+00:00"):
            v = v[:-6]
        elif len(v) > 16 and v[-6] in "+-" and v[-3] == ":":
            return None  # another offset: the general path converts it
        cleaned.append(v)
    try:
        arr = np.array(cleaned, dtype="datetime64[us]")
    except ValueError:
        return None
    if np.isnat(arr).any():
        return None
    return arr.astype("datetime64[ns]")


def _as_floats(values: list[Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """Exact ints and floats (never bools or strings) as finite float64, else None."""
    if not set(map(type, values)) <= _NUMBER_TYPES:
        return None
    try:
        arr = np.array(values, dtype=np.float64).reshape(shape)
    except OverflowError:  # an int beyond float range
        return None
    return arr if np.isfinite(arr).all() else None


def _validate_general(contract: Contract, rows: Any) -> Validated:
    """The full check: every problem of every row, for any input shape."""
    errors: list[Problem] = []
    raw, n = _columns(contract, rows, errors)
    bad = np.zeros(n, dtype=bool)
    if any(p.row is None for p in errors):
        bad[:] = True
    for p in errors:
        if p.row is not None:
            bad[p.row] = True
    result = Validated(contract, {}, n, errors, [], bad)
    for spec in contract.fields:
        values = raw.get(spec.name)
        if values is None:
            result.columns[spec.name] = np.full(n, np.nan)
            continue
        result.columns[spec.name] = _CHECKS[spec.kind](contract, spec, values, result)
    if len(result.errors) > 1:
        order = {name: i for i, name in enumerate(contract.names)}
        result.errors.sort(
            key=lambda p: (-1 if p.row is None else p.row, order.get(p.field or "", len(order)))
        )
    return result


def _columns(
    contract: Contract, rows: Any, errors: list[Problem]
) -> tuple[dict[str, np.ndarray], int]:
    names = contract.names
    if isinstance(rows, Mapping):
        rows = [rows]
    if isinstance(rows, pd.DataFrame):
        cols = [str(c) for c in rows.columns]
        if rows.columns.is_unique and cols == names:
            return {n: rows[n].to_numpy() for n in names}, len(rows)
        if contract.input_kind == "array" and not _has_names(rows):
            return _positional(contract, rows.to_numpy(), errors)
        _field_set_problems(set(cols), names, None, errors)
        present = [c for c in names if c in set(cols)]
        frame = rows.loc[:, ~rows.columns.duplicated()]
        frame.columns = cols if rows.columns.is_unique else frame.columns.astype(str)
        return {n: frame[n].to_numpy() for n in present}, len(rows)
    if isinstance(rows, np.ndarray):
        return _positional(contract, rows, errors)
    if isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
        if all(isinstance(r, Mapping) for r in rows):
            return _from_records(rows, names, errors)
        if all(isinstance(r, Sequence) and not isinstance(r, str | bytes) for r in rows):
            return _positional(contract, rows, errors)
    errors.append(
        Problem(
            "wrong_shape",
            f"rows must be a list of records, a DataFrame or a 2-D array; got "
            f"{type(rows).__name__}",
        )
    )
    return {}, 0


def _positional(
    contract: Contract, rows: Any, errors: list[Problem]
) -> tuple[dict[str, np.ndarray], int]:
    width = len(contract.fields)
    if isinstance(rows, np.ndarray):
        arr = rows
    else:
        lengths = {len(r) for r in rows}
        if len(lengths) > 1 or (lengths and lengths != {width}):
            for i, r in enumerate(rows):
                if len(r) != width:
                    errors.append(
                        Problem("wrong_shape", f"expected {width} values, got {len(r)}", row=i)
                    )
            return {}, len(rows)
        arr = np.empty((len(rows), width), dtype=object)
        for i, r in enumerate(rows):
            arr[i, :] = r
    if arr.ndim != 2 or arr.shape[1] != width:
        shape = "x".join(str(s) for s in arr.shape) or "() (a single value, not rows)"
        errors.append(
            Problem(
                "wrong_shape",
                f"expected a 2-D array with {width} columns ({', '.join(contract.names[:5])}"
                f"{', ...' if width > 5 else ''}); got shape {shape}",
            )
        )
        return {}, arr.shape[0] if arr.ndim else 0
    return {s.name: arr[:, i] for i, s in enumerate(contract.fields)}, arr.shape[0]
