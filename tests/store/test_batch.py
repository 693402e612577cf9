"""store.batch on SQLite and PostgreSQL: run rows, chunk rows, one transaction per chunk."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest

from slipway.batch import RunLog
from slipway.batch.scoring import Reject
from slipway.exceptions import RunConflict
from slipway.store import batch as tables
from slipway.store.batch import ChunkRecord, RunContext, StoredPrediction
from tests.batch.helpers import stored_predictions, stored_rejects

SHA = "ab" * 32
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def new_run(store, run_id: str, *, model: str = "fraud", owner: str = "me") -> None:
    """A running run held by ``owner``."""
    RunLog(store).create(
        run_id,
        model_name=model,
        version=1,
        sha256=SHA,
        source={"kind": "file"},
        fingerprint="f",
        output={"kind": "db"},
        progress={"chunk_size": 10},
        owner=owner,
    )


def columns(keys: list[str], *, value: bool = False) -> dict[str, pa.Array]:
    """A chunk's columns: classifier JSON text, or a regressor's value with null labels."""
    n = len(keys)
    if value:
        return {
            "key": pa.array(keys, pa.string()),
            "label": pa.nulls(n, pa.string()),
            "probabilities": pa.nulls(n, pa.string()),
            "value": pa.array([float(i) / 4 for i in range(n)], pa.float64()),
        }
    return {
        "key": pa.array(keys, pa.string()),
        "label": pa.array(['"yes"' if i % 2 else '"no"' for i in range(n)], pa.string()),
        "probabilities": pa.array([f'{{"no": {1 - i / n}, "yes": {i / n}}}' for i in range(n)]),
        "value": pa.nulls(n, pa.float64()),
    }


def ctx(run_id: str, owner: str = "me") -> RunContext:
    """The writer's view of a run."""
    return RunContext(run_id, owner, "fraud", 1, SHA)


@pytest.mark.parametrize("n", [1, 99, 100, 101, 250])
def test_write_chunk_stores_every_row_of_any_size_once(registry, n):
    """Whole statements of 100 rows and the rest: each key once, with its label and
    probabilities, the run's constants and the chunk's time (SQLite executemany, COPY)."""
    store = registry.store
    new_run(store, "r1")
    keys = [f"k{i:04d}" for i in range(n)]
    rec = ChunkRecord(0, 0, n, n, 0)
    assert tables.write_chunk(store, ctx("r1"), rec, columns(keys), AT, [])
    rows = stored_predictions(store, "r1")
    assert sorted(rows.index) == keys
    last = rows.loc[keys[-1]]
    assert last["label"] == ("yes" if (n - 1) % 2 else "no")
    assert last["probabilities"] == {"no": 1 - (n - 1) / n, "yes": (n - 1) / n}
    assert last["value"] is None or last["value"] != last["value"]  # NULL (NaN in pandas)
    assert set(rows["model_name"]) == {"fraud"} and set(rows["run_id"]) == {"r1"}
    assert set(rows["version"]) == {1} and set(rows["sha256"]) == {SHA}
    assert set(rows["scored_at"]) == {AT}
    assert RunLog(store).chunks("r1") == {0: rec}


def test_write_chunk_stores_a_regressors_values_and_a_chunks_rejects(registry):
    """Values with null label and probabilities; rejects with their row and reasons; the run's
    counts move with the chunk."""
    store = registry.store
    new_run(store, "r1")
    rejects = [Reject(7, "k7", {"amount": 1e15}, [{"code": "out_of_range"}])]
    rec = ChunkRecord(0, 0, 4, 3, 1)
    cols = columns(["k0", "k1", "k2"], value=True)
    assert tables.write_chunk(store, ctx("r1"), rec, cols, AT, rejects)
    rows = stored_predictions(store, "r1")
    assert rows.loc[["k0", "k1", "k2"], "value"].tolist() == [0.0, 0.25, 0.5]
    assert rows["label"].isna().all() and rows["probabilities"].isna().all()
    stored = stored_rejects(store, "r1")
    assert stored.loc[7, "key"] == "k7" and stored.loc[7, "row"] == {"amount": 1e15}
    assert stored.loc[7, "reasons"] == [{"code": "out_of_range"}]
    run = RunLog(store).get("r1")
    assert (run.rows_in, run.rows_scored, run.rows_rejected, run.chunks_done) == (4, 3, 1, 1)


