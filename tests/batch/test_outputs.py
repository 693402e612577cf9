"""Outputs: a key repeated across chunks stops the run with the same error on every output."""

from __future__ import annotations

import pandas as pd
import pytest

from slipway.batch import RunLog, score_file
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
