"""The store-backed monitor: windows of the prediction log, feedback, refusals, stored runs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from slipway.exceptions import ConfigError, ModelNotFound
from slipway.monitoring.runner import (
    CHECKING,
    READING,
    Monitor,
    latest_report,
    parse_duration,
    parse_until,
    window_bounds,
)
from slipway.testing import register_reference_model, transactions
from tests.monitoring.helpers import NOW


def monitor(registry, **kwargs):
    """A Monitor on the test store whose clock reads NOW, with no alert sinks."""
    return Monitor(registry, clock=lambda: NOW, sinks=kwargs.pop("sinks", []), **kwargs)


def test_durations_and_windows():
    """24h, 30d, 2w parse; 30d in 1d windows is 30 windows, oldest first, ending now."""
    assert parse_duration("24h") == timedelta(hours=24) and parse_duration("2w") == timedelta(
        weeks=2
    )
    bounds = window_bounds(NOW, parse_duration("30d"), parse_duration("1d"))
    assert len(bounds) == 30 and bounds[-1][1] == NOW and bounds[0][0] == NOW - timedelta(days=30)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration("soon")
    with pytest.raises(ConfigError, match="longer than"):
        window_bounds(NOW, timedelta(hours=1), timedelta(days=1))


def test_steady_traffic_is_ok_and_the_run_is_stored(registry, fraud, log):
    """Traffic like training, labeled like validation: OK, stored, and listed in history."""
    X, y = transactions(1_500, seed=11)
    ids, _ = log.predictions("fraud", X, NOW - timedelta(hours=20), spread=timedelta(hours=19))
    log.feedback(ids, y, NOW - timedelta(minutes=5))
    report = monitor(registry).run("fraud", since=timedelta(hours=24))
    assert report.status == "OK", [r.message for r in report.reasons]
    assert report.latest.rows == 1_500 and report.run_id is not None
    [perf] = report.latest.performance
    assert perf["labeled"] == 1_500 and perf["coverage"] == 1.0
    assert perf["metrics"]["accuracy"]["registered"] == registry.get("fraud").metrics["accuracy"]
    low, high = perf["metrics"]["roc_auc"]["low"], perf["metrics"]["roc_auc"]["high"]
    assert low < perf["metrics"]["roc_auc"]["value"] < high
    # labels arrived 5 minutes ago; the oldest prediction was made 20 hours ago
    assert perf["delay_seconds"]["max"] == pytest.approx(
        (timedelta(hours=20) - timedelta(minutes=5)).total_seconds(), abs=1
    )
    [run] = monitor(registry).history("fraud")
    assert run.status == "OK" and run.rows == 1_500 and run.window_end == NOW
    assert latest_report(registry, "fraud")["run_id"] == run.id


def test_data_and_prediction_drift_alert_with_reasons(registry, fraud, log):
    """Amounts doubled: the feature and the score distribution are flagged, the run ALERTs."""
    X, _ = transactions(1_500, seed=12)
    X["amount"] = X["amount"] * 2
    log.predictions("fraud", X, NOW - timedelta(hours=10), spread=timedelta(hours=9))
    report = monitor(registry).run("fraud", since=timedelta(hours=24))
    assert report.status == "ALERT"
    assert "amount" in report.flagged and "merchant" not in report.flagged
    codes = {r.code for r in report.reasons}
    assert {"feature_drift", "prediction_drift"} <= codes
    flagged_preds = [p for p in report.latest.prediction if p.flagged]
    assert any(p.baseline == "validation" for p in flagged_preds)


def test_windows_and_the_previous_baseline(registry, fraud, log):
    """Two daily windows; with baseline previous, day 2 is compared with day 1."""
    X1, _ = transactions(800, seed=13)
    X2, _ = transactions(800, seed=14)
    X2["hour"] = X2["hour"] // 2  # night and morning only
    log.predictions("fraud", X1, NOW - timedelta(hours=47), spread=timedelta(hours=20))
    log.predictions("fraud", X2, NOW - timedelta(hours=23), spread=timedelta(hours=20))
    report = monitor(registry).run(
        "fraud", since=timedelta(days=2), window=timedelta(days=1), baseline="previous"
    )
    first, second = report.windows
    assert first.rows == 800 and second.rows == 800
    assert first.features[0].status == "insufficient_data"  # nothing before day 1
    assert "hour" in [f.name for f in second.features if f.flagged]
    by_key = {p.key: p for p in second.prediction}
    assert by_key["prediction:label@previous"].reference_rows == 800


def test_empty_window_warns_and_never_crashes(registry, fraud):
    """No traffic at all: every feature says empty, the run WARNs, nothing raises."""
    report = monitor(registry).run("fraud", since=timedelta(hours=1))
    assert report.status == "WARN" and report.latest.rows == 0
    assert {f.status for f in report.latest.features} == {"empty"}
    assert report.latest.performance == []


def test_contract_violations_and_unseen_categories_are_data_quality(registry, fraud, log):
    """Refused requests are counted by problem code; a high refusal rate WARNs."""
    X, _ = transactions(300, seed=15)
    log.predictions("fraud", X, NOW - timedelta(hours=2))
    problems = [
        {"code": "null", "field": "amount"},
        {"code": "unseen_category", "field": "country"},
    ]
    for _ in range(30):
        log.refusal("fraud", 1, NOW - timedelta(hours=1), problems, rows=2)
    report = monitor(registry).run("fraud", since=timedelta(hours=24))
    violations = report.latest.quality["violations"]
    assert violations["requests"] == 30 and violations["rows"] == 60
    assert violations["codes"] == {"null": 30, "unseen_category": 30}
    assert "quality_contract_violations" in {r.code for r in report.reasons}


def test_performance_drop_alerts_per_version(registry, fraud, log):
    """Labels that disagree with the model: accuracy's whole interval is below registration."""
    X, _ = transactions(1_000, seed=16)
    ids, scored = log.predictions("fraud", X, NOW - timedelta(hours=3))
    log.feedback(ids, 1 - scored.labels, NOW)  # every label is the opposite of the prediction
    report = monitor(registry).run("fraud", since=timedelta(hours=24))
    [perf] = report.latest.performance
    assert perf["version"] == 1 and perf["metrics"]["accuracy"]["value"] == 0
    assert perf["metrics"]["accuracy"]["degraded"]
    assert "performance_drop" in {r.code for r in report.reasons} and report.status == "ALERT"