def test_write_chunk_stores_text_of_any_width_and_the_chunks_exact_time(registry):
    """Keys, labels and kept inputs in any script (lengths in bytes, not characters), an
    empty key, and a time with microseconds come back exactly (binary COPY on PostgreSQL)."""
    store = registry.store
    new_run(store, "r1")
    keys = ["", "clé", "日本語-キー", "🙂" * 50, "k" * 200]
    cols = {
        "key": pa.array(keys),
        "label": pa.array(['"ü"', '"no"', '"日"', '"🙂"', '"no"']),
        "probabilities": pa.array(['{"ü": 0.25, "no": 0.75}'] * 5),
        "value": pa.nulls(5, pa.float64()),
        "inputs": pa.array([f'{{"merchant": "{k[:5]}"}}' for k in keys]),
    }
    at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert tables.write_chunk(store, ctx("r1"), ChunkRecord(0, 0, 5, 5, 0), cols, at, [])
    rows = stored_predictions(store, "r1")
    assert sorted(rows.index) == sorted(keys)
    assert rows.loc["日本語-キー", "label"] == "日" and rows.loc["🙂" * 50, "label"] == "🙂"
    assert rows.loc["clé", "probabilities"] == {"ü": 0.25, "no": 0.75}
    assert set(rows["scored_at"]) == {at} and set(rows["sha256"]) == {SHA}
    lines = b"".join(tables.kept_lines(store, "fraud", at, at + timedelta(seconds=1)))
    inputs = sorted(json.loads(line)["i"]["merchant"] for line in lines.splitlines())
    assert inputs == sorted(k[:5] for k in keys)


def test_a_regressors_values_keep_every_bit_and_a_null_stays_null(registry):
    """Float values round-trip bit for bit (tiny, huge, infinite, negative), and a null
    value or label in any row is stored as NULL, not as 0 or an empty text."""
    store = registry.store
    new_run(store, "r1")
    values = [1 / 3, -2.5e-300, 1e300, float("inf"), None, -123.456]
    keys = [f"k{i}" for i in range(len(values))]
    cols = {
        "key": pa.array(keys),
        "label": pa.array([None, '"a"', None, None, None, None], pa.string()),
        "probabilities": pa.nulls(len(keys), pa.string()),
        "value": pa.array(values, pa.float64()),
    }
    rec = ChunkRecord(0, 0, len(keys), len(keys), 0)
    assert tables.write_chunk(store, ctx("r1"), rec, cols, AT, [])
    rows = stored_predictions(store, "r1")
    stored = [rows.loc[k, "value"] for k in keys]
    assert [repr(float(v)) for v in stored[:4]] == [repr(v) for v in values[:4]]
    assert pd.isna(stored[4])  # NULL
    assert float(stored[5]) == -123.456
    assert rows.loc["k1", "label"] == "a"
    assert pd.isna(rows.loc["k0", "label"]) and pd.isna(rows.loc["k2", "label"])


def test_an_all_rejected_chunk_writes_its_rejects_and_its_marker(registry):
    """No prediction rows at all, yet the chunk is done."""
    store = registry.store
    new_run(store, "r1")
    rejects = [Reject(0, None, {"a": 1}, [{"code": "missing"}])]
    rec = ChunkRecord(0, 0, 1, 0, 1)
    assert tables.write_chunk(store, ctx("r1"), rec, columns([]), AT, rejects)
    assert stored_predictions(store, "r1").empty
    assert stored_rejects(store, "r1")["key"].tolist() == [None]
    assert RunLog(store).chunks("r1") == {0: rec}


def test_a_repeated_key_or_chunk_writes_nothing_and_answers_false(registry):
    """The database refuses the duplicate; the whole chunk (rows, rejects, marker) is undone."""
    store = registry.store
    new_run(store, "r1")
    assert tables.write_chunk(
        store, ctx("r1"), ChunkRecord(0, 0, 2, 2, 0), columns(["a", "b"]), AT, []
    )
    again = ChunkRecord(1, 2, 3, 2, 1)
    rejects = [Reject(4, "c", {}, [])]
    assert not tables.write_chunk(store, ctx("r1"), again, columns(["c", "b"]), AT, rejects)
    assert not tables.write_chunk(
        store, ctx("r1"), ChunkRecord(0, 0, 1, 1, 0), columns(["z"]), AT, []
    )
    assert sorted(stored_predictions(store, "r1").index) == ["a", "b"]
    assert stored_rejects(store, "r1").empty and sorted(RunLog(store).chunks("r1")) == [0]
    assert RunLog(store).get("r1").rows_in == 2


