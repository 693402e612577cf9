"""`slipway monitor NAME` checks and exits with its verdict; `slipway monitor history` lists."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from slipway.clock import utcnow
from slipway.testing import transactions
from tests.cli_helpers import run_cli


@pytest.fixture
def served(env, registry, fraud, log):
    """The fraud model with an hour of ordinary traffic logged just now."""
    X, _ = transactions(600, seed=21)
    log.predictions("fraud", X, utcnow() - timedelta(minutes=50), spread=timedelta(minutes=40))
    return log


def test_check_prints_a_terminal_report_and_exits_with_the_status(capsys, served):
    """Ordinary traffic: exit 0 and a table naming each feature."""
    result = run_cli(capsys, "monitor", "fraud", "--since", "24h")
    assert result.code == 0, result.out + result.err
    assert "OK" in result.out and "amount" in result.out and "merchant" in result.out


def test_alert_exits_2_and_json_is_machine_readable(capsys, served):
    """Drifted traffic: --format json prints the report; the exit code is 2."""
    X, _ = transactions(600, seed=22)
    X["amount"] = X["amount"] * 3
    served.predictions("fraud", X, utcnow() - timedelta(minutes=30))
    result = run_cli(capsys, "monitor", "fraud", "--format", "json")
    assert result.code == 2
    data = json.loads(result.out)
    assert data["status"] == "ALERT" and data["model"] == "fraud"
    assert any(
        f["name"] == "amount" and f["status"] == "drift" for f in data["windows"][-1]["features"]
    )


def test_warn_exits_1(capsys, env, registry, fraud):
    """No traffic at all: WARN, exit 1."""
    result = run_cli(capsys, "monitor", "fraud", "--since", "1h")
    assert result.code == 1 and "WARN" in result.out


def test_windows_html_file(capsys, served, tmp_path):
    """--window 1d --since 30d --format html --out writes one offline page."""
    out = tmp_path / "report.html"
    result = run_cli(
        capsys,
        "monitor",
        "fraud",
        "--window",
        "1d",
        "--since",
        "30d",
        "--format",
        "html",
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "<script" not in page and "http" not in page
    assert f"report written to {out}" in result.err


def test_every_loops_count_times_and_stores_each_run(capsys, served):
    """--every with --count runs that many times; history lists each run."""
    result = run_cli(
        capsys, "monitor", "fraud", "--every", "0.01s", "--count", "2", "--format", "json"
    )
    assert result.code == 0
    history = run_cli(capsys, "monitor", "history", "fraud", "--json")
    assert history.code == 0 and len(json.loads(history.out)) == 2


def test_history_lists_runs_newest_first(capsys, served):
    """`slipway monitor history NAME` prints a table of stored runs."""
    run_cli(capsys, "monitor", "fraud", "--baseline", "previous")
    result = run_cli(capsys, "monitor", "history", "fraud")
    assert result.code == 0 and "Monitoring runs of fraud" in result.out and "WARN" in result.out


def test_until_checks_a_span_that_ended_earlier(capsys, served):
    """--until 2h --since 1h sees none of the traffic of the last 50 minutes; a bad --until
    exits 3 naming the accepted forms."""
    result = run_cli(
        capsys, "monitor", "fraud", "--since", "1h", "--until", "2h", "--format", "json"
    )
    data = json.loads(result.out)
    assert result.code == 1 and data["windows"][-1]["rows"] == 0
    end = datetime.fromisoformat(data["decided_by"]["end"])
    assert abs(end - (utcnow() - timedelta(hours=2))) < timedelta(minutes=1)
    bad = run_cli(capsys, "monitor", "fraud", "--until", "yesterday")
    assert bad.code == 3 and "--until 'yesterday' is neither a time nor a duration" in bad.err


def test_errors_exit_3_never_1_or_2(capsys, env, registry, fraud):
    """Unknown model, bad duration or option, missing name: exit 3, never a verdict's code."""
    unknown = run_cli(capsys, "monitor", "nobody")
    assert unknown.code == 3 and "No model named 'nobody'" in unknown.err
    bad = run_cli(capsys, "monitor", "fraud", "--since", "soon")
    assert bad.code == 3 and "--since 'soon' is not a duration" in bad.err
    assert run_cli(capsys, "monitor", "fraud", "--bogus").code == 3
    assert run_cli(capsys, "monitor", "history").code == 3
    assert run_cli(capsys, "monitor", "history", "nobody").code == 3


def test_config_file_sets_floors_per_feature(capsys, served, tmp_path):
    """--config reads alpha and per-feature floors; a bad file is an error naming the key."""
    X, _ = transactions(600, seed=23)
    X["amount"] = X["amount"] * 3
    served.predictions("fraud", X, utcnow() - timedelta(minutes=30))
    config = tmp_path / "monitor.toml"
    config.write_text("alpha = 0.01\n[features.amount]\nseverity = 'warn'\n")
    data = json.loads(
        run_cli(capsys, "monitor", "fraud", "--config", str(config), "--format", "json").out
    )
    assert data["policy"]["alpha"] == 0.01
    [amount] = [r for r in data["reasons"] if r["message"].startswith("amount")]
    assert amount["severity"] == "WARN"  # the prediction drift it causes still ALERTs
    config.write_text("[features.amount]\nmean_shfit = 1\n")
    result = run_cli(capsys, "monitor", "fraud", "--config", str(config))
    assert result.code == 3 and "amount.mean_shfit: unknown threshold" in result.err


def test_every_survives_a_failed_run(capsys, served, monkeypatch):
    """A run that fails mid-loop is reported on stderr and the loop carries on."""
    from slipway.exceptions import SlipwayError
    from slipway.monitoring import Monitor

    real = Monitor.run
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise SlipwayError("database unreachable")  # any exception type survives too
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Monitor, "run", flaky)
    result = run_cli(
        capsys, "monitor", "fraud", "--every", "0.01s", "--count", "3", "--format", "json"
    )
    assert result.code == 0 and len(calls) == 3
    assert "error: database unreachable\nretrying in 0.01s" in result.err


def test_progress_shows_on_a_terminal_only(capsys, served, monkeypatch):
    """On an interactive stderr the run shows what it is doing (rows read, windows checked);
    piped, stderr stays quiet."""
    import io

    from rich.console import Console

    from slipway.cli import monitor as cli_monitor

    quiet = run_cli(capsys, "monitor", "fraud", "--window", "1h", "--since", "2h")
    assert "checking windows" not in quiet.err and "reading the log" not in quiet.err
    stream = io.StringIO()
    terminal = Console(file=stream, force_terminal=True, force_interactive=True, width=100)
    monkeypatch.setattr(cli_monitor, "err_console", terminal)
    result = run_cli(capsys, "monitor", "fraud", "--window", "1h", "--since", "2h")
    assert result.code == 0, result.out + result.err
    shown = stream.getvalue()
    assert "checking windows" in shown and "2/2 windows" in shown
