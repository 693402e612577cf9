"""Resuming: a run that died resumes by its id and ends with each input row exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from slipway.batch import RunLog, score_file
from slipway.batch.outputs import DatabaseOutput, ParquetOutput
from slipway.batch.runs import current_owner
from slipway.exceptions import (
    BatchFailed,
    BatchInputError,
    ConfigError,
    InvalidReference,
    RunConflict,
)
from slipway.store.schema import batch_chunks, batch_inputs, batch_runs
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
    """A resume must read the same rows (not another file, nor the same file rewritten) with
    the same version into the same output."""
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
    # The same file, rewritten with other rows since the run read it: refused as well.
    frame.iloc[:150].to_parquet(path, index=False)
    with pytest.raises(RunConflict, match="has changed"):
        score_file(model, path, key_column="txn_id", run_id="nightly", registry=registry)


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


# The real-process runs: 30 chunks of 250 rows. The signal lands once 3 chunks are recorded,
# long before the last (each chunk is a write and a commit), so the run is cut half way; more
# chunks would only make the resume longer.
ROWS, CHUNKS = 7_500, 30


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
    assert 3 <= dead.chunks_done < CHUNKS, "the kill did not land half way"
    resumed = subprocess.run(args, env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 3, resumed.stderr.decode()
    run = RunLog(registry.store).get("killed")
    assert (run.status, run.rows_in, run.rows_scored, run.chunks_done) == (
        "succeeded", ROWS, ROWS - 2, CHUNKS
    )  # fmt: skip
    assert_exactly_once(registry, "killed", kind, tmp_path, frame)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_kill_9_half_way_then_resume_into_the_database(registry, make_model, make_input, tmp_path):
    """Killed mid-run, resumed: batch_predictions holds each row once (SQLite, PostgreSQL)."""
    model = make_model(registry)
    path, frame = make_input("parquet", ROWS)
    kill_half_way_then_resume(registry, model, path, frame, "db", tmp_path)


@pytest.mark.slow
def test_kill_9_half_way_then_resume_into_parquet(local_registry, make_model, make_input, tmp_path):
    """Killed mid-run, resumed: the Parquet file holds each row once."""
    model = make_model(local_registry)
    path, frame = make_input("parquet", ROWS)
    kill_half_way_then_resume(local_registry, model, path, frame, "file", tmp_path)


@pytest.mark.slow
def test_sigterm_records_the_run_as_interrupted(local_registry, make_model, make_input, tmp_path):
    """systemd's stop (SIGTERM) ends the run as failed and resumable, with exit code 1."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", ROWS)
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
    assert 3 <= run.chunks_done < CHUNKS


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


def test_bad_options_are_refused_before_a_run_is_recorded(registry, make_model, make_input):
    """Engine, chunk size, a scheduler without Dask and the run id are checked first."""
    model = make_model(registry)
    path, _ = make_input("parquet", 20, bad=False)
    with pytest.raises(ConfigError, match="engine must be 'local' or 'dask', not 'spark'"):
        score_file(model, path, engine="spark", registry=registry)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positive number of rows, not 0"):
        score_file(model, path, chunk_size=0, registry=registry)
    with pytest.raises(BatchInputError, match="--scheduler .* add --engine dask"):
        score_file(model, path, scheduler="tcp://x:8786", registry=registry)
    with pytest.raises(InvalidReference, match="'no/slash' is not a valid run id"):
        score_file(model, path, run_id="no/slash", registry=registry)
    assert RunLog(registry.store).recent() == []
    one = score_file(model, path, chunk_size=1, registry=registry)
    assert (one.status, one.chunks_done, one.rows_scored) == ("succeeded", 20, 20)


