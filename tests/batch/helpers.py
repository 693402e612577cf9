"""Reading back what a batch run wrote, to check it against the input row by row."""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from slipway.store.schema import batch_predictions, batch_rejects
from slipway.testing import transactions

# Rows of every generated input that break the contract: an amount beyond any plausible
# band, and a merchant category never seen in training.
BAD_AMOUNT_ROW = 3
BAD_MERCHANT_ROW = 11


def input_frame(n: int, seed: int = 1, *, bad: bool = True) -> pd.DataFrame:
    """Transactions keyed by txn_id, with an extra column the model does not take."""
    frame, _ = transactions(n, seed)
    frame.insert(0, "txn_id", [f"t{seed}-{i:06d}" for i in range(n)])
    frame["note"] = "ignored"
    if bad:
        frame.loc[BAD_AMOUNT_ROW, "amount"] = 1e15
        frame.loc[BAD_MERCHANT_ROW, "merchant"] = "casino"
    return frame


def stored_predictions(store, run_id: str) -> pd.DataFrame:
    """A run's rows in batch_predictions, as a frame keyed by `key` (JSON columns decoded)."""
    query = sa.select(batch_predictions).where(batch_predictions.c.run_id == run_id)
    with store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    frame = pd.DataFrame(rows, columns=[c.name for c in batch_predictions.columns])
    return frame.set_index("key", drop=False)


def stored_rejects(store, run_id: str) -> pd.DataFrame:
    """A run's rows in batch_rejects, by row number."""
    query = sa.select(batch_rejects).where(batch_rejects.c.run_id == run_id)
    with store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    frame = pd.DataFrame(rows, columns=[c.name for c in batch_rejects.columns])
    return frame.set_index("row_number", drop=False)


def parquet_rejects(path) -> pd.DataFrame:
    """Rejects written beside a Parquet output, JSON columns decoded."""
    frame = pd.read_parquet(path)
    frame["row"] = frame["row"].map(json.loads)
    frame["reasons"] = frame["reasons"].map(json.loads)
    return frame.set_index("row_number", drop=False)
