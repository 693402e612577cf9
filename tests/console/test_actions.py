"""Console actions: each goes through the CLI's library call, needs a CSRF token, is audited."""

from __future__ import annotations

import re

import pytest

from slipway.clock import utcnow
from slipway.keys import KeyStore
from slipway.store.console import find_session


def register_v2(ui):
    """A second version of ``fraud``, not promoted."""
    f = ui.fitted
    ui.registry.register(f.pipeline, "fraud", f.X_train, f.y_train, X_val=f.X_val, y_val=f.y_val)


def test_promote_asks_first_then_moves_the_alias_and_audits_the_key(ui):
    """GET shows what will move; POST with the token moves it, audited as the key via ui."""
    register_v2(ui)
    csrf = ui.login()
    page = ui.client.get("/ui/models/fraud/promote?version=2")
    assert "It points at version 1" in page.text and 'name="csrf"' in page.text
    assert ui.registry.aliases("fraud") == {"production": 1}
    answer = ui.client.post("/ui/models/fraud/promote",
                            data={"csrf": csrf, "version": "2", "alias": "production"},
                            follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/models/fraud?done=promoted&alias=production&version=2"
    assert ui.registry.aliases("fraud") == {"production": 2}
    event = ui.registry.audit("fraud", limit=1)[0]
    # the new production version has no passing `slipway check`: the audit says so
    assert (event.action, event.actor, event.detail) == (
        "promote",
        "admin-key",
        {"via": "ui", "checked": False},
    )
    assert (event.from_version, event.to_version) == (1, 2)
    assert "production now points at version 2." in ui.client.get(answer.headers["location"]).text


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/ui/models/fraud/promote", {"version": "2", "alias": "production"}),
        ("/ui/models/fraud/rollback", {"alias": "production"}),
        ("/ui/models/fraud/versions/2/archive", {}),
        ("/ui/models/fraud/reload", {}),
        ("/ui/keys", {"name": "x", "role": "admin"}),
        ("/ui/keys/predict-key/revoke", {}),
        ("/ui/logout", {}),
    ],
)
def test_state_changes_without_the_csrf_token_are_refused(ui, path, data):
    """Every POST without the session's token, or with another session's, is a 403 and changes
    nothing."""
    register_v2(ui)
    ui.login()
    other = ui.other_client()
    foreign = ui.login(client=other)
    before = (ui.registry.aliases("fraud"), ui.registry.audit(None, limit=1)[0].at)
    for token in (None, "0" * 64, foreign):
        form = dict(data) if token is None else {**data, "csrf": token}
        answer = ui.client.post(path, data=form, follow_redirects=False)
        assert answer.status_code == 403, (token, answer.text)
        assert "CSRF token" in answer.text
    assert (ui.registry.aliases("fraud"), ui.registry.audit(None, limit=1)[0].at) == before
    assert ui.client.get("/ui").status_code == 200  # still logged in


