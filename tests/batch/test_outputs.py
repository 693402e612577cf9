"""Outputs: where each kind puts rows and rejects, how it refuses to mix runs, and a key
repeated across chunks stopping the run with the same error on every output."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from slipway.batch import RunLog, score_file
from slipway.batch.outputs import DatabaseOutput, ParquetOutput, db_columns, open_output
from slipway.batch.scoring import PredictedChunk
from slipway.exceptions import BatchFailed, BatchInputError
from tests.batch.helpers import input_frame, stored_predictions

REPEATED = "Chunk 2 (input rows from 200) repeats a key this run already stored"


def repeating_input(tmp_path) -> tuple[str, pd.DataFrame]:
    """300 clean rows in chunks of 100 where row 250 (chunk 2) repeats the key of row 40."""
    frame = input_frame(300, bad=False)
    frame.loc[250, "txn_id"] = frame.loc[40, "txn_id"]
    path = tmp_path / "repeating.parquet"
    frame.to_parquet(path, index=False)
    return str(path), frame


def assert_friendly(info: pytest.ExceptionInfo[BatchFailed]) -> None:
    """The run failed with the documented BatchInputError, not a driver's constraint error."""
    message = str(info.value)
    assert REPEATED in message and "keys must be unique across the whole input" in message
    assert "IntegrityError" not in message and "UniqueViolation" not in message
    assert isinstance(info.value.__cause__, BatchInputError)


def test_a_key_repeated_across_chunks_is_a_friendly_error_in_the_database(
    registry, make_model, tmp_path
):
    """On SQLite and PostgreSQL the chunk with the repeat is named; earlier chunks stay."""
    model = make_model(registry)
    path, frame = repeating_input(tmp_path)
    with pytest.raises(BatchFailed) as info:
        score_file(
            model,
            path,
            output="db",
            key_column="txn_id",
            chunk_size=100,
            run_id="repeat",
            registry=registry,
        )
    assert_friendly(info)
    run = RunLog(registry.store).get("repeat")
    assert run.status == "failed" and REPEATED in (run.error or "")
    assert sorted(RunLog(registry.store).chunks("repeat")) == [0, 1]
    stored = stored_predictions(registry.store, "repeat")
    assert sorted(stored.index) == sorted(frame.txn_id[:200])


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_a_key_repeated_across_chunks_is_a_friendly_error_in_parquet(
    local_registry, make_model, tmp_path, layout
):
    """Parquet has no primary key: the run checks keys across parts before it succeeds."""
    model = make_model(local_registry)
    path, frame = repeating_input(tmp_path)
    target = tmp_path / ("scores.parquet" if layout == "file" else "scores")
    out = str(target) + ("/" if layout == "directory" else "")
    with pytest.raises(BatchFailed) as info:
        score_file(
            model,
            path,
            output=out,
            key_column="txn_id",
            chunk_size=100,
            run_id="repeat",
            registry=local_registry,
        )
    assert_friendly(info)
    assert f"({frame.txn_id[40]!r}, first stored by chunk 0)" in str(info.value)
    assert RunLog(local_registry.store).get("repeat").status == "failed"
    if layout == "file":
        assert not target.exists()  # never assembled from parts that break the key rule


def test_unique_keys_over_many_parquet_parts_pass_the_check(local_registry, make_model, tmp_path):
    """The cross-part check lets a run with unique keys (and an all-rejected chunk) succeed."""
    model = make_model(local_registry)
    frame = input_frame(300, bad=False)
    frame.loc[100:199, "merchant"] = "casino"  # chunk 1 is rejected whole: an empty part
    path = tmp_path / "unique.parquet"
    frame.to_parquet(path, index=False)
    target = tmp_path / "scores.parquet"
    run = score_file(
        model,
        str(path),
        output=str(target),
        key_column="txn_id",
        chunk_size=100,
        registry=local_registry,
    )
    assert run.status == "succeeded" and run.rows_rejected == 100
    written = pd.read_parquet(target)
    assert written["key"].tolist() == [*frame.txn_id[:100], *frame.txn_id[200:]]


def test_open_output_tells_the_database_a_file_and_a_directory_apart(tmp_path):
    """``db``, a .parquet or .pq file (any case), a trailing slash or an existing directory."""
    assert open_output("db") == DatabaseOutput()
    assert open_output(tmp_path / "a.parquet") == ParquetOutput(tmp_path / "a.parquet", "file")
    assert open_output(f"{tmp_path}/b.PQ") == ParquetOutput(tmp_path / "b.PQ", "file")
    assert open_output(f"{tmp_path}/new/") == ParquetOutput(tmp_path / "new", "directory")
    assert open_output(tmp_path) == ParquetOutput(tmp_path, "directory")
    with pytest.raises(BatchInputError, match="--output 'scores.csv': use db"):
        open_output("scores.csv")


