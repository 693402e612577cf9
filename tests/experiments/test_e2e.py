"""A real `slipway serve` with two workers on PostgreSQL running an A/B test."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from slipway.config import Settings
from slipway.experiments import ExperimentDesk
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.serving.process import ServerProcess
from slipway.store.schema import predictions
from slipway.testing import fit_reference_model, register_reference_model
from tests.helpers import PG_URL, pg_schema_url
from tests.serving.helpers import subprocess_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="needs SLIPWAY_TEST_DATABASE_URL"),
]


def test_two_workers_agree_on_every_unit_s_arm_and_log_it(tmp_path):
    """2,000 requests from 250 units over fresh connections to two workers: each unit got one
    arm whichever worker answered, and every logged row carries that arm and the unit."""
    assert PG_URL is not None
    schema = pg_schema_url(PG_URL)
    url = next(schema)
    try:
        s = Settings(home=tmp_path / "home", database_url=url, user="tester")
        registry = Registry(s)
        fitted = fit_reference_model()
        register_reference_model(registry, fitted)
        register_reference_model(registry, fit_reference_model(seed=1), alias=None)
        token = KeyStore(registry.store).create("load", "predict")[1]
        experiment = ExperimentDesk(registry).start(
            "fraud",
            mode="ab",
            candidate=2,
            split=0.3,
            guardrails={"max_p99_increase_ms": 60_000},
        )
        rows = json.loads(fitted.X_val.iloc[:50].to_json(orient="records"))
        headers = {"Authorization": f"Bearer {token}"}
        with ServerProcess(
            ["--workers", "2"], env=subprocess_env(s), log_dir=tmp_path / "server"
        ) as server:

            def call(i: int) -> tuple[str, str, dict]:
                unit = f"customer-{i % 250}"
                body = {"features": rows[i % 50], "unit_id": unit}
                with httpx.Client(timeout=30) as c:  # a new connection: either worker
                    r = c.post(server.url + "/v1/models/fraud/predict", json=body, headers=headers)
                assert r.status_code == 200, r.text
                return unit, r.headers["x-request-id"], r.json()

            def pids() -> set[int]:
                lines = [json.loads(line) for line in server.stdout().splitlines()]
                return {e["pid"] for e in lines if e["status"] == 200 and e.get("model")}

            # Which worker accepts a connection is the kernel's choice (and a worker may still
            # be starting): warm up until both have answered.
            answers = []
            while len(pids()) < 2 and len(answers) < 600:
                answers.append(call(len(answers)))
            warm = len(answers)
            with ThreadPoolExecutor(8) as pool:
                answers += pool.map(call, range(warm, warm + 2000))
        # SIGTERM drained both workers' logs.
        lines = [json.loads(line) for line in server.stdout().splitlines()]
        pid_of = {e["request_id"]: e["pid"] for e in lines}
        arms: dict[str, set[str]] = {}
        workers: dict[str, set[int]] = {}
        for unit, request_id, body in answers:
            assert body["experiment"] == experiment.id
            assert body["version"] == (2 if body["arm"] == "treatment" else 1)
            arms.setdefault(unit, set()).add(body["arm"])
            workers.setdefault(unit, set()).add(pid_of[request_id])
        assert len({p for ps in workers.values() for p in ps}) == 2, "both workers answered"
        assert sum(len(ps) == 2 for ps in workers.values()) > 100, "units met both workers"
        assert all(len(a) == 1 for a in arms.values()), "a unit changed arm"
        treated = sum(a == {"treatment"} for a in arms.values()) / len(arms)
        assert 0.15 < treated < 0.45
        sent = {b["predictions"][0]["prediction_id"]: (u, b["arm"]) for u, _, b in answers}
        with registry.store.read() as conn:
            logged = {
                r.prediction_id: (r.unit_id, r.variant, r.experiment)
                for r in conn.execute(
                    sa.select(predictions).where(predictions.c.experiment == experiment.id)
                )
            }
        assert set(sent) <= set(logged)
        assert all(logged[pid] == (u, arm, experiment.id) for pid, (u, arm) in sent.items())
        report = ExperimentDesk(registry).report(experiment.id, rescore=500)
        assert report.srm is not None and report.srm["ok"]
        assert sum(report.srm["counts"].values()) == 250  # units, not requests
        assert sum(report.arms[a]["predictions"] for a in ("control", "treatment")) == warm + 2000
        registry.store.dispose()
    finally:
        next(schema, None)
