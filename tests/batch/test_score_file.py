"""score_file: every input row lands exactly once, scored or rejected, with its lineage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from slipway.batch import EXIT_OK, EXIT_REJECTS, RunLog, latest_prediction, score_file
from slipway.exceptions import BatchInputError, PredictionNotFound
from tests.batch.helpers import (
    BAD_AMOUNT_ROW,
    BAD_MERCHANT_ROW,
    parquet_rejects,
    stored_predictions,
    stored_rejects,
)

BAD = [BAD_AMOUNT_ROW, BAD_MERCHANT_ROW]


def expected(model, frame: pd.DataFrame) -> pd.DataFrame:
    """What Model.predict_proba says about the valid rows, by txn_id."""
    good = frame.drop(index=BAD)
    proba = model.predict_proba(good[model.contract.names])
    labels = model.predict(good[model.contract.names])
    return pd.DataFrame({"label": labels, "p1": proba[:, 1]}, index=good["txn_id"])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_database_output_holds_each_row_once_with_lineage(registry, make_model, make_input, fmt):
    """Scored rows in batch_predictions, rejects in batch_rejects: each input row once."""
    model = make_model(registry)
    path, frame = make_input(fmt, 1_200, files=2)
    run = score_file(
        model, path, output="db", key_column="txn_id", chunk_size=250, registry=registry
    )
    assert (run.status, run.exit_code) == ("succeeded", EXIT_REJECTS)
    assert (run.rows_in, run.rows_scored, run.rows_rejected) == (1_200, 1_198, 2)
    assert run.chunks_done == 6 and run.input_fingerprint and run.ended_at is not None
    rows = stored_predictions(registry.store, run.run_id)
    want = expected(model, frame)
    assert sorted(rows.index) == sorted(want.index)
    rows = rows.loc[want.index]
    assert rows["label"].tolist() == want["label"].tolist()
    np.testing.assert_allclose(
        [p["1"] for p in rows["probabilities"]], want["p1"].to_numpy(), rtol=1e-12, atol=0
    )
    assert set(rows["probabilities"].map(lambda p: tuple(p))) == {("0", "1")}
    assert set(rows["model_name"]) == {"fraud"} and set(rows["version"]) == {1}
    assert set(rows["sha256"]) == {model.version.sha256}
    rejects = stored_rejects(registry.store, run.run_id)
    assert sorted(rejects.index) == BAD
    assert rejects.loc[BAD_MERCHANT_ROW, "key"] == frame.txn_id[BAD_MERCHANT_ROW]
    assert rejects.loc[BAD_MERCHANT_ROW, "row"]["merchant"] == "casino"
    assert rejects.loc[BAD_MERCHANT_ROW, "reasons"][0]["code"] == "unseen_category"


def test_clean_input_exits_zero_and_keys_by_row_number(registry, make_model, make_input):
    """Without rejects the exit code is 0; without --key-column the key is the row number."""
    model = make_model(registry)
    path, frame = make_input("parquet", 300, bad=False)
    run = score_file(model, path, chunk_size=128, registry=registry)
    assert (run.exit_code, run.rows_scored) == (EXIT_OK, 300)
    rows = stored_predictions(registry.store, run.run_id)
    assert sorted(rows.index, key=int) == [str(i) for i in range(300)]
    labels = model.predict(frame[model.contract.names])
    assert [rows.loc[str(i), "label"] for i in range(300)] == labels.tolist()


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_parquet_output_equals_in_memory_scores(
    local_registry, make_model, make_input, layout, tmp_path
):
    """A Parquet file or directory holds exactly score()'s rows; rejects sit beside them."""
    model = make_model(local_registry)
    path, frame = make_input("parquet", 900, files=3)
    target = tmp_path / ("scores.parquet" if layout == "file" else "scores")
    out = str(target) + ("/" if layout == "directory" else "")
    run = score_file(
        model, path, output=out, key_column="txn_id", chunk_size=300, registry=local_registry
    )
    written = pd.read_parquet(target)
    from slipway.batch import score

    want = score(model, frame, key_column="txn_id").predictions.reset_index(drop=True)
    lineage = ["run_id", "scored_at"]
    pd.testing.assert_frame_equal(written.drop(columns=lineage), want.drop(columns=lineage))
    assert set(written["run_id"]) == {run.run_id}
    # plain text, not a one-value dictionary (pandas would read a categorical)
    assert not isinstance(written["run_id"].dtype, pd.CategoricalDtype)
    assert written["scored_at"].dt.tz is not None
    rejects_path = tmp_path / "scores.rejects.parquet" if layout == "file" else target / "_rejects"
    rejects = parquet_rejects(rejects_path)
    assert sorted(rejects.index) == BAD and set(rejects["run_id"]) == {run.run_id}
    assert rejects.loc[BAD_AMOUNT_ROW, "reasons"][0]["field"] == "amount"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the parts of a single-file output are gone
    if layout == "directory":  # the manifest says the run finished
        manifest = json.loads((target / "_slipway.json").read_text())
        assert manifest == {"run_id": run.run_id, "status": "succeeded"}


