"""The columnar reading of the log gives the monitor exactly what the row-by-row reading gives:
whole reports equal to 1e-9 on SQLite and PostgreSQL, through Arrow and through the fallback."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from slipway.monitoring import log as logcols
from slipway.monitoring.log import LogSchema
from slipway.monitoring.runner import Monitor
from slipway.monitoring.sources import StoreLog
from slipway.monitoring.traffic import Traffic
from slipway.store import schema
from slipway.store.predictions import Entry, LogTable
from slipway.testing import transactions
from tests.monitoring.helpers import NOW
from tests.monitoring.rowlog import RowByRowLog


def run(registry, source, ref="fraud", **kwargs):
    """One stored-nowhere run at NOW over the last 6 hours in 2-hour windows."""
    kwargs.setdefault("since", timedelta(hours=6))
    kwargs.setdefault("window", timedelta(hours=2))
    monitor = Monitor(registry, clock=lambda: NOW, sinks=[])
    return monitor.run(ref, store=False, source=source, **kwargs).to_dict()


def assert_same(a: Any, b: Any, where: str = "report") -> None:
    """Equal structures; floats equal to 1e-9 (relative, or absolute near zero)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float | int):
        if math.isnan(a):
            assert math.isnan(b), f"{where}: {a} != {b}"
        else:
            assert b == pytest.approx(a, rel=1e-9, abs=1e-12), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def busy_log(registry, log, *, odd: bool = False) -> None:
    """Six hours of traffic in every shape the log holds: two versions, drift in the last
    hours, missing values, an unseen category, labels as numbers and as text (some unknown),
    rows written by the serving writer (times without microseconds on SQLite) and by SQL."""
    X, y = transactions(2_400, seed=21)
    early, late = X.iloc[:1_600], X.iloc[1_600:].copy()
    late["amount"] = late["amount"] * 1.8
    ids, _ = log.predictions("fraud:1", early, NOW - timedelta(hours=8), spread=timedelta(hours=5))
    more, _ = log.predictions("fraud:2", late, NOW - timedelta(hours=3), spread=timedelta(hours=3))
    with registry.store.write() as conn:  # what a lenient contract would have let through
        for pid in ids[::37]:
            conn.execute(
                schema.predictions.update()
                .where(schema.predictions.c.prediction_id == pid)
                .values(inputs={"amount": None, "hour": 3, "merchant": "casino", "country": "GB"})
            )
    labels: list[Any] = [int(v) for v in y[:1_600]]
    for i in range(0, 1_600, 7):
        labels[i] = str(labels[i])  # "1" is class 1 too
    for i in range(3, 1_600, 97):
        labels[i] = "maybe"  # unknown
    log.feedback(ids[:1_200], labels[:1_200], NOW - timedelta(hours=1))
    log.feedback(more[::2], [int(v) for v in y[1_600::2]], NOW - timedelta(minutes=3))
    model = registry.load("fraud:2")
    frame = late.iloc[:300].reset_index(drop=True)
    records = model.score(frame).records()
    at = (NOW - timedelta(minutes=30)).replace(microsecond=0)
    entry = Entry(
        ids=[f"w{i:05d}" for i in range(len(frame))],
        created_at=at,
        model="fraud",
        version=2,
        names=list(frame.columns),
        rows=frame.to_dict(orient="records"),
        outputs=records,
        latency_ms=1.5,
    )
    table = LogTable()
    table.write(registry.store, table.rows(entry))
    log.refusal("fraud", 2, NOW - timedelta(minutes=40), [{"code": "wrong_type"}], rows=3)
    if odd:  # a category given as a number: Arrow cannot type that block
        with registry.store.write() as conn:
            conn.execute(
                schema.predictions.insert(),
                [
                    {
                        "prediction_id": "odd-1",
                        "created_at": NOW - timedelta(minutes=10),
                        "model_name": "fraud",
                        "version": 2,
                        "inputs": {"amount": 12, "hour": 3, "merchant": 7, "country": "US"},
                        "outputs": {"label": 1, "probabilities": {"0": 0.25, "1": 0.75}},
                        "latency_ms": 1.0,
                    }
                ],
            )


@pytest.fixture
def two_versions(registry, fraud):
    """The fraud model with a second version in production."""
    registry.register(
        fraud.pipeline,
        "fraud",
        fraud.X_train,
        fraud.y_train,
        X_val=fraud.X_val,
        y_val=fraud.y_val,
        alias="production",
    )
    return registry


@pytest.mark.parametrize("baseline", ["reference", "previous"])
def test_columnar_reports_equal_row_by_row_ones(two_versions, log, baseline):
    """Windows, drift, quality, refusals and per-version performance: the same report."""
    registry = two_versions
    busy_log(registry, log)
    columnar = run(registry, StoreLog(registry.store), baseline=baseline)
    reference = run(registry, RowByRowLog(registry.store), baseline=baseline)
    assert_same(reference, columnar)
    perf = [p for w in columnar["windows"] for p in w["performance"]]
    assert sum(p["unknown_labels"] for p in perf if p["version"] == 1) > 0
    assert sum(p["labeled"] for p in perf if p["version"] == 2) > 0
    assert any(w["quality"]["violations"]["requests"] for w in columnar["windows"])