def test_a_chunk_of_a_run_taken_over_is_refused_and_undone(registry):
    """Another owner's writer stops with RunConflict and its rows are rolled back."""
    store = registry.store
    new_run(store, "r1", owner="first")
    RunLog(store).claim("r1", "second")
    with pytest.raises(RunConflict, match="'r1' was taken over by another process"):
        tables.write_chunk(
            store, ctx("r1", "first"), ChunkRecord(0, 0, 1, 1, 0), columns(["a"]), AT, []
        )
    with pytest.raises(RunConflict, match="taken over"):
        RunLog(store).record_chunks("r1", "first", [ChunkRecord(0, 0, 1, 1, 0)])
    assert stored_predictions(store, "r1").empty and RunLog(store).chunks("r1") == {}


def test_chunk_rows_are_recorded_together_forgotten_by_number_and_finish_recounts(registry):
    """record_chunks is all or nothing; forget_chunks drops only the numbers given; finish
    recomputes the counts from the chunk rows that are left (zero without any)."""
    store = registry.store
    runs = RunLog(store)
    new_run(store, "r1")
    recs = [ChunkRecord(i, 10 * i, 10, 9, 1) for i in range(3)]
    assert runs.record_chunks("r1", "me", recs)
    assert not runs.record_chunks("r1", "me", [ChunkRecord(3, 30, 5, 5, 0), recs[0]])
    assert sorted(runs.chunks("r1")) == [0, 1, 2]
    runs.forget_chunks("r1", [])
    runs.forget_chunks("r1", {1})
    assert runs.chunks("r1") == {0: recs[0], 2: recs[2]}
    done = runs.finish("r1", "failed", "disk full")
    assert (done.status, done.error, done.rows_in, done.rows_scored, done.rows_rejected) == (
        "failed", "disk full", 20, 18, 2
    )  # fmt: skip
    assert done.ended_at is not None and done.heartbeat_at == done.ended_at
    new_run(store, "empty")
    empty = runs.finish("empty", "succeeded")
    assert (empty.rows_in, empty.rows_scored, empty.rows_rejected, empty.error) == (0, 0, 0, None)


def test_claim_runs_a_run_again_and_progress_is_replaced(registry):
    """A claimed run is running again under its new owner, with no end and no error."""
    store = registry.store
    runs = RunLog(store)
    new_run(store, "r1", owner="first")
    runs.finish("r1", "failed", "boom")
    runs.claim("r1", "second")
    run = runs.get("r1")
    assert (run.status, run.owner, run.ended_at, run.error) == ("running", "second", None, None)
    assert run.heartbeat_at is not None and run.heartbeat_at >= run.started_at
    runs.set_progress("r1", {"engine": "local", "chunk_size": 5})
    assert runs.get("r1").progress == {"engine": "local", "chunk_size": 5}


def test_recent_runs_are_newest_first_per_model_and_limited(registry):
    """recent(): newest first, ties by run id descending; of one model when asked; at most
    ``limit`` (50 unless told)."""
    store = registry.store
    for run_id, model in (("a", "fraud"), ("b", "churn"), ("c", "fraud")):
        new_run(store, run_id, model=model)
    with store.write() as conn:  # one start time for all: the run id breaks the tie
        conn.execute(tables.batch_runs.update().values(started_at=AT))
        conn.execute(
            tables.batch_runs.update()
            .where(tables.batch_runs.c.run_id == "a")
            .values(started_at=AT + timedelta(seconds=1))
        )
    runs = RunLog(store)
    assert [r.run_id for r in runs.recent()] == ["a", "c", "b"]
    assert [r.run_id for r in runs.recent(model="fraud")] == ["a", "c"]
    assert [r.run_id for r in runs.recent(limit=2)] == ["a", "c"]
    assert runs.find("nope") is None and runs.get("b").model_name == "churn"
    for i in range(48):
        new_run(store, f"more-{i:02d}")
    assert len(runs.recent()) == 50 and len(runs.recent(limit=51)) == 51  # 50 by default


