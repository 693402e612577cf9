"""The quickstart's lifecycle step: a loan model whose labels arrive two weeks late.

It makes its own data and model, so it does not depend on the rest of the quickstart: loan
applications over 60 days, a champion trained on the first 20 days, 40 days of served traffic
written to the prediction log through the service's own log writer, and labels for the
predictions older than 14 days. From day 40 the applicants drift towards higher debt ratios
(the inputs move; how default depends on them does not). Monitoring sees the estimated accuracy
fall before any label of the drifted days has arrived; `retrain` trains on the last 30 days,
the gate passes, and the candidate is left in shadow (or registered, when the experiments
capability is not installed) for a person to decide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from slipway.clock import utcnow
from slipway.lifecycle.retrain import RetrainResult, retrain
from slipway.registry import Registry
from slipway.train import fit, register_trained

if TYPE_CHECKING:
    from slipway.monitoring import DriftReport

NAME = "loans"
FEATURES = ["income", "debt_ratio", "age", "employment", "amount"]
DAYS, TRAINED_ON, DRIFT_DAY, LABEL_DELAY = 60, 20, 40, 14
CONFIG = """\
# Written by `slipway quickstart` (the lifecycle step).
name = "loans"
description = "Quickstart loan-default model: logistic regression"

[data]
path = "loans.csv"                 # applications whose outcome is known
target = "default"
time_column = "applied_at"
features = {features}

[estimator]
class = "sklearn.linear_model.LogisticRegression"
params = {{ max_iter = 1000 }}

