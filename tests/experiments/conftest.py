"""Fixtures for experiments: a registry with a production fraud model and a candidate, and the
full service running on it in process (with a predict and an admin key)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slipway.app import create_app
from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.testing import Fitted, fit_reference_model, register_reference_model
from tests.experiments.helpers import switchable

FAST = {"serve_poll_seconds": 0.1, "serve_log_flush_seconds": 0.05, "serve_rate_limit": 0}


@pytest.fixture
def two_versions(registry) -> tuple[Fitted, Fitted]:
    """``fraud`` version 1 in production and version 2 (another fit) registered; their data."""
    first, second = fit_reference_model(), fit_reference_model(seed=1)
    register_reference_model(registry, first)
    register_reference_model(registry, second, alias=None, onnx=False)
    return first, second


@dataclass
class Lab:
    """The full service in process on fraud:1 (production) with fraud:2 registered."""

    registry: Registry
    client: TestClient = field(repr=False)
    keys: dict[str, str] = field(repr=False)
    fitted: Fitted = field(repr=False)

    def post(self, path: str, body: Any = None, role: str = "predict") -> Any:
        """POST JSON with the predict (or admin) key."""
        headers = {"Authorization": f"Bearer {self.keys[role]}"}
        return self.client.post(path, json=body, headers=headers)

    def get(self, path: str, role: str = "predict") -> Any:
        """GET with a key."""
        return self.client.get(path, headers={"Authorization": f"Bearer {self.keys[role]}"})

    @property
    def service(self) -> Any:
        """The app's Service (runtime and its policy, log, metrics)."""
        return self.client.app.state.service

    def rows(self, n: int = 3) -> list[dict[str, Any]]:
        """The first ``n`` validation rows of the production version, as JSON records."""
        return [
            {k: v.item() if hasattr(v, "item") else v for k, v in r.items()}
            for r in self.fitted.X_val.iloc[:n].to_dict("records")
        ]


@pytest.fixture
def lab(tmp_path) -> Iterator[Any]:
    """Factory: ``lab(broken=False, settings=None, **overrides)`` -> a started :class:`Lab`;
    ``broken`` makes version 2 one that :data:`~tests.experiments.helpers.SWITCH` can break."""
    started: list[Lab] = []

    def make(broken: bool = False, settings: Settings | None = None, **overrides: Any) -> Lab:
        base = settings or Settings(home=tmp_path / "home", user="tester")
        registry = Registry(base.model_copy(update={**FAST, **overrides}))
        first, second = fit_reference_model(), fit_reference_model(seed=1)
        register_reference_model(registry, first)
        if broken:  # a custom step: no ONNX graph, so it answers through scikit-learn
            second.pipeline = switchable(second)
        register_reference_model(registry, second, alias=None, onnx=not broken)
        keys = {
            role: KeyStore(registry.store).create(f"{role}-key", role)[1]
            for role in ("predict", "admin")
        }
        client = TestClient(
            create_app(registry.settings, registry=registry), raise_server_exceptions=False
        )
        client.__enter__()
        started.append(Lab(registry, client, keys, first))
        return started[-1]

    yield make
    for lab_ in started:
        lab_.client.__exit__(None, None, None)
        lab_.registry.store.dispose()