def test_few_labels_are_insufficient_not_a_verdict(registry, fraud, log):
    """Ten labels: coverage is reported, metrics are not."""
    X, y = transactions(200, seed=17)
    ids, _ = log.predictions("fraud", X, NOW - timedelta(hours=3))
    log.feedback(ids[:10], y[:10], NOW)
    [perf] = monitor(registry).run("fraud").latest.performance
    assert perf["status"] == "insufficient_labels" and perf["metrics"] == {}
    assert perf["coverage"] == pytest.approx(10 / 200)


def test_history_and_latest_report(registry, fraud, log):
    """Runs list newest first; latest_report is None before a run, raises for unknown models."""
    assert latest_report(registry, "fraud") is None
    with pytest.raises(ModelNotFound):
        latest_report(registry, "nobody")
    m = monitor(registry)
    first = m.run("fraud", since=timedelta(hours=1))
    second = m.run("fraud", since=timedelta(hours=1))
    runs = m.history("fraud")
    assert [r.id for r in runs] == [second.run_id, first.run_id]
    data = latest_report(registry, "fraud")
    assert data["run_id"] == second.run_id and data["status"] == second.status


def test_timeline_includes_earlier_runs(registry, fraud, log):
    """A one-window run carries the summaries of earlier runs for the 'over time' plots."""
    X, _ = transactions(300, seed=18)
    log.predictions("fraud", X, NOW - timedelta(hours=30))
    earlier = Monitor(registry, clock=lambda: NOW - timedelta(hours=24), sinks=[])
    earlier.run("fraud", since=timedelta(hours=24))
    report = monitor(registry).run("fraud", since=timedelta(hours=24))
    assert len(report.history) == 1 and report.history[0]["rows"] == 300


