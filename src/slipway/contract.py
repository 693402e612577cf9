"""The input contract a model learns from its training data, and validation against it.

A contract records, per input column, its name and position, kind of value, observed range,
category set and whether nulls were seen. :meth:`Contract.validate` checks rows against it
and reports *every* problem at once, each naming the row, the field, the value and what was
expected, the way a reviewer would write it on the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from slipway.exceptions import ConfigError, InvalidModel
from slipway.problems import jsonable, py_value
from slipway.validation import FastPlan, Validated, validate

Kind = Literal["number", "integer", "boolean", "category", "datetime"]
Unseen = Literal["reject", "flag"]
MAX_CATEGORIES = 10_000


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
    # What an unseen category of this field gets (None: the contract's ``unseen``).
    unseen: Unseen | None = None
    # Why nulls are allowed (None: they are not) and why unseen categories are flagged, in
    # words for the model card: "in the training data", "SimpleImputer (step pre__num)", ...
    null_reason: str | None = None
    unseen_reason: str | None = None
    range_reason: str | None = None

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

    def how_to_allow(self, code: str) -> str:
        """What the model's owner can do about a refused null or unseen category."""
        if code == "null":
            return (
                f"; nulls are refused for this field: if the pipeline handles them (e.g. with a "
                f"SimpleImputer), register the model with nullable=[{self.name!r}]"
            )
        if code == "unseen_category":
            return (
                f"; unseen categories are refused: if the pipeline tolerates them (e.g. "
                f"OneHotEncoder(handle_unknown='ignore')), register the model with "
                f"unseen={{{self.name!r}: 'flag'}}"
            )
        return ""


@dataclass(frozen=True)
class Contract:
    """The input contract of a model: the fields it takes, learned from ``X_train``.

    ``unseen`` decides what happens to a category never seen in training: ``"reject"`` makes it
    an error, ``"flag"`` lets it through with a warning (the pipeline must then tolerate it,
    e.g. ``OneHotEncoder(handle_unknown="ignore")``); a field's own ``unseen`` overrides it.
    The plausibility band of a numeric field is its training range widened by ``band`` times
    its width on each side; any value with magnitude above ``abs_limit`` is rejected regardless.
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
        unseen: Unseen | Mapping[str, Unseen] | None = "reject",
        band: float = 10.0,
        abs_limit: float = 1e12,
        bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
        nullable: Iterable[str] | Mapping[str, bool] = (),
        ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
        tolerated: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Contract:
        """Learn the contract from training data (a DataFrame or a 2-D array).

        What the data shows can be overridden per field:

        - ``nullable``: fields that accept nulls although training had none (a list), or a
          mapping ``{field: False}`` to refuse nulls a pipeline step would handle;
        - ``unseen``: ``"reject"`` or ``"flag"`` for every category field, or a mapping
          ``{field: "flag"}`` for chosen fields (the others keep the default, ``"reject"``);
        - ``ranges`` (``bounds`` is the older name): explicit ``(low, high)`` limits of numeric
          fields instead of the plausibility band; None leaves that side open.

        ``tolerated`` is what the fitted pipeline handles (see :mod:`slipway.tolerance`):
        ``{field: {"null": why, "unseen": why}}``. It allows nulls and flags unseen categories of
        those fields unless an override says otherwise (``unseen`` given as one string applies
        to every field and overrides it too). The reason for each decision is recorded.
        """
        per_field_unseen: Mapping[str, Unseen] = {}
        if isinstance(unseen, Mapping):
            per_field_unseen, unseen = dict(unseen), None
        if unseen not in ("reject", "flag", None):
            raise ConfigError(f"unseen must be 'reject' or 'flag', not {unseen!r}.")
        if isinstance(X, pd.DataFrame):
            frame, kind, array_dtype = X, "frame", "float64"
        else:
            arr = np.asarray(X)
            if arr.ndim != 2:
                raise InvalidModel(f"X_train must be 2-D; got an array of shape {arr.shape}.")
            names = [f"feature_{i}" for i in range(arr.shape[1])]
            frame, kind, array_dtype = pd.DataFrame(arr, columns=names), "array", str(arr.dtype)
        columns = [str(c) for c in frame.columns]
        unknown = sorted(set(bounds or {}) - set(columns))
        if unknown:
            raise InvalidModel(
                f"bounds name columns that X_train does not have: {unknown}; "
                f"its columns are {columns[:20]}."
            )
        nulls = dict(nullable) if isinstance(nullable, Mapping) else dict.fromkeys(nullable, True)
        limits = _merge_ranges(bounds, ranges)
        _check_names("nullable", nulls, columns)
        _check_names("unseen", per_field_unseen, columns)
        _check_names("ranges", limits, columns)
        for name, policy in per_field_unseen.items():
            if policy not in ("reject", "flag"):
                raise ConfigError(f"unseen[{name!r}] must be 'reject' or 'flag', not {policy!r}.")
        handled = tolerated or {}
        specs = []
        for col in frame.columns:
            spec = _learn_field(str(col), frame[col])
            changes: dict[str, Any] = {}
            if spec.kind in ("number", "integer"):
                if spec.name in limits:
                    changes["low"], changes["high"] = limits[spec.name]
                    changes["range_reason"] = "set at registration (ranges=)"
                else:
                    changes["low"], changes["high"] = _band(spec.min, spec.max, band)
            changes.update(_null_decision(spec, nulls, handled.get(spec.name, {})))
            if spec.kind == "category":
                tolerates = handled.get(spec.name, {})
                changes.update(_unseen_decision(spec.name, unseen, per_field_unseen, tolerates))
            specs.append(FieldSpec(**{**asdict(spec), **changes}))
        return cls(
            tuple(specs),
            kind,  # type: ignore[arg-type]
            array_dtype,
            unseen or "reject",
            band,
            abs_limit,
        )

    def unseen_for(self, spec: FieldSpec) -> Unseen:
        """What an unseen category of ``spec`` gets: its own policy, else the contract's."""
        return spec.unseen or self.unseen

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
            elif f.categories is not None and self.unseen_for(f) == "reject":
                s = {"enum": [jsonable(c) for c in f.categories]}
                if all(isinstance(c, str) for c in f.categories):
                    s = {"type": "string", **s}
            elif f.categories is None or all(isinstance(c, str) for c in f.categories):
                s = {"type": "string"}
            else:  # mixed categories, unseen ones flagged: any scalar of the training kinds
                s = {"type": ["string", "number", "boolean"]}
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
        return validate(self, rows)

    def validate_clean(self, rows: Any) -> Validated | None:
        """Validated rows when every value is clean and of the exact type (the fast path), else
        None; unlike :meth:`validate` it never describes problems, so it costs little to try."""
        return self.plan.try_fast(self, rows)

    @cached_property
    def plan(self) -> FastPlan:
        """Precomputed arrays for the validation fast path (built on first use)."""
        return FastPlan(self)


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


