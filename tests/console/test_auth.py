"""Console logins: the admin-key form, the session cookie, CSRF, logout, expiry, several workers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from slipway import console
from slipway.keys import KeyStore, hash_token
from slipway.serving import create_app
from tests.console.helpers import LOGIN_CSRF


def test_pages_redirect_to_the_login_form_without_a_session(ui):
    """Without a session every page sends the browser to the login form, keeping the target."""
    answer = ui.client.get("/ui/models/fraud?x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2Fmodels%2Ffraud%3Fx%3D1"


def test_login_sets_a_secure_http_only_same_site_cookie_with_expiry(ui):
    """An admin key logs in: the session cookie is Secure, HttpOnly, SameSite=Strict, /ui only."""
    page = ui.client.get("/ui/login")
    form = {"login_csrf": LOGIN_CSRF.search(page.text)[1], "key": ui.keys["admin"], "next": ""}
    answer = ui.client.post("/ui/login", data=form, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "slipway_console=" in c)
    attributes = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")}
    assert {"secure", "httponly", "path", "max-age", "samesite"} <= set(attributes)
    assert attributes["samesite"].lower().endswith("strict")
    assert attributes["path"].endswith("/ui")
    assert attributes["max-age"].endswith(str(8 * 3600))
    assert ui.client.get("/ui").status_code == 200


def test_a_predict_key_cannot_log_in(ui):
    """A predict key is refused with 403 naming the role: predict keys see nothing."""
    page = ui.client.get("/ui/login")
    form = {"login_csrf": LOGIN_CSRF.search(page.text)[1], "key": ui.keys["predict"]}
    answer = ui.client.post("/ui/login", data=form, follow_redirects=False)
    assert answer.status_code == 403
    assert "role &#39;predict&#39;" in answer.text and "needs an admin key" in answer.text
    assert ui.client.get("/ui", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(("key", "status"), [("slw_nope", 401), ("", 401)])
def test_unknown_or_empty_keys_are_refused(ui, key, status):
    """An unknown key or none at all gets the form again with the reason, and no session."""
    page = ui.client.get("/ui/login")
    form = {"login_csrf": LOGIN_CSRF.search(page.text)[1], "key": key}
    answer = ui.client.post("/ui/login", data=form, follow_redirects=False)
    assert answer.status_code == status
    assert 'role="alert"' in answer.text
    assert "slipway_console=" not in answer.headers.get("set-cookie", "").split(";")[0]


def test_login_without_its_form_token_is_refused(ui):
    """A login posted without the login form's double-submit token (login CSRF) gets 403."""
    ui.client.get("/ui/login")
    answer = ui.client.post("/ui/login", data={"key": ui.keys["admin"]}, follow_redirects=False)
    assert answer.status_code == 403
    assert "expired or came from elsewhere" in answer.text


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui", "/v1/models"])
def test_login_never_redirects_off_the_console(ui, target):
    """``next`` can only lead to a console path: no open redirect."""
    page = ui.client.get("/ui/login")
    form = {"login_csrf": LOGIN_CSRF.search(page.text)[1], "key": ui.keys["admin"],
            "next": target}  # fmt: skip
    answer = ui.client.post("/ui/login", data=form, follow_redirects=False)
    assert answer.headers["location"] == "/ui"


