"""One feature of one sample, prepared once for every comparison it takes part in.

Numbers are kept as their sorted finite values (NaN, None and infinities count as missing);
categories as counts per category, keyed by the category's text, so ``True`` read from a
Parquet reference and ``true`` read from the JSON prediction log are the same category.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from slipway.monitoring import stats

Kind = Literal["numeric", "categorical", "skipped"]


@dataclass(frozen=True)
class Column:
    """A prepared feature: its kind, its row count, and its non-missing values."""

    kind: Kind
    rows: int
    values: np.ndarray  # numeric: sorted finite float64 values; categorical: unused (empty)
    categories: np.ndarray  # categorical: category texts, sorted; numeric: empty
    counts: np.ndarray  # categorical: count per category; numeric: empty

    @property
    def present(self) -> int:
        """How many rows hold a usable value."""
        return int(self.values.size if self.kind == "numeric" else self.counts.sum())

    @property
    def null_rate(self) -> float:
        """Share of rows without a usable value (0 for an empty sample)."""
        return 1 - self.present / self.rows if self.rows else 0.0

    @cached_property
    def mean(self) -> float:
        """Mean of the values (numeric)."""
        return float(self.values.mean()) if self.values.size else float("nan")

    @cached_property
    def std(self) -> float:
        """Population standard deviation of the values (numeric)."""
        return float(self.values.std()) if self.values.size else float("nan")

    @cached_property
    def var(self) -> float:
        """Sample variance of the values (numeric; 0 for one value)."""
        return float(self.values.var(ddof=1)) if self.values.size > 1 else 0.0

    @cached_property
    def deciles(self) -> np.ndarray:
        """Distinct inner decile edges of the values (numeric), the PSI's bins."""
        return stats.decile_edges(self.values)

    @cached_property
    def decile_shares(self) -> np.ndarray:
        """Shares of the values in the bins of their own deciles (numeric)."""
        return stats.bin_shares(self.values, self.deciles)

    @property
    def constant(self) -> bool:
        """Whether every present value is the same."""
        if self.kind == "numeric":
            return self.values.size > 0 and self.values[0] == self.values[-1]
        return int((self.counts > 0).sum()) == 1


def numeric(values: Any) -> Column:
    """Prepare numbers: coerce, drop missing and non-finite values, sort."""
    arr = as_float(values)
    finite = arr[np.isfinite(arr)]  # a copy of its own, sorted in place: no second copy
    finite.sort()
    empty = np.empty(0)
    return Column("numeric", arr.size, finite, empty.astype(object), empty.astype(np.int64))


def categorical(values: Any) -> Column:
    """Prepare categories: count each distinct non-missing value by its text."""
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        return _from_codes(pd.Categorical(values))
    series = pd.Series(np.asarray(values, dtype=object) if not hasattr(values, "dtype") else values)
    rows = len(series)
    present = series.dropna()
    if present.dtype == object:
        present = present[present.map(lambda v: not is_missing(v))]
    counts = present.astype(str).value_counts(sort=False)
    order = np.argsort(counts.index.to_numpy(dtype=object).astype(str))
    categories = counts.index.to_numpy(dtype=object)[order]
    return Column(
        "categorical",
        rows,
        np.empty(0),
        categories,
        counts.to_numpy(dtype=np.int64)[order],
    )


def _from_codes(values: pd.Categorical) -> Column:
    """:func:`categorical` of a pandas Categorical, counted from its codes: the same column,
    without a Python object per row."""
    codes = np.asarray(values.codes)
    counts = np.bincount(codes[codes >= 0], minlength=len(values.categories))
    texts = np.array([str(c) for c in values.categories], dtype=object)
    keep = counts > 0
    texts, counts = texts[keep], counts[keep]
    if len(set(texts.tolist())) < texts.size:  # two categories with one text (1 and "1")
        summed = pd.Series(counts, index=texts).groupby(level=0, sort=False).sum()
        texts, counts = summed.index.to_numpy(dtype=object), summed.to_numpy()
    order = np.argsort(texts.astype(str))
    return Column(
        "categorical",
        len(codes),
        np.empty(0),
        texts[order],
        counts.astype(np.int64)[order],
    )


def skipped(rows: int) -> Column:
    """A feature that is not compared (e.g. date-times, which always move)."""
    empty = np.empty(0)
    return Column("skipped", rows, empty, empty.astype(object), empty.astype(np.int64))


def infer_kind(series: pd.Series) -> Kind:
    """Numeric for number columns (not booleans), skipped for date-times, else categorical."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "skipped"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_object_dtype(dtype):
        sample = series.dropna().head(1000)
        if len(sample) and all(
            isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            for v in sample
        ):
            return "numeric"
    return "categorical"


def prepare(series: pd.Series, kind: Kind) -> Column:
    """Prepare one column of a frame as the given kind."""
    if kind == "numeric":
        return numeric(series)
    if kind == "categorical":
        return categorical(series)
    return skipped(len(series))


def as_frame(data: Any, names: Sequence[str] | None = None) -> pd.DataFrame:
    """A DataFrame from a frame, a mapping of columns, a 2-D array or a 1-D array.

    Arrays get the names ``feature_0``, ``feature_1``, ... (or ``names`` when given), like
    models registered from arrays.
    """
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, pd.Series):
        frame = data.to_frame(name=str(data.name) if data.name is not None else "feature_0")
    elif isinstance(data, Mapping):
        frame = pd.DataFrame(dict(data))
    else:
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise ValueError(f"expected a frame or a 1-D or 2-D array, got shape {arr.shape}")
        cols = list(names) if names is not None else [f"feature_{i}" for i in range(arr.shape[1])]
        frame = pd.DataFrame(arr, columns=cols)
    frame = frame.copy(deep=False)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def as_float(values: Any) -> np.ndarray:
    """Values as float64: numbers as they are, anything else coerced (NaN when it is not one)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        return values.astype(np.float64, copy=False)
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    if series.dtype.kind in "iufb" or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def is_missing(value: Any) -> bool:
    """Whether a value counts as missing: None, pandas' NA and NaT, or a float NaN."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and value != value