[validation]
fraction = 0.3
"""
EMPLOYMENT = {"salaried": (0.6, -0.3), "self_employed": (0.25, 0.4), "student": (0.15, 0.2)}


def make_loans(
    now: datetime, per_day: int = 200, seed: int = 0, drift_day: int = DRIFT_DAY
) -> pd.DataFrame:
    """Applications over the ``DAYS`` days before ``now``; from ``drift_day`` on, applicants
    carry more debt. Default depends on the inputs the same way throughout."""
    rng = np.random.default_rng(seed)
    n = DAYS * per_day
    day = np.repeat(np.arange(DAYS), per_day)
    at = [now - timedelta(days=DAYS - d - s) for d, s in zip(day, rng.random(n), strict=True)]
    drifted = day >= drift_day
    debt = np.clip(rng.beta(2, 5, n) + np.where(drifted, 0.22, 0.0), 0, 1.5)
    income = np.round(rng.lognormal(np.log(45_000), 0.45, n), -2)
    age = rng.integers(21, 70, n)
    employment = rng.choice(list(EMPLOYMENT), n, p=[v[0] for v in EMPLOYMENT.values()])
    amount = np.round(rng.lognormal(np.log(12_000), 0.6, n), -1)
    logit = (
        -1.6
        + 6.0 * (debt - 0.3)
        - 0.8 * np.log(income / 45_000)
        - 0.02 * (age - 40)
        + np.array([EMPLOYMENT[e][1] for e in employment])
        + 0.3 * np.log(amount / 12_000)
    )
    default = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "application_id": [f"a{i:06d}" for i in range(n)],
            "applied_at": [t.isoformat() for t in at],
            "income": income,
            "debt_ratio": np.round(debt, 4),
            "age": age,
            "employment": employment,
            "amount": amount,
            "default": default.astype(int),
        }
    ).sort_values("applied_at", kind="stable", ignore_index=True)


@dataclass
class LifecycleDemo:
    """What the lifecycle step did and found."""

    champion: str
    served: int
    labeled: int
    report: DriftReport
    first_drop: str | None
    retrained: RetrainResult
    config: Path


def lifecycle_demo(
    registry: Registry,
    workdir: Path,
    *,
    now: datetime | None = None,
    on_step: Callable[[str], None] = lambda _: None,
) -> LifecycleDemo:
    """Run the loop on the loan data: champion, late labels, drift, estimate, retrain, gate."""
    from slipway.monitoring.runner import Monitor

    now = now or utcnow()
    workdir.mkdir(parents=True, exist_ok=True)
    data = make_loans(now, seed=3)
    stamps = pd.to_datetime(data["applied_at"], utc=True, format="ISO8601")
    age_days = (now - stamps).dt.total_seconds().to_numpy() / 86400
    history = workdir / "loans_history.csv"
    data.loc[age_days > DAYS - TRAINED_ON].to_csv(history, index=False)
    data.loc[age_days > LABEL_DELAY].to_csv(workdir / "loans.csv", index=False)
    config = workdir / "loans.toml"
    config.write_text(CONFIG.format(features="[" + ", ".join(f'"{f}"' for f in FEATURES) + "]"))

    on_step(f"training {NAME} on the first {TRAINED_ON} days of applications")
    champion = register_trained(fit(config, data=history), registry, alias="production")
    served = data.loc[age_days <= DAYS - TRAINED_ON].reset_index(drop=True)
    served_ages = age_days[age_days <= DAYS - TRAINED_ON]
    on_step(
        f"serving {len(served):,} applications over {DAYS - TRAINED_ON} days; outcomes arrive "
        f"{LABEL_DELAY} days late, so the last {LABEL_DELAY} days have none"
    )
    labeled = _serve(registry, champion.ref, served, served_ages > LABEL_DELAY)
    on_step(f"slipway monitor {NAME} --since {DAYS - TRAINED_ON}d --window 5d")
    report = Monitor(registry, sinks=[]).run(
        NAME, since=timedelta(days=DAYS - TRAINED_ON), window=timedelta(days=5)
    )
    (workdir / "loans-monitoring.html").write_text(report.to_html())
    first = next(
        (
            w
            for w in report.windows
            if any(r.code == "estimated_performance_drop" for r in w.reasons)
        ),
        None,
    )
    first_drop = None if first is None or first.start is None else f"{first.start:%Y-%m-%d}"
    why = f"monitoring run {report.run_id} of {NAME}: " + (
        "; ".join(r.message for r in report.reasons[:2]) or report.status
    )
    on_step(f"slipway retrain {NAME} --config {config} --since 30d --then shadow")
    retrained = retrain(
        registry,
        NAME,
        config,
        since=timedelta(days=30),
        trigger="alert",
        reason=why,
        then="shadow",
        clock=lambda: now,
    )
    return LifecycleDemo(
        champion.ref, len(served), int(labeled), report, first_drop, retrained, config
    )


def _serve(registry: Registry, ref: str, frame: pd.DataFrame, known: np.ndarray) -> int:
    """Score ``frame`` and write it to the prediction log with the service's own writer, an
    hour of applications per entry stamped at their time; then store the outcomes already
    known, each received ``LABEL_DELAY`` days after its prediction."""
    from slipway.serving.log import IdGenerator, PredictionLog
    from slipway.store.predictions import Entry, add_feedback

    model = registry.load(ref)
    outputs = model.score(frame[FEATURES]).records()
    rows = frame[FEATURES].to_dict(orient="records")
    stamps = pd.to_datetime(frame["applied_at"], utc=True, format="ISO8601")
    hour = ((stamps - stamps.min()).dt.total_seconds() // 3600).to_numpy()
    ids = IdGenerator()
    entries: list[Any] = []
    outcomes: list[tuple[datetime, list[tuple[str, int]]]] = []
    for h in np.unique(hour):
        at = np.flatnonzero(hour == h)
        new = ids.new(len(at))
        created = stamps[at[-1]].to_pydatetime()
        entries.append(
            Entry(
                ids=new,
                created_at=created,
                model=model.name,
                version=model.version.version,
                names=FEATURES,
                rows=[rows[i] for i in at],
                outputs=[outputs[i] for i in at],
                latency_ms=1.0,
            )
        )
        labels = [
            (pid, int(frame["default"].iat[i])) for pid, i in zip(new, at, strict=True) if known[i]
        ]
        if labels:
            outcomes.append((created + timedelta(days=LABEL_DELAY), labels))
    log = PredictionLog(registry.store)
    log.start()
    try:
        log.put_many(entries)
        log.flush(timeout=60)
    finally:
        log.close()
    for received, labels in outcomes:
        add_feedback(registry.store, labels, received)
    return int(known.sum())
