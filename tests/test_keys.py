"""API keys: shown once, stored as sha256, revocable; `slipway keys ...` and serve's checks."""

from __future__ import annotations

import getpass
import hashlib
import json

import pytest
import sqlalchemy as sa

from slipway.exceptions import ConfigError, KeyNotFound, RegistryConflict
from slipway.keys import KeyStore
from slipway.store.schema import api_keys
from tests.cli_helpers import run_cli


def test_keys_are_random_and_stored_only_as_sha256(registry):
    """The plain key is 256 random bits; the table holds its sha256 and a short prefix."""
    keys = KeyStore(registry.store)
    _, token = keys.create("alice", "predict")
    _, other = keys.create("bob", "admin")
    assert token.startswith("slw_") and len(token) == 4 + 43 and token != other
    with registry.store.read() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.name == "alice")).one()
    assert row.key_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(row._asdict()).replace(row.prefix, "")
    assert set(keys.active()) == {row.key_hash, hashlib.sha256(other.encode()).hexdigest()}
    assert keys.active()[row.key_hash].role == "predict"


def test_revocation_and_name_rules(registry):
    """Revoked keys leave the active set; names are never reused; bad input is refused."""
    keys = KeyStore(registry.store)
    keys.create("alice", "predict")
    revoked = keys.revoke("alice")
    assert revoked.revoked_at is not None and keys.active() == {}
    assert keys.revoke("alice").revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(RegistryConflict, match="never reused"):
        keys.create("alice", "predict")
    with pytest.raises(KeyNotFound, match="Known keys: alice"):
        keys.revoke("carol")
    with pytest.raises(ConfigError, match="not one of"):
        keys.create("dave", "root")
    with pytest.raises(ConfigError, match="not a valid key name"):
        keys.create("no spaces", "predict")


def test_cli_create_prints_the_key_once_list_never_shows_it(capsys, env):
    """`keys create` prints the key alone on stdout; `keys list` shows names and prefixes."""
    created = run_cli(capsys, "keys", "create", "--name", "ci", "--role", "admin")
    assert created.code == 0, created.err
    token = created.out.strip()
    assert token.startswith("slw_") and "shown once" in created.err
    listed = run_cli(capsys, "keys", "list", "--json")
    (entry,) = json.loads(listed.out)
    assert (entry["name"], entry["role"], entry["revoked_at"]) == ("ci", "admin", None)
    assert token not in listed.out and token.startswith(entry["prefix"])
    table = run_cli(capsys, "keys", "list")
    assert "ci" in table.out and "active" in table.out and token not in table.out
    revoked = run_cli(capsys, "keys", "revoke", "ci")
    assert revoked.code == 0 and "revoked" in revoked.out
    assert "revoked" in run_cli(capsys, "keys", "list").out
    missing = run_cli(capsys, "keys", "revoke", "nobody")
    assert missing.code == 1 and "No API key named 'nobody'" in missing.err


def test_serve_refuses_to_start_without_keys_or_with_an_unpromoted_model(capsys, env):
    """`slipway serve` checks before it starts: no keys (unless --no-auth), unknown --model."""
    no_keys = run_cli(capsys, "serve", "--port", "1")
    assert no_keys.code == 1 and "No API keys exist" in no_keys.err and "--no-auth" in no_keys.err
    missing = run_cli(capsys, "serve", "--no-auth", "--model", "ghost", "--port", "1")
    assert missing.code == 1 and "No model named 'ghost'" in missing.err


def test_key_changes_are_audited_once_with_who_and_through_what(registry):
    """Create and revoke are audited with the actor (default: the OS user) and the channel;
    revoking a revoked key changes nothing and records nothing."""
    keys = KeyStore(registry.store)
    keys.create("alice", "predict", actor="ops", via="ui")
    keys.create("bob", "admin")
    keys.revoke("alice")
    keys.revoke("alice")
    events = [(e.action, e.actor, e.model, e.detail) for e in registry.audit(None)]
    assert events == [
        ("revoke_key", getpass.getuser(), None, {"key": "alice", "role": "predict"}),
        ("create_key", getpass.getuser(), None, {"key": "bob", "role": "admin"}),
        ("create_key", "ops", None, {"key": "alice", "role": "predict", "via": "ui"}),
    ]


def test_key_records_show_a_short_prefix_role_and_state(registry):
    """A record shows the first 12 characters, its role and whether it is still active."""
    keys = KeyStore(registry.store)
    assert keys.list() == [] and keys.active() == {}
    with pytest.raises(KeyNotFound, match="There are no keys"):
        keys.revoke("ghost")
    admin, token = keys.create("zed", "admin")
    user, _ = keys.create("amy", "predict")
    assert admin.prefix == token[:12] and len(admin.prefix) == 12
    assert admin.admin and not user.admin and admin.active and admin.revoked_at is None
    revoked = keys.revoke("amy")
    assert not revoked.active and revoked.prefix == user.prefix
    assert [(k.name, k.active) for k in keys.list()] == [("amy", False), ("zed", True)]
    assert list(keys.active().values()) == [admin]
    assert revoked.to_dict() == {
        "name": "amy",
        "role": "predict",
        "prefix": user.prefix,
        "created_at": user.created_at.isoformat(),
        "revoked_at": revoked.revoked_at.isoformat(),
    }
    assert admin.to_dict()["revoked_at"] is None
    with pytest.raises(RegistryConflict, match="'amy' already exists \\(revoked "):
        keys.create("amy", "admin")
    with pytest.raises(RegistryConflict, match="'zed' already exists \\(active\\)"):
        keys.create("zed", "predict")
    for bad in ["", "-lead", "a" * 101, "tab\there", 7]:
        with pytest.raises(ConfigError, match="not a valid key name"):
            keys.create(bad, "predict")  # type: ignore[arg-type]
    assert keys.create("a" * 100, "predict")[0].name == "a" * 100
