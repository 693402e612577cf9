"""Fixtures for the console: a served registry with keys, and a browser-like client that logs in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slipway import console
from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.serving import create_app
from tests.console.helpers import LOGIN_CSRF

FAST = {"serve_poll_seconds": 0.1, "serve_log_flush_seconds": 0.05}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Console:
    """An in-process service with the console, its registry and its keys (plain text)."""

    settings: Settings
    registry: Registry
    client: TestClient = field(repr=False)
    keys: dict[str, str]
    fitted: Any = field(default=None, repr=False)

    @property
    def service(self) -> Any:
        """The app's Service."""
        return self.client.app.state.service

    def login(self, key: str | None = None, client: TestClient | None = None) -> str:
        """Log ``client`` in with ``key`` (the admin key); return the session's CSRF token."""
        client = client or self.client
        page = client.get("/ui/login")
        assert page.status_code == 200, page.text
        form = {"login_csrf": LOGIN_CSRF.search(page.text)[1], "next": "/ui"}
        if key is not None or self.settings.serve_auth:
            form["key"] = key if key is not None else self.keys["admin"]
        answer = client.post("/ui/login", data=form, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        return self.csrf(client)

    def csrf(self, client: TestClient | None = None) -> str:
        """The CSRF token the models page carries for the client's session."""
        page = (client or self.client).get("/ui")
        assert page.status_code == 200, page.text
        return CSRF.search(page.text)[1]

    def other_client(self, app: Any = None) -> TestClient:
        """A second browser (its own cookies) on the same app, or on ``app``."""
        client = TestClient(app or self.client.app, base_url="https://testserver",
                            raise_server_exceptions=False)  # fmt: skip
        return client


@pytest.fixture
def make_console(tmp_path, make_fitted) -> Iterator[Any]:
    """Factory: ``make_console(database_url=None, **settings)`` -> a started Console serving
    the model ``fraud`` (SQLite unless a database URL is given)."""
    started: list[tuple[Console, list[TestClient]]] = []

    def make(
        *,
        register: bool = True,
        routers: Any = None,
        database_url: str | None = None,
        **overrides: Any,
    ) -> Console:
        s = Settings(home=tmp_path / f"home{len(started)}", database_url=database_url,
                     user="tester").model_copy(update={**FAST, **overrides})  # fmt: skip
        registry = Registry(s)
        fitted = None
        if register:
            fitted = make_fitted("frame")
            f = fitted
            registry.register(f.pipeline, "fraud", f.X_train, f.y_train, X_val=f.X_val,
                              y_val=f.y_val, alias="production")  # fmt: skip
        keys = {}
        for role in ("predict", "admin"):
            keys[role] = KeyStore(registry.store).create(f"{role}-key", role)[1]
        app = create_app(s, registry=registry,
                         routers=[console.router] if routers is None else routers)  # fmt: skip
        # https: the session cookie is Secure, and a client keeps it only over https
        client = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)
        client.__enter__()
        c = Console(s, registry, client, keys, fitted)
        started.append((c, [client]))
        return c

    yield make
    for c, clients in started:
        for client in clients:
            client.__exit__(None, None, None)
        c.registry.store.dispose()


@pytest.fixture
def ui(make_console) -> Console:
    """A console on SQLite serving ``fraud``, not logged in."""
    return make_console()


@pytest.fixture
def ui_any(make_console, database_url) -> Console:
    """A console on each store (SQLite and PostgreSQL) serving ``fraud``, not logged in."""
    return make_console(database_url=database_url)