def test_the_csrf_token_may_come_as_a_header(ui):
    """Scripts send the token as X-CSRF-Token instead of a form field."""
    register_v2(ui)
    csrf = ui.login()
    answer = ui.client.post("/ui/models/fraud/promote", data={"version": "2"},
                            headers={"X-CSRF-Token": csrf}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303 and ui.registry.aliases("fraud")["production"] == 2


def test_a_post_from_another_origin_is_refused_even_with_the_token(ui):
    """An Origin header naming another site is refused before anything changes."""
    register_v2(ui)
    csrf = ui.login()
    answer = ui.client.post("/ui/models/fraud/promote", data={"csrf": csrf, "version": "2"},
                            headers={"Origin": "https://evil.example"})  # fmt: skip
    assert answer.status_code == 403 and "another site" in answer.text
    assert ui.registry.aliases("fraud")["production"] == 1


def test_a_post_without_a_session_is_a_401_page(ui):
    """A state change from a logged-out browser is refused; nothing moves."""
    register_v2(ui)
    answer = ui.client.post("/ui/models/fraud/promote", data={"version": "2"})
    assert answer.status_code == 401
    assert ui.registry.aliases("fraud")["production"] == 1


def test_rollback_moves_the_alias_back(ui):
    """Roll back through the console returns production to the version it held before."""
    register_v2(ui)
    ui.registry.promote("fraud", 2)
    csrf = ui.login()
    assert "points at version 2 now" in ui.client.get("/ui/models/fraud/rollback").text
    answer = ui.client.post("/ui/models/fraud/rollback", data={"csrf": csrf, "alias": "production"})
    assert answer.status_code == 200 and "production rolled back to version 1." in answer.text
    assert ui.registry.aliases("fraud")["production"] == 1
    event = ui.registry.audit("fraud", limit=1)[0]
    assert (event.action, event.actor, event.detail["via"]) == ("rollback", "admin-key", "ui")


def test_rollback_without_history_is_a_409_page(ui):
    """A rollback the registry refuses shows its reason with 409; the alias stays."""
    csrf = ui.login()
    answer = ui.client.post("/ui/models/fraud/rollback", data={"csrf": csrf})
    assert answer.status_code == 409 and "no earlier version to roll back to" in answer.text


def test_archive_through_the_console(ui):
    """Archive retires a version; archiving one held by an alias is a 409 naming the alias."""
    register_v2(ui)
    csrf = ui.login()
    held = ui.client.post("/ui/models/fraud/versions/1/archive", data={"csrf": csrf})
    assert held.status_code == 409 and "held by alias(es) production" in held.text
    done = ui.client.post("/ui/models/fraud/versions/2/archive", data={"csrf": csrf})
    assert done.status_code == 200 and "Version 2 archived." in done.text
    assert ui.registry.get("fraud:2").status == "archived"
    assert ui.registry.audit("fraud", limit=1)[0].detail == {"via": "ui"}


def test_reload_loads_the_production_version_on_this_server(ui):
    """Reload swaps the served version now, and the audit trail records it."""
    register_v2(ui)
    ui.service.runtime.stop()  # keep the watcher from following the alias first
    ui.registry.promote("fraud", 2)
    csrf = ui.login()
    assert "It serves version 1" in ui.client.get("/ui/models/fraud/reload").text
    answer = ui.client.post("/ui/models/fraud/reload", data={"csrf": csrf})
    assert "it serves version 2." in answer.text
    assert ui.service.runtime.get("fraud").version == 2
    event = ui.registry.audit("fraud", limit=1)[0]
    assert (event.action, event.from_version, event.to_version) == ("reload", 1, 2)
    assert (event.actor, event.detail) == ("admin-key", {"changed": True, "via": "ui"})


def test_promote_with_a_bad_version_or_alias_is_a_4xx_page(ui):
    """Form values are checked: a version that is not a number, an unknown one, a bad alias."""
    csrf = ui.login()
    cases = [({"version": "x"}, 422), ({"version": "7"}, 404),
             ({"version": "1", "alias": "Not An Alias"}, 400)]  # fmt: skip
    for data, status in cases:
        answer = ui.client.post("/ui/models/fraud/promote", data={"csrf": csrf, **data})
        assert answer.status_code == status, answer.text


def test_a_created_key_is_shown_once_and_works(ui):
    """Create shows the key once (no-store); it is valid, audited, and never shown again."""
    csrf = ui.login()
    answer = ui.client.post("/ui/keys", data={"csrf": csrf, "name": "new-app", "role": "predict"})
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    token = re.search(r'value="(slw_[^"]+)"', answer.text)[1]
    assert KeyStore(ui.registry.store).active()  # the key is stored (hashed)
    ui.service.keys.refresh()
    headers = {"Authorization": f"Bearer {token}"}
    assert ui.client.get("/v1/models", headers=headers).status_code == 200
    assert token not in ui.client.get("/ui/keys").text
    event = ui.registry.audit(None, limit=1)[0]
    assert (event.action, event.actor, event.model) == ("create_key", "admin-key", None)
    assert event.detail == {"key": "new-app", "role": "predict", "via": "ui"}


@pytest.mark.parametrize(
    ("data", "status", "text"),
    [
        ({"name": "bad name!", "role": "predict"}, 422, "is not a valid key name"),
        ({"name": "ok", "role": "root"}, 422, "is not one of predict, admin"),
        ({"name": "admin-key", "role": "admin"}, 409, "already exists"),
    ],
)
def test_bad_key_requests_are_refused_with_the_reason(ui, data, status, text):
    """An invalid name, an unknown role or a name in use: 4xx naming the problem."""
    csrf = ui.login()
    answer = ui.client.post("/ui/keys", data={"csrf": csrf, **data})
    assert answer.status_code == status and text in answer.text


def test_revoking_a_key_ends_its_console_sessions_at_once(ui):
    """Revoke goes through KeyStore.revoke, is audited, and deletes that key's sessions."""
    csrf = ui.login()
    second = KeyStore(ui.registry.store).create("second-admin", "admin")[1]
    ui.service.keys.refresh()
    other = ui.other_client()
    ui.login(second, client=other)
    token = other.cookies.get("slipway_console")
    answer = ui.client.post("/ui/keys/second-admin/revoke", data={"csrf": csrf},
                            follow_redirects=False)  # fmt: skip
    assert answer.headers["location"] == "/ui/keys?done=revoked"
    from slipway.keys import hash_token

    assert find_session(ui.registry.store, hash_token(token), utcnow()) is None
    assert other.get("/ui", follow_redirects=False).status_code == 303
    event = ui.registry.audit(None, limit=1)[0]
    assert (event.action, event.actor, event.detail["key"]) == (
        "revoke_key",
        "admin-key",
        "second-admin",
    )


def test_forms_with_too_many_fields_are_refused(ui):
    """A form body is parsed within limits: too many fields is a 422, not a crash."""
    csrf = ui.login()
    data = {f"f{i}": "x" for i in range(50)}
    answer = ui.client.post("/ui/models/fraud/promote", data={"csrf": csrf, **data},
                            headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert answer.status_code == 422 and "more than 20 fields" in answer.text
