"""`slipway serve` as a real process: tritonclient, SIGTERM under load, hot reload under load,
two workers on PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.serving.process import ServerProcess
from slipway.store.schema import predictions
from tests.helpers import PG_URL, pg_schema_url
from tests.serving.helpers import subprocess_env

pytestmark = pytest.mark.slow


def prepare(tmp_path, register, models=("fraud",), database_url=None):
    """A store with promoted models and a predict key; returns (settings, registry, key)."""
    s = Settings(home=tmp_path / "home", database_url=database_url, user="tester")
    registry = Registry(s)
    fitted = {name: register(registry, name) for name in models}
    token = KeyStore(registry.store).create("load", "predict")[1]
    return s, registry, token, fitted


def logged_ids(registry) -> set[str]:
    """Every prediction id in the log."""
    with registry.store.read() as conn:
        return set(conn.execute(sa.select(predictions.c.prediction_id)).scalars())


class Load:
    """Client threads posting one body in a loop, keeping every answer, until stopped."""

    def __init__(self, url: str, body: dict[str, Any], token: str, threads: int = 4) -> None:
        self.url, self.body = url, body
        self.headers = {"Authorization": f"Bearer {token}"}
        self.stop = threading.Event()
        self.answers: list[list[tuple[int, Any]]] = [[] for _ in range(threads)]
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(self.url, json=self.body, headers=self.headers)
                except httpx.TransportError:
                    self.answers[i].append((-1, None))
                    time.sleep(0.02)
                    continue
                self.answers[i].append((r.status_code, r.json()))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def ok(self) -> list[dict[str, Any]]:
        """Every 200 answer's body."""
        return [body for answers in self.answers for status, body in answers if status == 200]

    def wait(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not reached under load"
            time.sleep(0.05)


def test_tritonclient_works_unchanged_in_json_and_binary_modes(tmp_path, register):
    """The official client: health, metadata, inference with JSON and with binary tensors."""
    import tritonclient.http as triton

    s, registry, token, fitted = prepare(tmp_path, register, models=("grid", "fraud"))
    X = np.asarray(fitted["grid"].X_val[:4], dtype=np.float64)
    model = registry.load("grid", backend="auto")
    headers = {"Authorization": f"Bearer {token}"}
    with ServerProcess(env=subprocess_env(s), log_dir=tmp_path / "server") as server:
        client = triton.InferenceServerClient(url=f"{server.host}:{server.port}")
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("grid", headers=headers)
        meta = client.get_model_metadata("grid", headers=headers)
        assert meta["inputs"][0]["shape"] == [-1, 20]

        def infer(binary: bool) -> Any:
            tensor = triton.InferInput("input", list(X.shape), "FP64")
            tensor.set_data_from_numpy(X, binary_data=binary)
            outputs = None if binary else [
                triton.InferRequestedOutput(n, binary_data=False)
                for n in ("label", "probabilities", "prediction_id")
            ]  # fmt: skip
            return client.infer("grid", [tensor], outputs=outputs, headers=headers)

        for binary in (False, True):
            result = infer(binary)
            np.testing.assert_allclose(result.as_numpy("probabilities"), model.predict_proba(X),
                                       rtol=1e-12)  # fmt: skip
            assert result.as_numpy("label").tolist() == model.predict(X).tolist()
            ids = [i.decode() if isinstance(i, bytes) else i
                   for i in result.as_numpy("prediction_id").tolist()]  # fmt: skip
            assert len(set(ids)) == 4 and all(i[14] == "7" for i in ids)

        rows = pd.DataFrame(fitted["fraud"].X_val[:3])
        tensors = []
        for name, datatype in (("amount", "FP64"), ("hour", "INT64"), ("merchant", "BYTES"),
                               ("country", "BYTES")):  # fmt: skip
            values = rows[name].to_numpy()
            values = values.astype(object) if datatype == "BYTES" else values.astype(
                np.float64 if datatype == "FP64" else np.int64)  # fmt: skip
            t = triton.InferInput(name, [3], datatype)
            t.set_data_from_numpy(values, binary_data=True)
            tensors.append(t)
        result = client.infer("fraud", tensors, headers=headers)
        assert result.as_numpy("label").tolist() == registry.load("fraud").predict(rows).tolist()
        with pytest.raises(Exception, match="not served"):
            client.infer("grid", [tensor_for(triton, X)], model_version="9", headers=headers)
        client.close()
    registry.store.dispose()


def tensor_for(triton, X):
    """A binary FP64 input tensor."""
    t = triton.InferInput("input", list(X.shape), "FP64")
    t.set_data_from_numpy(X)
    return t


def test_sigterm_under_load_loses_no_prediction(tmp_path, register):
    """Every prediction_id a client received is in the log after a SIGTERM mid-load."""
    s, registry, token, fitted = prepare(tmp_path, register)
    server = ServerProcess(
        env=subprocess_env(s, SLIPWAY_SERVE_LOG_FLUSH_SECONDS="5"), log_dir=tmp_path / "server"
    )
    server.start()
    rows = [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()}
            for r in fitted["fraud"].X_val.iloc[:5].to_dict("records")]  # fmt: skip
    url = server.url + "/v1/models/fraud/predict"
    with Load(url, {"instances": rows}, token, threads=6) as load:
        load.wait(lambda: len(load.ok()) >= 100)
        code = server.stop()
        received = {p["prediction_id"] for body in load.ok() for p in body["predictions"]}
    # uvicorn re-raises SIGTERM once its graceful shutdown is complete (exit by signal 15)
    assert code in (0, -15), server.stderr()
    assert len(received) >= 500
    assert received <= logged_ids(registry), "ids answered but not logged"
    assert "Application shutdown complete" in server.stderr()
    registry.store.dispose()