def test_the_newest_stored_prediction_of_a_key_wins_then_the_higher_version(registry):
    """find_prediction orders by scored_at, then version, both descending."""
    store = registry.store
    for run_id, version, at in (("old", 1, AT), ("new", 1, AT + timedelta(hours=1)), ("v2", 2, AT)):
        new_run(store, run_id)
        run = RunContext(run_id, "me", "fraud", version, SHA)
        rec = ChunkRecord(0, 0, 1, 1, 0)
        assert tables.write_chunk(store, run, rec, columns(["k"]), at, [])
    found = tables.find_prediction(store, "fraud", "k")
    assert found is not None and (found.run_id, found.version) == ("new", 1)
    assert found.label == "no" and found.probabilities == {"no": 1.0, "yes": 0.0}
    with store.write() as conn:
        conn.execute(
            tables.batch_predictions.delete().where(tables.batch_predictions.c.run_id == "new")
        )
    found = tables.find_prediction(store, "fraud", "k")
    assert found is not None and (found.run_id, found.version) == ("v2", 2)
    assert tables.find_prediction(store, "fraud", "other") is None
    assert tables.find_prediction(store, "churn", "k") is None


def test_a_stored_prediction_reads_as_json():
    """to_dict: every field, the time as ISO text."""
    found = StoredPrediction("fraud", "k", 2, "r1", SHA, AT, "yes", {"yes": 0.9}, None)
    assert found.to_dict() == {
        "model_name": "fraud",
        "key": "k",
        "version": 2,
        "run_id": "r1",
        "sha256": SHA,
        "scored_at": "2026-03-01T12:00:00+00:00",
        "label": "yes",
        "probabilities": {"yes": 0.9},
        "value": None,
    }


def test_only_validated_text_is_written_into_sql_as_a_literal():
    """Model names, run ids, hashes and times pass; a quote or a semicolon is refused."""
    assert tables._literal("fraud-v1.2_x:+ 0") == "'fraud-v1.2_x:+ 0'"
    for bad in ("it's", "a;b", 'a"b', "a\nb"):
        with pytest.raises(ValueError, match="cannot be written into SQL as a literal"):
            tables._literal(bad)


def test_kept_lines_read_rows_scored_from_start_up_to_not_including_end(registry):
    """The window is [start, end): a row scored at start is in, one scored at end is out;
    without ``labels`` every kept row is read, labelled or not."""
    store = registry.store
    new_run(store, "r1")
    cols = {**columns(["k0", "k1"]), "inputs": pa.array(['{"amount":1.5}', '{"amount":2.5}'])}
    assert tables.write_chunk(store, ctx("r1"), ChunkRecord(0, 0, 2, 2, 0), cols, AT, [])
    lines = b"".join(tables.kept_lines(store, "fraud", AT, AT + timedelta(hours=1)))
    rows = [json.loads(line) for line in lines.splitlines()]
    assert [r["i"] for r in rows] == [{"amount": 1.5}, {"amount": 2.5}]
    assert rows[0]["t"] == "2026-03-01 12:00:00" and rows[0]["v"] == 1
    assert rows[1]["o"] == {"label": "yes", "probabilities": {"no": 0.5, "yes": 0.5}}
    assert b"".join(tables.kept_lines(store, "fraud", AT - timedelta(hours=1), AT)) == b""


def test_kept_rejects_are_each_rejected_rows_problems_with_its_runs_start(registry):
    """A rejected row's reasons, dated by its run's start; no run ids, no rows."""
    store = registry.store
    new_run(store, "r1")
    rejects = [Reject(3, "k3", {"a": 1}, [{"code": "missing", "field": "a"}])]
    assert tables.write_chunk(
        store, ctx("r1"), ChunkRecord(0, 0, 1, 0, 1), columns([]), AT, rejects
    )
    started = RunLog(store).get("r1").started_at
    assert tables.kept_rejects(store, ["r1"]) == [(started, [{"code": "missing", "field": "a"}])]
    assert tables.kept_rejects(store, ["other"]) == [] and tables.kept_rejects(store, []) == []
