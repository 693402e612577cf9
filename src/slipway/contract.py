"""The input contract a model learns from its training data, and validation against it.

A contract records, per input column, its name and position, kind of value, observed range,
category set and whether nulls were seen. :meth:`Contract.validate` checks rows against it
and reports *every* problem at once, each naming the row, the field, the value and what was
expected, the way a reviewer would write it on the request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from slipway.exceptions import ContractViolation, InvalidModel

Kind = Literal["number", "integer", "boolean", "category", "datetime"]
Unseen = Literal["reject", "flag"]
MAX_CATEGORIES = 10_000
_MISSING = object()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one value of a request (``row`` is None for whole-request issues)."""

    code: str
    expected: str
    row: int | None = None
    field: str | None = None
    value: Any = None

    def describe(self) -> str:
        """One sentence a person can act on."""
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        prefix = ", ".join(where) + ": " if where else ""
        if self.code in ("missing_field", "unknown_field", "wrong_shape"):
            return prefix + self.expected
        return f"{prefix}got {_show(self.value)}, expected {self.expected}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping; non-finite floats become the strings 'NaN' and 'Infinity'."""
        return {
            "row": self.row,
            "field": self.field,
            "code": self.code,
            "value": jsonable(self.value),
            "expected": self.expected,
            "message": self.describe(),
        }


@dataclass(frozen=True)
class FieldSpec:
    """What the training data showed about one input column."""

    name: str
    kind: Kind
    dtype: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None
    # Values must lie within [low, high]; derived from min/max and the contract's band factor
    # unless set explicitly.
    low: float | None = None
    high: float | None = None

    def expectation(self) -> str:
        """How this field's valid values are described in error messages."""
        if self.kind in ("number", "integer"):
            what = "an integer" if self.kind == "integer" else "a finite number"
            if self.low is not None and self.high is not None:
                return f"{what} between {_num(self.low)} and {_num(self.high)}"
            return what
        if self.kind == "boolean":
            return "true or false"
        if self.kind == "datetime":
            return "a date-time (ISO 8601)"
        if self.categories is None:
            return "a string"
        shown = ", ".join(repr(c) for c in self.categories[:10])
        more = f", ... ({len(self.categories)} in all)" if len(self.categories) > 10 else ""
        return f"one of {shown}{more}"


@dataclass
class Validated:
    """The outcome of validating a batch: typed columns, problems, and which rows are bad."""

    contract: Contract
    columns: dict[str, np.ndarray]
    n_rows: int
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    bad_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

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
        cols = self.columns if rows is None else {k: v[rows] for k, v in self.columns.items()}
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
        cols = [self.columns[s.name] for s in self.contract.fields]
        if rows is not None:
            cols = [c[rows] for c in cols]
        dtype = self.contract.array_dtype
        if not cols:
            return np.empty((0, 0), dtype=dtype)
        return np.column_stack(cols).astype(dtype, copy=False)