def test_hot_reload_under_load_fails_no_request(tmp_path, register):
    """Promoting v2 under load: every request succeeds and is answered by exactly one version."""
    s, registry, token, fitted = prepare(tmp_path, register)
    register(registry, "fraud", seed=1)  # version 2, trained on other data
    registry.promote("fraud", 1)
    row = {k: v.item() if hasattr(v, "item") else v
           for k, v in fitted["fraud"].X_val.iloc[0].to_dict().items()}  # fmt: skip
    served = {v: registry.load(f"fraud:{v}", backend="auto") for v in (1, 2)}
    expected = {v: m.predict_proba(pd.DataFrame([row]))[0, 1] for v, m in served.items()}
    assert expected[1] != expected[2]
    with ServerProcess(env=subprocess_env(s), log_dir=tmp_path / "server") as server:
        url = server.url + "/v1/models/fraud/predict"
        with Load(url, {"features": row}, token, threads=4) as load:
            load.wait(lambda: len(load.ok()) >= 50)
            registry.promote("fraud", 2)
            load.wait(lambda: sum(b["version"] == 2 for b in load.ok()) >= 50)
        statuses = {status for answers in load.answers for status, _ in answers}
        assert statuses == {200}
        for answers in load.answers:
            versions = [body["version"] for _, body in answers]
            assert versions == sorted(versions)  # never back to 1 once 2 answered
            for _, body in answers:
                got = body["predictions"][0]["probabilities"]["1"]
                assert got == pytest.approx(expected[body["version"]], rel=1e-12)
        assert {b["version"] for b in load.ok()} == {1, 2}
    registry.store.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="needs SLIPWAY_TEST_DATABASE_URL")
