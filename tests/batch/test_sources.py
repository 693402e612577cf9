"""Inputs: files, directories and globs in a fixed order, deterministic chunks, typed CSV."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from slipway.batch.sources import FileSource, QuerySource, resolve_paths
from slipway.exceptions import BatchInputError


def test_directory_and_glob_resolve_to_sorted_data_files(tmp_path):
    """A directory is searched recursively, skipping hidden and _ entries; a glob is sorted."""
    for name in ["b.parquet", "a.parquet", "sub/c.parquet", "_rejects/x.parquet", ".tmp.parquet"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in resolve_paths(str(tmp_path))]
    assert found == ["a.parquet", "b.parquet", "sub/c.parquet"]
    globbed = resolve_paths(str(tmp_path / "*.parquet"))
    assert [p.name for p in globbed] == ["a.parquet", "b.parquet"]


def test_inputs_that_cannot_be_read_are_refused(tmp_path):
    """Nothing matching, a missing file, an unknown suffix or mixed formats: clear errors."""
    with pytest.raises(BatchInputError, match="No input files match"):
        resolve_paths(str(tmp_path / "2026-*.csv"))
    with pytest.raises(BatchInputError, match="does not exist"):
        FileSource(tmp_path / "nope.parquet")
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(BatchInputError, match=r"name it \.parquet, \.pq or \.csv"):
        FileSource(tmp_path / "data.json")
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.parquet").write_bytes(b"")
    with pytest.raises(BatchInputError, match="mixes CSV and Parquet"):
        FileSource(tmp_path / "[ab].*")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_chunks_are_numbered_across_files_with_global_row_numbers(
    local_registry, make_model, make_input, fmt
):
    """Each file is cut into chunks of the size asked; rows are numbered across files."""
    model = make_model(local_registry)
    path, frame = make_input(fmt, 1_000, files=3)
    chunks = list(FileSource(path).chunks(150, model.contract, "txn_id"))
    sizes = [len(c.frame) for c in chunks]
    assert sizes == [150, 150, 34, 150, 150, 33, 150, 150, 33]
    assert [c.index for c in chunks] == list(range(9))
    assert [c.first_row for c in chunks] == [0, 150, 300, 334, 484, 634, 667, 817, 967]
    rebuilt = pd.concat([c.frame for c in chunks], ignore_index=True)
    assert rebuilt["txn_id"].tolist() == frame["txn_id"].tolist()
    assert list(rebuilt.columns) == [*model.contract.names, "txn_id"]


def test_csv_text_stays_text_and_a_bad_number_rejects_one_row(local_registry, make_model, tmp_path):
    """Keys like 007 keep their zeros; one unreadable amount rejects one row, not the column."""
    model = make_model(local_registry)
    path = tmp_path / "in.csv"
    path.write_text(
        "txn_id,amount,hour,merchant,country\n"
        "007,12.5,3,grocery,US\n"
        "008,lots,4,travel,GB\n"
        "009,0.1,5,gaming,NG\n"
    )
    (chunk,) = FileSource(path).chunks(10, model.contract, "txn_id")
    assert chunk.frame["txn_id"].tolist() == ["007", "008", "009"]
    assert chunk.frame["amount"].tolist() == [12.5, "lots", 0.1]
    checked = model.validate(chunk.frame[model.contract.names])
    assert checked.bad_rows.tolist() == [False, True, False]
    assert [(p.field, p.code) for p in checked.errors] == [("amount", "wrong_type")]


def test_fingerprint_follows_content_not_location(make_input, tmp_path):
    """A copy elsewhere has the same fingerprint; a changed value changes it."""
    path, frame = make_input("parquet", 300)
    copy = tmp_path / "copy.parquet"
    shutil.copy(path, copy)
    copy.rename(tmp_path / path.name)
    assert FileSource(tmp_path / path.name).fingerprint() == FileSource(path).fingerprint()
    frame.loc[0, "amount"] += 1
    frame.to_parquet(tmp_path / path.name, index=False)
    assert FileSource(tmp_path / path.name).fingerprint() != FileSource(path).fingerprint()


def test_parquet_total_comes_from_footers(make_input):
    """Parquet inputs know their row count up front (for the ETA); CSV does not."""
    parquet, _ = make_input("parquet", 700, files=2)
    csv, _ = make_input("csv", 700, files=2)
    assert FileSource(parquet).total_rows() == 700
    assert FileSource(csv).total_rows() is None


def test_query_is_read_only_and_chunked(registry, make_model):
    """--query rows stream in chunks; a statement that writes is refused by the database."""
    model = make_model(registry)
    frame = pd.DataFrame({"amount": [1.0, 2.0, 3.0], "hour": [1, 2, 3]})
    frame["merchant"], frame["country"] = "grocery", "US"
    with registry.store.write() as conn:
        frame.to_sql("incoming", conn, index=False)
    source = QuerySource(registry.store, "SELECT * FROM incoming ORDER BY amount")
    assert source.columns() == ["amount", "hour", "merchant", "country"]
    assert source.total_rows() == 3
    chunks = list(source.chunks(2, model.contract, None))
    assert [len(c.frame) for c in chunks] == [2, 1] and chunks[1].first_row == 2
    assert chunks[1].frame["amount"].tolist() == [3.0]
    writer = QuerySource(registry.store, "DELETE FROM incoming RETURNING amount")
    with pytest.raises(BatchInputError, match="--query failed"):
        list(writer.chunks(2, model.contract, None))
    with registry.store.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM incoming").scalar() == 3