@dataclass(frozen=True)
class Contract:
    """The input contract of a model: the fields it takes, learned from ``X_train``.

    ``unseen`` decides what happens to a category never seen in training: ``"reject"`` makes it
    an error, ``"flag"`` lets it through with a warning (the pipeline must then tolerate it,
    e.g. ``OneHotEncoder(handle_unknown="ignore")``). The plausibility band of a numeric field
    is its training range widened by ``band`` times its width on each side; any value with
    magnitude above ``abs_limit`` is rejected regardless.
    """

    fields: tuple[FieldSpec, ...]
    input_kind: Literal["frame", "array"] = "frame"
    array_dtype: str = "float64"
    unseen: Unseen = "reject"
    band: float = 10.0
    abs_limit: float = 1e12

    # -- learning --------------------------------------------------------------------------

    @classmethod
    def learn(
        cls,
        X: Any,
        *,
        unseen: Unseen = "reject",
        band: float = 10.0,
        abs_limit: float = 1e12,
        bounds: Mapping[str, tuple[float, float]] | None = None,
    ) -> Contract:
        """Learn the contract from training data (a DataFrame or a 2-D array).

        ``bounds`` overrides the plausibility band of chosen numeric fields with explicit
        ``(low, high)`` limits.
        """
        if unseen not in ("reject", "flag"):
            raise ValueError(f"unseen must be 'reject' or 'flag', got {unseen!r}")
        if isinstance(X, pd.DataFrame):
            frame, kind, array_dtype = X, "frame", "float64"
        else:
            arr = np.asarray(X)
            if arr.ndim != 2:
                raise InvalidModel(f"X_train must be 2-D; got an array of shape {arr.shape}.")
            names = [f"feature_{i}" for i in range(arr.shape[1])]
            frame, kind, array_dtype = pd.DataFrame(arr, columns=names), "array", str(arr.dtype)
        bounds = dict(bounds or {})
        unknown = set(bounds) - {str(c) for c in frame.columns}
        if unknown:
            raise ValueError(f"bounds name columns not in X_train: {sorted(unknown)}")
        specs = []
        for col in frame.columns:
            spec = _learn_field(str(col), frame[col])
            if spec.kind in ("number", "integer"):
                low, high = bounds.get(spec.name) or _band(spec.min, spec.max, band)
                spec = FieldSpec(**{**asdict(spec), "low": low, "high": high})
            specs.append(spec)
        return cls(tuple(specs), kind, array_dtype, unseen, band, abs_limit)  # type: ignore[arg-type]

    # -- (de)serialization -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, stored with the model version."""
        out = asdict(self)
        for f in out["fields"]:
            if f["categories"] is not None:
                f["categories"] = [jsonable(c) for c in f["categories"]]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contract:
        """Inverse of :meth:`to_dict`."""
        specs = []
        for f in data["fields"]:
            cats = f.get("categories")
            specs.append(FieldSpec(**{**f, "categories": None if cats is None else tuple(cats)}))
        return cls(**{**data, "fields": tuple(specs)})

    @property
    def names(self) -> list[str]:
        """Field names in training order."""
        return [f.name for f in self.fields]

    def json_schema(self) -> dict[str, Any]:
        """A JSON Schema for one input row (an object keyed by field name)."""
        props: dict[str, Any] = {}
        for f in self.fields:
            s: dict[str, Any]
            if f.kind in ("number", "integer"):
                s = {"type": "integer" if f.kind == "integer" else "number"}
                if f.low is not None and f.high is not None:
                    s["minimum"], s["maximum"] = _clean(f.low), _clean(f.high)
            elif f.kind == "boolean":
                s = {"type": "boolean"}
            elif f.kind == "datetime":
                s = {"type": "string", "format": "date-time"}
            else:
                s = {"type": "string"}
                if f.categories is not None and self.unseen == "reject":
                    s["enum"] = [jsonable(c) for c in f.categories]
            if f.nullable:
                s = {"anyOf": [s, {"type": "null"}]}
            props[f.name] = s
        return {
            "type": "object",
            "properties": props,
            "required": self.names,
            "additionalProperties": False,
        }

    def example(self) -> dict[str, Any]:
        """A plausible input row: the middle of each training range, the first category."""
        row: dict[str, Any] = {}
        for f in self.fields:
            if f.kind in ("number", "integer") and f.min is not None and f.max is not None:
                mid = (f.min + f.max) / 2
                row[f.name] = round(mid) if f.kind == "integer" else round(mid, 4)
            elif f.kind == "boolean":
                row[f.name] = False
            elif f.categories:
                row[f.name] = jsonable(f.categories[0])
            else:
                row[f.name] = None
        return row

    # -- validation ------------------------------------------------------------------------

    def validate(self, rows: Any) -> Validated:
        """Check rows (records, one mapping, a DataFrame or a 2-D array) against the contract."""
        errors: list[Problem] = []
        raw, n = self._columns(rows, errors)
        bad = np.zeros(n, dtype=bool)
        if any(p.row is None for p in errors):
            bad[:] = True
        for p in errors:
            if p.row is not None:
                bad[p.row] = True
        result = Validated(self, {}, n, errors, [], bad)
        for spec in self.fields:
            values = raw.get(spec.name)
            if values is None:
                result.columns[spec.name] = np.full(n, np.nan)
                continue
            result.columns[spec.name] = _CHECKS[spec.kind](self, spec, values, result)
        if len(result.errors) > 1:
            order = {name: i for i, name in enumerate(self.names)}
            result.errors.sort(
                key=lambda p: (-1 if p.row is None else p.row, order.get(p.field or "", len(order)))
            )
        return result

    def _columns(self, rows: Any, errors: list[Problem]) -> tuple[dict[str, np.ndarray], int]:
        names = self.names
        if isinstance(rows, Mapping):
            rows = [rows]
        if isinstance(rows, pd.DataFrame):
            cols = [str(c) for c in rows.columns]
            if rows.columns.is_unique and cols == names:
                return {n: rows[n].to_numpy() for n in names}, len(rows)
            if self.input_kind == "array" and not _has_names(rows):
                return self._positional(rows.to_numpy(), errors)
            _field_set_problems(set(cols), names, None, errors)
            present = [c for c in names if c in set(cols)]
            frame = rows.loc[:, ~rows.columns.duplicated()]
            frame.columns = cols if rows.columns.is_unique else frame.columns.astype(str)
            return {n: frame[n].to_numpy() for n in present}, len(rows)
        if isinstance(rows, np.ndarray):
            return self._positional(rows, errors)
        if isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
            if all(isinstance(r, Mapping) for r in rows):
                return _from_records(rows, names, errors)
            if all(isinstance(r, Sequence) and not isinstance(r, str | bytes) for r in rows):
                return self._positional(rows, errors)
        errors.append(
            Problem(
                "wrong_shape",
                f"rows must be a list of records, a DataFrame or a 2-D array; got "
                f"{type(rows).__name__}",
            )
        )
        return {}, 0

    def _positional(self, rows: Any, errors: list[Problem]) -> tuple[dict[str, np.ndarray], int]:
        width = len(self.fields)
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
            shape = "x".join(str(s) for s in arr.shape)
            errors.append(
                Problem(
                    "wrong_shape",
                    f"expected a 2-D array with {width} columns ({', '.join(self.names[:5])}"
                    f"{', ...' if width > 5 else ''}); got shape {shape}",
                )
            )
            return {}, arr.shape[0] if arr.ndim else 0
        return {s.name: arr[:, i] for i, s in enumerate(self.fields)}, arr.shape[0]