def test_outputs_describe_where_rows_parts_and_rejects_go(tmp_path):
    """What a run records as its output, and the parts directory of each Parquet layout."""
    assert DatabaseOutput().describe() == {"kind": "db"}
    file = ParquetOutput(tmp_path / "s.parquet", "file")
    assert file.describe() == {
        "kind": "parquet",
        "path": str(tmp_path / "s.parquet"),
        "layout": "file",
        "rejects": str(tmp_path / "s.rejects.parquet"),
    }
    assert file.parts("r1") == tmp_path / ".s.parquet.r1.parts"
    bare = ParquetOutput(tmp_path / "scores", "file")
    assert bare.rejects_path == tmp_path / "scores.rejects.parquet"
    directory = ParquetOutput(tmp_path / "out", "directory")
    assert directory.rejects_path == tmp_path / "out" / "_rejects"
    assert directory.parts("r1") == tmp_path / "out"


def test_a_directory_output_is_kept_to_one_run_unless_overwritten(tmp_path):
    """prepare() refuses a file, another run's parts or bare parts; --overwrite clears them."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(BatchInputError, match="'.*blocker' exists and is not a directory"):
        ParquetOutput(blocker, "directory").prepare("r1", resume=False, overwrite=True)
    target = tmp_path / "out"
    out = ParquetOutput(target, "directory")
    out.prepare("r1", resume=False, overwrite=False)
    assert (target / "_rejects").is_dir()
    manifest = json.loads((target / "_slipway.json").read_text())
    assert manifest == {"run_id": "r1", "status": "running"}
    (target / "part-000000.parquet").write_bytes(b"chunk 0")
    (target / "_rejects" / "part-000000.parquet").write_bytes(b"rejects of chunk 0")
    out.prepare("r1", resume=True, overwrite=False)  # its own run, resuming: kept
    assert (target / "part-000000.parquet").read_bytes() == b"chunk 0"
    for run_id, resume in (("r2", False), ("r2", True), ("r1", False)):
        with pytest.raises(BatchInputError, match="holds the output of run 'r1'; .*--overwrite"):
            out.prepare(run_id, resume=resume, overwrite=False)
    out.prepare("r2", resume=False, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["_rejects", "_slipway.json"]
    assert list((target / "_rejects").iterdir()) == []
    assert json.loads((target / "_slipway.json").read_text())["run_id"] == "r2"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "part-000003.parquet").write_bytes(b"someone's")
    with pytest.raises(BatchInputError, match="already holds Parquet parts"):
        ParquetOutput(bare, "directory").prepare("r3", resume=True, overwrite=False)


def test_a_file_output_needs_its_directory_and_a_free_path_or_a_resume(tmp_path):
    """prepare() names a missing directory, refuses an existing file or rejects file unless
    resuming or overwriting, and starts a new run's parts afresh."""
    with pytest.raises(BatchInputError, match="'.*nowhere' does not exist; create it first"):
        ParquetOutput(tmp_path / "nowhere" / "s.parquet", "file").prepare(
            "r1", resume=False, overwrite=False
        )
    out = ParquetOutput(tmp_path / "s.parquet", "file")
    parts = out.parts("r1")
    out.prepare("r1", resume=False, overwrite=False)
    assert (parts / "_rejects").is_dir()
    (parts / "part-000000.parquet").write_bytes(b"chunk 0")
    out.prepare("r1", resume=True, overwrite=False)
    assert (parts / "part-000000.parquet").exists()  # a resume keeps the chunks done
    out.prepare("r1", resume=False, overwrite=False)
    assert list(parts.glob("part-*")) == []  # a new run starts afresh
    for taken in (out.path, out.rejects_path):
        taken.write_bytes(b"an earlier run")
        with pytest.raises(BatchInputError, match=f"'{taken}' already exists; .*--overwrite"):
            out.prepare("r2", resume=False, overwrite=False)
        out.prepare("r2", resume=True, overwrite=False)
        out.prepare("r2", resume=False, overwrite=True)
        taken.unlink()


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_prepare_removes_temporary_files_a_killed_writer_left(tmp_path, layout):
    """Half-written parts, rejects and assembled files of a killed process are deleted."""
    out = ParquetOutput(tmp_path / ("s.parquet" if layout == "file" else "out"), layout)
    parts = out.parts("r1")
    (parts / "_rejects").mkdir(parents=True)
    leftovers = [
        parts / ".part-000001.parquet.abc.tmp",
        parts / "_rejects" / ".part-000001.parquet.abc.tmp",
        tmp_path / f".{out.path.name}.abc.tmp",
        tmp_path / f".{out.rejects_path.name}.abc.tmp",
    ]
    kept = [parts / "part-000000.parquet", tmp_path / ".unrelated.tmp"]
    for path in leftovers + kept:
        path.write_bytes(b"x")
    out.prepare("r1", resume=True, overwrite=layout == "directory")
    assert [p for p in leftovers if p.exists()] == []
    assert kept[1].exists() and kept[0].exists() == (layout == "file")


