"""Resuming: a run that died resumes by its id and ends with each input row exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from slipway.batch import RunLog, score_file
from slipway.batch.outputs import DatabaseOutput, ParquetOutput
from slipway.batch.runs import current_owner
from slipway.exceptions import BatchFailed, RunConflict
from slipway.store.schema import batch_chunks, batch_inputs
from tests.batch.helpers import parquet_rejects, stored_predictions, stored_rejects

OUTPUTS = ["db", "file", "directory"]


def output_spec(kind: str, tmp_path) -> str:
    return {"db": "db", "file": str(tmp_path / "scores.parquet"), "directory": f"{tmp_path}/out/"}[
        kind
    ]


def assert_exactly_once(registry, run_id: str, kind: str, tmp_path, frame: pd.DataFrame):
    """Every input key appears once, as a prediction or as a reject, never both."""
    if kind == "db":
        scored = stored_predictions(registry.store, run_id)["key"].tolist()
        rejected = stored_rejects(registry.store, run_id)["key"].tolist()
    else:
        target = tmp_path / ("scores.parquet" if kind == "file" else "out")
        scored = pd.read_parquet(target)["key"].tolist()
        side = tmp_path / "scores.rejects.parquet" if kind == "file" else target / "_rejects"
        rejected = parquet_rejects(side)["key"].tolist()
    assert len(scored) == len(set(scored)), "duplicated predictions"
    assert not set(scored) & set(rejected), "a row both scored and rejected"
    assert sorted(scored + rejected) == sorted(frame["txn_id"]), "rows missing"


def failing_on(original, chunk: int, written: list[int]):
    """An output's write that fails once at a chosen chunk, like a full disk would."""
    failed = []

    def write(output, store, scored, ctx):
        if scored.index == chunk and not failed:
            failed.append(chunk)
            raise OSError(28, "No space left on device")
        written.append(scored.index)
        return original(output, store, scored, ctx)

    return write


@pytest.mark.parametrize("kind", OUTPUTS)
def test_a_failed_run_resumes_exactly_once(
    registry, make_model, make_input, monkeypatch, tmp_path, kind
):
    """A write error fails the run (recorded, resumable); --run-id finishes it, rows once."""
    model = make_model(registry)
    path, frame = make_input("parquet", 1_000)
    cls = DatabaseOutput if kind == "db" else ParquetOutput
    written: list[int] = []
    monkeypatch.setattr(cls, "write", failing_on(cls.write, 2, written))
    options = dict(output=output_spec(kind, tmp_path), key_column="txn_id", chunk_size=150)
    with pytest.raises(BatchFailed, match="No space left on device") as err:
        score_file(model, path, registry=registry, **options)
    run_id = err.value.run_id
    failed = RunLog(registry.store).get(run_id)
    assert failed.status == "failed" and "No space left" in failed.error
    assert failed.chunks_done == len(written) >= 2
    resumed = score_file(model, path, run_id=run_id, registry=registry, **options)
    assert sorted(written) == list(range(7))  # each chunk written once over both attempts
    assert (resumed.status, resumed.rows_in, resumed.rows_rejected) == ("succeeded", 1_000, 2)
    assert resumed.chunks_done == 7 and resumed.error is None
    assert_exactly_once(registry, run_id, kind, tmp_path, frame)


def test_resume_refuses_changed_input_model_or_output(registry, make_model, make_input, tmp_path):
    """A resume must read the same rows with the same version into the same output."""
    model = make_model(registry)
    path, frame = make_input("parquet", 200)
    run = score_file(model, path, key_column="txn_id", run_id="nightly", registry=registry)
    RunLog(registry.store).finish(run.run_id, "failed", "pretend it died")
    frame.iloc[:150].to_parquet(tmp_path / "other.parquet", index=False)
    with pytest.raises(RunConflict, match="has changed"):
        score_file(
            model, tmp_path / "other.parquet", key_column="txn_id", run_id="nightly",
            registry=registry,
        )  # fmt: skip
    newer = make_model(registry)
    with pytest.raises(RunConflict, match="scores with fraud:1, not fraud:2"):
        score_file(newer, path, key_column="txn_id", run_id="nightly", registry=registry)
    with pytest.raises(RunConflict, match="same --output"):
        score_file(
            model,
            path,
            key_column="txn_id",
            run_id="nightly",
            output=f"{tmp_path}/o/",
            registry=registry,
        )
    with pytest.raises(RunConflict, match="same --key-column"):
        score_file(model, path, run_id="nightly", registry=registry)
    with pytest.raises(RunConflict, match="chunks of 100000 rows"):
        score_file(
            model, path, key_column="txn_id", run_id="nightly", chunk_size=7, registry=registry
        )


def test_a_live_run_is_not_taken_over(registry, make_model, make_input):
    """A run whose process is alive is refused, naming the owner."""
    model = make_model(registry)
    path, _ = make_input("parquet", 50)
    run = score_file(model, path, run_id="busy", registry=registry)
    with registry.store.write() as conn:
        conn.execute(
            sa.text("UPDATE batch_runs SET status = 'running', owner = :o WHERE run_id = 'busy'"),
            {"o": current_owner()},
        )
    with pytest.raises(RunConflict, match="is still running"):
        score_file(model, path, run_id=run.run_id, registry=registry)


