"""The Dask engine: the same rows as the local engine, written by workers that verify the model."""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

from slipway.batch import RunLog, score_file
from slipway.exceptions import BatchFailed, MissingDependency
from tests.batch.helpers import parquet_rejects, stored_predictions, stored_rejects

LINEAGE = ["run_id", "scored_at"]
# One worker of the test run takes all of this module, so one LocalCluster serves it.
pytestmark = pytest.mark.xdist_group("dask")


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on loopback, shared by this module's tests."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local:  # fmt: skip
        yield local.scheduler_address


def by_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("key").reset_index(drop=True)


@pytest.mark.slow
def test_dask_parquet_equals_local_row_by_row(
    cluster, local_registry, make_model, make_input, tmp_path
):
    """Three files scored on two workers give the local engine's rows and rejects exactly."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 900, files=3)
    common = dict(key_column="txn_id", chunk_size=300, registry=local_registry)
    local = score_file(model, path, output=f"{tmp_path}/local/", **common)
    dask = score_file(
        model, path, output=f"{tmp_path}/dask/", engine="dask", scheduler=cluster, **common
    )
    assert (dask.rows_in, dask.rows_scored, dask.rows_rejected) == (900, 898, 2)
    assert dask.progress["partitions"] == 3 and dask.chunks_done == 3
    mine, theirs = pd.read_parquet(tmp_path / "local"), pd.read_parquet(tmp_path / "dask")
    pd.testing.assert_frame_equal(
        by_key(mine).drop(columns=LINEAGE), by_key(theirs).drop(columns=LINEAGE)
    )
    assert set(theirs["run_id"]) == {dask.run_id} and local.run_id != dask.run_id
    rejects = [parquet_rejects(tmp_path / d / "_rejects") for d in ("local", "dask")]
    pd.testing.assert_frame_equal(
        rejects[0].drop(columns="run_id"), rejects[1].drop(columns="run_id")
    )


@pytest.mark.slow
def test_dask_writes_the_database(cluster, registry, make_model, make_input):
    """Workers load into batch_predictions / batch_rejects: the local engine's rows, once each."""
    model = make_model(registry)
    path, _ = make_input("csv", 600, files=2)
    common = dict(key_column="txn_id", chunk_size=300, registry=registry)
    local = score_file(model, path, **common)
    dask = score_file(model, path, engine="dask", scheduler=cluster, **common)
    assert dask.status == "succeeded" and dask.rows_scored == 598
    columns = ["key", "label", "probabilities", "version", "sha256"]
    mine = stored_predictions(registry.store, local.run_id)[columns].sort_index()
    theirs = stored_predictions(registry.store, dask.run_id)[columns].sort_index()
    pd.testing.assert_frame_equal(mine, theirs)
    rejected = stored_rejects(registry.store, dask.run_id)
    assert (
        rejected["row_number"].tolist()
        == stored_rejects(registry.store, local.run_id)["row_number"].tolist()
    )


@pytest.mark.slow
def test_dask_resume_rewrites_only_missing_partitions(
    cluster, local_registry, make_model, make_input, tmp_path
):
    """A partition whose part is gone is scored again on resume; the others are left alone."""
    model = make_model(local_registry)
    path, frame = make_input("parquet", 600, files=3)
    options = dict(output=f"{tmp_path}/out/", engine="dask", scheduler=cluster, key_column="txn_id")
    run = score_file(model, path, run_id="d1", registry=local_registry, **options)
    kept = (tmp_path / "out" / "part-000000.parquet").stat().st_mtime_ns
    (tmp_path / "out" / "part-000001.parquet").unlink()
    RunLog(local_registry.store).finish(run.run_id, "failed", "pretend a worker died")
    again = score_file(model, path, run_id="d1", registry=local_registry, **options)
    assert (again.status, again.rows_in, again.chunks_done) == ("succeeded", 600, 3)
    assert (tmp_path / "out" / "part-000000.parquet").stat().st_mtime_ns == kept
    keys = pd.read_parquet(tmp_path / "out")["key"].tolist()
    assert len(keys) == len(set(keys)) == 598 and set(keys) < set(frame["txn_id"])


@pytest.mark.slow
def test_workers_refuse_a_tampered_artifact(
    cluster, local_registry, make_model, make_input, tmp_path
):
    """Workers load through the registry, so changed artifact bytes fail the run on the worker."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 100)
    artifact = local_registry.artifacts.path(model.version.sha256)
    os.chmod(artifact, 0o644)
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(BatchFailed, match="corrupted"):
        score_file(model, path, output=f"{tmp_path}/o/", engine="dask", scheduler=cluster,
                   registry=local_registry)  # fmt: skip


def test_missing_dask_names_the_extra(local_registry, make_model, make_input, monkeypatch):
    """Without Dask installed, --engine dask says which pip install fixes it."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 20)
    monkeypatch.setitem(sys.modules, "dask.dataframe", None)
    with pytest.raises(BatchFailed, match=r"pip install 'slipway\[dask\]'") as err:
        score_file(model, path, engine="dask", registry=local_registry)
    assert isinstance(err.value.__cause__, MissingDependency)