# -- learning helpers ----------------------------------------------------------------------


def _learn_field(name: str, col: pd.Series) -> FieldSpec:
    dtype = col.dtype
    nullable = bool(col.isna().any())
    values = col.dropna()
    if isinstance(dtype, pd.CategoricalDtype):
        return FieldSpec(
            name, "category", "category", nullable, categories=_category_set(dtype.categories)
        )
    if pd.api.types.is_bool_dtype(dtype):
        return FieldSpec(name, "boolean", str(dtype), nullable)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return FieldSpec(name, "datetime", str(dtype), nullable)
    if pd.api.types.is_numeric_dtype(dtype):
        kind: Kind = "integer" if pd.api.types.is_integer_dtype(dtype) else "number"
        finite = values.to_numpy(dtype=float, na_value=np.nan)
        finite = finite[np.isfinite(finite)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
        return FieldSpec(name, kind, str(dtype), nullable, lo, hi)
    # object or string columns: decide by what the values are
    kinds = {_value_kind(v) for v in values}
    if kinds == {"number"}:
        arr = values.to_numpy(dtype=float)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (None, None)
        return FieldSpec(name, "number", "float64", nullable, lo, hi)
    if kinds == {"boolean"}:
        return FieldSpec(name, "boolean", "bool", nullable)
    return FieldSpec(name, "category", str(dtype), nullable, categories=_category_set(values))


def _category_set(values: Any) -> tuple[Any, ...] | None:
    uniq = pd.unique(pd.Series(values).dropna())
    if len(uniq) > MAX_CATEGORIES:
        return None  # free text or an identifier: no category check
    return tuple(sorted((_py(v) for v in uniq), key=lambda v: (type(v).__name__, str(v))))


def _band(lo: float | None, hi: float | None, band: float) -> tuple[float | None, float | None]:
    if lo is None or hi is None:
        return None, None
    width = hi - lo or max(abs(lo), 1.0)
    return lo - band * width, hi + band * width


def _value_kind(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "boolean"
    if isinstance(v, int | float | np.integer | np.floating):
        return "number"
    return "other"


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
                arr[i] = v
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
                    _error(out, Problem("null", spec.expectation(), i, spec.name, values[i]))
        for i in np.flatnonzero(np.isinf(arr)).tolist():
            _error(out, Problem("not_finite", spec.expectation(), i, spec.name, arr[i]))
        issues = _range_issues(contract, spec, np.where(finite, arr, 0.0))
    for i in issues.tolist():
        _error(out, Problem("out_of_range", spec.expectation(), i, spec.name, values[i]))
    if spec.kind == "integer":
        frac = np.flatnonzero(finite & (arr != np.round(arr)))
        for i in frac.tolist():
            _error(out, Problem("wrong_type", spec.expectation(), i, spec.name, values[i]))
        if spec.dtype.startswith(("int", "uint")) and finite.all():
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
                _error(out, Problem("null", spec.expectation(), i, spec.name, v))
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
                _error(out, Problem("null", spec.expectation(), i, spec.name, v))
            continue
        if isinstance(v, np.generic):
            v = v.item()
        if (str_only and not isinstance(v, str)) or isinstance(v, list | dict | tuple):
            _error(out, Problem("wrong_type", spec.expectation(), i, spec.name, v))
            result[i] = None
            continue
        result[i] = v
        if cats is not None and v not in cats:
            problem = Problem("unseen_category", spec.expectation(), i, spec.name, v)
            if contract.unseen == "reject":
                _error(out, problem)
            else:
                out.warnings.append(problem)
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
                _error(out, Problem("null", spec.expectation(), i, spec.name, v))
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


def _error(out: Validated, problem: Problem) -> None:
    out.errors.append(problem)
    if problem.row is not None:
        out.bad_rows[problem.row] = True


# -- formatting ----------------------------------------------------------------------------


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def jsonable(v: Any) -> Any:
    v = _py(v)
    if v is None or v is _MISSING or isinstance(v, bool | int | str):
        return None if v is _MISSING else (v if not isinstance(v, str) else v[:200])
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    text = repr(v)
    return text if len(text) <= 200 else text[:197] + "..."


def _show(v: Any) -> str:
    j = jsonable(v)
    if v is None:
        return "null"
    return repr(j) if isinstance(j, str) and not isinstance(_py(v), float) else str(j)


def _num(x: float) -> str:
    return f"{x:.6g}"


def _clean(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)
