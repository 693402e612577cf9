"""Estimated performance in the monitoring report: it drops before labels arrive, tracks
realized performance without concept drift, and parts from it under concept drift."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np

from slipway.monitoring.runner import Monitor
from slipway.testing import transactions
from tests.monitoring.helpers import NOW


def _monitor(registry):
    return Monitor(registry, clock=lambda: NOW, sinks=[])


def _codes(report):
    return {r.code for r in report.reasons}


def test_steady_traffic_estimates_agree_with_realized(registry, fraud, log):
    """Same distribution, labels from the same process: estimated and realized side by side,
    inside the band, and no estimation reason."""
    X, y = transactions(2000, seed=11)
    ids, _ = log.predictions("fraud", X, NOW - timedelta(hours=20), spread=timedelta(hours=19))
    log.feedback(ids, y, NOW - timedelta(minutes=5))
    report = _monitor(registry).run("fraud", since=timedelta(hours=24))
    est = report.latest.estimation
    assert est["status"] == "ok" and est["method"] == "cbpe" and est["rows"] == 2000
    acc = est["metrics"]["accuracy"]
    assert acc["low"] <= acc["value"] <= acc["high"] and not acc["drop"]
    labeled = est["labeled"]
    assert labeled["rows"] == 2000 and labeled["metrics"]["accuracy"]["agrees"]
    assert not _codes(report) & {"estimated_performance_drop", "estimate_disagrees"}
    assert "estimation" in json.loads(report.to_json())["windows"][-1]
    assert "Estimated performance over time" in report.to_html()


def test_estimated_accuracy_drops_before_any_label(registry, fraud, log):
    """Traffic moves to where the model is unsure: ALERT from the estimate, no label sent."""
    X, _ = transactions(1500, seed=12)
    X["merchant"] = "gaming"
    X["hour"] = 3
    X["amount"] = np.round(np.random.default_rng(0).uniform(0, 15, len(X)), 2)
    log.predictions("fraud", X, NOW - timedelta(hours=5), spread=timedelta(hours=4))
    report = _monitor(registry).run("fraud", since=timedelta(hours=24))
    est = report.latest.estimation
    assert est["labeled"]["status"] == "no_labels"
    acc = est["metrics"]["accuracy"]
    assert acc["drop"] and acc["high"] < acc["reference"] - 0.02
    assert "estimated_performance_drop" in _codes(report) and report.status == "ALERT"


def test_concept_drift_shows_realized_outside_the_band(registry, fraud, log):
    """Inputs as before, but the labels follow another rule: the report says they disagree."""
    X, y = transactions(2000, seed=13)
    ids, _ = log.predictions("fraud", X, NOW - timedelta(hours=20), spread=timedelta(hours=19))
    log.feedback(ids, 1 - y, NOW - timedelta(minutes=5))
    report = _monitor(registry).run("fraud", since=timedelta(hours=24))
    real = report.latest.estimation["labeled"]["metrics"]["accuracy"]
    assert not real["agrees"]
    assert not (real["estimated"]["low"] <= real["realized"] <= real["estimated"]["high"])
    assert "estimate_disagrees" in _codes(report)


def test_versions_without_an_estimator_say_why(registry, make_fitted, log):
    """Registered without validation data: the section explains, nothing else changes."""
    fitted = make_fitted("frame")
    registry.register(fitted.pipeline, "bare", fitted.X_train, fitted.y_train, alias="production")
    log.predictions("bare", fitted.X_val, NOW - timedelta(hours=2))
    report = _monitor(registry).run("bare", since=timedelta(hours=24))
    est = report.latest.estimation
    assert est["status"] == "unavailable" and "validation data" in est["reason"]


def test_served_labels_map_to_class_indices_as_text_row_by_row():
    """The served labels' class indices, mapped once per distinct label for a Categorical,
    equal the row-by-row mapping of each label's text: unknown and missing labels are -1."""
    import pandas as pd

    from slipway.monitoring.estimated import _class_indices

    keys = ["0", "1", "nan"]
    values = ["1", "0", None, "2", "1", "yes", None, "0"]
    categorical = pd.Series(pd.Categorical(values, categories=["yes", "1", "2", "0"]))
    plain = pd.Series(values, dtype=object)
    by_row = np.array([keys.index(str(v)) if str(v) in keys else -1
                       for v in categorical.to_numpy(dtype=object)])  # fmt: skip
    assert by_row.tolist() == [1, 0, 2, -1, 1, -1, 2, 0]
    assert _class_indices(categorical, keys).tolist() == by_row.tolist()
    assert _class_indices(plain, keys).tolist() == [1, 0, -1, -1, 1, -1, -1, 0]  # "None"
    assert _class_indices(categorical, keys).dtype == np.int64


def test_the_log_is_read_with_the_heap_pool_and_the_previous_pool_put_back():
    """Inside ``heap_pool`` Arrow allocates from the C library's heap; on the way out, even on
    an error, the previous default pool is back."""
    import pyarrow as pa
    import pytest

    from slipway.monitoring.traffic import heap_pool

    before = pa.default_memory_pool()
    with heap_pool():
        assert pa.default_memory_pool().backend_name == "system"
        assert pa.array(np.arange(1000)).sum().as_py() == 499500
    assert pa.default_memory_pool().backend_name == before.backend_name
    with pytest.raises(RuntimeError), heap_pool():
        raise RuntimeError("a failed read")
    assert pa.default_memory_pool().backend_name == before.backend_name
