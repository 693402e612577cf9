"""Fixtures for the service: registered models, API keys and an in-process client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slipway.app import create_app
from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.testing import register_reference_model

# Models the harness can register: name -> make_fitted kind.
KINDS = {"fraud": "frame", "prices": "regressor", "grid": "array", "species": "multiclass"}
FAST = {
    "serve_poll_seconds": 0.1,
    "serve_log_flush_seconds": 0.05,
}


@dataclass
class Harness:
    """A running in-process service with its registry, keys and the data behind its models."""

    settings: Settings
    registry: Registry
    client: TestClient = field(repr=False)
    keys: dict[str, str]
    fitted: dict[str, Any] = field(default_factory=dict, repr=False)

    def auth(self, role: str = "predict") -> dict[str, str]:
        """Headers carrying the predict (or admin) key."""
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def post(self, path: str, body: Any = None, role: str = "predict", **kw: Any) -> Any:
        """POST JSON with a key."""
        headers = {**self.auth(role), **kw.pop("headers", {})}
        return self.client.post(path, json=body, headers=headers, **kw)

    def get(self, path: str, role: str = "predict", **kw: Any) -> Any:
        """GET with a key."""
        return self.client.get(path, headers={**self.auth(role), **kw.pop("headers", {})}, **kw)

    @property
    def service(self) -> Any:
        """The app's Service (runtime, log, metrics)."""
        return self.client.app.state.service

    def rows(self, name: str, n: int = 3) -> list[dict[str, Any]]:
        """The first ``n`` validation rows of a registered model, as JSON records."""
        X = self.fitted[name].X_val
        if hasattr(X, "iloc"):
            return [{k: _py(v) for k, v in r.items()} for r in X.iloc[:n].to_dict("records")]
        names = [f"feature_{i}" for i in range(X.shape[1])]
        return [dict(zip(names, map(float, r), strict=True)) for r in X[:n]]


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


@pytest.fixture
def register(make_fitted):
    """Factory: ``register(registry, name)`` fits the model ``name`` stands for and promotes it."""

    def make(registry: Registry, name: str, seed: int = 0, **options: Any) -> Any:
        fitted = make_fitted(KINDS[name], seed=seed)
        # The fixture pipelines ignore unknown categories, so registration would flag them;
        # these tests exercise the refusal unless they ask for "flag".
        options.setdefault("unseen", "reject")
        register_reference_model(registry, fitted, name, **options)
        return fitted

    return make


@pytest.fixture
def serve(tmp_path, register) -> Iterator[Any]:
    """Factory: ``serve(models=("fraud",), settings=None, routing=None, clock=..., **overrides)``
    -> a started Harness (``routing``: a routing policy factory for ``create_app``; ``clock``:
    the rate limiter's)."""
    started: list[Harness] = []

    def make(
        models: tuple[str, ...] = ("fraud",),
        settings: Settings | None = None,
        routing: Any = None,
        clock: Callable[[], float] = time.monotonic,
        **overrides: Any,
    ) -> Harness:
        base = settings or Settings(home=tmp_path / "home", user="tester")
        s = base.model_copy(update={**FAST, **overrides})
        registry = Registry(s)
        fitted = {name: register(registry, name) for name in models}
        keys = {}
        for role in ("predict", "admin"):
            keys[role] = KeyStore(registry.store).create(f"{role}-key", role)[1]
        options = {} if routing is None else {"routing": routing}
        app = create_app(s, registry=registry, clock=clock, **options)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        harness = Harness(s, registry, client, keys, fitted)
        started.append(harness)
        return harness

    yield make
    for h in started:
        h.client.__exit__(None, None, None)
        h.registry.store.dispose()


@pytest.fixture
def harness(serve) -> Harness:
    """A service on SQLite serving the frame classifier ``fraud``."""
    return serve()