def test_progress_is_reported_after_each_chunk_and_a_resume_starts_from_the_rows_done(
    local_registry, make_model, make_input, monkeypatch
):
    """The callback gets (rows done, total rows) at the start and after every chunk."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 250, bad=False)
    seen: list[tuple[int, int | None]] = []
    written: list[int] = []
    monkeypatch.setattr(DatabaseOutput, "write", failing_on(DatabaseOutput.write, 2, written))
    options = dict(chunk_size=100, registry=local_registry, progress=lambda *a: seen.append(a))
    with pytest.raises(BatchFailed) as err:
        score_file(model, path, **options)
    assert seen == [(0, 250), (100, 250), (200, 250)]
    seen.clear()
    score_file(model, path, run_id=err.value.run_id, **options)
    assert seen == [(200, 250), (250, 250)]


def test_a_resume_rescores_a_lost_part_and_records_a_part_whose_chunk_row_is_missing(
    local_registry, make_model, make_input, monkeypatch, tmp_path
):
    """Reconciling: the chunk rows follow the parts on disk before the run goes on."""
    model = make_model(local_registry)
    path, frame = make_input("parquet", 1_000)
    written: list[int] = []
    monkeypatch.setattr(ParquetOutput, "write", failing_on(ParquetOutput.write, 3, written))
    options = dict(output=output_spec("directory", tmp_path), key_column="txn_id", chunk_size=150)
    with pytest.raises(BatchFailed) as err:
        score_file(model, path, registry=local_registry, **options)
    run_id = err.value.run_id
    assert sorted(written) == [0, 1, 2]
    (tmp_path / "out" / "part-000000.parquet").unlink()  # lost: chunk 0 is scored again
    with local_registry.store.write() as conn:  # written, but its chunk row never committed
        conn.execute(batch_chunks.delete().where(batch_chunks.c.chunk == 1))
    resumed = score_file(model, path, run_id=run_id, registry=local_registry, **options)
    assert sorted(written) == [0, 0, 1, 2, 3, 4, 5, 6]
    assert (resumed.status, resumed.chunks_done, resumed.rows_in) == ("succeeded", 7, 1_000)
    assert sorted(RunLog(local_registry.store).chunks(run_id)) == list(range(7))
    assert_exactly_once(local_registry, run_id, "directory", tmp_path, frame)


def test_ctrl_c_records_the_run_as_interrupted_and_resumable(
    local_registry, make_model, make_input, monkeypatch
):
    """KeyboardInterrupt propagates with a note naming the run id; the run is failed."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 300, bad=False)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(DatabaseOutput, "write", interrupted)
    with pytest.raises(KeyboardInterrupt) as stop:
        score_file(model, path, run_id="stopped", chunk_size=100, registry=local_registry)
    note = "Batch run stopped interrupted; resume it with --run-id stopped."
    assert stop.value.__notes__ == [note]
    run = RunLog(local_registry.store).get("stopped")
    assert (run.status, run.error) == ("failed", note)


