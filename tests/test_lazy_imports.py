"""A serving worker imports what serving needs: lazy re-exports, lazy capabilities, no Alembic.

The worker's imports are read from ``sys.modules`` of a fresh interpreter (a subprocess), which
builds the full app as ``slipway serve`` does (``slipway.app:app_from_env``), runs its lifespan
and answers one prediction through the ASGI interface directly (a test client would import
httpx itself). What is asserted is which modules were imported, never how long it took; the
times and memory are measured by ``bench/coldstart.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa

import slipway
import slipway.batch
import slipway.monitoring
from slipway import _lazy
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.store import Store, engine

# Imported by no worker that serves an ONNX-backed model, whatever else it loads: the other
# capabilities (monitoring's runner and statistics, batch scoring, the lifecycle, training, the
# console's pages and templates), registration (skl2onnx), the CLI (typer), migrations (the
# store is at head), the webhook client (httpx).
NEVER = (
    "alembic",
    "httpx",
    "jinja2",
    "skl2onnx",
    "slipway.batch.runner",
    "slipway.cli",
    "slipway.console.pages",
    "slipway.lifecycle",
    "slipway.monitoring.runner",
    "slipway.registration",
    "slipway.train",
    "typer",
)
# Also absent while the app is only built: what loading a model brings (the scikit-learn
# pipeline ONNX answers beside, for near-ties, and scikit-learn's own imports).
NOT_AT_BUILD = ("onnxruntime", "scipy", "sklearn")

WORKER = """
import asyncio, json, os, sys

from slipway.app import app_from_env

HEAVY = json.loads(os.environ["HEAVY"])


async def call(app, method, path, body=b"", headers=()):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "state": {},
             "headers": [(b"content-type", b"application/json"), *headers]}
    messages, requested = [], []

    async def receive():
        if not requested:
            requested.append(True)
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


async def main():
    app = app_from_env()
    built = [m for m in HEAVY if m in sys.modules]
    inbox, outbox = asyncio.Queue(), asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    ready = (await call(app, "GET", "/ready"))[0]
    token = os.environ["TOKEN"].encode()
    status, body = await call(app, "POST", "/v1/models/fraud/predict", os.environ["BODY"].encode(),
                              [(b"authorization", b"Bearer " + token)])
    answered = [m for m in HEAVY if m in sys.modules]
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await life
    print(json.dumps({"built": built, "answered": answered, "ready": ready, "status": status,
                      "answer": json.loads(body)}))


asyncio.run(main())
"""


def run_worker(settings: Any, token: str, row: dict[str, Any]) -> dict[str, Any]:
    """Build, start and ask a worker in a fresh interpreter; what it had imported when."""
    env = {
        **os.environ,
        "SLIPWAY_HOME": str(settings.home),
        "SLIPWAY_SERVE_LOG_FLUSH_SECONDS": "0.05",
        "HEAVY": json.dumps([*NEVER, *NOT_AT_BUILD]),
        "TOKEN": token,
        "BODY": json.dumps({"instances": [row]}),
    }
    if settings.database_url:
        env["SLIPWAY_DATABASE_URL"] = settings.database_url
    out = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def served(registry: Registry, make_fitted: Any) -> tuple[str, dict[str, Any]]:
    """The reference model in production, answered by ONNX; (an API key, a row)."""
    fitted = make_fitted("frame")
    mv = registry.register(fitted.pipeline, "fraud", fitted.X_train, fitted.y_train)
    assert mv.meta["onnx"]["accepted"], mv.meta["onnx"]
    registry.promote("fraud", mv.version)
    token = KeyStore(registry.store).create("worker", "predict")[1]
    return token, json.loads(fitted.X_val.iloc[:1].to_json(orient="records"))[0]


def test_worker_serving_onnx_never_imports_other_capabilities(settings, served):
    """A worker builds its app without scikit-learn, scipy or the capabilities' engines, and
    answers with ONNX without monitoring, batch, lifecycle, console pages, Alembic or httpx."""
    token, row = served
    worker = run_worker(settings, token, row)
    assert (worker["ready"], worker["status"]) == (200, 200), worker
    assert worker["answer"]["predictions"][0]["label"] in (0, 1)
    assert worker["built"] == []
    assert sorted(set(worker["answered"]) & set(NEVER)) == []


def test_the_cli_imports_no_capability_engine():
    """`python -m slipway` (the worker of `slipway serve --workers 1`) loads each command's
    engine when that command runs: importing the CLI loads neither scikit-learn nor scipy."""
    heavy = sorted(set(NEVER) - {"slipway.cli", "typer"} | set(NOT_AT_BUILD))
    script = f"import sys, slipway.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_store_at_head_is_recognised_without_alembic(settings):
    """head_revision equals Alembic's head, and only a database at it skips the migration."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(engine._MIGRATIONS))
    assert engine.head_revision() == ScriptDirectory.from_config(cfg).get_current_head()
    store = Store(settings.resolved_database_url)
    try:
        assert engine._at_head(store)
        with store.write() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
        assert not engine._at_head(store)
    finally:
        store.dispose()


def test_a_new_database_is_migrated(settings):
    """A database without Alembic's table is not taken for one at head: it gets the schema."""
    store = Store(settings.resolved_database_url)
    try:
        with store.read() as conn:
            assert "models" in sa.inspect(conn).get_table_names()
            current = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            assert list(current) == [engine.head_revision()]
    finally:
        store.dispose()


@pytest.mark.parametrize("package", [slipway, slipway.batch, slipway.monitoring])
def test_every_lazy_name_resolves_and_is_listed(package):
    """Each name in __all__ resolves (imported on first use) and dir() lists it."""
    for name in package.__all__:
        assert getattr(package, name) is not None, name
        assert name in dir(package), name
    with pytest.raises(
        AttributeError, match=f"module '{package.__name__}' has no attribute 'nope'"
    ):
        package.nope  # noqa: B018


def test_lazy_module_imports_on_first_attribute():
    """_lazy.Module imports the module on first attribute access and forwards attributes."""
    lazy_json = _lazy.Module("json")
    assert lazy_json.dumps({"a": 1}) == json.dumps({"a": 1})
    assert repr(lazy_json) == "<lazily imported module 'json'>"
    with pytest.raises(ModuleNotFoundError):
        _lazy.Module("slipway.no_such_module").anything  # noqa: B018
