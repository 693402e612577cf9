"""What the prediction log and the contract refusals add up to, per time bucket and version.

The console's live-traffic page plots these. Rows are grouped in the database (one pass over
the ``(model_name, created_at)`` index), so a day of traffic comes back as a few thousand
numbers, not millions of rows. Latency is kept as counts at or under fixed bounds, from
which the caller interpolates percentiles as Prometheus does with its histograms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from slipway.store.engine import Store
from slipway.store.schema import predictions, validation_failures

# Milliseconds; the same bounds as the service's latency histograms.
LATENCY_BOUNDS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True)
class PredictionBucket:
    """Predictions of one model version logged in one time bucket."""

    model: str
    version: int
    start: datetime
    predictions: int
    # Predictions whose request took at most LATENCY_BOUNDS_MS[i] milliseconds.
    at_most: tuple[int, ...]


@dataclass(frozen=True)
class RefusalBucket:
    """Requests one model version refused for breaking its contract, in one time bucket."""

    model: str
    version: int
    start: datetime
    requests: int
    rows: int


def prediction_buckets(
    store: Store, start: datetime, end: datetime, step_seconds: int, models: Sequence[str] = ()
) -> list[PredictionBucket]:
    """Logged predictions in [start, end) by model, version and bucket of ``step_seconds``."""
    bucket = _bucket(store, predictions.c.created_at, step_seconds)
    at_most = [
        sa.func.sum(sa.case((predictions.c.latency_ms <= b, 1), else_=0)) for b in LATENCY_BOUNDS_MS
    ]
    query = (
        sa.select(
            predictions.c.model_name, predictions.c.version, bucket, sa.func.count(), *at_most
        )
        .where(predictions.c.created_at >= start, predictions.c.created_at < end)
        .group_by(predictions.c.model_name, predictions.c.version, bucket)
        .order_by(bucket)
    )
    if models:
        query = query.where(predictions.c.model_name.in_(list(models)))
    with store.read() as conn:
        rows = conn.execute(query).all()
    return [
        PredictionBucket(
            r[0], int(r[1]), _start(r[2], step_seconds), int(r[3]), tuple(int(c) for c in r[4:])
        )
        for r in rows
    ]


def refusal_buckets(
    store: Store, start: datetime, end: datetime, step_seconds: int, models: Sequence[str] = ()
) -> list[RefusalBucket]:
    """Contract refusals (HTTP 422) in [start, end) by model, version and bucket."""
    t = validation_failures
    bucket = _bucket(store, t.c.created_at, step_seconds)
    query = (
        sa.select(t.c.model_name, t.c.version, bucket, sa.func.count(), sa.func.sum(t.c.rows))
        .where(t.c.created_at >= start, t.c.created_at < end)
        .group_by(t.c.model_name, t.c.version, bucket)
        .order_by(bucket)
    )
    if models:
        query = query.where(t.c.model_name.in_(list(models)))
    with store.read() as conn:
        rows = conn.execute(query).all()
    return [
        RefusalBucket(r[0], int(r[1]), _start(r[2], step_seconds), int(r[3]), int(r[4] or 0))
        for r in rows
    ]


def _bucket(store: Store, column: Any, step_seconds: int) -> Any:
    """Whole seconds since the epoch (UTC), floor-divided by the step: the bucket number."""
    if store.dialect == "postgresql":
        # created_at is a timestamp without zone holding UTC: its epoch is UTC's.
        seconds = sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger)
    else:
        seconds = sa.cast(sa.func.strftime("%s", column), sa.BigInteger)
    return (seconds // int(step_seconds)).label("bucket")


def _start(bucket: Any, step_seconds: int) -> datetime:
    return datetime.fromtimestamp(int(bucket) * step_seconds, UTC)