def test_blocks_arrow_cannot_type_are_read_row_by_row_with_the_same_result(two_versions, log):
    """A number among string categories sends its block down the row-by-row path."""
    registry = two_versions
    busy_log(registry, log, odd=True)
    assert_same(run(registry, RowByRowLog(registry.store)), run(registry, "log"))
    mv = registry.get("fraud")
    tables = list(
        logcols.read_log(
            registry.store, LogSchema.of(mv), "fraud", NOW - timedelta(minutes=11), NOW
        )
    )
    merchants = pa.concat_tables(tables)["input:merchant"].to_pylist()
    assert "7" in merchants


def test_regression_truth_and_values_equal_row_by_row(registry, make_fitted, log):
    """Regressors: values, numeric ground truth with every digit (and text that is no number)."""
    fitted = make_fitted("regressor", n=1_600)
    X_val, y_val = fitted.X_val, fitted.y_val
    registry.register(
        fitted.pipeline, "price", fitted.X_train, fitted.y_train, X_val=X_val, y_val=y_val
    )
    X = fitted.X_val.reset_index(drop=True)
    ids, _ = log.predictions("price", X, NOW - timedelta(hours=3), spread=timedelta(hours=2))
    truth: list[Any] = [float(v) + 0.1 / 3 for v in fitted.y_val]
    truth[0], truth[1], truth[2] = "12.5", "n/a", 7
    log.feedback(ids, truth, NOW)
    columnar = run(registry, "log", ref="price", window=None)
    assert_same(run(registry, RowByRowLog(registry.store), ref="price", window=None), columnar)
    [perf] = columnar["windows"][-1]["performance"]
    assert perf["unknown_labels"] == 1 and perf["labeled"] == len(ids)
    assert perf["metrics"]["mae"]["value"] > 0


def test_labels_come_with_every_digit_and_python_text(registry, fraud, log):
    """Feedback as the database keeps it reads back as the row-by-row reading decodes it."""
    X, _ = transactions(6, seed=3)
    ids, _ = log.predictions("fraud", X, NOW - timedelta(hours=1))
    sent = [0.30000000000000004, 1.0, "1", True, {"a": 1}, 1e300]
    log.feedback(ids, sent, NOW)
    mv = registry.get("fraud")
    schema_ = LogSchema(fields=(("amount", "number"),), regression=True, label_type="int")
    since = NOW - timedelta(hours=2)
    got = pa.concat_tables(
        logcols.read_log(registry.store, schema_, "fraud", since, NOW, labels=True)
    )
    rows = RowByRowLog(registry.store).labeled(
        LogSchema.of(mv), "fraud", NOW - timedelta(hours=2), NOW
    )
    assert got["feedback"].to_pylist() == rows.feedback["label"].tolist()
    assert got["feedback_value"].to_pylist()[:3] == [0.30000000000000004, 1.0, 1.0]


def test_traffic_is_compact_and_sliced_without_copies(two_versions, log):
    """Numbers are float64 arrays, texts Categoricals; a window of ordered traffic is a view."""
    registry = two_versions
    busy_log(registry, log)
    mv = registry.get("fraud")
    traffic = StoreLog(registry.store).traffic(
        LogSchema.of(mv, registry.versions("fraud")), "fraud", NOW - timedelta(hours=9), NOW
    )
    assert traffic.inputs["amount"].dtype == np.float64
    assert isinstance(traffic.inputs["merchant"].dtype, pd.CategoricalDtype)
    assert isinstance(traffic.outputs["label"].dtype, pd.CategoricalDtype)
    window = traffic.between(NOW - timedelta(hours=2), NOW)
    assert 0 < len(window) < len(traffic)
    assert np.shares_memory(window.times, traffic.times)


def test_times_without_a_zone_are_utc(registry, fraud, log):
    """Rows read back at the instants they were logged."""
    X, _ = transactions(3, seed=1)
    at = datetime(2026, 3, 1, 11, 30, 15, 250_000, tzinfo=UTC)
    log.predictions("fraud", X, at)
    mv = registry.get("fraud")
    traffic = StoreLog(registry.store).traffic(LogSchema.of(mv), "fraud", at, NOW)
    assert traffic.times.tolist() == [at.replace(tzinfo=None)] * 3


def test_a_window_holds_rows_from_its_start_up_to_its_end():
    """[start, end): a row at the start is in, a row at the end is not, sorted or not."""
    at = [datetime(2026, 3, 1, h, tzinfo=UTC) for h in (9, 10, 11, 12)]
    times = np.array([t.replace(tzinfo=None) for t in at], dtype="datetime64[us]")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    for order in ([0, 1, 2, 3], [3, 1, 0, 2]):
        traffic = Traffic(times[order], np.ones(4, dtype=np.int64), frame.iloc[order], frame)
        window = traffic.between(at[1], at[3])
        assert sorted(window.inputs["x"].tolist()) == [2.0, 3.0]