def test_cleanup_removes_a_files_parts_and_an_empty_rejects_directory(tmp_path):
    """A file output's parts go; a directory's _rejects goes only when empty."""
    file = ParquetOutput(tmp_path / "s.parquet", "file")
    file.prepare("r1", resume=False, overwrite=False)
    file.cleanup("r1")
    assert not file.parts("r1").exists()
    directory = ParquetOutput(tmp_path / "out", "directory")
    directory.prepare("r1", resume=False, overwrite=False)
    directory.cleanup("r1")
    assert not (tmp_path / "out" / "_rejects").exists()
    directory.prepare("r1", resume=True, overwrite=False)
    (tmp_path / "out" / "_rejects" / "part-000000.parquet").write_bytes(b"rejects")
    directory.cleanup("r1")
    assert (tmp_path / "out" / "_rejects" / "part-000000.parquet").exists()


def test_a_run_without_rejects_leaves_no_rejects_file_of_an_earlier_run(
    local_registry, make_model, make_input, tmp_path
):
    """Overwriting a file output: the old NAME.rejects.parquet goes when nothing is rejected."""
    model = make_model(local_registry)
    bad, _ = make_input("parquet", 100)
    clean, _ = make_input("parquet", 100, seed=2, bad=False)
    target = tmp_path / "s.parquet"
    score_file(model, bad, output=str(target), registry=local_registry)
    assert (tmp_path / "s.rejects.parquet").exists()
    run = score_file(model, clean, output=str(target), overwrite=True, registry=local_registry)
    assert run.rows_rejected == 0 and not (tmp_path / "s.rejects.parquet").exists()


def test_database_columns_are_json_text_in_key_order_with_nan_as_null():
    """Rows sorted by key; each label and {class: p} as JSON text; NaN or infinity as null."""
    table = pa.table(
        {
            "key": ["b", "a", "c"],
            "label": ["yes", "no", "yes"],
            "proba:no": [0.25, 0.5, float("nan")],
            "proba:yes": [0.75, 0.5, float("inf")],
        }
    )
    out = db_columns(PredictedChunk(0, 0, 3, table))
    assert out["key"].to_pylist() == ["a", "b", "c"]
    assert out["label"].to_pylist() == ['"no"', '"yes"', '"yes"']
    assert [json.loads(p) for p in out["probabilities"].to_pylist()] == [
        {"no": 0.5, "yes": 0.5},
        {"no": 0.25, "yes": 0.75},
        {"no": None, "yes": None},
    ]
    assert out["value"].null_count == 3 and "inputs" not in out
    finite = db_columns(PredictedChunk(0, 0, 2, table.slice(0, 2)))
    assert [json.loads(p) for p in finite["probabilities"].to_pylist()] == [
        {"no": 0.5, "yes": 0.5},
        {"no": 0.25, "yes": 0.75},
    ]
    values = pa.table({"key": ["x"], "value": [2.5], "input:amount": [12.0]})
    out = db_columns(PredictedChunk(0, 0, 1, values))
    assert out["value"].to_pylist() == [2.5] and out["label"].null_count == 1
    assert out["probabilities"].null_count == 1
    assert out["inputs"].to_pylist() == ['{"amount":12.0}']


def test_a_repeat_between_the_only_two_parts_is_found(local_registry, make_model, tmp_path):
    """Two parts are enough to hold a key twice: the check runs from the second part on."""
    model = make_model(local_registry)
    frame = input_frame(200, bad=False)
    frame.loc[150, "txn_id"] = frame.loc[40, "txn_id"]
    path = tmp_path / "two.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(BatchFailed, match="Chunk 1 \\(input rows from 100\\) repeats a key"):
        score_file(
            model,
            str(path),
            output=f"{tmp_path}/scores/",
            key_column="txn_id",
            chunk_size=100,
            registry=local_registry,
        )
