"""training_frame on Dask: the local result, row for row, on a small cluster."""

from __future__ import annotations

import pandas as pd
import pytest

import slipway.features as sf
from tests.features.helpers import history

pytestmark = pytest.mark.xdist_group("dask")


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on loopback."""
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local, Client(local) as client:  # fmt: skip
        yield client


@pytest.mark.slow
def test_dask_training_frame_equals_the_local_one(cluster, tmp_path):
    """Rows and events partitioned by card on two workers give the pandas result exactly."""
    import dask.dataframe as dd

    events = history(3000, cards=30)
    events.to_parquet(tmp_path / "events.parquet")
    source = sf.EventSource(str(tmp_path / "events.parquet"), entity="card_id", timestamp="ts")
    feats = sf.FeatureSet("card", entity="card_id", features=[
        sf.Aggregate("n_30d", source, "count", window="30d"),
        sf.Aggregate("mean_7d", source, "mean", column="amount", window="7d"),
        sf.Aggregate("max_1d", source, "max", column="amount", window="1d", fillna=0.0),
        sf.Aggregate("last_merchant", source, "last", column="merchant", dtype="str"),
    ])  # fmt: skip
    rows = events.sample(500, random_state=2)[["card_id", "ts", "amount"]].reset_index(drop=True)
    local = sf.training_frame(rows, [feats], at="ts")
    remote = sf.training_frame(dd.from_pandas(rows, npartitions=4), [feats], at="ts").compute()
    assert remote.index.tolist() == list(range(len(rows)))

    def text(col):  # Dask stores text as pandas strings: null is NA there, None here
        return [None if pd.isna(v) else v for v in col]

    remote = remote.reset_index(drop=True)
    assert text(remote.pop("last_merchant")) == text(local.pop("last_merchant"))
    pd.testing.assert_frame_equal(remote, local, check_dtype=False, check_index_type=False)
