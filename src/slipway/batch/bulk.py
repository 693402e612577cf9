"""A scored chunk's columns as ``batch_predictions`` stores them, built for bulk loads.

The JSON text of ``label`` and ``probabilities`` is assembled column-wise by Arrow compute,
and rows go in key order so the primary-key index is filled in order rather than at random.
The loads themselves (``executemany`` on SQLite, ``COPY`` on PostgreSQL) are
:func:`slipway.store.batch.write_chunk`'s.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from slipway.batch.scoring import PROBA_PREFIX, ScoredChunk
from slipway.contract import jsonable


def db_columns(chunk: ScoredChunk) -> dict[str, pa.Array]:
    """The chunk's key, label, probabilities and value as the database stores them.

    ``label`` is JSON text of the class, ``probabilities`` JSON text of {class: p} as in
    ``Predictions.records()``; both are built column-wise by Arrow, not row by row.
    """
    # Rows in key order: the primary key index (model_name, key, run_id) then takes each
    # chunk's entries in order instead of at random, which roughly halves PostgreSQL's load
    # time and helps SQLite's.
    table = chunk.predictions
    table = table.take(pc.sort_indices(table["key"]))
    n = table.num_rows
    names = table.column_names
    out: dict[str, pa.Array] = {"key": table["key"].combine_chunks()}
    out["label"] = _label_json(table["label"]) if "label" in names else pa.nulls(n, pa.string())
    proba = [c for c in names if c.startswith(PROBA_PREFIX)]
    out["probabilities"] = _proba_json(table, proba) if proba else pa.nulls(n, pa.string())
    value = table["value"].combine_chunks() if "value" in names else pa.nulls(n, pa.float64())
    out["value"] = value
    return out


def _label_json(labels: pa.ChunkedArray) -> pa.Array:
    encoded = pc.dictionary_encode(labels.combine_chunks())
    texts = [orjson.dumps(jsonable(v)).decode() for v in encoded.dictionary.to_pylist()]
    return pa.array(texts, pa.string()).take(encoded.indices)


def _proba_json(table: pa.Table, columns: list[str]) -> pa.Array:
    arrays = [table[c].combine_chunks() for c in columns]
    keys = [orjson.dumps(c[len(PROBA_PREFIX) :]).decode() for c in columns]
    if all(pc.all(pc.is_finite(a)).as_py() is not False for a in arrays):
        parts: list[Any] = []
        for i, (key, arr) in enumerate(zip(keys, arrays, strict=True)):
            parts += [("{" if i == 0 else ", ") + key + ": ", pc.cast(arr, pa.string())]
        return pc.binary_join_element_wise(*parts, "}", "")
    # NaN or infinity cannot be JSON numbers: spell them as jsonable() does, row by row.
    rows = zip(*(a.to_pylist() for a in arrays), strict=True)
    plain = [c[len(PROBA_PREFIX) :] for c in columns]
    texts = [orjson.dumps({k: jsonable(v) for k, v in zip(plain, r, strict=True)}) for r in rows]
    return pa.array([t.decode() for t in texts], pa.string())
