"""Prediction logs of any size for bench/monitor.py, generated once and cached under /tmp.

A log is the quickstart's fraud model (transactions with 5 numeric and 2 categorical fields,
a logistic regression behind a ColumnTransformer) answering ``rows`` requests spread over the
23 hours before a fixed instant, ``END``, with feedback labels for a tenth of them. Rows are
built column-wise (Arrow writes the JSON text) and loaded in large transactions: ``executemany``
on SQLite, ``COPY`` on PostgreSQL. A finished log leaves a ``ready.json`` beside it and is reused
by later runs; delete ``/tmp/slipway-bench-monitor`` (and the ``bench_monitor_*`` schemas) to
start over.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import sqlalchemy as sa

CACHE = Path("/tmp/slipway-bench-monitor")
GENERATION = 1  # bump when the generated data changes, so old caches are not reused
END = datetime(2026, 3, 2, tzinfo=UTC)
SPAN = timedelta(hours=23)
LABEL_SHARE = 0.1
PIECE = 500_000
MODEL = "fraud"
NUMERIC = ["amount", "hour", "day_of_week", "txn_count_30d", "avg_amount_7d"]
CATEGORIES = {
    "merchant_category": (
        [
            "grocery",
            "restaurants",
            "gas",
            "online_retail",
            "travel",
            "electronics",
            "jewelry",
            "gaming",
        ],
        [0.30, 0.18, 0.14, 0.16, 0.08, 0.07, 0.03, 0.04],
    ),
    "country": (
        ["US", "GB", "DE", "FR", "BR", "IN", "NG", "RU"],
        [0.62, 0.10, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02],
    ),
}


FEATURES = NUMERIC + list(CATEGORIES)


def home_for(backend: str, rows: int) -> Path:
    """The cached registry home of one log (SQLite file and artifacts)."""
    return CACHE / f"{backend}-{rows}-g{GENERATION}"


def schema_for(rows: int) -> str:
    """The PostgreSQL schema of one cached log."""
    return f"bench_monitor_{rows}_g{GENERATION}"


def pg_url(base: str, schema: str) -> str:
    """``base`` with its search_path set to ``schema``."""
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def ensure_log(backend: str, rows: int, pg_base: str | None = None) -> dict:
    """Generate the log unless a finished one is cached; its settings and facts."""
    home = home_for(backend, rows)
    ready = home / "ready.json"
    if ready.exists():
        facts = json.loads(ready.read_text())
        if backend != "postgresql" or _same_server(facts["database_url"], pg_base):
            return facts
        # A log cached on another PostgreSQL server (stopped since): generate it on this one.
    shutil.rmtree(home, ignore_errors=True)
    database_url = None
    if backend == "postgresql":
        assert pg_base, "a PostgreSQL log needs a server URL"
        schema = schema_for(rows)
        engine = sa.create_engine(pg_base)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        engine.dispose()
        database_url = pg_url(pg_base, schema)
    started = time.perf_counter()
    registry = _register(home, database_url)
    pipe = registry.load(MODEL).pipeline
    labels = _load(registry, pipe, backend, rows)
    facts = {
        "backend": backend,
        "rows": rows,
        "labels": labels,
        "home": str(home),
        "database_url": database_url,
        "end": END.isoformat(),
        "generate_seconds": time.perf_counter() - started,
    }
    registry.store.dispose()
    ready.write_text(json.dumps(facts))
    return facts


def _same_server(cached: str, base: str | None) -> bool:
    """Whether a cached PostgreSQL log lives on the server ``base`` names (host and port)."""
    if base is None:
        return False
    a, b = sa.make_url(cached), sa.make_url(base)
    return (a.host, a.port, a.database) == (b.host, b.port, b.database)


def _register(home: Path, database_url: str | None):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from slipway.config import Settings
    from slipway.registry import Registry

    # The training rows come from the same generator as the log (the quickstart's old
    # make_transactions, which the first cached logs used, is gone); the target leans on the
    # amount, the merchant category and the country, as fraud does.
    X = pd.DataFrame(transactions(20_000, seed=0))
    rng = np.random.default_rng(1)
    risky = X["merchant_category"].isin(["jewelry", "gaming", "electronics"])
    logit = -4 + 0.004 * X["amount"] + 1.2 * risky + 1.0 * X["country"].isin(["NG", "RU"])
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    cut = 16_000
    pipe = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), NUMERIC),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORIES)),
            ]
        ),
        LogisticRegression(max_iter=1000),
    ).fit(X[:cut], y[:cut])
    registry = Registry(Settings(home=home, database_url=database_url, user="bench"))
    registry.register(
        pipe, MODEL, X[:cut], y[:cut], X_val=X[cut:], y_val=y[cut:], alias="production"
    )
    return registry


def transactions(n: int, seed: int) -> dict[str, np.ndarray]:
    """Synthetic transactions shaped like the quickstart's (vectorized, any size)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    avg7 = np.round(rng.lognormal(3.6, 0.6, n), 2)
    out["amount"] = np.round(np.clip(avg7 * rng.lognormal(0.0, 0.7, n), 0.5, None), 2)
    out["hour"] = rng.integers(0, 24, n)
    out["day_of_week"] = rng.integers(0, 7, n)
    out["txn_count_30d"] = rng.poisson(rng.gamma(3.0, 8.0, n))
    out["avg_amount_7d"] = avg7
    for name, (values, shares) in CATEGORIES.items():
        out[name] = np.array(values, dtype=object)[rng.choice(len(values), n, p=shares)]
    return out


