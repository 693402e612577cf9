"""`slipway retrain`: fresh data, a gate against production, audit entries for every trigger;
production is never moved."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from functools import partial

import numpy as np
import pytest

from slipway.clock import utcnow
from slipway.exceptions import ConfigError
from slipway.lifecycle import CheckPolicy, retrain
from slipway.train import train
from tests.lifecycle.helpers import frame

CONFIG = """\
name = "fraud"
alias = "production"

[data]
path = "{path}"
target = "is_fraud"
time_column = "timestamp"

[estimator]
class = "sklearn.linear_model.LogisticRegression"
params = {{ max_iter = 500 }}

[validation]
fraction = 0.3
"""
FAST = CheckPolicy.model_validate(
    {"speed": {"repeats": 10, "max_slowdown": 1000.0}, "resamples": 200}
)


def write_data(path, n=3000, seed=0, shuffle=False, days=120):
    """Transactions spread over the last ``days`` days, newest last; ``shuffle`` scrambles the
    labels of the older rows (the training part), as a broken label pipeline would."""
    X, y = frame(n, seed)
    if shuffle:
        cut = int(n * 0.7)
        y = np.r_[np.random.default_rng(seed).permutation(y[:cut]), y[cut:]]
    now = utcnow()
    stamps = [now - timedelta(days=days * (1 - i / n)) for i in range(n)]
    X.assign(timestamp=[s.isoformat() for s in stamps], is_fraud=y).to_csv(path, index=False)
    return path


@pytest.fixture
def setup(registry, tmp_path):
    """A config over fresh data and a champion trained from it (fraud:1, production)."""
    write_data(tmp_path / "data.csv")
    config = tmp_path / "train.toml"
    config.write_text(CONFIG.format(path="data.csv"))
    train(config, registry)
    return registry, config, tmp_path


def test_retrain_registers_a_candidate_gates_it_and_leaves_production(setup):
    """A passing candidate is registered, checked, audited, and not promoted."""
    registry, config, _ = setup
    result = retrain(registry, "fraud", config, policy=FAST, reason="quarterly refresh")
    assert result.outcome == "passed" and result.exit_code == 0 and result.version == 2
    assert result.check is not None and result.check.champion == "fraud:1"
    assert registry.aliases("fraud") == {"production": 1}
    event = registry.audit("fraud", limit=1)[0]
    assert event.action == "retrain" and event.version == 2
    assert event.detail["trigger"] == "manual" and event.detail["reason"] == "quarterly refresh"
    assert event.detail["check_id"] == result.check.id and event.detail["outcome"] == "passed"


def test_a_failing_gate_leaves_production_untouched(setup):
    """Scrambled training labels make a worse model: the gate fails, production stays, and
    the audit says so."""
    registry, config, tmp_path = setup
    bad = write_data(tmp_path / "bad.csv", seed=1, shuffle=True)
    result = retrain(
        registry, "fraud", config, data=bad, policy=FAST, trigger="alert", reason="drift"
    )
    assert result.outcome == "check_failed" and result.exit_code == 1
    assert "metrics" in result.check.failed
    assert registry.aliases("fraud") == {"production": 1}
    event = registry.audit("fraud", limit=1)[0]
    assert (event.action, event.detail["outcome"], event.detail["trigger"]) == (
        "retrain",
        "check_failed",
        "alert",
    )


def test_since_trains_on_the_recent_rows_only(setup):
    """--since 30d keeps the config's rows of the last 30 days."""
    registry, config, _ = setup
    result = retrain(registry, "fraud", config, since=timedelta(days=30), policy=FAST)
    assert result.data["rows"] == pytest.approx(3000 * 30 / 120, abs=2)
    assert result.data["rows_read"] == 3000


def test_then_shadow_starts_an_experiment_when_the_candidate_passes(setup):
    """The shadow step is one call, made only after a passing gate."""
    registry, config, _ = setup
    calls = []

    def fake(reg, name, version):
        calls.append((name, version))
        return {"started": True, "experiment": 7, "message": "in shadow"}

    result = retrain(registry, "fraud", config, then="shadow", policy=FAST, shadow=fake)
    assert result.outcome == "shadow" and calls == [("fraud", 2)]
    assert registry.audit("fraud", limit=1)[0].detail["then"]["experiment"] == 7


