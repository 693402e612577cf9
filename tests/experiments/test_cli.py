"""`slipway experiment ...`: each command calls the library and prints what it did."""

from __future__ import annotations

import json

import numpy as np

from slipway.experiments.assignment import TREATMENT, assign
from slipway.store import experiments as book
from tests.cli_helpers import run_cli
from tests.experiments.helpers import write_traffic


def test_start_list_status_report_ramp_and_stop(capsys, env, registry, two_versions, tmp_path):
    """The whole life of an A/B test from the shell, every format of the report."""
    started = run_cli(
        capsys,
        "experiment",
        "start",
        "fraud",
        "--mode",
        "ab",
        "--candidate",
        "2",
        "--split",
        "0.2",
        "--guardrail",
        "max_p99_increase_ms=80",
    )
    assert started.code == 0, started.err
    assert "started fraud-1: fraud:2 vs fraud:1 (production), A/B 20%" in started.out
    e = book.get(registry.store, "fraud-1")
    assert e.config["guardrails"]["max_p99_increase_ms"] == 80
    rows = json.loads(two_versions[0].X_val.iloc[:20].to_json(orient="records"))
    rng = np.random.default_rng(0)
    traffic = []
    for i in range(400):
        arm = assign(e.salt, f"u{i}", e.split)
        truth = int(rng.random() < 0.3)
        traffic.append(
            {
                "arm": arm,
                "version": 2 if arm == TREATMENT else 1,
                "unit": f"u{i}",
                "inputs": rows[i % 20],
                "label": truth,
                "truth": truth,
            }
        )
    write_traffic(registry.store, e, traffic)

    listed = run_cli(capsys, "experiment", "list", "--json")
    assert [x["id"] for x in json.loads(listed.out)] == ["fraud-1"]
    assert "fraud-1" in run_cli(capsys, "experiment", "list").out
    status = run_cli(capsys, "experiment", "status", "fraud")
    assert status.code == 0 and "Arms (accuracy)" in status.out
    assert "sample ratio check" in status.out
    data = json.loads(run_cli(capsys, "experiment", "report", "fraud-1", "--format", "json").out)
    assert data["experiment"]["id"] == "fraud-1" and data["srm"]["ok"]
    assert data["comparison"]["observations"]["treatment"] > 40
    out = tmp_path / "report.html"
    html = run_cli(capsys, "experiment", "report", "fraud", "--format", "html", "--out", str(out))
    assert html.code == 0 and out.read_text().startswith("<!DOCTYPE html>")

    lower = run_cli(capsys, "experiment", "ramp", "fraud", "--split", "0.1")
    assert lower.code == 1 and "can only grow" in lower.err
    assert "split now 50%" in run_cli(capsys, "experiment", "ramp", "fraud", "--split", "0.5").out
    neither = run_cli(capsys, "experiment", "stop", "fraud")
    assert neither.code == 2 and "exactly one of --promote and --abandon" in neither.err
    stopped = run_cli(capsys, "experiment", "stop", "fraud", "--abandon")
    assert stopped.code == 0 and "abandoned; production stays fraud:1" in stopped.out
    assert registry.aliases("fraud") == {"production": 1}
    again = run_cli(capsys, "experiment", "stop", "fraud", "--promote")
    assert again.code == 1 and "is not running" in again.err


def test_start_errors_are_one_line(capsys, env, two_versions):
    """A bad start prints one line naming the problem and exits 1."""
    result = run_cli(
        capsys,
        "experiment",
        "start",
        "fraud",
        "--mode",
        "shadow",
        "--candidate",
        "2",
        "--metric",
        "conversion",
    )
    assert result.code == 1 and "--outcome" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_promote_from_the_shell_moves_production(capsys, env, registry, two_versions):
    """stop --promote with no data yet (cannot trust) promotes through the registry."""
    assert (
        run_cli(capsys, "experiment", "start", "fraud", "--mode", "shadow", "--candidate", "2").code
        == 0
    )
    result = run_cli(capsys, "experiment", "stop", "fraud", "--promote")
    assert result.code == 0, result.err
    assert "promoted fraud:2 to production" in result.out
    assert registry.aliases("fraud") == {"production": 2}