def test_a_succeeded_run_id_is_a_no_op(registry, make_model, make_input):
    """Running a finished run id again returns it as it was and writes nothing."""
    model = make_model(registry)
    path, _ = make_input("parquet", 80)
    first = score_file(model, path, run_id="once", registry=registry)
    again = score_file(model, path, run_id="once", registry=registry)
    assert again == first
    assert len(stored_predictions(registry.store, "once")) == first.rows_scored


def _chunks_done(store, run_id: str) -> int:
    with store.read() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(batch_chunks.c.run_id == run_id)
        ).scalar_one()


def kill_half_way_then_resume(registry, model, path, frame, kind, tmp_path) -> None:
    """Start `slipway batch` for real, SIGKILL it after a few chunks, resume, check the rows."""
    env = {**os.environ, "SLIPWAY_HOME": str(registry.settings.home), "OMP_NUM_THREADS": "1"}
    if registry.settings.database_url:
        env["SLIPWAY_DATABASE_URL"] = registry.settings.database_url
    args = [sys.executable, "-m", "slipway", "batch", model.ref, str(path), "--key-column",
            "txn_id", "--output", output_spec(kind, tmp_path), "--chunk-size", "250",
            "--run-id", "killed", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _chunks_done(registry.store, "killed") < 3:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the batch process made no progress"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    dead = RunLog(registry.store).get("killed")
    assert dead.status == "running" and not dead.owner_alive()
    assert 3 <= dead.chunks_done < 120, "the kill did not land half way"
    resumed = subprocess.run(args, env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 3, resumed.stderr.decode()
    run = RunLog(registry.store).get("killed")
    assert (run.status, run.rows_in, run.rows_scored, run.chunks_done) == (
        "succeeded", 30_000, 29_998, 120
    )  # fmt: skip
    assert_exactly_once(registry, "killed", kind, tmp_path, frame)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_kill_9_half_way_then_resume_into_the_database(registry, make_model, make_input, tmp_path):
    """Killed mid-run, resumed: batch_predictions holds each row once (SQLite, PostgreSQL)."""
    model = make_model(registry)
    path, frame = make_input("parquet", 30_000)
    kill_half_way_then_resume(registry, model, path, frame, "db", tmp_path)


@pytest.mark.slow
def test_kill_9_half_way_then_resume_into_parquet(local_registry, make_model, make_input, tmp_path):
    """Killed mid-run, resumed: the Parquet file holds each row once."""
    model = make_model(local_registry)
    path, frame = make_input("parquet", 30_000)
    kill_half_way_then_resume(local_registry, model, path, frame, "file", tmp_path)


@pytest.mark.slow
def test_sigterm_records_the_run_as_interrupted(local_registry, make_model, make_input, tmp_path):
    """systemd's stop (SIGTERM) ends the run as failed and resumable, with exit code 1."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 30_000)
    env = {**os.environ, "SLIPWAY_HOME": str(local_registry.settings.home)}
    args = [sys.executable, "-m", "slipway", "batch", model.ref, str(path), "--chunk-size",
            "250", "--run-id", "stopped", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _chunks_done(local_registry.store, "stopped") < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 1
    assert b"resume it with --run-id stopped" in proc.stderr.read()
    run = RunLog(local_registry.store).get("stopped")
    assert run.status == "failed" and "interrupted" in (run.error or "")
    assert 3 <= run.chunks_done < 120


def test_kept_inputs_resume_exactly_once_as_the_run_started(
    registry, make_model, make_input, monkeypatch
):
    """A run keeping inputs that fails, resumed without the flag, keeps each row's inputs once."""
    model = make_model(registry)
    path, frame = make_input("parquet", 1_000)
    written: list[int] = []
    monkeypatch.setattr(DatabaseOutput, "write", failing_on(DatabaseOutput.write, 3, written))
    options = dict(key_column="txn_id", chunk_size=150)
    with pytest.raises(BatchFailed) as err:
        score_file(model, path, registry=registry, keep_inputs=True, **options)
    run_id = err.value.run_id
    resumed = score_file(model, path, run_id=run_id, registry=registry, **options)
    assert resumed.status == "succeeded" and sorted(written) == list(range(7))
    with registry.store.read() as conn:
        kept = conn.execute(
            sa.select(batch_inputs.c.key, batch_inputs.c.inputs).where(
                batch_inputs.c.run_id == run_id
            )
        ).all()
    keys = [k for k, _ in kept]
    scored = stored_predictions(registry.store, run_id)["key"].tolist()
    assert sorted(keys) == sorted(scored) and len(keys) == len(set(keys)) == 998
    by_key = frame.set_index("txn_id")
    for key, inputs in kept[::97]:
        assert json.loads(inputs)["amount"] == by_key.loc[key, "amount"]
