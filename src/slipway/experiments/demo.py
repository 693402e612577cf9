"""The quickstart's experiment step: a second fraud model tried in shadow, then in an A/B test.

The step needs only the registry: requests are rows of the production version's reference
sample, so it does not depend on how the quickstart made its data. Traffic and outcomes are
simulated, and the simulation is stated in what it prints:

- the candidate is the production pipeline with another decision rule: it flags a transaction
  as fraud from a probability of 0.3 instead of the most likely class (:class:`Threshold`), a
  change a risk team would want to test on business outcomes rather than accuracy;
- the simulated world takes production's probability as the true chance of fraud, so each
  transaction is fraudulent with that probability;
- shadow: production answers, the candidate's answers are logged beside them, the true labels
  come back as feedback, and the report compares the two on the same rows;
- A/B: customers (unit ids) are split 50/50 and each answer earns a business outcome,
  ``revenue``: +1 for an approved legitimate transaction, -20 (a chargeback) for an approved
  fraud, 0 for a declined one. The report decides on mean revenue per prediction.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from slipway.experiments.desk import ExperimentDesk
from slipway.experiments.report import ExperimentReport
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.versions import ModelVersion

REWARD, CHARGEBACK = 1.0, -20.0  # revenue of an approved legitimate / fraudulent transaction


class Threshold(ClassifierMixin, BaseEstimator):
    """A fitted binary classifier that predicts the positive class from probability
    ``threshold`` on (its ``predict_proba`` is the wrapped one's)."""

    def __init__(self, estimator: Any = None, threshold: float = 0.5) -> None:
        self.estimator = estimator
        self.threshold = threshold

    def fit(self, X: Any, y: Any = None) -> Threshold:
        """Nothing to learn: the wrapped estimator is already fitted."""
        self.classes_ = self.estimator.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """The wrapped estimator's probabilities."""
        return np.asarray(self.estimator.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The positive class where its probability reaches the threshold."""
        p = self.predict_proba(X)[:, 1]
        return np.where(p >= self.threshold, self.classes_[1], self.classes_[0])


@dataclass
class DemoResult:
    """What the step did: the candidate, both reports, and how much traffic each saw."""

    candidate: ModelVersion
    shadow: ExperimentReport
    ab: ExperimentReport
    shadow_rows: int
    ab_requests: int


def run(
    registry: Registry,
    workdir: Path,
    *,
    shadow_rows: int = 2000,
    ab_requests: int = 3000,
    seed: int = 0,
    name: str = "fraud",
    on_step: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """Register the candidate, run the shadow deployment and then the A/B test against a real
    `slipway serve`, and return both reports. Both experiments are stopped at the end, so
    production is what it was.

    A production version with features takes raw requests, not the rows of its reference
    sample; the step then registers its pipeline as ``NAME-direct`` (taking the computed
    features in the request) and experiments on that model instead."""
    from slipway.serving.process import ServerProcess

    rng = np.random.default_rng(seed)
    production = registry.get(f"{name}@production")
    if production.meta.get("features") is not None:
        sample = registry.reference_sample(production)
        pipeline = registry.load(production.ref).pipeline
        name = f"{name}-direct"
        production = registry.register(
            pipeline,
            name,
            sample,
            description=f"{production.ref}'s pipeline, taking the computed features directly",
            tags={"source": "quickstart"},
            alias="production",
            onnx=False,
        )
        on_step(
            f"registered {production.ref}: the same pipeline, taking its features in the request "
            "(the experiment replays rows of its reference sample)"
        )
    model = registry.load(production.ref)
    if model.task != "classification" or len(model.classes or []) != 2:
        raise ValueError(f"{production.ref} is not a binary classifier; the demo needs one")
    sample = registry.reference_sample(production)
    rows = json.loads(sample.to_json(orient="records"))
    truth_p = model.predict_proba(sample)[:, 1]
    candidate = registry.register(
        Threshold(model.pipeline, 0.3).fit(sample),
        name,
        sample,
        description="Quickstart candidate: production's pipeline, flagging fraud from p >= 0.3",
        tags={"source": "quickstart", "experiment": "threshold 0.3"},
        onnx=False,
    )
    on_step(f"registered {candidate.ref}: production's pipeline flagging fraud from p >= 0.3")
    desk = ExperimentDesk(registry)
    settings = registry.settings
    env = {
        "SLIPWAY_HOME": str(Path(settings.home).resolve()),
        "SLIPWAY_DATABASE_URL": settings.database_url or "",
        "SLIPWAY_SERVE_POLL_SECONDS": "0.2",
        "SLIPWAY_SERVE_RATE_LIMIT": "0",
    }
    keys = KeyStore(registry.store)
    key_name = f"quickstart-{secrets.token_hex(3)}"
    _, token = keys.create(key_name, "predict")
    server = ServerProcess(["--model", name], env=env, log_dir=workdir / "server-experiments")
    try:
        with server, _Client(server.url, token, name) as client:
            shadow = desk.start(name, mode="shadow", candidate=candidate.version)
            on_step(
                f"started {shadow.id}: slipway experiment start {name} --mode shadow "
                f"--candidate {candidate.version}"
            )
            client.wait_for(shadow.id, rows[0])
            picks = rng.integers(0, len(rows), shadow_rows)
            truth = rng.random(shadow_rows) < truth_p[picks]
            ids = client.predict_many([rows[i] for i in picks])
            labels = zip(ids, truth.tolist(), strict=True)
            client.feedback([{"prediction_id": pid, "label": int(t)} for pid, t in labels])
            on_step(
                f"sent {shadow_rows:,} transactions (production answered, the candidate "
                "shadowed) and their simulated true labels"
            )
            shadow_report = desk.report(shadow.id)
            desk.stop(shadow.id, promote=False, reason="quickstart: the shadow step is done")
            ab = desk.start(
                name,
                mode="ab",
                candidate=candidate.version,
                split=0.5,
                metric_name="value",
                outcome="revenue",
                # The candidate answers through scikit-learn (its decision rule has no ONNX
                # form), production through ONNX Runtime: slower by design, so the latency
                # bound allows for it.
                guardrails={"max_p99_increase_ms": 1000},
            )
            on_step(
                f"started {ab.id}: slipway experiment start {name} --mode ab --candidate "
                f"{candidate.version} --split 0.5 --metric value --outcome revenue"
            )
            client.wait_for(ab.id, rows[0], unit_id="customer-0")
            outcomes = []
            for _ in range(ab_requests):
                pick = int(rng.integers(0, len(rows)))
                fraud = rng.random() < truth_p[pick]
                unit = f"customer-{int(rng.integers(0, ab_requests // 2))}"
                pid, label = client.predict_one(rows[pick], unit)
                approved = str(label) == str(model.classes[0])  # type: ignore[index]
                value = (CHARGEBACK if fraud else REWARD) if approved else 0.0
                outcomes.append({"prediction_id": pid, "outcome": "revenue", "value": value})
            client.feedback(outcomes)
            on_step(
                f"sent {ab_requests:,} transactions from {ab_requests // 2:,} customers and "
                "their simulated revenue (+1 approved, -20 chargeback, 0 declined)"
            )
        ab_report = desk.report(ab.id)
        if desk.get(ab.id).running:  # a guardrail may have stopped it already
            desk.stop(ab.id, promote=False, reason="quickstart: production stays as it was")
    finally:
        keys.revoke(key_name)
    return DemoResult(candidate, shadow_report, ab_report, shadow_rows, ab_requests)


class _Client:
    """The few calls the step makes, with the temporary key."""

    def __init__(self, url: str, token: str, model: str) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=30)
        self.predict_path = f"/v1/models/{model}/predict"

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def wait_for(self, experiment: str, row: dict[str, Any], unit_id: str | None = None) -> None:
        """Ask until the server routes by the experiment (it follows the store every 0.2 s)."""
        import time

        deadline = time.monotonic() + 30
        body: dict[str, Any] = {"features": row}
        if unit_id is not None:
            body["unit_id"] = unit_id
        while time.monotonic() < deadline:
            answer = self.http.post(self.predict_path, json=body)
            answer.raise_for_status()
            if answer.json().get("experiment") == experiment:
                return
            time.sleep(0.1)
        raise TimeoutError(f"the server did not pick up experiment {experiment} within 30 s")

    def predict_many(self, rows: list[dict[str, Any]], per_request: int = 100) -> list[str]:
        """Prediction ids of ``rows``, sent ``per_request`` at a time."""
        ids = []
        for lo in range(0, len(rows), per_request):
            answer = self.http.post(
                self.predict_path, json={"instances": rows[lo : lo + per_request]}
            )
            answer.raise_for_status()
            ids += [p["prediction_id"] for p in answer.json()["predictions"]]
        return ids

    def predict_one(self, row: dict[str, Any], unit: str) -> tuple[str, Any]:
        """One customer's transaction: its prediction id and the label that answered."""
        answer = self.http.post(self.predict_path, json={"features": row, "unit_id": unit})
        answer.raise_for_status()
        p = answer.json()["predictions"][0]
        return p["prediction_id"], p["label"]

    def feedback(self, items: list[dict[str, Any]], per_request: int = 500) -> None:
        """Send labels or outcomes in batches."""
        for lo in range(0, len(items), per_request):
            answer = self.http.post("/v1/feedback", json={"feedback": items[lo : lo + per_request]})
            answer.raise_for_status()
