"""The quickstart job: a realistic seeded transactions data set, trained and registered.

`slipway quickstart` writes the data and a train config into a working directory, trains
through the same path as `slipway train`, promotes the result to production and shows its
model card. Then :func:`serve_and_call` starts `slipway serve` on a free loopback port with a
temporary API key, sends predictions and their feedback, stops the server (SIGTERM, so the
prediction log is flushed) and revokes the key. Later capabilities add their own steps.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.store.predictions import logged_ids

if TYPE_CHECKING:
    from slipway.batch import BatchRun
    from slipway.monitoring import DriftReport

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


@dataclass
class ServingDemo:
    """What the quickstart's serving steps sent and got back."""

    url: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    feedback: dict[str, Any] = field(default_factory=dict)
    feedback_again: dict[str, Any] = field(default_factory=dict)
    logged: int = 0
    traffic: int = 0  # further rows predicted (with feedback) so monitoring has a window

    def curl(self, url: str = "http://127.0.0.1:8000") -> str:
        """A curl command predicting the first row against a server at ``url``."""
        body = json.dumps({"instances": self.rows[:1]})
        return (
            f"curl -s -H \"Authorization: Bearer $SLIPWAY_KEY\" -d '{body}' "
            f"{url}/v1/models/fraud/predict"
        )


def serve_and_call(
    registry: Registry,
    workdir: Path,
    n: int = 3,
    on_step: Callable[[str], None] = lambda _: None,
    traffic: int = 1000,
) -> ServingDemo:
    """Start `slipway serve`, predict ``n`` recent transactions (one a fraud), send their labels,
    then ``traffic`` more recent transactions with their labels, and stop the server."""
    from slipway.serving.process import ServerFailed, ServerProcess

    data = pd.read_csv(workdir / "transactions.csv")
    frauds = data.index[data["is_fraud"] == 1][-1:]
    data = data.loc[sorted([*data.index[data["is_fraud"] == 0][-(n - len(frauds)) :], *frauds])]
    demo = ServingDemo(
        rows=json.loads(data[FEATURES].to_json(orient="records")),
        labels=data["is_fraud"].astype(int).tolist(),
    )
    settings = registry.settings
    env = {
        "SLIPWAY_HOME": str(Path(settings.home).resolve()),
        "SLIPWAY_DATABASE_URL": settings.database_url or "",
    }
    keys = KeyStore(registry.store)
    name = f"quickstart-{secrets.token_hex(3)}"
    _, token = keys.create(name, "predict")
    try:
        for attempt in (1, 2):  # a second try on another port if the first was taken meanwhile
            server = ServerProcess(["--model", "fraud"], env=env, log_dir=workdir / "server")
            on_step(f"starting slipway serve on {server.url} with a temporary key {name!r}")
            try:
                server.start()
                break
            except ServerFailed:
                if attempt == 2:
                    raise
        try:
            demo.url = server.url
            demo.predictions, demo.feedback, demo.feedback_again = _calls(server.url, token, demo)
            on_step(f"sending {traffic:,} more recent transactions, then their true labels")
            demo.traffic = _traffic(server.url, token, workdir, traffic)
        finally:
            server.stop()
        ids = [p["prediction_id"] for p in demo.predictions["predictions"]]
        demo.logged = len(logged_ids(registry.store, ids))
    finally:
        keys.revoke(name)
    return demo


def _calls(url: str, token: str, demo: ServingDemo) -> tuple[dict[str, Any], ...]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        answer = client.post("/v1/models/fraud/predict", json={"instances": demo.rows})
        answer.raise_for_status()
        predicted = answer.json()
        body = {
            "feedback": [
                {"prediction_id": p["prediction_id"], "label": label}
                for p, label in zip(predicted["predictions"], demo.labels, strict=True)
            ]
        }
        first = client.post("/v1/feedback", json=body).json()
        again = client.post("/v1/feedback", json=body).json()
    return predicted, first, again


def recent(workdir: Path, n: int, seed: int = 1) -> pd.DataFrame:
    """``n`` transactions drawn from the latest fifth of the data (the validation period)."""
    data = pd.read_csv(workdir / "transactions.csv")
    latest = data.iloc[-max(n, len(data) // 5) :]
    return latest.sample(n=min(n, len(latest)), random_state=seed).sort_index()


def _traffic(url: str, token: str, workdir: Path, n: int, per_request: int = 100) -> int:
    import httpx

    data = recent(workdir, n)
    sent = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        for lo in range(0, len(data), per_request):
            part = data.iloc[lo : lo + per_request]
            rows = json.loads(part[FEATURES].to_json(orient="records"))
            answer = client.post("/v1/models/fraud/predict", json={"instances": rows}, timeout=30)
            answer.raise_for_status()
            ids = [p["prediction_id"] for p in answer.json()["predictions"]]
            labels = part["is_fraud"].astype(int).tolist()
            feedback = [{"prediction_id": i, "label": y} for i, y in zip(ids, labels, strict=True)]
            client.post("/v1/feedback", json={"feedback": feedback}, timeout=30).raise_for_status()
            sent += len(rows)
    return sent


def batch_demo(registry: Registry, workdir: Path, n: int = 5000) -> tuple[BatchRun, Any]:
    """Score ``n`` recent transactions into the database, keyed by transaction id, and look one
    up the way `GET /v1/models/fraud/predictions/{key}` does."""
    from slipway.batch import latest_prediction, score_file

    path = workdir / "recent.parquet"
    recent(workdir, n, seed=2)[["transaction_id", *FEATURES]].to_parquet(path, index=False)
    run = score_file(
        "fraud@production", path, output="db", key_column="transaction_id", registry=registry
    )
    key = str(pd.read_parquet(path, columns=["transaction_id"]).iloc[0, 0])
    return run, latest_prediction(registry.store, "fraud", key)


def monitor_demo(registry: Registry, workdir: Path) -> DriftReport:
    """Check the last hour of served traffic and write the HTML report beside the data."""
    from slipway.monitoring.runner import Monitor

    report = Monitor(registry, sinks=[]).run("fraud", since=timedelta(hours=1))
    (workdir / "monitoring.html").write_text(report.to_html())
    return report