def test_two_workers_on_postgresql(tmp_path, register):
    """Two workers share PostgreSQL: both serve and log, metrics add up, revocation and
    promotion reach both within seconds."""
    assert PG_URL is not None
    schema_url = pg_schema_url(PG_URL)
    url_ = next(schema_url)
    try:
        s, registry, token, fitted = prepare(tmp_path, register, database_url=url_)
        register(registry, "fraud", seed=1)
        registry.promote("fraud", 1)
        row = {k: v.item() if hasattr(v, "item") else v
               for k, v in fitted["fraud"].X_val.iloc[0].to_dict().items()}  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        with ServerProcess(
            ["--workers", "2"], env=subprocess_env(s), log_dir=tmp_path / "server"
        ) as server:
            url = server.url + "/v1/models/fraud/predict"

            def fresh_request() -> httpx.Response:
                # A new connection each time, so the kernel spreads them over both workers.
                with httpx.Client(timeout=30) as c:
                    return c.post(url, json={"features": row}, headers=headers)

            def pids_with(status: int) -> set[int]:
                lines = [json.loads(line) for line in server.stdout().splitlines()]
                return {e["pid"] for e in lines if e["status"] == status}

            # Which worker accepts a connection is the kernel's choice: ask until both did.
            answers = [fresh_request() for _ in range(60)]
            while len(pids_with(200)) < 2 and len(answers) < 600:
                answers.append(fresh_request())
            assert {r.status_code for r in answers} == {200}
            pids = pids_with(200)
            assert len(pids) == 2, "both workers should have answered"
            ids = {r.json()["predictions"][0]["prediction_id"] for r in answers}
            deadline = time.monotonic() + 1.0  # the flush interval (50 ms), several times over
            while not ids <= logged_ids(registry) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ids <= logged_ids(registry)
            metrics = httpx.get(server.url + "/metrics", headers=headers).text
            total = f'slipway_predictions_total{{model="fraud",version="1"}} {len(answers)}.0'
            assert total in metrics

            registry.promote("fraud", 2)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                batch = [fresh_request().json()["version"] for _ in range(10)]
                if batch == [2] * 10:
                    break
            assert batch == [2] * 10

            KeyStore(registry.store).revoke("load")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                batch = [fresh_request().status_code for _ in range(10)]
                if batch == [401] * 10:
                    break
            assert batch == [401] * 10
            late = []
            while pids_with(401) != pids and len(late) < 600:
                late.append(fresh_request().status_code)
            assert set(late) <= {401} and pids_with(401) == pids
        registry.store.dispose()
    finally:
        next(schema_url, None)


def test_the_access_log_is_read_in_whole_lines(tmp_path):
    """A worker may be mid-write when a test reads the access log: the unfinished line is left
    for the next read, so every line returned parses."""
    server = ServerProcess(log_dir=tmp_path)
    assert server.stdout() == ""
    server.stdout_path.write_text('{"status": 200}\n{"status": 2')
    assert server.stdout() == '{"status": 200}\n'
    server.stdout_path.write_text('{"status": 2')
    assert server.stdout() == ""
    server.stdout_path.write_text('{"status": 200}\n{"status": 401}\n')
    assert [json.loads(line)["status"] for line in server.stdout().splitlines()] == [200, 401]


def test_a_server_that_cannot_start_says_why(tmp_path):
    """With no API key, `slipway serve` exits 1 with one line, and ServerProcess reports it."""
    from slipway.serving.process import ServerFailed

    s = Settings(home=tmp_path / "home", user="tester")
    with pytest.raises(ServerFailed, match="No API keys exist"):
        ServerProcess(env=subprocess_env(s), log_dir=tmp_path / "server").start()


