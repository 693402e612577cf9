"""The reference profile of training data, kept with each version for drift checks later.

Per feature: count, null rate, and for numbers mean, standard deviation, range, percentiles
(0..100), deciles and a 20-bin histogram; for categories and booleans their shares. A bounded
random sample of rows is kept alongside, because two-sample tests need raw values.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from slipway.contract import Contract
from slipway.problems import jsonable

HISTOGRAM_BINS = 20
MAX_SHARES = 1_000


def as_frame(X: Any, contract: Contract) -> pd.DataFrame:
    """Training data as a DataFrame with the contract's column names."""
    if isinstance(X, pd.DataFrame):
        return X.loc[:, list(X.columns)]
    return pd.DataFrame(np.asarray(X), columns=contract.names)


def build_profile(frame: pd.DataFrame, contract: Contract) -> dict[str, Any]:
    """Summaries of every contract field in ``frame``."""
    features: dict[str, Any] = {}
    for spec in contract.fields:
        col = frame[spec.name]
        n = len(col)
        nulls = int(col.isna().sum())
        entry: dict[str, Any] = {
            "kind": spec.kind,
            "count": n,
            "null_rate": nulls / n if n else 0.0,
        }
        if spec.kind in ("number", "integer"):
            entry.update(numeric_summary(col.to_numpy(dtype=float, na_value=np.nan)))
        elif spec.kind in ("category", "boolean"):
            shares = col.dropna().astype(object).value_counts(normalize=True)
            entry["n_categories"] = len(shares)
            entry["shares"] = {
                str(jsonable(k)): float(v) for k, v in shares.head(MAX_SHARES).items()
            }
        features[spec.name] = entry
    return {"rows": len(frame), "features": features}


def numeric_summary(values: np.ndarray) -> dict[str, Any]:
    """Moments, percentiles, deciles and a histogram of the finite values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "percentiles": [],
            "deciles": [],
            "histogram": {"edges": [], "counts": []},
        }
    lo, hi = float(finite.min()), float(finite.max())
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1) if hi > lo else np.array([lo, hi])
    counts, edges = np.histogram(finite, bins=edges)
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "min": lo,
        "max": hi,
        "percentiles": np.percentile(finite, np.arange(101)).tolist(),
        "deciles": np.percentile(finite, np.arange(10, 100, 10)).tolist(),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def sample_rows(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """A uniform random sample of at most ``n`` rows, in their original order."""
    if len(frame) <= n:
        return frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(frame), size=n, replace=False))
    return frame.iloc[idx].reset_index(drop=True)


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Serialize a frame to Parquet in memory (column names as strings)."""
    out = frame.copy(deep=False)
    out.columns = [str(c) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col].dropna()}
            if len(kinds) > 1:  # Parquet needs one type per column
                out[col] = out[col].map(lambda v: None if v is None else str(v))
    buf = io.BytesIO()
    out.to_parquet(buf, index=False)
    return buf.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    """Inverse of :func:`to_parquet_bytes`."""
    return pd.read_parquet(io.BytesIO(data))
