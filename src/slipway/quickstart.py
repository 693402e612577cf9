"""The quickstart job: a card-transaction history, point-in-time features, a fraud model.

`slipway quickstart` runs :data:`STEPS` in order, each a function of one :class:`Quickstart`
(the registry, the working directory, what earlier steps produced, and ``say`` to print):

1. :func:`generate` writes a seeded transaction history per card (``transactions.parquet``)
   and the feature definitions (``features.py``), and ingests the past into the store;
2. :func:`train_model` computes point-in-time features with ``training_frame``, trains a
   gradient-boosting pipeline, and registers it with the features (requests are recorded as
   events) and promotes it;
3. :func:`serve_and_call` starts `slipway serve`, sends transactions that carry only raw
   fields, sends their labels, and stops the server (the log is flushed);
4. :func:`audit_step` recomputes the served features offline: no skew;
5. :func:`batch_demo` scores recent transactions into the database, enriched the same way;
6. :func:`monitor_demo` checks the served traffic (drift, performance, skew);
7. :func:`planted_skew` redefines a feature after training: the guard refuses to load it,
   a server told to serve anyway is caught by the audit; the definitions are restored;
8. :func:`experiment_step` tries a second decision rule in shadow, then in an A/B test
   (:mod:`slipway.experiments.demo`), and stops both;
9. :func:`lifecycle_step` runs the lifecycle loop on a loan model of its own
   (:mod:`slipway.lifecycle.demo`): late outcomes, drift, an estimated drop, a gated retrain.

Later capabilities append their own step functions to :data:`STEPS`.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from slipway.keys import KeyStore
from slipway.registry import Registry

if TYPE_CHECKING:
    from slipway.batch import BatchRun
    from slipway.experiments.demo import DemoResult
    from slipway.features.audit import AuditReport
    from slipway.lifecycle.demo import LifecycleDemo
    from slipway.monitoring import DriftReport
    from slipway.versions import ModelVersion

MERCHANTS = {  # category: (share of transactions, share of fraud)
    "grocery": (0.30, 0.04),
    "restaurants": (0.18, 0.04),
    "gas": (0.14, 0.04),
    "online_retail": (0.16, 0.22),
    "travel": (0.08, 0.14),
    "electronics": (0.07, 0.26),
    "jewelry": (0.03, 0.14),
    "gaming": (0.04, 0.12),
}
COUNTRIES = ["US", "GB", "DE", "FR", "BR", "IN", "NG", "RU"]
HOME = [0.62, 0.10, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02]
RISKY = [0.05, 0.05, 0.05, 0.05, 0.15, 0.15, 0.25, 0.25]
START = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 90
PAST = 0.8  # the first 80% of the days are past (in the store); the rest arrive as requests
WARM_UP = 30  # days of history before the first training row: full 30-day windows
RAW = ["amount", "merchant_category", "country"]
INPUTS = [
    *RAW, "hour", "txn_count_30d", "avg_amount_7d", "max_amount_1d", "countries_30d",
    "amount_vs_avg",
]  # fmt: skip
CATEGORICAL = ["merchant_category", "country"]
REQUEST = ["card_id", "ts", *RAW]
FEATURES = INPUTS  # the pipeline's input, the columns of the flat job (see prepare)

CONFIG = """\
# Written by slipway.quickstart.prepare: the quickstart's job, flat. transactions.csv holds the
# point-in-time features computed offline; edit this and run `slipway train {config}`.
name = "fraud"
description = "Quickstart fraud model: gradient boosting on point-in-time card features"
tags = {{ team = "risk", source = "quickstart" }}
alias = "production"

[data]
path = "transactions.csv"
target = "is_fraud"
time_column = "ts"
features = {features}

[estimator]
class = "sklearn.ensemble.GradientBoostingClassifier"
params = {{ n_estimators = 100, max_depth = 3, learning_rate = 0.1, random_state = 0 }}

[validation]
fraction = 0.2
cv = 3
seed = 0
"""

FEATURES_PY = '''\
"""Feature definitions of the quickstart's fraud model (written by `slipway quickstart`).