def test_multiclass_and_regression_models(registry, make_fitted, log):
    """Per-class probabilities and predicted values are checked; metrics fit the task."""
    for kind in ("multiclass", "regressor"):
        fitted = make_fitted(kind, n=1_200)
        register_reference_model(registry, fitted, kind, alias=None)
        X = fitted.X_val
        X = X if hasattr(X, "iloc") else np.asarray(X)
        frame = (
            X
            if hasattr(X, "iloc")
            else __import__("pandas").DataFrame(X, columns=registry.get(kind).feature_names)
        )
        ids, _ = log.predictions(kind, frame, NOW - timedelta(hours=2))
        log.feedback(ids, fitted.y_val, NOW)
        report = monitor(registry).run(kind)
        names = {p.name for p in report.latest.prediction}
        [perf] = report.latest.performance
        if kind == "multiclass":
            assert {"label", "proba:a", "proba:b", "proba:c"} <= names
            assert perf["metrics"]["f1"]["registered"] == pytest.approx(
                fitted_metric(registry, kind, "f1")
            )
        else:
            assert names == {"value"} and set(perf["metrics"]) == {"mae", "rmse", "r2"}
        assert not any(m["degraded"] for m in perf["metrics"].values())


def fitted_metric(registry, name, metric):
    return registry.get(name).metrics[metric]


def test_monitor_runs_user_statistics_on_the_log_too(registry, fraud, log):
    """Monitor(statistics=...) measures logged traffic with the same statistics monitor() takes."""
    X, _ = transactions(600, seed=13)
    log.predictions("fraud", X, NOW - timedelta(hours=2))
    statistics = {
        "max": (lambda r, c: float(c.max()), 1e9),
        "categories": (lambda r, c: float(c.size), None, "categorical"),
    }
    report = monitor(registry, statistics=statistics).run("fraud", since=timedelta(hours=24))
    features = report.features
    assert features["amount"].extra["max"] == pytest.approx(X["amount"].max())
    assert "max" in features["amount"].effects and "max" not in features["merchant"].extra
    assert features["merchant"].extra["categories"] == 3.0


def test_parse_until_takes_times_dates_and_durations_ago():
    """--until reads ISO times (UTC without a zone), dates, and how long ago; else says how."""
    assert parse_until("2026-02-27T08:30:15Z", NOW) == datetime(2026, 2, 27, 8, 30, 15, tzinfo=UTC)
    assert parse_until("2026-02-27T08:30:15", NOW) == datetime(2026, 2, 27, 8, 30, 15, tzinfo=UTC)
    assert parse_until("2026-02-27T10:30:15+02:00", NOW) == datetime(
        2026, 2, 27, 8, 30, 15, tzinfo=UTC
    )
    assert parse_until("2026-02-27", NOW) == datetime(2026, 2, 27, tzinfo=UTC)
    assert parse_until("2h", NOW) == NOW - timedelta(hours=2)
    with pytest.raises(ConfigError, match="neither a time nor a duration"):
        parse_until("yesterday", NOW)


def test_until_ends_the_span_there(registry, fraud, log):
    """--since counts back from --until: yesterday's traffic is checked, today's left out."""
    X, _ = transactions(600, seed=21)
    log.predictions("fraud", X[:400], NOW - timedelta(hours=30), spread=timedelta(hours=4))
    log.predictions("fraud", X[400:], NOW - timedelta(hours=2))
    until = NOW - timedelta(hours=24)
    report = monitor(registry).run("fraud", since=timedelta(hours=12), until=until)
    assert report.latest.rows == 400 and report.latest.end == until
    assert report.latest.start == until - timedelta(hours=12)
    with pytest.raises(ConfigError, match="no time zone"):
        monitor(registry).run("fraud", until=until.replace(tzinfo=None))


