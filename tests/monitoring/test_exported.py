"""`slipway predictions list|tail|export`, and monitoring over an exported log, locally and on
Dask, equal to monitoring the log itself."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest

from slipway.clock import utcnow
from slipway.exceptions import ConfigError
from slipway.monitoring.exported import column_name, export_log, follow
from slipway.monitoring.log import LogSchema
from slipway.monitoring.runner import Monitor
from slipway.testing import transactions
from tests.cli_helpers import run_cli
from tests.monitoring.test_sources import assert_same


@pytest.fixture
def served(env, registry, fraud, log):
    """Three hours of fraud traffic up to a minute ago, half of it labeled: (ids, labels)."""
    X, y = transactions(900, seed=5)
    ids, _ = log.predictions(
        "fraud", X, utcnow() - timedelta(hours=3), spread=timedelta(hours=2, minutes=58)
    )
    log.feedback(ids[::2], [int(v) for v in y[::2]], utcnow())
    return ids, y


def test_export_parquet_holds_every_prediction_with_inputs_outputs_and_truth(
    capsys, tmp_path, served
):
    """One row per prediction, oldest first: inputs by name, label and scores, feedback."""
    ids, y = served
    out = tmp_path / "log.parquet"
    result = run_cli(
        capsys, "predictions", "export", "fraud", "--format", "parquet", "--out", str(out)
    )
    assert result.code == 0, result.err
    frame = pq.read_table(out).to_pandas()
    assert frame["prediction_id"].tolist() == ids
    assert {"amount", "hour", "merchant", "country", "label", "proba:0", "proba:1"} <= set(frame)
    assert frame["feedback"].notna().sum() == len(ids[::2])
    assert frame["feedback"].dropna().tolist() == [str(int(v)) for v in y[::2]]
    assert str(frame["created_at"].dt.tz) == "UTC" and frame["created_at"].is_monotonic_increasing
    assert "900 predictions of fraud written" in result.err


def test_export_csv_and_json_go_to_stdout(capsys, served):
    """CSV with a header, or JSON lines; --since keeps only the recent part."""
    result = run_cli(capsys, "predictions", "export", "fraud")
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert len(rows) == 900 and rows[0]["merchant"] in {"grocery", "travel", "gaming"}
    result = run_cli(capsys, "predictions", "export", "fraud", "--format", "json", "--since", "1h")
    records = [json.loads(line) for line in result.out.splitlines()]
    assert 250 < len(records) < 350 and all("amount" in r for r in records)


def test_list_shows_the_newest_first_and_json(capsys, served):
    """A table of the newest predictions, or JSON with every column."""
    ids, _ = served
    result = run_cli(capsys, "predictions", "list", "fraud", "--limit", "3")
    assert result.code == 0 and ids[-1] in result.out and "amount=" in result.out
    result = run_cli(capsys, "predictions", "list", "fraud", "--limit", "3", "--json")
    assert [r["prediction_id"] for r in json.loads(result.out)] == ids[::-1][:3]


def test_tail_prints_the_last_lines_then_follows_new_predictions(registry, served, log):
    """The last N oldest first; a prediction logged later appears on the next poll, once."""
    ids, _ = served
    mv = registry.get("fraud")
    schema = LogSchema.of(mv)

    def sleep(_seconds):
        X, _ = transactions(2, seed=9)
        log.predictions("fraud", X, utcnow())

    records = list(follow(registry.store, schema, "fraud", lines=3, sleep=sleep, polls=2))
    assert [r["prediction_id"] for r in records[:3]] == ids[-3:]
    assert len(records) == 7 and len({r["prediction_id"] for r in records}) == 7


def test_tail_and_unknown_models_on_the_command_line(capsys, served):
    """`tail -n 2` prints two JSON lines; an unknown model is one error line, exit 1."""
    result = run_cli(capsys, "predictions", "tail", "fraud", "-n", "2")
    assert [json.loads(x)["prediction_id"] for x in result.out.splitlines()] == served[0][-2:]
    result = run_cli(capsys, "predictions", "list", "nope")
    assert result.code == 1 and "nope" in result.err


def test_fields_named_like_log_columns_are_prefixed():
    """An input called 'label' cannot shadow the predicted label."""
    assert column_name("amount") == "amount"
    assert column_name("label") == "input:label" and column_name("proba:x") == "input:proba:x"


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_monitoring_an_export_equals_monitoring_the_log(registry, served, tmp_path, engine):
    """The same report from the log, from its Parquet export, and from the export on Dask."""
    out = tmp_path / "log.parquet"
    mv = registry.get("fraud")
    export_log(registry.store, LogSchema.of(mv), "fraud", fmt="parquet", out=out)
    now = utcnow()
    monitor = Monitor(registry, clock=lambda: now, sinks=[])
    args = {"since": timedelta(hours=4), "window": timedelta(hours=1), "store": False}
    local = monitor.run("fraud", **args).to_dict()
    exported = monitor.run("fraud", source=str(out), engine=engine, **args).to_dict()
    assert_same(local, exported)
    assert sum(p["labeled"] for w in local["windows"] for p in w["performance"]) == 450


def test_monitor_cli_reads_an_export_on_a_dask_cluster(capsys, registry, served, tmp_path):
    """--source DIR --engine dask --scheduler ADDRESS on a real (local) cluster."""
    import distributed

    out = tmp_path / "log.parquet"
    run_cli(capsys, "predictions", "export", "fraud", "--format", "parquet", "--out", str(out))
    log_run = run_cli(capsys, "monitor", "fraud", "--format", "json")
    # a free loopback port for the dashboard (None still binds the default 8787)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
    ) as cluster:  # fmt: skip
        result = run_cli(
            capsys, "monitor", "fraud", "--format", "json", "--source", str(out),
            "--engine", "dask", "--scheduler", cluster.scheduler_address,
        )  # fmt: skip
    assert result.code == log_run.code, result.err
    got, want = json.loads(result.out), json.loads(log_run.out)
    assert got["windows"][-1]["rows"] == want["windows"][-1]["rows"] == 900


def test_source_errors_say_what_to_give(registry, served):
    """A Dask run of the log itself, or an unknown source, is refused with the way out."""
    monitor = Monitor(registry, sinks=[])
    with pytest.raises(ConfigError, match="predictions export"):
        monitor.run("fraud", engine="dask")
    with pytest.raises(ConfigError, match="batch:RUN_ID"):
        monitor.run("fraud", source="somewhere")
    with pytest.raises(ConfigError, match="--format"):
        export_log(registry.store, LogSchema.of(registry.get("fraud")), "fraud", fmt="xml")


def test_export_keeps_text_as_the_monitor_compares_it(registry, fraud, log, tmp_path):
    """Categories and predicted labels are text; numbers float64."""
    X, _ = transactions(5, seed=2)
    log.predictions("fraud", X, utcnow() - timedelta(minutes=1))
    out = tmp_path / "x.parquet"
    export_log(registry.store, LogSchema.of(registry.get("fraud")), "fraud", fmt="parquet", out=out)
    frame = pd.read_parquet(out)
    assert frame["hour"].dtype == "float64" and frame["label"].tolist()[0] in {"0", "1"}