def test_a_retraining_that_cannot_run_is_audited_then_raised(setup, tmp_path):
    """A config for another model: ConfigError, and a 'failed' retrain event with the reason."""
    registry, config, _ = setup
    other = tmp_path / "other.toml"
    other.write_text(config.read_text().replace('name = "fraud"', 'name = "churn"'))
    with pytest.raises(ConfigError, match="trains 'churn', not 'fraud'"):
        retrain(registry, "fraud", other, policy=FAST)
    event = registry.audit("fraud", limit=1)[0]
    assert event.detail["outcome"] == "failed" and "churn" in event.detail["message"]


def _cli(slipway, env, *args, timeout=240):
    return subprocess.run(
        [slipway, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_schedule_and_alert_triggers_in_real_processes(setup, log, slipway_command):
    """`retrain --every` runs on a schedule; `monitor --on-alert` retrains after an ALERT; both
    are audited with their reasons, and a failing gate in a process leaves production alone."""
    registry, config, tmp_path = setup
    cli = partial(_cli, slipway_command)  # a process per command, forked from a warm one
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
    env.update(SLIPWAY_HOME=str(registry.settings.home), SLIPWAY_USER="tester")
    if registry.settings.database_url:
        env["SLIPWAY_DATABASE_URL"] = registry.settings.database_url
    policy = tmp_path / "gate.toml"
    policy.write_text("resamples = 200\n[speed]\nrepeats = 10\nmax_slowdown = 1000.0\n")
    done = cli(
        env,
        "retrain",
        "fraud",
        "--config",
        str(config),
        "--policy",
        str(policy),
        "--every",
        "1s",
        "--count",
        "2",
    )
    assert done.returncode == 0, done.stderr
    scheduled = [e for e in registry.audit("fraud") if e.action == "retrain"]
    assert [e.detail["trigger"] for e in scheduled] == ["schedule", "schedule"]
    assert scheduled[0].detail["reason"] == "every 1s (run 2)"

    X, _ = frame(600, seed=3)
    X["amount"] = X["amount"] * 4  # planted drift
    log.predictions("fraud@production", X, utcnow() - timedelta(hours=1))
    retrain_cmd = f"{slipway_command} retrain fraud --config {config} --policy {policy}"
    done = cli(env, "monitor", "fraud", "--since", "24h", "--on-alert", retrain_cmd)
    assert done.returncode == 2, done.stderr
    alerted = registry.audit("fraud", limit=1)[0]
    assert alerted.action == "retrain" and alerted.detail["trigger"] == "alert"
    assert alerted.detail["reason"].startswith("monitoring run ")
    assert "amount" in alerted.detail["reason"]

    bad = write_data(tmp_path / "bad.csv", seed=1, shuffle=True)
    done = cli(
        env,
        "retrain",
        "fraud",
        "--config",
        str(config),
        "--data",
        str(bad),
        "--policy",
        str(policy),
    )
    assert done.returncode == 1, done.stderr
    assert registry.aliases("fraud") == {"production": 1}
    assert registry.audit("fraud", limit=1)[0].detail["outcome"] == "check_failed"
    done = cli(env, "retrain", "fraud", "--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 3 and "does not exist" in done.stderr


def test_then_shadow_starts_a_real_shadow_experiment(setup):
    """--then shadow through the experiments capability: a running shadow of fraud:2 against
    production's fraud:1, its id in the audit entry."""
    from slipway.experiments.desk import ExperimentDesk

    registry, config, _ = setup
    result = retrain(registry, "fraud", config, then="shadow", policy=FAST)
    assert result.outcome == "shadow", result.message
    running = ExperimentDesk(registry).get("fraud")
    assert running.running and running.mode == "shadow"
    assert (running.control_version, running.candidate_version) == (1, 2)
    assert result.then["experiment"] == running.id and running.id in result.message
    assert registry.audit("fraud", limit=1)[0].detail["then"]["experiment"] == running.id


def test_then_shadow_with_an_experiment_already_running_is_recorded_not_raised(setup):
    """A second retrain while the first shadow runs: registered and passed, no second
    experiment, the reason (the running experiment's id) in the result and the audit trail."""
    from slipway.experiments.desk import ExperimentDesk

    registry, config, _ = setup
    first = retrain(registry, "fraud", config, then="shadow", policy=FAST)
    second = retrain(registry, "fraud", config, then="shadow", policy=FAST)
    assert second.outcome == "passed" and second.version == 3
    assert second.then["started"] is False and first.then["experiment"] in second.message
    assert ExperimentDesk(registry).get("fraud").candidate_version == 2
    assert registry.audit("fraud", limit=1)[0].detail["outcome"] == "passed"
