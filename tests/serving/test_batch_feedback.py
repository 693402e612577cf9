"""POST /v1/feedback by a batch row's key ({"model", "batch_key", "run_id"?, "label"}), stored
once per row of a run, and realized performance of batch runs in `slipway monitor --source
batch` (issue 15, item 11), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import httpx
import numpy as np
import pytest
import sklearn.metrics as skm
import sqlalchemy as sa

from slipway.batch import score_file
from slipway.clock import utcnow
from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.monitoring.runner import Monitor
from slipway.registry import Registry
from slipway.serving.process import ServerProcess
from slipway.store.batchfeedback import batch_labels
from slipway.store.schema import batch_predictions
from tests.serving.helpers import subprocess_env


def scored_file(h, tmp_path, n=40, name="rows.parquet", first=0):
    """The first ``n`` validation rows of ``fraud`` in a Parquet file keyed by ``txn_id``, and
    their true labels by key."""
    X = h.fitted["fraud"].X_val.iloc[first : first + n].copy()
    keys = [f"txn-{i}" for i in range(first, first + n)]
    X["txn_id"] = keys
    path = tmp_path / name
    X.to_parquet(path, index=False)
    truth = dict(zip(keys, h.fitted["fraud"].y_val[first : first + n].tolist(), strict=True))
    return path, truth


def score(h, path, **options):
    """A batch run of ``fraud`` over ``path`` keyed by ``txn_id``."""
    return score_file("fraud", path, key_column="txn_id", registry=h.registry, **options)


def feedback(h, *items):
    """POST the items; the response (status 200 checked)."""
    r = h.post("/v1/feedback", {"feedback": list(items)})
    assert r.status_code == 200, r.text
    return r.json()


def test_labels_by_batch_key_go_to_the_latest_run_or_the_one_named(serve, settings, tmp_path):
    """Without run_id a key's label goes to the latest run that scored it, with run_id to that
    run; each row is labeled once (a resend, or the same row twice in a request, is a
    duplicate); a run that did not keep its inputs still takes labels."""
    h = serve(settings=settings)
    path, _ = scored_file(h, tmp_path)
    first = score(h, path, keep_inputs=True)
    later = score(h, path)  # scores the same keys again, without inputs
    got = feedback(
        h,
        {"model": "fraud", "batch_key": "txn-1", "label": 1},
        {"model": "fraud", "batch_key": "txn-1", "run_id": first.run_id, "label": 0},
        {"model": "fraud", "batch_key": "txn-2", "run_id": first.run_id, "label": 1},
        {"model": "fraud", "batch_key": "txn-2", "run_id": first.run_id, "label": 0},
        {"model": "fraud", "batch_key": "txn-3", "run_id": None, "label": 0},
    )
    assert {k: got[k] for k in ("accepted", "duplicates", "unknown", "unknown_keys")} == {
        "accepted": 4,
        "duplicates": 1,
        "unknown": [],
        "unknown_keys": [],
    }
    assert batch_labels(h.registry.store, "fraud") == {
        (later.run_id, "txn-1"): 1,
        (first.run_id, "txn-1"): 0,
        (first.run_id, "txn-2"): 1,
        (later.run_id, "txn-3"): 0,
    }
    again = feedback(h, {"model": "fraud", "batch_key": "txn-1", "label": 0})
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert batch_labels(h.registry.store, "fraud")[(later.run_id, "txn-1")] == 1
    # A newer run of the key takes the next label sent without a run id.
    newest = score(h, path, output="db")
    assert feedback(h, {"model": "fraud", "batch_key": "txn-1", "label": 0})["accepted"] == 1
    assert batch_labels(h.registry.store, "fraud")[(newest.run_id, "txn-1")] == 0


def test_batch_labels_follow_the_versions_classes(serve, settings, tmp_path):
    """1.0 and "1" are stored as the class 1 (normalized); "yes" is stored as sent and listed
    as unmatched, naming the key and the run."""
    h = serve(settings=settings)
    run = score(h, scored_file(h, tmp_path)[0])
    got = feedback(
        h,
        {"model": "fraud", "batch_key": "txn-0", "label": 1.0},
        {"model": "fraud", "batch_key": "txn-1", "label": " 0 "},
        {"model": "fraud", "batch_key": "txn-2", "label": "yes"},
        {"model": "fraud", "batch_key": "txn-3", "label": 0},
    )
    assert (got["accepted"], got["normalized"]) == (4, 2)
    assert got["unmatched"] == [
        {"batch_key": "txn-2", "run_id": run.run_id, "label": "yes", "model": "fraud:1",
         "expected": [0, 1]}
    ]  # fmt: skip
    labels = batch_labels(h.registry.store, "fraud")
    assert [labels[(run.run_id, f"txn-{i}")] for i in range(4)] == [1, 0, "yes", 0]
    assert type(labels[(run.run_id, "txn-0")]) is int


def test_unknown_keys_are_listed_with_the_reason(serve, settings, tmp_path):
    """A key no run stored, a run id that does not exist, a run that wrote Parquet, a model
    with no run and a row a run rejected are each listed in unknown_keys with why; the known
    key is still stored."""
    h = serve(models=("fraud", "prices"), settings=settings)
    path, _ = scored_file(h, tmp_path)
    db = score(h, path)
    bad = h.fitted["fraud"].X_val.iloc[:2].assign(txn_id=["txn-bad", "txn-ok"])
    bad.loc[bad.index[0], "amount"] = 1e15  # far outside training: the row is rejected
    bad.to_parquet(tmp_path / "bad.parquet", index=False)
    rejecting = score(h, tmp_path / "bad.parquet")
    assert rejecting.rows_rejected == 1
    parquet = score(h, path, output=tmp_path / "scores.parquet")
    got = feedback(
        h,
        {"model": "fraud", "batch_key": "txn-0", "label": 1},
        {"model": "fraud", "batch_key": "txn-999", "label": 1},
        {"model": "fraud", "batch_key": "txn-0", "run_id": "no-such-run", "label": 1},
        {"model": "fraud", "batch_key": "txn-0", "run_id": parquet.run_id, "label": 1},
        {"model": "fraud", "batch_key": "txn-999", "run_id": db.run_id, "label": 1},
        {"model": "prices", "batch_key": "txn-0", "label": 1.5},
        {"model": "fraud", "batch_key": "txn-bad", "label": 1},
    )
    assert (got["accepted"], got["duplicates"]) == (1, 0)
    reasons = [(k["batch_key"], k["run_id"], k["reason"]) for k in got["unknown_keys"]]
    assert [r[:2] for r in reasons] == [
        ("txn-999", None),
        ("txn-0", "no-such-run"),
        ("txn-0", parquet.run_id),
        ("txn-999", db.run_id),
        ("txn-0", None),
        ("txn-bad", None),
    ]
    assert [k["model"] for k in got["unknown_keys"]] == ["fraud"] * 4 + ["prices", "fraud"]
    assert "no batch run of model 'fraud' stored a row with this key" in reasons[0][2]
    assert "has no batch run 'no-such-run'" in reasons[1][2]
    assert "scores.parquet" in reasons[2][2] and "--output db" in reasons[2][2]
    assert f"batch run {db.run_id!r} of model 'fraud' stored no row" in reasons[3][2]
    assert "model 'prices' has no batch run" in reasons[4][2]
    assert f"batch run {rejecting.run_id!r} rejected this row" in reasons[5][2]


def test_bad_batch_items_are_422s_naming_the_problem(serve, settings):
    """An item naming its prediction two ways, a run_id without batch_key, wrong types and
    NUL characters are refused with a problem each (never a 500); nothing is stored."""
    h = serve(settings=settings)
    body = {
        "feedback": [
            {"model": "fraud", "batch_key": "k", "prediction_id": "p", "label": 1},
            {"model": "fraud", "unit_id": "u", "batch_key": "k", "label": 1},
            {"model": "fraud", "unit_id": "u", "run_id": "r", "label": 1},
            {"model": "fraud", "batch_key": 7, "run_id": 3, "label": 1},
            {"model": "fraud", "batch_key": "k" * 201, "label": [1]},
            {"model": "fraud", "batch_key": "k", "run_id": "", "label": 1},
            # PostgreSQL cannot store a NUL character: refused before any query
            {"model": "fraud", "batch_key": "k\x00", "label": 1},
            {"model": "fraud", "unit_id": "u\x00", "label": 1},
        ]
    }
    r = h.post("/v1/feedback", body)
    assert r.status_code == 422
    problems = r.json()["problems"]
    got = {(p["row"], p["field"]) for p in problems}
    assert got == {
        (0, "feedback"),
        (1, "feedback"),
        (2, "feedback"),
        (3, "batch_key"),
        (3, "run_id"),
        (4, "batch_key"),
        (4, "label"),
        (5, "run_id"),
        (6, "batch_key"),
        (7, "unit_id"),
    }
    assert "names its prediction 2 ways (prediction_id, batch_key)" in problems[0]["expected"]
    assert "names its prediction 2 ways (unit_id, batch_key)" in problems[1]["expected"]
    assert '"run_id" names a batch run' in problems[2]["expected"]
    said = {(p["row"], p["field"]): p["message"] for p in problems}
    assert "got 'a string containing the NUL character" in said[(6, "batch_key")]
    assert "got 'a string containing the NUL character" in said[(7, "unit_id")]
    assert "got 'a string of 201 characters'" in said[(4, "batch_key")]
    assert "got 'an empty string'" in said[(5, "run_id")]
    assert batch_labels(h.registry.store, "fraud") == {}


def test_monitor_shows_realized_performance_of_a_batch_run(serve, settings, tmp_path):
    """Labels sent by key (numeric forms normalized) join the kept rows of their run: the
    monitor's metrics on `--source batch` equal scikit-learn's on the labeled rows, a label
    that is not a class counts as unknown, and another run of the same keys has no labels."""
    h = serve(settings=settings)
    path, truth = scored_file(h, tmp_path, n=150)
    earlier = score(h, path, keep_inputs=True)
    run = score(h, path, keep_inputs=True)  # the latest run: labels without run_id go here
    labeled = [f"txn-{i}" for i in range(0, 150, 2)]  # 75 labels
    forms = (lambda y: y, float, str)  # 1, 1.0 and "1" all mean the class 1
    items = [
        {"model": "fraud", "batch_key": k, "label": forms[i % 3](truth[k])}
        for i, k in enumerate(labeled)
    ]
    items.append({"model": "fraud", "batch_key": "txn-1", "label": "yes"})
    got = feedback(h, *items)
    assert (got["accepted"], len(got["unmatched"])) == (76, 1)
    now = utcnow() + timedelta(seconds=1)
    monitor = Monitor(h.registry, clock=lambda: now, sinks=[])

    def performance(source):
        report = monitor.run("fraud", since=timedelta(hours=1), store=False, source=source)
        (perf,) = report.to_dict()["windows"][0]["performance"]
        return perf

    perf = performance(f"batch:{run.run_id}")
    assert (perf["rows"], perf["labeled"], perf["unknown_labels"]) == (150, 76, 1)
    assert perf["status"] != "no_labels"
    both = performance("batch")  # both runs: the labels are the latest run's only
    assert (both["rows"], both["labeled"], both["metrics"]) == (300, 76, perf["metrics"])
    assert performance(f"batch:{earlier.run_id}")["status"] == "no_labels"
    with h.registry.store.read() as conn:
        rows = {
            r.key: r
            for r in conn.execute(
                sa.select(batch_predictions).where(batch_predictions.c.run_id == run.run_id)
            )
        }
    y = np.array([truth[k] for k in labeled])
    said = np.array([rows[k].label for k in labeled])
    p1 = np.array([rows[k].probabilities["1"] for k in labeled])
    expected = {
        "accuracy": skm.accuracy_score(y, said),
        "precision": skm.precision_score(y, said, zero_division=0),
        "recall": skm.recall_score(y, said, zero_division=0),
        "f1": skm.f1_score(y, said, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, p1),
        "brier": skm.brier_score_loss(y, p1),
    }
    metrics = perf["metrics"]
    for name, value in expected.items():
        assert metrics[name]["value"] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.slow
def test_a_real_server_takes_feedback_by_batch_key(tmp_path, register, backend, database_url):
    """`slipway serve` stores a label sent by a batch key, reports an unknown key with its
    reason, and counts a resend as a duplicate."""
    s = Settings(home=tmp_path / "home", user="tester", database_url=database_url)
    registry = Registry(s)
    fitted = register(registry, "fraud")
    key = KeyStore(registry.store).create("client", "predict")[1]
    X = fitted.X_val.iloc[:20].copy()
    X["txn_id"] = [f"txn-{i}" for i in range(20)]
    X.to_parquet(tmp_path / "rows.parquet", index=False)
    run = score_file("fraud", tmp_path / "rows.parquet", key_column="txn_id", registry=registry)
    body = {
        "feedback": [
            {"model": "fraud", "batch_key": "txn-4", "run_id": run.run_id, "label": "1"},
            {"model": "fraud", "batch_key": "txn-404", "label": 0},
        ]
    }
    headers = {"Authorization": f"Bearer {key}"}
    with ServerProcess(env=subprocess_env(s), log_dir=tmp_path / "server") as server:
        first = httpx.post(f"{server.url}/v1/feedback", json=body, headers=headers, timeout=30)
        again = httpx.post(f"{server.url}/v1/feedback", json=body, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    assert (first.json()["accepted"], first.json()["normalized"]) == (1, 1)
    assert [k["batch_key"] for k in first.json()["unknown_keys"]] == ["txn-404"]
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1)
    assert batch_labels(registry.store, "fraud") == {(run.run_id, "txn-4"): 1}
    registry.store.dispose()
