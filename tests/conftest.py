"""Shared fixtures: settings on SQLite or PostgreSQL, registries, and small fitted pipelines."""

from __future__ import annotations

import os
from pathlib import Path

# Two test workers on two cores: OpenMP pools in each (HistGradientBoosting) would spin
# against each other and run ~20x slower. Set before scikit-learn loads its runtime.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tests register pipelines with classes defined in tests/ (importable here because pytest puts
# the repository on sys.path); registration checks they load in a fresh interpreter, so that
# interpreter must find them too, as a user's PYTHONPATH would let it.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p
)
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from slipway.config import Settings
from slipway.registry import Registry
from slipway.testing import Fitted, fit_reference_model, transactions
from tests.helpers import NO_PG, PG_URL, pg_schema_url


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI (`.ci/run` exports CI=1) the PostgreSQL tests must run, never skip."""
    if os.environ.get("CI") and not PG_URL:
        raise pytest.UsageError(NO_PG + "; CI=1 is set, so this is an error, not a skip")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep ``xdist_group`` working under ``--dist loadgroup`` (`make test`).

    pytest-xdist groups a test by appending ``@group`` to its node id (``item._nodeid``), but
    pytest 9 keeps the id in ``item._id``, so the suffix is lost and a group's tests spread over
    both workers: a module's shared fixture (the docs' home, a Dask cluster, the browser's
    server) is then built once per worker, and the docs blocks leave file order. Set the suffix
    where pytest reads it, unless xdist already did.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})  # fmt: skip
        if names and "@" not in item.nodeid.rpartition("]")[2]:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")  # type: ignore[attr-defined]


def _share_httpx_default_ssl_context() -> None:
    """Build httpx's default SSL context once per test process, not once per client.

    Every ``httpx.Client()`` (and ``httpx.get``/``post``) loads certifi's CA bundle into a new
    ``SSLContext``: ~20-40 ms of CPU, paid by each of the thousands of fresh connections the
    real-process tests open (two workers must each see new connections) and by every
    ``/ready`` poll of ``ServerProcess``. The tests talk plain http to loopback, so the context
    is never used; sharing one (httpx's own advice for many clients) changes no behaviour.
    """
    import os as _os

    import httpx._transports.default as transports

    create = transports.create_ssl_context
    shared: dict[tuple[Any, ...], Any] = {}

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is not True or cert is not None:
            return create(verify=verify, cert=cert, trust_env=trust_env)
        # the same inputs give the same context: the CA file or directory the environment names
        env = (_os.environ.get("SSL_CERT_FILE"), _os.environ.get("SSL_CERT_DIR"))
        key = (trust_env, *env) if trust_env else (False,)
        if key not in shared:
            shared[key] = create(verify=True, cert=None, trust_env=trust_env)
        return shared[key]

    transports.create_ssl_context = create_ssl_context  # type: ignore[assignment]


_share_httpx_default_ssl_context()


@pytest.fixture(scope="session")
def slipway_command(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``slipway`` for tests that run the CLI in real processes: each command a process forked
    from one that imported the CLI already (:mod:`tests.fast_cli`), so it starts in
    milliseconds; the venv's own ``slipway`` where fork or fd passing is missing."""
    import shutil
    import socket
    import sys

    if not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        installed = shutil.which("slipway", path=str(Path(sys.executable).parent))
        assert installed, "the venv has no slipway script: pip install -e ."
        yield installed
        return
    from tests.fast_cli import CliZygote

    zygote = CliZygote(tmp_path_factory.mktemp("slipway-cli"), {"OMP_NUM_THREADS": "1"}).start()
    try:
        yield str(zygote.bin / "slipway")
    finally:
        zygote.stop()


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason=NO_PG)],
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using the store runs once on SQLite and once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str) -> Iterator[str | None]:
    """None for SQLite (the default file under SLIPWAY_HOME); a private schema on PostgreSQL."""
    if backend == "sqlite":
        yield None
        return
    assert PG_URL is not None
    yield from pg_schema_url(PG_URL)


@pytest.fixture
def settings(tmp_path: Any, database_url: str | None) -> Settings:
    """Settings with a private home (and database) for one test."""
    return Settings(home=tmp_path / "home", database_url=database_url, user="tester")


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    """A registry on the test's private store."""
    reg = Registry(settings)
    yield reg
    reg.store.dispose()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Settings:
    """Point the environment (top-level functions, CLI) at the test's private store."""
    monkeypatch.setenv("SLIPWAY_HOME", str(settings.home))
    monkeypatch.setenv("SLIPWAY_USER", "tester")
    if settings.database_url:
        monkeypatch.setenv("SLIPWAY_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("SLIPWAY_DATABASE_URL", raising=False)
    return settings


@pytest.fixture
def make_fitted() -> Any:
    """Factory: ``make_fitted(kind)`` -> Fitted, for kind in frame, array, multiclass, regressor."""

    def make(kind: str = "frame", n: int = 600, seed: int = 0) -> Fitted:
        rng = np.random.default_rng(seed)
        if kind == "frame":  # the reference model users test with, too
            return fit_reference_model(n, seed)
        if kind == "array":
            X = rng.normal(size=(n, 20))
            y = (X[:, 0] + X[:, 1] ** 2 + rng.normal(size=n) > 1).astype(int)
            pipe = make_pipeline(
                StandardScaler(), GradientBoostingClassifier(n_estimators=20, random_state=0)
            )
        elif kind == "multiclass":
            X = rng.normal(size=(n, 4))
            y = np.array(["a", "b", "c"])[np.argmax(X[:, :3] + rng.normal(size=(n, 3)), axis=1)]
            pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        elif kind == "regressor":
            X, _ = transactions(n, seed)
            X = X[["amount", "hour"]]
            y = 3 * X["amount"].to_numpy() - X["hour"].to_numpy() + rng.normal(size=n)
            pipe = make_pipeline(StandardScaler(), LinearRegression())
        else:
            raise ValueError(kind)
        cut = int(n * 0.75)
        X_tr, X_va = (X.iloc[:cut], X.iloc[cut:]) if hasattr(X, "iloc") else (X[:cut], X[cut:])
        pipe.fit(X_tr, y[:cut])
        return Fitted(pipe, X_tr, y[:cut], X_va, y[cut:])

    return make
