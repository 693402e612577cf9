"""The quickstart job: a realistic seeded transactions data set, trained and registered.

`slipway quickstart` writes the data and a train config into a working directory, trains
through the same path as `slipway train`, promotes the result to production and shows its
model card. Later capabilities add their own steps after these.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from slipway.registry import Registry
from slipway.train import train
from slipway.versions import ModelVersion

MERCHANTS = {  # category: (share of transactions, fraud log-odds shift)
    "grocery": (0.30, -0.8),
    "restaurants": (0.18, -0.5),
    "gas": (0.14, -0.3),
    "online_retail": (0.16, 0.4),
    "travel": (0.08, 0.7),
    "electronics": (0.07, 1.0),
    "jewelry": (0.03, 1.4),
    "gaming": (0.04, 1.2),
}
COUNTRIES = {  # country: (share, fraud log-odds shift)
    "US": (0.62, 0.0),
    "GB": (0.10, 0.1),
    "DE": (0.08, 0.1),
    "FR": (0.06, 0.2),
    "BR": (0.05, 0.8),
    "IN": (0.04, 0.7),
    "NG": (0.03, 1.6),
    "RU": (0.02, 1.5),
}
FEATURES = [
    "amount",
    "hour",
    "day_of_week",
    "txn_count_30d",
    "avg_amount_7d",
    "merchant_category",
    "country",
]

CONFIG = """\
# Written by `slipway quickstart`; edit it and run `slipway train {config}`.
name = "fraud"
description = "Quickstart fraud model: gradient boosting on card transactions"
tags = {{ team = "risk", source = "quickstart" }}
alias = "production"

[data]
path = "transactions.csv"
target = "is_fraud"
time_column = "timestamp"
features = {features}

[estimator]
class = "sklearn.ensemble.GradientBoostingClassifier"
params = {{ n_estimators = 100, max_depth = 3, learning_rate = 0.1, random_state = 0 }}

[validation]
fraction = 0.2
cv = 3
seed = 0
"""


def make_transactions(n: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """Card transactions over 60 days with a learnable fraud signal (~2% fraud).

    Fraud is likelier for amounts far above the card's recent average, at night, for risky
    merchant categories and countries, and for cards with little history.
    """
    rng = np.random.default_rng(seed)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    seconds = np.sort(rng.uniform(0, 60 * 24 * 3600, n))
    stamps = [start + timedelta(seconds=float(s)) for s in seconds]
    hour = np.array([s.hour for s in stamps])
    day = np.array([s.weekday() for s in stamps])
    merchant = rng.choice(list(MERCHANTS), n, p=[v[0] for v in MERCHANTS.values()])
    country = rng.choice(list(COUNTRIES), n, p=[v[0] for v in COUNTRIES.values()])
    avg7 = np.round(rng.lognormal(3.6, 0.6, n), 2)
    ratio = rng.lognormal(0.0, 0.7, n)
    amount = np.round(np.clip(avg7 * ratio, 0.5, None), 2)
    count30 = rng.poisson(rng.gamma(3.0, 8.0, n))
    night = ((hour <= 5) | (hour >= 23)).astype(float)
    logit = (
        -3.4
        + 1.8 * np.log(amount / avg7)
        + 1.1 * night
        + np.array([MERCHANTS[m][1] for m in merchant])
        + np.array([COUNTRIES[c][1] for c in country])
        - 0.5 * np.log1p(count30)
        + 0.25 * (day >= 5)
    )
    fraud = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i:07d}" for i in range(n)],
            "timestamp": [s.isoformat() for s in stamps],
            "amount": amount,
            "hour": hour,
            "day_of_week": day,
            "txn_count_30d": count30,
            "avg_amount_7d": avg7,
            "merchant_category": merchant,
            "country": country,
            "is_fraud": fraud.astype(int),
        }
    )


def prepare(workdir: Path, rows: int = 20_000, seed: int = 0) -> Path:
    """Write the data set and a train config into ``workdir``; return the config path."""
    workdir.mkdir(parents=True, exist_ok=True)
    make_transactions(rows, seed).to_csv(workdir / "transactions.csv", index=False)
    config = workdir / "fraud.toml"
    features = "[" + ", ".join(f'"{f}"' for f in FEATURES) + "]"
    config.write_text(CONFIG.format(config=config, features=features))
    return config


def run(registry: Registry, workdir: Path, rows: int = 20_000, seed: int = 0) -> ModelVersion:
    """Generate, train, register and promote the quickstart model."""
    return train(prepare(workdir, rows, seed), registry)