def _merge_ranges(
    bounds: Mapping[str, tuple[float | None, float | None]] | None,
    ranges: Mapping[str, tuple[float | None, float | None]] | None,
) -> dict[str, tuple[float | None, float | None]]:
    both = set(bounds or {}) & set(ranges or {})
    if both:
        raise ConfigError(
            f"bounds and ranges both set {sorted(both)}; ranges replaces bounds: give only ranges"
        )
    out = {**(bounds or {}), **(ranges or {})}
    for name, limits in out.items():
        try:
            low, high = limits
        except (TypeError, ValueError):
            raise ConfigError(
                f"ranges[{name!r}] must be a (low, high) pair, got {limits!r}"
            ) from None
        if low is not None and high is not None and low > high:
            raise ConfigError(f"ranges[{name!r}] has low {low} above high {high}")
    return {name: (lo, hi) for name, (lo, hi) in out.items()}


def _check_names(option: str, given: Mapping[str, Any], columns: list[str]) -> None:
    unknown = sorted(set(given) - set(columns))
    if unknown:
        shown = ", ".join(columns[:10]) + (", ..." if len(columns) > 10 else "")
        raise InvalidModel(
            f"{option} names columns not in X_train: {unknown} (columns: {shown}); "
            "fix the name or drop it."
        )


def _null_decision(
    spec: FieldSpec, nulls: Mapping[str, bool], handled: Mapping[str, str]
) -> dict[str, Any]:
    """Whether a field takes nulls, and why: an override, the data, or the pipeline."""
    if spec.name in nulls:
        allowed = bool(nulls[spec.name])
        why = "set at registration (nullable=)" if allowed else None
        return {"nullable": allowed, "null_reason": why}
    if spec.nullable:
        return {"null_reason": "in the training data"}
    if "null" in handled:
        return {"nullable": True, "null_reason": f"handled by {handled['null']}"}
    return {}


def _unseen_decision(
    name: str, default: Unseen | None, per_field: Mapping[str, Unseen], handled: Mapping[str, str]
) -> dict[str, Any]:
    """What an unseen category of a field gets, and why."""
    if name in per_field:
        policy = per_field[name]
        why = "set at registration (unseen=)" if policy == "flag" else None
        return {"unseen": policy, "unseen_reason": why}
    if default is not None:
        return {"unseen_reason": "set at registration (unseen=)" if default == "flag" else None}
    if "unseen" in handled:
        return {"unseen": "flag", "unseen_reason": f"handled by {handled['unseen']}"}
    return {}


def _category_set(values: Any) -> tuple[Any, ...] | None:
    uniq = pd.unique(pd.Series(values).dropna())
    if len(uniq) > MAX_CATEGORIES:
        return None  # free text or an identifier: no category check
    return tuple(sorted((py_value(v) for v in uniq), key=lambda v: (type(v).__name__, str(v))))


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


def _num(x: float) -> str:
    return f"{x:.6g}"


def _clean(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)
