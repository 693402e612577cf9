"""`slipway check` and its traces in `slipway models`: exit codes, formats, stored results,
and promotion with and without a passing check."""

from __future__ import annotations

import json

from tests.cli_helpers import run_cli
from tests.lifecycle.helpers import Models


def _setup(env, tmp_path, registry_factory):
    models = Models(registry_factory(env))
    models.register(alias="production")
    hold = tmp_path / "holdout.parquet"
    models.holdout().to_parquet(hold)
    policy = tmp_path / "gate.toml"
    policy.write_text("resamples = 200\n[speed]\nrepeats = 10\nmax_slowdown = 1000.0\n")
    return models, hold, policy


def _registry(settings):
    from slipway.registry import Registry

    return Registry(settings)


def test_check_exits_0_on_pass_and_shows_in_models_show(capsys, env, tmp_path):
    """A passing candidate exits 0; JSON and HTML render; models show lists the result."""
    models, hold, policy = _setup(env, tmp_path, _registry)
    models.register()
    done = run_cli(
        capsys, "check", "fraud:2", "--data", str(hold), "--policy", str(policy), "--format", "json"
    )
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["status"] == "pass" and result["champion"] == "fraud:1"
    html = tmp_path / "check.html"
    done = run_cli(
        capsys,
        "check",
        "fraud:2",
        "--data",
        str(hold),
        "--policy",
        str(policy),
        "--format",
        "html",
        "--out",
        str(html),
    )
    assert done.code == 0 and html.read_text().startswith("<!doctype html>")
    shown = run_cli(capsys, "models", "show", "fraud:2")
    assert "Checks of fraud:2" in shown.out and "pass" in shown.out
    as_json = json.loads(run_cli(capsys, "models", "show", "fraud:2", "--json").out)
    assert len(as_json["checks"]) == 2 and as_json["checks"][0]["passed"]


def test_check_exits_1_on_fail_and_3_when_it_cannot_run(capsys, env, tmp_path):
    """A failing gate exits 1; a missing file, an unknown model or a bad option exit 3."""
    models, hold, policy = _setup(env, tmp_path, _registry)
    models.register(rows=lambda X: X["country"] != "NG")  # narrows a category set
    done = run_cli(capsys, "check", "fraud:2", "--data", str(hold), "--policy", str(policy))
    assert done.code == 1 and "FAIL" in done.out and "contract" in done.out
    assert run_cli(capsys, "check", "fraud:2", "--data", str(tmp_path / "no.parquet")).code == 3
    assert run_cli(capsys, "check", "nope:1", "--data", str(hold)).code == 3
    assert run_cli(capsys, "check", "fraud:2", "--format", "pdf").code == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("alpha = 2\n")
    done = run_cli(capsys, "check", "fraud:2", "--data", str(hold), "--policy", str(bad))
    assert done.code == 3 and "alpha" in done.err


def test_promote_warns_without_a_passing_check_and_refuses_when_told(
    capsys, env, tmp_path, monkeypatch
):
    """Moving production to an unchecked version warns (refused with the setting); a passing
    check lets it through and is named in the audit."""
    models, hold, policy = _setup(env, tmp_path, _registry)
    models.register()
    models.register()
    done = run_cli(capsys, "models", "promote", "fraud", "2")
    assert done.code == 0 and "has no passing check" in done.err
    assert models.registry.audit("fraud", limit=1)[0].detail == {"checked": False}
    monkeypatch.setenv("SLIPWAY_PROMOTE_UNCHECKED", "refuse")
    done = run_cli(capsys, "models", "promote", "fraud", "3")
    assert done.code == 1 and "no passing check" in done.err
    assert models.registry.aliases("fraud") == {"production": 2}
    assert (
        run_cli(capsys, "check", "fraud:3", "--data", str(hold), "--policy", str(policy)).code == 0
    )
    done = run_cli(capsys, "models", "promote", "fraud", "3")
    assert done.code == 0 and "no passing check" not in done.err
    assert "check_id" in models.registry.audit("fraud", limit=1)[0].detail