def test_a_broken_production_model_leaves_the_healthy_one_served_and_ready(
    tmp_path, register, make_fitted, slipway_command
):
    """One production version that cannot load: the server starts and is ready, serves the
    healthy model, says why the other is not ready (no paths), `slipway models unalias`
    removes it; with --require-all the same server is not ready."""
    import os
    import subprocess
    import sys

    s, registry, token, _ = prepare(tmp_path, register, models=("fraud",))
    fitted = make_fitted("regressor")
    registry.register(fitted.pipeline, "prices", fitted.X_train, fitted.y_train)
    path = registry.artifacts.path(registry.get("prices:1").sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"damaged")
    registry.promote("prices", 1)
    headers = {"Authorization": f"Bearer {token}"}
    env = subprocess_env(s)
    with ServerProcess(env=env, log_dir=tmp_path / "server", ready_timeout=60) as server:
        ready = httpx.get(server.url + "/ready", timeout=10)
        body = ready.json()
        assert ready.status_code == 200 and body["models"] == {"fraud": 1}
        assert body["readiness"]["prices"]["ready"] is False
        assert "integrity check" in body["readiness"]["prices"]["reason"]
        assert str(path) not in ready.text and str(tmp_path) not in ready.text
        rows = fitted.X_val.iloc[:1].to_dict("records")
        fraud = httpx.post(server.url + "/v1/models/fraud/predict", headers=headers,
                           json={"instances": [{"amount": 10.0, "hour": 3, "merchant": "travel",
                                                "country": "US"}]}, timeout=10)  # fmt: skip
        assert fraud.status_code == 200
        prices = httpx.post(server.url + "/v1/models/prices/predict", headers=headers,
                            json={"instances": rows}, timeout=10)  # fmt: skip
        assert prices.status_code == 503 and prices.json()["code"] == "model_not_ready"
        assert "production version 1 failed to load" in prices.json()["error"]
        cli = subprocess.run(
            [slipway_command, "models", "unalias", "prices", "production"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        assert cli.returncode == 0 and "production of prices removed" in cli.stdout, cli.stderr
        deadline = time.monotonic() + 30
        while "prices" in httpx.get(server.url + "/ready", timeout=10).json()["readiness"]:
            assert time.monotonic() < deadline, "the unaliased model is still expected"
            time.sleep(0.2)
    registry.promote("prices", 1)
    # --require-all: once fraud is loaded, /ready says 503 because of prices. Not waited for
    # with ServerProcess.start, which would spend its whole ready_timeout waiting for a 200.
    strict = ServerProcess(["--require-all"], env=env, log_dir=tmp_path / "strict")
    with open(tmp_path / "strict.log", "wb") as log:
        command = [sys.executable, "-m", "slipway", "serve", "--host", strict.host,
                   "--port", str(strict.port), "--require-all"]  # fmt: skip
        strict.process = subprocess.Popen(command, stdout=log, stderr=log, env=strict.env)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert strict.process.poll() is None, (tmp_path / "strict.log").read_text()
            assert time.monotonic() < deadline, "the strict server never loaded fraud"
            try:
                verdict = httpx.get(strict.url + "/ready", timeout=10)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if verdict.json().get("models") == {"fraud": 1}:
                break
            time.sleep(0.1)
        assert verdict.status_code == 503, verdict.text
        assert verdict.json()["code"] == "not_ready"
        assert "prices: " in verdict.json()["error"] and "integrity check" in verdict.text
    finally:
        strict.stop()


def test_docs_open_in_a_browser_with_no_internet(tmp_path, register):
    """A real `slipway serve` says how to open /docs; with public docs, the page and every asset
    it needs come from the server (no CDN), without a key."""
    s, registry, _, _ = prepare(tmp_path, register)
    env = subprocess_env(s, SLIPWAY_SERVE_PUBLIC_DOCS="true")
    with ServerProcess(env=env, log_dir=tmp_path / "server") as server:
        page = httpx.get(server.url + "/docs").text
        assert "cdn" not in page and "https://" not in page
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert f"/docs/static/{asset}" in page
            assert httpx.get(f"{server.url}/docs/static/{asset}").status_code == 200
        assert httpx.get(server.url + "/openapi.json").json()["info"]["title"] == "Slipway"
        assert httpx.get(server.url + "/v1/models").status_code == 401
    assert f"API docs on {server.url}/docs" in server.stderr()
    registry.store.dispose()