def test_existing_parquet_output_needs_overwrite(local_registry, make_model, make_input, tmp_path):
    """A second run into the same Parquet path is refused unless --overwrite is given."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 100, bad=False)
    for target in (tmp_path / "s.parquet", tmp_path / "dir"):
        out = str(target) + ("/" if target.suffix == "" else "")
        score_file(model, path, output=out, registry=local_registry)
        with pytest.raises(BatchInputError, match="--overwrite"):
            score_file(model, path, output=out, registry=local_registry)
        again = score_file(model, path, output=out, overwrite=True, registry=local_registry)
        assert set(pd.read_parquet(target)["run_id"]) == {again.run_id}
    assert len(RunLog(local_registry.store).recent()) == 4  # refusals record no run


def test_latest_prediction_is_the_newest_run(registry, make_model, make_input):
    """The lookup returns the most recent batch result for a key, with version and run id."""
    first = make_model(registry)
    path, frame = make_input("parquet", 60, bad=False)
    old = score_file(first, path, key_column="txn_id", registry=registry)
    second = make_model(registry)
    new = score_file(second, path, key_column="txn_id", registry=registry)
    key = frame.txn_id[5]
    found = latest_prediction(registry.store, "fraud", key)
    assert (found.run_id, found.version, found.key) == (new.run_id, 2, key)
    assert found.label == second.predict(frame.loc[[5], second.contract.names])[0]
    p1 = second.predict_proba(frame.loc[[5], second.contract.names])[0, 1]
    assert found.probabilities is not None and found.probabilities["1"] == pytest.approx(p1)
    assert found.to_dict()["scored_at"].endswith("+00:00") and old.run_id != new.run_id
    with pytest.raises(PredictionNotFound, match="no batch prediction for key 'nope'"):
        latest_prediction(registry.store, "fraud", "nope")


def test_query_input_is_scored(registry, make_model, make_input):
    """--query reads rows from the configured database and scores them like a file."""
    model = make_model(registry)
    _, frame = make_input("parquet", 150)
    with registry.store.write() as conn:
        frame.to_sql("incoming", conn, index=False)
    run = score_file(
        model,
        query="SELECT * FROM incoming ORDER BY txn_id",
        key_column="txn_id",
        chunk_size=40,
        registry=registry,
    )
    assert (run.rows_in, run.rows_rejected, run.source["kind"]) == (150, 2, "query")
    rows = stored_predictions(registry.store, run.run_id)
    assert sorted(rows.index) == sorted(expected(model, frame).index)


def test_score_file_is_silent_unless_asked_for_a_progress_bar(
    local_registry, make_model, make_input, capsys
):
    """The API prints nothing by default; progress=True draws the bar on stderr."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 50, bad=False)
    capsys.readouterr()
    score_file(model, path, registry=local_registry)
    assert capsys.readouterr() == ("", "")
    score_file(model, path, progress=True, registry=local_registry)
    captured = capsys.readouterr()
    assert captured.out == "" and "scoring" in captured.err


def test_a_model_reference_is_loaded_from_the_registry(local_registry, make_model, make_input):
    """score_file("fraud:1") scores with that version, as a loaded model would."""
    model = make_model(local_registry)
    path, _ = make_input("parquet", 40, bad=False)
    run = score_file("fraud:1", path, registry=local_registry)
    assert (run.ref, run.sha256, run.rows_scored) == ("fraud:1", model.version.sha256, 40)


def test_an_input_lacking_a_column_is_refused_before_a_run_is_recorded(
    local_registry, make_model, make_input, tmp_path
):
    """A missing model column or key column is named at once: no run, no output."""
    model = make_model(local_registry)
    path, frame = make_input("parquet", 30, bad=False)
    frame.drop(columns=["amount"]).to_parquet(tmp_path / "short.parquet", index=False)
    target = tmp_path / "scores.parquet"
    with pytest.raises(BatchInputError, match="short.parquet' lacks column\\(s\\) 'amount' needed"):
        score_file(model, tmp_path / "short.parquet", output=str(target), registry=local_registry)
    with pytest.raises(BatchInputError, match="lacks column\\(s\\) 'order_id'.*key column"):
        score_file(model, path, key_column="order_id", registry=local_registry)
    assert RunLog(local_registry.store).recent() == [] and not target.exists()