Training (slipway.features.training_frame), `slipway serve`, `slipway batch` and
slipway.load("fraud").predict all compute these, from the same definitions.
"""

import numpy as np

import slipway.features as sf

transactions = sf.EventSource(
    "transactions", entity="card_id", timestamp="ts", id="transaction_id"
)

card = sf.FeatureSet("card", entity="card_id", features=[
    sf.Aggregate("txn_count_30d", transactions, "count", window="30d"),
    sf.Aggregate("avg_amount_7d", transactions, "mean", column="amount", window="{window}",
                 fillna={fillna}),
    sf.Aggregate("max_amount_1d", transactions, "max", column="amount", window="1d",
                 fillna=0.0),
    sf.Aggregate("countries_30d", transactions, "count_distinct", column="country",
                 window="30d"),
])


@sf.row_feature
def amount_vs_avg(amount, avg_amount_7d):
    """How far the amount is above the card's recent average (0 without history)."""
    return np.where(avg_amount_7d > 0, amount / avg_amount_7d, 0.0)


@sf.row_feature(dtype="int64")
def hour(ts):
    """Hour of day (UTC) of the transaction."""
    return ts.dt.hour


FEATURES = [card, amount_vs_avg, hour]
'''


@dataclass
class ServingDemo:
    """What the quickstart's serving steps sent and got back."""

    url: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    features: list[dict[str, Any]] = field(default_factory=list)  # as serving computed them
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


@dataclass
class Quickstart:
    """The state the steps share: where, what was made so far, and how to tell the user."""

    registry: Registry
    workdir: Path
    rows: int = 20_000
    traffic: int = 1000
    say: Callable[[Any], None] = lambda _: None
    version: ModelVersion | None = None
    demo: ServingDemo | None = None
    audit: AuditReport | None = None
    batch: tuple[BatchRun, Any] | None = None
    report: DriftReport | None = None
    skew: dict[str, Any] = field(default_factory=dict)
    experiments: DemoResult | None = None
    lifecycle: LifecycleDemo | None = None


# -- data ----------------------------------------------------------------------------------


def make_history(n: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """Card transactions over 90 days, time-ordered, with ~2.5% fraud.

    Each card has a home country, a spending level and an activity rate. Fraud comes in
    bursts on a card: amounts well above the card's level, risky merchants, foreign
    countries, at night; a fraud model needs the card's history to see it.
    """
    rng = np.random.default_rng(seed)
    cards = max(20, n // 25)
    level = rng.lognormal(3.6, 0.6, cards)
    home = rng.choice(len(COUNTRIES), cards, p=HOME)
    activity = rng.gamma(2.0, 1.0, cards)
    card = rng.choice(cards, n, p=activity / activity.sum())
    seconds = rng.uniform(0, DAYS * 86400, n)
    fraud = rng.random(n) < 0.025
    amount = level[card] * rng.lognormal(0.0, 0.45, n)
    amount = np.where(fraud, amount * rng.lognormal(1.3, 0.5, n), amount)
    shares = np.array([v[0] for v in MERCHANTS.values()])
    risky = np.array([v[1] for v in MERCHANTS.values()])
    merchant = np.where(
        fraud,
        rng.choice(len(MERCHANTS), n, p=risky / risky.sum()),
        rng.choice(len(MERCHANTS), n, p=shares),
    )
    abroad = rng.random(n) < np.where(fraud, 0.55, 0.04)
    country = np.where(abroad, rng.choice(len(COUNTRIES), n, p=RISKY), home[card])
    night = rng.random(n) < np.where(fraud, 0.45, 0.06)
    seconds = np.where(
        night, np.floor(seconds / 86400) * 86400 + rng.uniform(0, 5 * 3600, n), seconds
    )
    noise = rng.random(n) < 0.004  # labels are never perfect
    frame = pd.DataFrame(
        {
            "card_id": [f"c_{i:05d}" for i in card],
            "ts": pd.to_datetime(START) + pd.to_timedelta(np.round(seconds * 1e6), unit="us"),
            "amount": np.round(np.clip(amount, 0.5, None), 2),
            "merchant_category": np.array(list(MERCHANTS))[merchant],
            "country": np.array(COUNTRIES)[country],
            "is_fraud": (fraud ^ noise).astype(int),
        }
    )
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    frame.insert(0, "transaction_id", [f"t{i:07d}" for i in range(n)])
    return frame


def features_module(workdir: Path, window: str = "7d", fillna: str = "0.0") -> Any:
    """Write ``features.py`` (the definitions) into ``workdir`` and import it as ``features``."""
    path = workdir / "features.py"
    path.write_text(FEATURES_PY.format(window=window, fillna=fillna))
    shutil.rmtree(workdir / "__pycache__", ignore_errors=True)
    importlib.invalidate_caches()
    spec = importlib.util.spec_from_file_location("features", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["features"] = module
    spec.loader.exec_module(module)
    return module


def prepare(workdir: Path, rows: int = 20_000, seed: int = 0) -> Path:
    """The quickstart's job for `slipway train`: write ``features.py``, the history with its
    point-in-time features computed offline (``transactions.csv``, days after the warm-up) and
    a train config (``fraud.toml``) into ``workdir``; return the config's path."""
    import slipway.features as sf

    workdir.mkdir(parents=True, exist_ok=True)
    history = make_history(rows, seed)
    module = features_module(workdir)
    frame = sf.training_frame(history, module.FEATURES, at="ts", events={"transactions": history})
    frame = frame[frame.ts >= pd.Timestamp(START) + pd.Timedelta(days=WARM_UP)]
    frame = frame.assign(ts=frame.ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    frame[["transaction_id", "card_id", "ts", *FEATURES, "is_fraud"]].to_csv(
        workdir / "transactions.csv", index=False
    )
    config = workdir / "fraud.toml"
    features = "[" + ", ".join(f'"{f}"' for f in FEATURES) + "]"
    config.write_text(CONFIG.format(config=config, features=features))
    return config


def split(history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(past, live): the first 80% of the days and the rest."""
    cut = pd.Timestamp(START) + pd.Timedelta(days=DAYS * PAST)
    return history[history.ts < cut], history[history.ts >= cut]


def request_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Transactions as requests carry them: card, time and raw fields only."""
    out = frame[REQUEST].copy()
    out["ts"] = out["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    records: list[dict[str, Any]] = json.loads(out.to_json(orient="records"))
    return records


# -- steps ---------------------------------------------------------------------------------


def generate(qs: Quickstart) -> None:
    """Write the history and the definitions; ingest the past into the store as events."""
    from slipway.features.ingest import ingest

    qs.workdir.mkdir(parents=True, exist_ok=True)
    history = make_history(qs.rows)
    history.to_parquet(qs.workdir / "transactions.parquet", index=False)
    module = features_module(qs.workdir)
    past, live = split(history)
    result = ingest(qs.registry.store, past.drop(columns="is_fraud"), module.transactions)
    qs.say(
        f"   {len(history):,} transactions of {history.card_id.nunique():,} cards over {DAYS} "
        f"days; the first {int(DAYS * PAST)} days ({result.inserted:,} events) are in the "
        f"store (training uses days {WARM_UP}-{int(DAYS * PAST)}, so every 30-day window is "
        f"full), the last {DAYS - int(DAYS * PAST)} days ({len(live):,}) arrive as requests"
    )


def train_model(qs: Quickstart) -> None:
    """Point-in-time features for the past transactions, a pipeline, register and promote."""
    from sklearn.ensemble import GradientBoostingClassifier

    import slipway.features as sf
    from slipway.train import build_pipeline

    module = sys.modules["features"]
    history = pd.read_parquet(qs.workdir / "transactions.parquet")
    past, _ = split(history)
    past = past[past.ts >= pd.Timestamp(START) + pd.Timedelta(days=WARM_UP)]
    train = sf.training_frame(past, module.FEATURES, at="ts", store=qs.registry.store)
    cut = int(len(train) * 0.8)
    fit, val = train.iloc[:cut], train.iloc[cut:]
    model = GradientBoostingClassifier(
        n_estimators=100, max_depth=3, learning_rate=0.1, random_state=0
    )
    pipeline = build_pipeline(INPUTS, CATEGORICAL, model)
    pipeline.fit(fit[INPUTS], fit.is_fraud)
    qs.version = qs.registry.register(
        pipeline,
        "fraud",
        fit[[*REQUEST, *INPUTS[len(RAW) :]]],
        fit.is_fraud,
        X_val=val[INPUTS],
        y_val=val.is_fraud,
        description="Quickstart fraud model: gradient boosting on point-in-time card features",
        tags={"team": "risk", "source": "quickstart"},
        features=module.FEATURES,
        record_events=True,
        alias="production",
    )


def serve_and_call(qs: Quickstart, n: int = 3) -> None:
    """Start `slipway serve`, predict ``n`` live transactions (one a fraud) from raw fields,
    send their labels, then ``qs.traffic`` more in time order with labels, and stop."""
    history = pd.read_parquet(qs.workdir / "transactions.parquet")
    _, live = split(history)
    live = live.iloc[: n + qs.traffic]
    first = live.iloc[:n]
    frauds = live.index[live.is_fraud == 1]
    if len(frauds) and frauds[0] not in first.index:
        first = pd.concat([first.iloc[: n - 1], live.loc[frauds[:1]]])
    rest = live.drop(index=first.index)
    demo = ServingDemo(rows=request_rows(first), labels=first.is_fraud.astype(int).tolist())
    with _server(qs, "serving") as (server, token):
        demo.url = server.url
        demo.predictions, demo.feedback, demo.feedback_again = _calls(server.url, token, demo)
        qs.say(f"   sending {len(rest):,} more live transactions in time order, then their labels")
        demo.traffic = _traffic(server.url, token, rest)
    ids = [p["prediction_id"] for p in demo.predictions["predictions"]]
    logged = _logged(qs.registry, ids)
    demo.logged = len(logged)
    demo.features = [logged.get(i, {}) for i in ids]
    qs.demo = demo


def audit_step(qs: Quickstart) -> None:
    """The skew audit over the traffic just served: recompute offline, compare."""
    from slipway.features.audit import audit

    reg = qs.registry
    qs.audit = audit(reg.store, "fraud", lambda v: reg.get(f"fraud:{v}"), since=timedelta(hours=1))


def batch_demo(qs: Quickstart, n: int = 3000) -> None:
    """Score ``n`` live transactions into the database, keyed by transaction id, and look one
    up the way `GET /v1/models/fraud/predictions/{key}` does."""
    from slipway.batch import latest_prediction, score_file

    history = pd.read_parquet(qs.workdir / "transactions.parquet")
    _, live = split(history)
    path = qs.workdir / "recent.parquet"
    live.sample(n=min(n, len(live)), random_state=2).sort_index()[
        ["transaction_id", *REQUEST]
    ].to_parquet(path, index=False)
    run = score_file(
        "fraud@production", path, output="db", key_column="transaction_id", registry=qs.registry
    )
    key = str(pd.read_parquet(path, columns=["transaction_id"]).iloc[0, 0])
    qs.batch = (run, latest_prediction(qs.registry.store, "fraud", key))


def monitor_demo(qs: Quickstart) -> None:
    """Check the last hour of served traffic and write the HTML report beside the data."""
    from slipway.monitoring.runner import Monitor

    qs.report = Monitor(qs.registry, sinks=[]).run("fraud", since=timedelta(hours=1))
    (qs.workdir / "monitoring.html").write_text(qs.report.to_html())


def planted_skew(qs: Quickstart, n: int = 200) -> None:
    """Redefine avg_amount_7d after training (a 3-day window): loading refuses it; a server
    told to serve it anyway answers ``n`` requests, and the audit names the skew."""
    from slipway.exceptions import FeatureSkew
    from slipway.features.audit import audit

    features_module(qs.workdir, window="3d")
    sys.modules.pop("features", None)
    try:
        qs.registry.load("fraud@production")
        qs.skew["refused"] = ""
    except FeatureSkew as exc:
        qs.skew["refused"] = str(exc)
    history = pd.read_parquet(qs.workdir / "transactions.parquet")
    _, live = split(history)
    rows = live.iloc[3 + qs.traffic : 3 + qs.traffic + n]
    started = datetime.now(UTC)
    try:
        with _server(qs, "skewed", {"SLIPWAY_FEATURE_SKEW": "warn"}) as (server, token):
            _traffic(server.url, token, rows)
        reg = qs.registry
        qs.skew["audit"] = audit(
            reg.store,
            "fraud",
            lambda v: reg.get(f"fraud:{v}"),
            since=datetime.now(UTC) - started + timedelta(seconds=1),
        )
    finally:
        features_module(qs.workdir)  # the definitions the model was trained with, back


def experiment_step(qs: Quickstart) -> None:
    """A second fraud model (production's pipeline with a 0.3 threshold) in shadow, then in an
    A/B test on simulated traffic and revenue; both stopped, production unchanged."""
    from slipway.experiments import demo

    qs.experiments = demo.run(qs.registry, qs.workdir, on_step=lambda s: qs.say(f"   {s}"))


def lifecycle_step(qs: Quickstart) -> None:
    """The lifecycle loop on a loan model of its own: outcomes 14 days late, a drift after day
    40 seen by the estimated accuracy, a retrain triggered by the alert, the gate, production
    left where it was."""
    from slipway.lifecycle.demo import lifecycle_demo

    qs.lifecycle = lifecycle_demo(qs.registry, qs.workdir, on_step=lambda s: qs.say(f"   {s}"))


STEPS: list[Callable[[Quickstart], None]] = [
    generate,
    train_model,
    serve_and_call,
    audit_step,
    batch_demo,
    monitor_demo,
    planted_skew,
    experiment_step,
    lifecycle_step,
]


# -- helpers -------------------------------------------------------------------------------


class _server:
    """`slipway serve --model fraud` with a temporary key; stopped (SIGTERM) and revoked."""

    def __init__(self, qs: Quickstart, what: str, extra: dict[str, str] | None = None) -> None:
        self.qs, self.what, self.extra = qs, what, extra or {}

    def __enter__(self) -> tuple[Any, str]:
        from slipway.serving.process import ServerFailed, ServerProcess

        settings = self.qs.registry.settings
        env = {
            "SLIPWAY_HOME": str(Path(settings.home).resolve()),
            "SLIPWAY_DATABASE_URL": settings.database_url or "",
            **self.extra,
        }
        self.keys = KeyStore(self.qs.registry.store)
        self.name = f"quickstart-{secrets.token_hex(3)}"
        _, self.token = self.keys.create(self.name, "predict")
        try:
            for attempt in (1, 2):  # another port if the first was taken meanwhile
                self.server = ServerProcess(
                    ["--model", "fraud"], env=env, log_dir=self.qs.workdir / f"server-{self.what}"
                )
                self.qs.say(
                    f"   starting slipway serve on {self.server.url} with a temporary key "
                    f"{self.name!r}"
                )
                try:
                    self.server.start()
                    break
                except ServerFailed:
                    if attempt == 2:
                        raise
        except BaseException:
            self.keys.revoke(self.name)
            raise
        return self.server, self.token

    def __exit__(self, *exc: object) -> None:
        try:
            self.server.stop()
        finally:
            self.keys.revoke(self.name)


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


def _traffic(url: str, token: str, data: pd.DataFrame, per_request: int = 50) -> int:
    import httpx

    sent = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        for lo in range(0, len(data), per_request):
            part = data.iloc[lo : lo + per_request]
            rows = request_rows(part)
            answer = client.post("/v1/models/fraud/predict", json={"instances": rows}, timeout=30)
            answer.raise_for_status()
            ids = [p["prediction_id"] for p in answer.json()["predictions"]]
            labels = part["is_fraud"].astype(int).tolist()
            feedback = [{"prediction_id": i, "label": y} for i, y in zip(ids, labels, strict=True)]
            client.post("/v1/feedback", json={"feedback": feedback}, timeout=30).raise_for_status()
            sent += len(rows)
    return sent


def _logged(registry: Registry, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The logged inputs (raw fields and computed features) of predictions, by id."""
    from slipway.store.features import logged_inputs

    return logged_inputs(registry.store, ids)