def test_logged_in_users_skip_the_login_form(ui):
    """The login page sends a logged-in browser on to the console."""
    ui.login()
    answer = ui.client.get("/ui/login?next=/ui/keys", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/keys"


def test_logout_needs_the_csrf_token_and_ends_the_session(ui):
    """Logout without the token is refused (403); with it the session ends for good."""
    csrf = ui.login()
    assert ui.client.post("/ui/logout", follow_redirects=False).status_code == 403
    assert ui.client.get("/ui").status_code == 200
    answer = ui.client.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login?out=1"
    assert ui.client.get("/ui", follow_redirects=False).status_code == 303


def test_a_stolen_cookie_is_useless_after_logout(ui):
    """Logout deletes the session on the server, so a copy of the cookie stops working too."""
    csrf = ui.login()
    token = ui.client.cookies.get("slipway_console")
    ui.client.post("/ui/logout", data={"csrf": csrf})
    thief = ui.other_client()
    thief.cookies.set("slipway_console", token, domain="testserver.local", path="/ui")
    assert thief.get("/ui", follow_redirects=False).status_code == 303


def test_sessions_are_shared_by_every_worker_on_the_store(ui_any):
    """A login on one app (worker) works on another on the same store; logout ends it on both."""
    ui = ui_any
    csrf = ui.login()
    token = ui.client.cookies.get("slipway_console")
    second = create_app(ui.settings, registry=ui.registry, routers=[console.router])
    with ui.other_client(second) as other:
        other.cookies.set("slipway_console", token, domain="testserver.local", path="/ui")
        assert other.get("/ui").status_code == 200
        assert other.post("/ui/logout", data={"csrf": csrf}).status_code == 200
        assert ui.client.get("/ui", follow_redirects=False).status_code == 303


def test_the_store_keeps_only_the_hash_of_the_session_token(ui_any):
    """The sessions table holds the token's sha256, never the token."""
    from slipway.clock import utcnow
    from slipway.store.console import find_session

    ui_any.login()
    token = ui_any.client.cookies.get("slipway_console")
    record = find_session(ui_any.registry.store, hash_token(token), utcnow())
    assert record is not None and record.key_name == "admin-key"
    assert find_session(ui_any.registry.store, token, utcnow()) is None


def test_sessions_expire(make_console, monkeypatch):
    """A session past its lifetime no longer lets the browser in."""
    from slipway.console import sessions

    ui = make_console(serve_console_session_hours=1)
    ui.login()
    assert ui.client.get("/ui", follow_redirects=False).status_code == 200
    # The sessions' clock, just past the hour (the browser still sends the cookie): the
    # session's recorded expiry is what ends it, without the test waiting for it.
    later = sessions.utcnow() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(sessions, "utcnow", lambda: later)
    assert ui.client.get("/ui", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(ui):
    """A session lasts only as long as its key: a revoked key's browser is sent to log in."""
    ui.login()
    KeyStore(ui.registry.store).revoke("admin-key")
    ui.service.keys.refresh()  # what every worker does within serve_poll_seconds
    assert ui.client.get("/ui", follow_redirects=False).status_code == 303


def test_a_session_cookie_does_not_authenticate_the_api(ui):
    """/v1 still needs an API key: the console's cookie opens only /ui."""
    ui.login()
    assert ui.client.get("/v1/models").status_code == 401


def test_an_api_key_does_not_open_the_console(ui):
    """/ui needs a session: an admin key in a header is not a login."""
    headers = {"Authorization": f"Bearer {ui.keys['admin']}"}
    answer = ui.client.get("/ui", headers=headers, follow_redirects=False)
    assert answer.status_code == 303
    api = ui.client.get("/ui/api/traffic", headers=headers)
    assert api.status_code == 401 and api.json()["code"] == "unauthorized"


def test_without_the_console_ui_is_just_another_guarded_path(make_console):
    """An app built without the console router answers /ui like any unknown guarded route."""
    ui = make_console(routers=[])
    assert ui.client.get("/ui", follow_redirects=False).status_code == 401


def test_with_auth_off_anyone_enters_as_anonymous(make_console):
    """With --no-auth the login form is one button, and actions are audited as anonymous."""
    ui = make_console(serve_auth=False)
    page = ui.client.get("/ui/login")
    assert "Authentication is off" in page.text and 'name="key"' not in page.text
    csrf = ui.login()
    ui.client.post("/ui/models/fraud/reload", data={"csrf": csrf})
    event = ui.registry.audit("fraud", limit=1)[0]
    assert (event.action, event.actor, event.detail["via"]) == ("reload", "anonymous", "ui")


def test_an_open_session_does_not_survive_turning_auth_on(make_console, tmp_path):
    """A login made while auth was off is refused once the server checks keys again."""
    ui = make_console(serve_auth=False)
    ui.login()
    token = ui.client.cookies.get("slipway_console")
    KeyStore(ui.registry.store).create("anonymous", "admin")
    settings = ui.settings.model_copy(update={"serve_auth": True})
    app = create_app(settings, registry=ui.registry, routers=[console.router])
    with ui.other_client(app) as other:
        other.cookies.set("slipway_console", token, domain="testserver.local", path="/ui")
        assert other.get("/ui", follow_redirects=False).status_code == 303


def test_login_over_plain_http_to_a_remote_host_warns_about_the_secure_cookie(ui):
    """A login page served over http to a non-loopback host says the cookie needs HTTPS."""
    from fastapi.testclient import TestClient

    app = ui.client.app
    remote = TestClient(app, base_url="http://10.1.2.3:8000").get("/ui/login")
    assert "Secure" in remote.text and "TLS proxy" in remote.text
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "https://10.1.2.3"):
        assert "TLS proxy" not in TestClient(app, base_url=base).get("/ui/login").text


def test_the_prediction_lane_has_no_session_check(ui):
    """Predictions' gate checks no session (nothing added to the hot path); the routed gate does."""
    assert ui.client.app.lane.sessions == ()
    stack = ui.client.app.middleware_stack
    while not hasattr(stack, "sessions"):
        stack = stack.app
    assert [prefix for prefix, _, _ in stack.sessions] == ["/ui"]