def test_an_empty_log_reads_like_the_row_by_row_reading(registry, fraud):
    """No traffic at all: the same statuses (empty windows, no labels) either way."""
    assert_same(run(registry, RowByRowLog(registry.store)), run(registry, "log"))


def assert_same_traffic(a: Traffic, b: Traffic) -> None:
    """Two Traffics hold the same rows, in the same order, with the same columns and types."""
    assert a.times.tolist() == b.times.tolist()
    assert a.versions.tolist() == b.versions.tolist()
    pd.testing.assert_frame_equal(a.inputs, b.inputs)
    pd.testing.assert_frame_equal(a.outputs, b.outputs)
    if a.feedback is None or b.feedback is None:
        assert a.feedback is None and b.feedback is None
    else:
        pd.testing.assert_frame_equal(a.feedback, b.feedback)


@pytest.mark.parametrize("blocks", ["one", "many"])
def test_one_read_gives_the_traffic_and_labels_two_reads_give(
    two_versions, log, monkeypatch, blocks
):
    """Traffic and its labeled part from one LEFT JOIN read equal the two separate reads, across
    block boundaries, with a labeled row exactly at the labels' start (kept) and labeled rows
    before it (left out)."""
    from slipway.store import predictions as store_predictions

    registry = two_versions
    busy_log(registry, log)
    labeled_from = NOW - timedelta(hours=6)
    X, y = transactions(3, seed=5)
    ids, _ = log.predictions("fraud:2", X, labeled_from)
    log.feedback(ids, [int(v) for v in y], NOW - timedelta(minutes=1))
    if blocks == "many":  # blocks of a few rows: every split point is a block boundary
        monkeypatch.setattr(store_predictions, "_LINES_PER_BLOCK", 37)
        monkeypatch.setattr(store_predictions, "_BLOCK_BYTES", 4_000)
    mv = registry.get("fraud")
    schema_ = LogSchema.of(mv, registry.versions("fraud"))
    source = StoreLog(registry.store)
    start = NOW - timedelta(hours=8)
    traffic, labeled = source.traffic_and_labeled(schema_, "fraud", start, NOW, labeled_from)
    assert_same_traffic(source.traffic(schema_, "fraud", start, NOW), traffic)
    assert_same_traffic(source.labeled(schema_, "fraud", labeled_from, NOW), labeled)
    assert traffic.feedback is None
    assert labeled.times.min() == np.datetime64(labeled_from.replace(tzinfo=None), "us")
    assert 0 < len(labeled) < len(source.labeled(schema_, "fraud", start, NOW))


def test_one_read_of_a_window_without_labels_gives_no_labels(registry, fraud, log):
    """No feedback at all: the labeled part is empty, as the separate read gives it."""
    X, _ = transactions(20, seed=2)
    log.predictions("fraud", X, NOW - timedelta(hours=1))
    mv = registry.get("fraud")
    source = StoreLog(registry.store)
    since = NOW - timedelta(hours=2)
    traffic, labeled = source.traffic_and_labeled(LogSchema.of(mv), "fraud", since, NOW, since)
    assert len(traffic) == 20
    assert_same_traffic(source.labeled(LogSchema.of(mv), "fraud", since, NOW), labeled)


def test_quality_of_features_checked_one_at_a_time_equals_counting_the_window(two_versions, log):
    """Null, out-of-range and unseen-category rates of a run (features prepared one at a time)
    equal the same rates counted straight from the window's values with numpy."""
    registry = two_versions
    busy_log(registry, log)
    mv = registry.get("fraud")
    [window] = run(registry, "log", window=None)["windows"]
    traffic = StoreLog(registry.store).traffic(
        LogSchema.of(mv, registry.versions("fraud")), "fraud", NOW - timedelta(hours=6), NOW
    )
    checked = 0
    for spec in mv.contract.fields:
        got = window["quality"]["features"][spec.name]
        values = traffic.inputs[spec.name]
        if spec.kind in ("number", "integer"):
            x = values.to_numpy(dtype=float)
            present = x[np.isfinite(x)]
            assert got["null_rate"] == pytest.approx(1 - present.size / x.size, abs=1e-12)
            if spec.min is not None and spec.max is not None:
                outside = np.sum((present < spec.min) | (present > spec.max))
                assert got["out_of_range"] == pytest.approx(outside / present.size, abs=1e-12)
                checked += outside > 0
        elif spec.categories is not None:
            texts = values.dropna().astype(str)
            unseen = (~texts.isin([str(c) for c in spec.categories])).sum()
            assert got["null_rate"] == pytest.approx(1 - len(texts) / len(values), abs=1e-12)
            assert got["unseen_category"] == pytest.approx(unseen / len(texts), abs=1e-12)
            checked += unseen > 0
    assert checked >= 2  # amounts beyond training's range and the unseen merchant were counted
