"""Test helpers for code built on Slipway: a throwaway registry, a reference model, a served app.

Use them as plain functions anywhere, or as pytest fixtures: opt in from your ``conftest.py``
with ``pytest_plugins = ["slipway.testing"]`` (needs pytest). The fixtures are

- ``slipway_registry``: a :class:`~slipway.Registry` on SQLite in the test's ``tmp_path``;
- ``slipway_env``: the environment pointed at that registry (``SLIPWAY_HOME``), so
  ``slipway.register``/``load``/``score`` and the CLI use it too;
- ``slipway_model``: a small fitted scikit-learn pipeline on transactions-like data
  (:class:`Fitted`: ``pipeline``, ``X_train``, ``y_train``, ``X_val``, ``y_val``);
- ``slipway_service``: that model registered as ``fraud`` and promoted, served in process by
  the full HTTP app with a ``predict`` API key (:class:`Service`: ``client``, ``headers``, ...).

Nothing here touches your real registry: every helper takes or makes its own home.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.versions import ModelVersion

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

try:  # the fixtures need pytest; the functions do not
    import pytest
except ImportError:  # pragma: no cover - exercised only without pytest installed
    pytest = None  # type: ignore[assignment]

__all__ = [
    "Fitted",
    "Service",
    "fit_reference_model",
    "register_reference_model",
    "served",
    "temporary_registry",
    "transactions",
]


@dataclass
class Fitted:
    """A fitted pipeline with the data it was trained and validated on."""

    pipeline: Any
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_val: pd.DataFrame
    y_val: np.ndarray


@dataclass
class Service:
    """A running in-process service: its registry, a TestClient and a predict key."""

    registry: Registry
    client: TestClient = field(repr=False)
    key: str = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer KEY``, for every guarded route."""
        return {"Authorization": f"Bearer {self.key}"}

    def predict(self, name: str, rows: list[dict[str, Any]], **body: Any) -> Any:
        """``POST /v1/models/{name}/predict`` with ``instances`` (and more body fields)."""
        response = self.client.post(
            f"/v1/models/{name}/predict", json={"instances": rows, **body}, headers=self.headers
        )
        return response


def transactions(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A small mixed-type frame (amount, hour, merchant, country) and a learnable binary target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n).round(2),
            "hour": rng.integers(0, 24, n),
            "merchant": rng.choice(["grocery", "travel", "gaming"], n),
            "country": rng.choice(["US", "GB", "NG"], n),
        }
    )
    logit = 0.02 * frame.amount - 2 + (frame.merchant == "gaming") * 1.5 + (frame.hour < 5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


def fit_reference_model(n: int = 600, seed: int = 0) -> Fitted:
    """Scale numbers, one-hot categories, logistic regression: fitted on 75% of
    :func:`transactions`, the rest kept for validation."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = transactions(n, seed)
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "hour"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["merchant", "country"]),
        ]
    )
    pipeline = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=500))])
    cut = int(n * 0.75)
    pipeline.fit(X.iloc[:cut], y[:cut])
    return Fitted(pipeline, X.iloc[:cut], y[:cut], X.iloc[cut:], y[cut:])


def temporary_registry(home: str | Path, **settings: Any) -> Registry:
    """A registry whose store and artifacts live under ``home`` (SQLite unless
    ``database_url=`` says otherwise); ``settings`` are more :class:`Settings` fields."""
    return Registry(Settings(home=Path(home), **{"user": "tester", **settings}))


def register_reference_model(
    registry: Registry,
    fitted: Fitted | None = None,
    name: str = "fraud",
    *,
    alias: str | None = "production",
    **options: Any,
) -> ModelVersion:
    """Register ``fitted`` (default: :func:`fit_reference_model`) with its validation data as
    the next version of ``name``, promoted to ``alias`` (None: not promoted)."""
    fitted = fitted or fit_reference_model()
    return registry.register(
        fitted.pipeline,
        name,
        fitted.X_train,
        fitted.y_train,
        X_val=fitted.X_val,
        y_val=fitted.y_val,
        alias=alias,
        **options,
    )


@contextmanager
def served(registry: Registry, **overrides: Any) -> Iterator[Service]:
    """The full service on ``registry``, started in process, with a fresh predict key.

    ``overrides`` are :class:`Settings` fields (e.g. ``serve_poll_seconds=0.1``).
    """
    from fastapi.testclient import TestClient

    from slipway.app import create_app

    settings = registry.settings.model_copy(update=overrides)
    key = KeyStore(registry.store).create(f"test-{len(KeyStore(registry.store).list())}", "predict")
    with TestClient(create_app(settings, registry=registry)) as client:
        yield Service(registry, client, key[1])


if pytest is not None:

    @pytest.fixture
    def slipway_registry(tmp_path: Path) -> Iterator[Registry]:
        """A registry on SQLite in the test's temporary directory."""
        registry = temporary_registry(tmp_path / "slipway-home")
        yield registry
        registry.store.dispose()

    @pytest.fixture
    def slipway_env(slipway_registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
        """``SLIPWAY_*`` variables pointing at ``slipway_registry`` (top-level API and CLI)."""
        monkeypatch.setenv("SLIPWAY_HOME", str(slipway_registry.settings.home))
        monkeypatch.setenv("SLIPWAY_USER", "tester")
        monkeypatch.delenv("SLIPWAY_DATABASE_URL", raising=False)
        return slipway_registry

    @pytest.fixture
    def slipway_model() -> Fitted:
        """A small fitted reference pipeline with its training and validation data."""
        return fit_reference_model()

    @pytest.fixture
    def slipway_service(slipway_registry: Registry, slipway_model: Fitted) -> Iterator[Service]:
        """``slipway_model`` registered as ``fraud`` (production), served with a predict key."""
        register_reference_model(slipway_registry, slipway_model)
        with served(slipway_registry, serve_poll_seconds=0.1) as service:
            yield service
