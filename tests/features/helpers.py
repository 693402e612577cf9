"""Helpers for the features tests: a seeded event history, definitions, request rows, and a
registered model with features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import slipway.features as sf
from slipway.features.ingest import ingest

START = pd.Timestamp("2026-01-01", tz="UTC")
INPUTS = ["amount", "txn_count_30d", "avg_amount_7d", "max_amount_1d", "amount_vs_avg"]


def history(n: int = 3000, cards: int = 40, days: int = 60, seed: int = 0) -> pd.DataFrame:
    """Events of ``cards`` cards over ``days`` days at microsecond times, time-ordered."""
    rng = np.random.default_rng(seed)
    us = np.sort(rng.integers(0, days * 86_400_000_000, n))
    return pd.DataFrame(
        {
            "event_id": [f"e{i:06d}" for i in range(n)],
            "card_id": rng.choice([f"c{i:03d}" for i in range(cards)], n),
            "ts": START + pd.to_timedelta(us, unit="us"),
            "amount": rng.lognormal(3, 1, n).round(2),
            "merchant": rng.choice(["grocery", "travel", "gaming"], n),
        }
    )


def definitions(source: sf.EventSource, window: str = "7d", fillna: float | None = 0.0) -> list:
    """The card features (window and fillna of avg_amount_7d changeable) and a row feature."""
    card = sf.FeatureSet("card", entity="card_id", features=[
        sf.Aggregate("txn_count_30d", source, "count", window="30d"),
        sf.Aggregate("avg_amount_7d", source, "mean", column="amount", window=window,
                     fillna=fillna),
        sf.Aggregate("max_amount_1d", source, "max", column="amount", window="1d", fillna=0.0),
    ])  # fmt: skip
    return [card, amount_vs_avg]


@sf.row_feature
def amount_vs_avg(amount, avg_amount_7d):
    """The amount over the card's recent average (0 without one)."""
    return np.where(avg_amount_7d > 0, amount / avg_amount_7d, 0.0)


@dataclass
class FeatureModel:
    """A registered model with features, its events and training frame."""

    events: pd.DataFrame
    train: pd.DataFrame
    source: sf.EventSource
    features: list[Any]


def requests(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: card, ISO time (UTC, Z), amount."""
    return [
        {"card_id": r.card_id, "ts": r.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "amount": r.amount}
        for r in frame.itertuples()
    ]


def make_feature_model(registry: Any, n: int = 3000, **options: Any) -> FeatureModel:
    """Ingest events, train on point-in-time features and register ``fraud`` (production)
    with them."""
    events = history(n)
    source = sf.EventSource("transactions", entity="card_id", timestamp="ts", id="event_id")
    ingest(registry.store, events, source)
    feats = definitions(source)
    labels = events.sample(600, random_state=1).sort_values("ts")
    labels = labels[["card_id", "ts", "amount"]].reset_index(drop=True)
    train = sf.training_frame(labels, feats, at="ts", store=registry.store)
    y = (train.amount > train.avg_amount_7d).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    pipe.fit(train[INPUTS], y)
    registry.register(pipe, "fraud", train, y, features=feats, alias="production", **options)
    return FeatureModel(events, train, source, feats)
