"""`slipway models ...` from a shell: tables for people, --json for scripts, one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

import slipway
from slipway.registry import Registry
from slipway.testing import register_reference_model
from tests.cli_helpers import run_cli


@pytest.fixture
def populated(env, make_fitted):
    reg = Registry(env)
    fitted = make_fitted("frame")
    register_reference_model(reg, fitted, alias=None, description="first")
    reg.register(fitted.pipeline, "fraud", fitted.X_train, fitted.y_train, description="second")
    yield reg
    reg.store.dispose()


def test_list_and_show_as_json(capsys, populated):
    """--json prints machine-readable models and versions."""
    listed = json.loads(run_cli(capsys, "models", "list", "--json").out)
    assert [(m["name"], m["latest_version"], m["versions"]) for m in listed] == [("fraud", 2, 2)]
    versions = json.loads(run_cli(capsys, "models", "list", "fraud", "--json").out)
    assert [v["description"] for v in versions] == ["first", "second"]
    shown = json.loads(run_cli(capsys, "models", "show", "fraud:1", "--json").out)
    assert shown["ref"] == "fraud:1" and "accuracy" in shown["metrics"]
    assert shown["contract"]["fields"][0]["name"] == "amount"


def test_promote_rollback_and_show_by_alias(capsys, populated):
    """Alias moves from the shell are visible to show NAME@ALIAS and NAME."""
    assert run_cli(capsys, "models", "promote", "fraud", "1", "--alias", "production").code == 0
    assert run_cli(capsys, "models", "promote", "fraud", "2", "--alias", "production").code == 0
    shown = json.loads(run_cli(capsys, "models", "show", "fraud@production", "--json").out)
    assert shown["version"] == 2
    out = run_cli(capsys, "models", "rollback", "fraud", "--alias", "production")
    assert out.code == 0 and "version 1" in out.out
    assert json.loads(run_cli(capsys, "models", "show", "fraud", "--json").out)["version"] == 1


def test_tables_for_people(capsys, populated):
    """Without --json, list/show/audit print readable tables and the model card."""
    assert "fraud" in run_cli(capsys, "models", "list").out
    card = run_cli(capsys, "models", "show", "fraud:1").out
    assert "Model card: fraud" in card and "accuracy" in card and "merchant" in card
    run_cli(capsys, "models", "promote", "fraud", "1")
    audit = run_cli(capsys, "models", "audit", "fraud").out
    assert "promote" in audit and "register" in audit


def test_verify_exits_nonzero_on_a_corrupted_artifact(capsys, populated):
    """verify re-hashes everything and fails loudly when a file changed."""
    ok = run_cli(capsys, "models", "verify")
    assert ok.code == 0 and "all 11 artifacts verified" in ok.out  # v1 has an estimator
    path = populated.artifacts.path(populated.get("fraud:2").meta["artifacts"]["profile"])
    path.chmod(0o644)
    path.write_bytes(b"{}")
    bad = run_cli(capsys, "models", "verify", "fraud", "--json")
    assert bad.code == 1
    corrupted = [(c["version"], c["role"]) for c in json.loads(bad.out) if c["status"] != "ok"]
    assert corrupted == [(1, "profile"), (2, "profile")]  # same data, one shared artifact


def test_archive(capsys, populated):
    """archive retires a version."""
    assert run_cli(capsys, "models", "archive", "fraud", "1").code == 0
    assert (
        json.loads(run_cli(capsys, "models", "show", "fraud:1", "--json").out)["status"]
        == "archived"
    )


def test_delete_asks_first_and_says_what_it_removed(capsys, populated, monkeypatch):
    """delete asks before deleting (no is no), --yes skips the question, and the answer
    counts the files removed and kept."""
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    refused = run_cli(capsys, "models", "delete", "fraud:1")
    assert refused.code == 1 and "Delete fraud:1?" in refused.out
    assert populated.get("fraud:1").version == 1
    done = run_cli(capsys, "models", "delete", "fraud:1", "--yes")
    # Both versions share their data files; the model and its predictions differ in C.
    assert done.code == 0 and done.out.startswith("deleted fraud:1; ")
    assert "kept (other versions use them)" in done.out
    listed = json.loads(run_cli(capsys, "models", "list", "fraud", "--json").out)
    assert [v["version"] for v in listed] == [2]
    audit = json.loads(run_cli(capsys, "models", "audit", "fraud", "--json").out)
    assert (audit[0]["action"], audit[0]["version"]) == ("delete", 1)


def test_delete_refuses_aliases_and_aliased_versions(capsys, populated):
    """NAME@ALIAS is not a delete target, and an aliased version is refused with the way out."""
    run_cli(capsys, "models", "promote", "fraud", "2")
    by_alias = run_cli(capsys, "models", "delete", "fraud@production", "--yes")
    assert by_alias.code == 1 and "delete takes NAME or NAME:VERSION" in by_alias.err
    held = run_cli(capsys, "models", "delete", "fraud", "--yes")
    assert held.code == 1 and "production -> 2" in held.err
    assert [v.version for v in populated.versions("fraud")] == [1, 2]


def test_version_flag(capsys):
    """`slipway --version` prints the package version and exits 0."""
    result = run_cli(capsys, "--version")
    assert (result.code, result.out) == (0, f"slipway {slipway.__version__}\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "show", "nope"], "No model named 'nope'"),
        (["models", "show", "fraud:7"], "has no version 7 (latest is 2)"),
        (["models", "rollback", "fraud"], "no alias 'production' to roll back"),
        (["models", "show", "a:b:c"], "is not a model reference"),
        (["models", "delete", "fraud:7", "--yes"], "has no version 7 (latest is 2)"),
    ],
)
def test_known_errors_are_one_line_and_exit_1(capsys, populated, args, message):
    """Library errors print one line on stderr, no traceback, exit code 1."""
    result = run_cli(capsys, *args)
    assert result.code == 1
    assert message in result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1


def test_usage_errors_exit_2(capsys, env):
    """A missing argument is a usage error."""
    assert run_cli(capsys, "models", "promote", "fraud").code == 2


def test_real_process_prints_no_traceback(env, tmp_path):
    """The installed entry point handles errors the same way in a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "slipway", "models", "show", "ghost"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: No model named 'ghost'")
    assert "Traceback" not in proc.stderr


def test_unexpected_errors_are_one_line_without_debug(capsys, env, monkeypatch):
    """A bug surfaces as one line naming it; SLIPWAY_DEBUG=1 shows the traceback."""
    import slipway.cli.models as models_cli

    def broken():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(models_cli, "registry", broken)
    result = run_cli(capsys, "models", "list")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "error: unexpected RuntimeError: disk on fire (set SLIPWAY_DEBUG=1 to see the traceback)"
    ]
    monkeypatch.setenv("SLIPWAY_DEBUG", "1")
    assert "Traceback" in run_cli(capsys, "models", "list").err