def test_a_failure_names_foreign_exceptions_by_type_and_slipways_own_by_message(
    local_registry, make_model, make_input, monkeypatch
):
    """OSError: ... is recorded with its type; a Slipway error as its own sentence."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 300, bad=False)
    written: list[int] = []
    monkeypatch.setattr(DatabaseOutput, "write", failing_on(DatabaseOutput.write, 0, written))
    with pytest.raises(BatchFailed) as err:
        score_file(model, path, chunk_size=100, registry=local_registry)
    error = RunLog(local_registry.store).get(err.value.run_id).error
    assert error == "OSError: [Errno 28] No space left on device"
    assert str(err.value).startswith(f"Batch run {err.value.run_id} failed: OSError: [Errno 28]")
    assert f"resume with --run-id {err.value.run_id}" in str(err.value)

    def refused(*args):
        raise RunConflict("Someone else holds it.")

    monkeypatch.setattr(DatabaseOutput, "write", refused)
    with pytest.raises(BatchFailed) as err:
        score_file(model, path, chunk_size=100, registry=local_registry)
    assert RunLog(local_registry.store).get(err.value.run_id).error == "Someone else holds it."


def test_an_empty_input_writes_an_empty_file_with_the_output_columns(
    local_registry, make_model, make_input, tmp_path
):
    """No rows, no parts: the single-file output still has the columns of a scored chunk."""
    model = make_model(local_registry)
    path, frame = make_input("parquet", 10, bad=False)
    frame.iloc[:0].to_parquet(tmp_path / "empty.parquet", index=False)
    target = tmp_path / "scores.parquet"
    run = score_file(model, tmp_path / "empty.parquet", output=str(target), registry=local_registry)
    assert (run.status, run.rows_in, run.chunks_done) == ("succeeded", 0, 0)
    full = tmp_path / "full.parquet"
    score_file(model, path, output=str(full), registry=local_registry)
    written = pd.read_parquet(target)
    assert len(written) == 0 and list(written.columns) == list(pd.read_parquet(full).columns)
    assert pq.read_schema(target).remove_metadata() == pq.read_schema(full).remove_metadata()
    assert not (tmp_path / "scores.rejects.parquet").exists()


def test_a_resume_on_another_engine_or_artifact_is_refused(registry, make_model, make_input):
    """The engine and the artifact's hash must be the run's; the same chunk size may be given."""
    model = make_model(registry)
    path, _ = make_input("parquet", 200)
    options = dict(key_column="txn_id", run_id="nightly", chunk_size=50, registry=registry)
    score_file(model, path, **options)
    runs = RunLog(registry.store)
    runs.finish("nightly", "failed", "pretend it died")
    again = score_file(model, path, **options)  # the same chunk size, given again
    assert again.status == "succeeded"
    runs.finish("nightly", "failed", "pretend it died")
    runs.set_progress("nightly", {**again.progress, "engine": "dask"})
    with pytest.raises(RunConflict, match="ran on the dask engine; resume it with --engine dask"):
        score_file(model, path, **options)
    with registry.store.write() as conn:
        conn.execute(sa.update(batch_runs).values(sha256="0" * 64))
    with pytest.raises(RunConflict, match=f"used artifact {'0' * 64}, now {model.version.sha256}"):
        score_file(model, path, **options)


def test_a_resume_into_parquet_removes_what_a_killed_writer_left(
    local_registry, make_model, make_input, monkeypatch, tmp_path
):
    """The resumed run prepares its output again: half-written parts are deleted."""
    model = make_model(local_registry)
    path, frame = make_input("parquet", 600)
    written: list[int] = []
    monkeypatch.setattr(ParquetOutput, "write", failing_on(ParquetOutput.write, 2, written))
    options = dict(output=output_spec("directory", tmp_path), key_column="txn_id", chunk_size=150)
    with pytest.raises(BatchFailed) as err:
        score_file(model, path, registry=local_registry, **options)
    leftover = tmp_path / "out" / ".part-000002.parquet.x1y2.tmp"
    leftover.write_bytes(b"half a part")
    score_file(model, path, run_id=err.value.run_id, registry=local_registry, **options)
    assert not leftover.exists()
    assert_exactly_once(local_registry, err.value.run_id, "directory", tmp_path, frame)


def test_a_run_recorded_without_the_keep_inputs_fact_resumes_without_keeping_them(
    local_registry, make_model, make_input, monkeypatch
):
    """A run whose progress predates keep_inputs resumes as a run that keeps nothing."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 300, bad=False)
    written: list[int] = []
    monkeypatch.setattr(DatabaseOutput, "write", failing_on(DatabaseOutput.write, 1, written))
    with pytest.raises(BatchFailed) as err:
        score_file(model, path, chunk_size=100, registry=local_registry)
    runs = RunLog(local_registry.store)
    progress = runs.get(err.value.run_id).progress
    runs.set_progress(err.value.run_id, {k: v for k, v in progress.items() if k != "keep_inputs"})
    score_file(model, path, run_id=err.value.run_id, chunk_size=100, registry=local_registry)
    with local_registry.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(batch_inputs)).scalar() == 0


def test_a_run_left_running_by_a_dead_owner_is_resumed(local_registry, make_model, make_input):
    """A run still marked running whose owner is gone (silent for a day) is taken over."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 50)
    run = score_file(model, path, run_id="orphan", registry=local_registry)
    with local_registry.store.write() as conn:
        conn.execute(
            sa.update(batch_runs).values(
                status="running",
                owner="elsewhere.example:1:1:token",
                heartbeat_at=run.started_at - timedelta(days=1),
            )
        )
    resumed = score_file(model, path, run_id="orphan", registry=local_registry)
    assert (resumed.status, resumed.rows_in) == ("succeeded", 50)