def test_a_run_ending_on_an_empty_window_keeps_the_alert_and_names_its_window(registry, fraud, log):
    """Traffic stopped an hour ago: the verdict is the worst window with enough rows (ALERT),
    not the empty latest one, and the report says which window decided."""
    X, _ = transactions(2_000, seed=22)
    X["amount"] = X["amount"] * 3
    log.predictions("fraud", X, NOW - timedelta(hours=5), spread=timedelta(hours=4))
    report = monitor(registry).run("fraud", since=timedelta(hours=5), window=timedelta(hours=1))
    assert [w.rows for w in report.windows] == [500, 500, 500, 500, 0]
    assert [w.status for w in report.windows][-1] == "WARN"  # the empty window alone would WARN
    assert report.status == "ALERT" and report.exit_code == 2 and report.decided_by == 3
    assert report.reasons == report.windows[3].reasons and "amount" in report.flagged
    assert report.decision == (
        "verdict from window 4 of 5 (2026-03-01 10:00:00 → 2026-03-01 11:00:00 UTC), the worst "
        "with at least 50 rows; the latest window has 0 rows, too few to judge"
    )
    data = report.to_dict()
    assert data["status"] == "ALERT" and data["decided_by"]["window"] == 3
    assert data["windows"][3]["features"][0]["histogram"] is not None  # plotted in full
    [run] = monitor(registry).history("fraud")
    assert (run.status, run.window_end, run.rows) == ("ALERT", NOW - timedelta(hours=1), 500)


def test_windows_too_small_to_judge_do_not_decide(registry, fraud, log):
    """A busy OK window decides over a later one with 20 rows (which alone WARNs)."""
    X, _ = transactions(820, seed=23)
    log.predictions("fraud", X[:800], NOW - timedelta(hours=23), spread=timedelta(hours=10))
    log.predictions("fraud", X[800:], NOW - timedelta(hours=2))
    small = monitor(registry).run("fraud", since=timedelta(hours=4), window=timedelta(hours=2))
    assert [w.rows for w in small.windows] == [0, 20] and small.status == "WARN"
    assert small.decision.startswith("verdict from the latest window 2 of 2")
    mixed = monitor(registry).run("fraud", since=timedelta(hours=24), window=timedelta(hours=12))
    assert [w.rows for w in mixed.windows] == [800, 20]
    assert mixed.windows[1].status == "WARN" and mixed.status == "OK"
    assert mixed.decided_by == 0


def test_progress_hears_rows_read_and_windows_checked(registry, fraud, log):
    """The progress callback hears the rows read (the last count is every row) and each window."""
    X, _ = transactions(300, seed=24)
    log.predictions("fraud", X, NOW - timedelta(hours=3), spread=timedelta(hours=2))
    heard = []
    monitor(registry).run(
        "fraud",
        since=timedelta(hours=4),
        window=timedelta(hours=1),
        progress=lambda *call: heard.append(call),
    )
    reading = [c for c in heard if c[0] == READING]
    assert reading and reading[-1] == (READING, 300, None)
    assert [c for c in heard if c[0] == CHECKING] == [(CHECKING, i, 4) for i in range(5)]


@pytest.mark.parametrize(
    ("labels", "shown"), [(["0.0", "1.0"], "'0.0', '1.0'"), (["no", "yes"], "'no', 'yes'")]
)
def test_labels_that_are_not_the_classes_are_a_problem_in_the_headline(
    registry, fraud, log, labels, shown
):
    """Feedback whose labels are not the version's classes WARNs, naming both, instead of an
    OK with 'insufficient labels'."""
    X, y = transactions(300, seed=25)
    ids, _ = log.predictions("fraud", X, NOW - timedelta(hours=3))
    log.feedback(ids, [labels[int(v)] for v in y], NOW)
    report = monitor(registry).run("fraud")
    [perf] = report.latest.performance
    assert perf["status"] == "insufficient_labels" and perf["unknown_labels"] == 300
    assert report.status == "WARN"
    [reason] = [r for r in report.reasons if r.code == "unknown_labels"]
    assert reason.message.startswith("version 1: 300 of 300 feedback labels are not its classes")
    assert "'0', '1'" in reason.message and f"(got {shown})" in reason.message
