"""`slipway batch ...` scores with documented exit codes; `slipway batch runs ...` reports."""

from __future__ import annotations

import json

import pytest

from slipway.registry import Registry
from tests.batch.helpers import stored_predictions
from tests.cli_helpers import run_cli


@pytest.fixture
def cli_model(env, make_model):
    """A model registered in the store the environment points the CLI at."""
    registry = Registry(env)
    model = make_model(registry)
    yield registry, model
    registry.store.dispose()


def test_scoring_exit_codes_and_summary(cli_model, make_input, capsys):
    """Exit 3 when rows were rejected, 0 when all scored; the summary names run and counts."""
    registry, model = cli_model
    dirty, _ = make_input("parquet", 300)
    result = run_cli(
        capsys, "batch", model.ref, str(dirty), "--key-column", "txn_id", "--output", "db"
    )
    assert result.code == 3, result.err
    assert "298 scored, 2 rejected" in result.out and "succeeded" in result.out
    clean, _ = make_input("csv", 120, bad=False)
    result = run_cli(capsys, "batch", "fraud", str(clean), "--chunk-size", "50", "--json")
    assert result.code == 0, result.err
    run = json.loads(result.out)
    assert (run["status"], run["rows_scored"], run["chunks_done"], run["exit_code"]) == (
        "succeeded", 120, 3, 0
    )  # fmt: skip
    assert len(stored_predictions(registry.store, run["run_id"])) == 120


def test_quiet_prints_nothing(cli_model, make_input, capsys):
    """--quiet is for cron: no progress bar, no summary; the exit code tells."""
    _, model = cli_model
    path, _ = make_input("parquet", 50, bad=False)
    result = run_cli(capsys, "batch", model.ref, str(path), "--quiet")
    assert (result.code, result.out, result.err) == (0, "", "")


def test_progress_bar_shows_rows_and_rate(cli_model, make_input, capsys):
    """Without --quiet a progress bar on stderr counts rows and their rate."""
    _, model = cli_model
    path, _ = make_input("parquet", 200, bad=False)
    result = run_cli(capsys, "batch", model.ref, str(path), "--chunk-size", "100")
    assert "200/200 rows" in result.err and "rows/s" in result.err and "ETA" in result.err


def test_runs_list_and_show(cli_model, make_input, capsys):
    """runs list shows recent runs; runs show one in full; --json for scripts."""
    _, model = cli_model
    path, _ = make_input("parquet", 100)
    first = json.loads(
        run_cli(capsys, "batch", model.ref, str(path), "--json", "--run-id", "a1").out
    )
    listed = run_cli(capsys, "batch", "runs", "list", "--json")
    assert [r["run_id"] for r in json.loads(listed.out)] == [first["run_id"]]
    table = run_cli(capsys, "batch", "runs", "list")
    assert table.code == 0 and "a1" in table.out and "fraud:1" in table.out
    shown = run_cli(capsys, "batch", "runs", "show", "a1", "--json")
    assert json.loads(shown.out)["input_fingerprint"] == first["input_fingerprint"]
    card = run_cli(capsys, "batch", "runs", "show", "a1")
    assert "100 in, 98 scored, 2 rejected" in card.out and "batch_rejects" in card.out
    missing = run_cli(capsys, "batch", "runs", "show", "zzz")
    assert missing.code == 1 and "No batch run 'zzz'" in missing.err


def test_failures_exit_1_with_one_line(cli_model, tmp_path, capsys):
    """An input that does not exist, or a clash with an output, is one line and exit 1."""
    _, model = cli_model
    result = run_cli(capsys, "batch", model.ref, str(tmp_path / "nope.parquet"))
    assert (
        result.code == 1
        and result.err.startswith("error: Input")
        and "does not exist" in result.err
    )
    usage = run_cli(capsys, "batch", model.ref, "--engine", "spark")
    assert usage.code == 2
    lonely = run_cli(capsys, "batch", model.ref, "x.parquet", "--scheduler", "tcp://h:8786")
    assert lonely.code == 1 and "add --engine dask" in lonely.err


def test_help_shows_the_scorer_and_the_runs_group(capsys):
    """`slipway batch --help` documents MODEL_REF INPUT and the options; runs has list/show."""
    top = run_cli(capsys, "batch", "--help")
    assert top.code == 0
    for option in ("--key-column", "--output", "--chunk-size", "--engine", "--scheduler",
                   "--run-id", "--query", "--quiet"):  # fmt: skip
        assert option in top.out
    assert "slipway batch" in top.out and "runs list" in top.out
    runs = run_cli(capsys, "batch", "runs", "--help")
    assert "list" in runs.out and "show" in runs.out


def test_query_option_scores_a_table(cli_model, make_input, capsys):
    """--query scores rows of the configured database without an INPUT argument."""
    registry, model = cli_model
    _, frame = make_input("parquet", 80, bad=False)
    with registry.store.write() as conn:
        frame.to_sql("incoming", conn, index=False)
    result = run_cli(capsys, "batch", model.ref, "--query", "SELECT * FROM incoming", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["source"]["kind"] == "query"


@pytest.mark.slow
def test_dask_engine_without_scheduler_starts_a_local_cluster(
    local_registry, make_model, make_input, tmp_path, capsys, monkeypatch
):
    """--engine dask with no --scheduler scores on a local cluster it starts and stops."""
    model = make_model(local_registry)
    monkeypatch.setenv("SLIPWAY_HOME", str(local_registry.settings.home))
    monkeypatch.delenv("SLIPWAY_DATABASE_URL", raising=False)
    path, _ = make_input("parquet", 400, files=2)
    out = f"{tmp_path}/scores/"
    result = run_cli(
        capsys, "batch", model.ref, str(path), "--engine", "dask", "--output", out, "--json"
    )
    assert result.code == 3, result.err
    run = json.loads(result.out)
    assert run["progress"]["engine"] == "dask" and run["rows_scored"] == 398