def _json_object(parts: list[tuple[str, pa.Array]]) -> pa.Array:
    """One JSON object per row from (key, text-or-number array) pairs, built by Arrow."""
    pieces: list = []
    for i, (key, values) in enumerate(parts):
        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        pieces += [("{" if i == 0 else ",") + json.dumps(key) + ":", text]
    return pc.binary_join_element_wise(*pieces, "}", "")


def _quoted(values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise('"', pa.array(values, pa.string()), '"', "")


def _load(registry, pipe, backend: str, rows: int) -> int:
    """Log ``rows`` predictions and label a tenth of them; the number of labels."""
    import pandas as pd

    start = END - SPAN
    step_us = SPAN / timedelta(microseconds=1) / max(rows, 1)
    labels = 0
    conn = _Loader(registry, backend)
    try:
        for piece, lo in enumerate(range(0, rows, PIECE)):
            n = min(PIECE, rows - lo)
            cols = transactions(n, seed=1000 + piece)
            frame = pd.DataFrame({f: cols[f] for f in FEATURES})  # the model's inputs
            proba = pipe.predict_proba(frame)
            label = (proba[:, 1] >= 0.5).astype(np.int64)
            offsets = (np.arange(lo, lo + n) * step_us).astype("timedelta64[us]")
            created = np.datetime64(start.replace(tzinfo=None), "us") + offsets
            ids = np.array([f"00000000-0000-7000-8000-{i:012d}" for i in range(lo, lo + n)])
            inputs = _json_object(
                [(f, pa.array(cols[f])) for f in NUMERIC]
                + [(f, _quoted(cols[f])) for f in CATEGORIES]
            )
            outputs = _json_object(
                [
                    ("label", pa.array(label)),
                    (
                        "probabilities",
                        _json_object([("0", pa.array(proba[:, 0])), ("1", pa.array(proba[:, 1]))]),
                    ),
                ]
            )
            stamps = pc.strftime(pa.array(created), "%Y-%m-%d %H:%M:%S")
            conn.predictions(ids, stamps, inputs, outputs)
            rng = np.random.default_rng(5000 + piece)
            chosen = np.flatnonzero(rng.random(n) < LABEL_SHARE)
            truth = (rng.random(chosen.size) < proba[chosen, 1]).astype(np.int64)
            delay = rng.uniform(3600, 2 * 86400, chosen.size).astype("timedelta64[s]")
            received = created[chosen] + delay
            conn.feedback(
                ids[chosen],
                pc.cast(pa.array(truth), pa.string()),
                pc.strftime(pa.array(received.astype("datetime64[us]")), "%Y-%m-%d %H:%M:%S"),
            )
            labels += chosen.size
    finally:
        conn.close()
    return labels


class _Loader:
    """Bulk loads into the store's own tables, bypassing the product's per-request writer."""

    def __init__(self, registry, backend: str) -> None:
        self.backend = backend
        if backend == "sqlite":
            path = registry.settings.home / "slipway.db"
            registry.store.dispose()
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA synchronous = OFF")
        else:
            self.engine = registry.store.engine

    def predictions(self, ids, stamps, inputs, outputs) -> None:
        n = len(ids)
        if self.backend == "sqlite":
            rows = zip(
                ids.tolist(),
                stamps.to_pylist(),
                inputs.to_pylist(),
                outputs.to_pylist(),
                strict=True,
            )
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO predictions (prediction_id, created_at, model_name, version, "
                f"inputs, outputs, latency_ms) VALUES (?, ?, '{MODEL}', 1, ?, ?, 1.0)",
                rows,
            )
            self.db.execute("COMMIT")
            return
        table = pa.table(
            {
                "prediction_id": pa.array(ids, pa.string()),
                "created_at": stamps,
                "model_name": pa.array(np.full(n, MODEL), pa.string()),
                "version": pa.array(np.ones(n, dtype=np.int64)),
                "inputs": inputs,
                "outputs": outputs,
                "latency_ms": pa.array(np.ones(n)),
            }
        )
        self._copy("predictions", table)

    def feedback(self, ids, labels, received) -> None:
        if self.backend == "sqlite":
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO feedback (prediction_id, label, received_at) VALUES (?, ?, ?)",
                zip(ids.tolist(), labels.to_pylist(), received.to_pylist(), strict=True),
            )
            self.db.execute("COMMIT")
            return
        table = pa.table(
            {"prediction_id": pa.array(ids, pa.string()), "label": labels, "received_at": received}
        )
        self._copy("feedback", table)

    def _copy(self, name: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False))
        columns = ", ".join(table.column_names)
        with self.engine.begin() as conn:
            raw = conn.connection.driver_connection
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY {name} ({columns}) FROM STDIN (FORMAT csv)") as cp,
            ):
                cp.write(buf.getbuffer())

    def close(self) -> None:
        if self.backend == "sqlite":
            self.db.execute("ANALYZE")
            self.db.close()
        else:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE predictions")
                conn.exec_driver_sql("ANALYZE feedback")
