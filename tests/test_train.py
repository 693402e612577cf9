"""`slipway train config.toml` and `slipway quickstart`."""

from __future__ import annotations

import re
import sys

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from slipway import quickstart
from slipway.evaluation import classification_metrics
from slipway.exceptions import ConfigError, SlipwayWarning
from slipway.testing import transactions
from slipway.train import train
from tests.cli_helpers import run_cli


def write_config(tmp_path, body: str, data: pd.DataFrame | None = None, name="data.csv"):
    if data is not None:
        if name.endswith(".csv"):
            data.to_csv(tmp_path / name, index=False)
        else:
            data.to_parquet(tmp_path / name)
    path = tmp_path / "train.toml"
    path.write_text(body)
    return path


GOOD = """
name = "fraud"
description = "from config"
alias = "production"
[data]
path = "{path}"
target = "label"
time_column = "ts"
[estimator]
class = "sklearn.linear_model.LogisticRegression"
params = {{ max_iter = 300, C = 0.5 }}
[validation]
fraction = 0.25
cv = 3
"""


@pytest.fixture
def data() -> pd.DataFrame:
    X, y = transactions(400)
    return X.assign(label=y, ts=pd.date_range("2026-01-01", periods=400, freq="h").astype(str))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_train_builds_preprocessing_registers_and_promotes(registry, tmp_path, data, fmt):
    """Standard preprocessing per column kind; the time split holds out the latest rows."""
    path = write_config(tmp_path, GOOD.format(path=f"data.{fmt}"), data, f"data.{fmt}")
    mv = train(path, registry)
    assert (mv.version, mv.aliases, mv.description) == (1, ("production",), "from config")
    assert mv.feature_names == ["amount", "hour", "merchant", "country"]
    assert mv.meta["params"]["model__C"] == 0.5
    assert mv.meta["validation"]["rows"] == 100 and mv.meta["training"]["rows"] == 300
    assert set(mv.meta["cv"]) >= {"accuracy", "roc_auc"}
    kinds = {f["name"]: f["kind"] for f in mv.meta["contract"]["fields"]}
    assert kinds == {
        "amount": "number",
        "hour": "integer",
        "merchant": "category",
        "country": "category",
    }
    # The same preprocessing and estimator built by hand, fitted on the 300 earliest rows,
    # answers exactly as the registered model, and its validation metrics are the recorded ones.
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    by_hand = Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [
                        ("numeric", numeric, ["amount", "hour"]),
                        (
                            "categorical",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                            ["merchant", "country"],
                        ),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=300, C=0.5)),
        ]
    )
    ordered = data.sort_values("ts", kind="stable")
    X, y = ordered[mv.feature_names], ordered["label"].to_numpy()
    by_hand.fit(X.iloc[:300], y[:300])
    model = registry.load("fraud@production")
    tail = X.iloc[300:]
    np.testing.assert_allclose(model.predict_proba(tail), by_hand.predict_proba(tail), rtol=1e-12)
    np.testing.assert_array_equal(model.predict(tail), by_hand.predict(tail))
    expected = classification_metrics(
        y[300:], by_hand.predict(tail), by_hand.predict_proba(tail), by_hand.classes_
    )
    assert mv.metrics == pytest.approx(expected, rel=1e-12)
    assert mv.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(y[300:], by_hand.predict_proba(tail)[:, 1]), rel=1e-12
    )
    assert {v["folds"] for v in mv.meta["cv"].values()} == {3}


def test_every_config_problem_is_reported_at_once(registry, tmp_path, data):
    """Unknown keys, wrong values, bad names, columns and classes: one run, one line each."""
    body = """
name = "fraud model"
alias = "Prod"
colour = "blue"
[data]
path = "data.csv"
target = "nope"
features = ["amount", "ghost"]
[estimator]
class = "sklearn.linear_model.NoSuchModel"
[validation]
fraction = 1.5
"""
    path = write_config(tmp_path, body, data)
    with pytest.raises(ConfigError) as info:
        train(path, registry)
    cols = "(columns: amount, hour, merchant, country, label, ts)"
    assert sorted(info.value.problems) == [
        "alias: 'Prod' is not a valid alias: use lower-case letters, digits, '_' or '-', "
        "starting with a letter.",
        "colour: Extra inputs are not permitted",
        f"data.features: column 'ghost' is not in the data {cols}",
        f"data.target: column 'nope' is not in the data {cols}",
        "estimator.class: cannot import 'sklearn.linear_model.NoSuchModel'",
        "name: 'fraud model' is not a valid model name: use letters, digits, '.', '_' or '-', "
        "starting with a letter or digit, at most 100 characters.",
        "validation.fraction: Input should be less than 1",
    ]
    assert registry.models() == []


def test_every_bad_param_and_target_problem_is_found_before_training(registry, tmp_path, data):
    """Each bad estimator param, a target with gaps and too few rows of a class for the folds."""
    body = GOOD.format(path="data.csv").replace(
        "max_iter = 300, C = 0.5", 'max_iter = -5, C = -1.0, penalty = "l3", colour = 1'
    )
    data = data.assign(label=data.label.astype(float))
    data.loc[[0, 1], "label"] = np.nan
    data.loc[2:4, "label"] = 7.0  # a class with three rows: too few for cv = 3 after the split
    path = write_config(tmp_path, body.replace("fraction = 0.25", "fraction = 0.5"), data)
    fitted = []
    with pytest.raises(ConfigError) as info:
        train(path, registry, progress=fitted.append)
    problems = sorted(info.value.problems)
    assert (
        problems[0]
        == "data.target: column 'label' has 2 missing value(s); drop those rows from the data"
    )
    assert problems[1].startswith("estimator.params.C: The 'C' parameter of LogisticRegression")
    assert problems[2].startswith("estimator.params.max_iter: The 'max_iter' parameter")
    assert problems[3].startswith("estimator.params.penalty: The 'penalty' parameter")
    assert problems[4].startswith("estimator.params: LogisticRegression rejects 'colour'")
    assert problems[5] == (
        "validation.cv: 3 folds need at least 3 training rows of each class; class 7.0 has about 1"
    )
    assert len(problems) == 6
    assert fitted == ["checking the config and the data"]  # nothing was trained


def test_bad_params_and_missing_files(registry, tmp_path, data):
    """Unknown estimator params and absent data files are config errors."""
    body = GOOD.format(path="data.csv").replace("C = 0.5", "Cee = 0.5")
    with pytest.raises(ConfigError, match="estimator.params: LogisticRegression rejects 'Cee'"):
        train(write_config(tmp_path, body, data), registry)
    body = GOOD.format(path="missing.csv")
    with pytest.raises(ConfigError, match="missing.csv does not exist"):
        train(write_config(tmp_path, body), registry)
    with pytest.raises(ConfigError, match="not valid TOML"):
        train(write_config(tmp_path, "name = "), registry)


def test_cli_train_prints_the_model_card_or_one_error_per_problem(capsys, env, tmp_path, data):
    """The command shows the card on success and lists problems on failure."""
    path = write_config(tmp_path, GOOD.format(path="data.csv"), data)
    ok = run_cli(capsys, "train", str(path))
    assert ok.code == 0 and "Model card: fraud" in ok.out
    bad = write_config(tmp_path, GOOD.format(path="data.csv").replace('"label"', '"nope"'))
    result = run_cli(capsys, "train", str(bad))
    assert result.code == 1
    assert "data.target: column 'nope'" in result.err and "Traceback" not in result.err


def test_quickstart_history_is_deterministic_and_learnable_from_point_in_time_features():
    """The seeded history repeats exactly; card features computed point in time predict fraud."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    import slipway.features as sf

    a, b = quickstart.make_history(6000, seed=1), quickstart.make_history(6000, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert a.ts.is_monotonic_increasing and 0.015 < a.is_fraud.mean() < 0.05
    source = sf.EventSource(a, entity="card_id", timestamp="ts", name="transactions")
    avg = sf.Aggregate("avg_7d", source, "mean", column="amount", window="7d", fillna=0.0)
    frame = sf.training_frame(a, [avg], at="ts")
    X = pd.DataFrame(
        {
            "ratio": np.where(frame.avg_7d > 0, frame.amount / frame.avg_7d, 0.0),
            "hour": frame.ts.dt.hour,
            "merchant": frame.merchant_category.astype("category").cat.codes,
        }
    )
    model = HistGradientBoostingClassifier(random_state=0).fit(X[:4000], a.is_fraud[:4000])
    assert roc_auc_score(a.is_fraud[4000:], model.predict_proba(X[4000:])[:, 1]) > 0.8


@pytest.mark.xdist_group("long-tail")  # the longest tests, scheduled first (test_portability)
def test_quickstart_trains_on_features_serves_raw_requests_and_audits_skew(
    capsys, env, tmp_path, monkeypatch
):
    """`slipway quickstart`: features, a production model, raw requests, a clean audit, a
    planted skew refused by the guard and caught by the audit, batch, monitoring, lifecycle."""
    # The skew guard adds the recorded features.py directory to sys.path; a quickstart of an
    # earlier test (another --workdir, its features.py restored) must not be found first.
    monkeypatch.setattr(sys, "path", list(sys.path))
    result = run_cli(capsys, "quickstart", "--workdir", str(tmp_path / "qs"), "--rows", "8000")
    assert result.code == 0, result.err
    out = result.out
    assert "Model card: fraud" in out and "roc_auc" in out
    assert "registered fraud:1 with features txn_count_30d, avg_amount_7d" in out
    assert "/v1/models/fraud/predict -> version 1" in out
    assert (
        '{"accepted": 3, "duplicates": 0, "unknown": [], "normalized": 0, "unmatched": [], '
        '"unknown_units": [], "unknown_keys": []}' in out
    )
    assert (
        '{"accepted": 0, "duplicates": 3, "unknown": [], "normalized": 0, "unmatched": [], '
        '"unknown_units": [], "unknown_keys": []}' in out
    )
    assert "3 of 3 predictions are in the prediction log" in out
    assert "no skew" in out and "SKEW: 2 feature(s) differ" in out
    assert "avg_amount_7d (window '7d' -> '3d')" in out and "(exit 2)" in out
    assert "curl -s -H" in out
    assert 'window="7d"' in (tmp_path / "qs" / "features.py").read_text()
    from slipway.monitoring import latest_report
    from slipway.registry import Registry
    from slipway.store.schema import batch_predictions, feature_events, feedback, predictions

    registry = Registry(env)
    mv = registry.get("fraud@production")
    assert mv.version == 1 and mv.request_contract.names[-2:] == ["card_id", "ts"]
    # more traffic with labels, a batch run into the database, events, a monitoring report
    fraud = predictions.c.model_name == "fraud"
    with registry.store.read() as conn:
        count = {
            t.name: conn.execute(
                sa.select(sa.func.count())
                .select_from(t)
                .where(t.c.prediction_id.in_(sa.select(predictions.c.prediction_id).where(fraud)))
                if t is feedback
                else sa.select(sa.func.count()).select_from(t).where(t.c.model_name == "fraud")
            ).scalar_one()
            for t in (predictions, feedback, batch_predictions)
        }
        events = sa.select(sa.func.count()).select_from(feature_events)
        count["feature_events"] = conn.execute(events).scalar_one()
    past, live = quickstart.split(quickstart.make_history(8000))
    assert count == {
        "predictions": 1203,
        "feedback": 1203,
        "batch_predictions": len(live),
        "feature_events": len(past) + 1203,
    }
    assert f"{len(live):,} rows scored, 0 rejected" in out
    report = latest_report(registry, "fraud")
    # The traffic is the days after training: nothing drifts, nothing degrades.
    assert report is not None and (report["status"], report["reasons"]) == ("OK", [])
    assert report["skew"]["rows"] == 1000 and report["skew"]["mismatches"] == 0  # a sample
    assert "Feature skew audit: 1,000 predictions recomputed offline" in out
    (window,) = report["windows"]
    assert window["rows"] == 1003
    assert {f["status"] for f in window["features"]} == {"ok"}
    (performance,) = window["performance"]
    assert (performance["labeled"], performance["status"]) == (1003, "ok")
    with registry.store.read() as conn:
        joined = conn.execute(
            sa.select(predictions.c.outputs, feedback.c.label)
            .join(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
            .where(fraud)
            .order_by(predictions.c.created_at, predictions.c.prediction_id)
        ).all()
    monitored = joined[:1003]  # the 200 of the planted skew came after the monitoring run
    accuracy = np.mean([out["label"] == label for out, label in monitored])
    assert performance["metrics"]["accuracy"]["value"] == pytest.approx(accuracy, rel=1e-12)
    registered = registry.get("fraud@production").metrics["accuracy"]
    assert performance["metrics"]["accuracy"]["registered"] == registered
    assert (tmp_path / "qs" / "monitoring.html").read_text().startswith("<!DOCTYPE html>")
    # the experiment step: a shadow deployment and an A/B test of a second decision rule on
    # fraud's pipeline (as fraud-direct, which takes the computed features), both stopped
    from slipway.experiments.desk import ExperimentDesk

    tried = ExperimentDesk(registry).experiments("fraud-direct")
    assert sorted(e.mode for e in tried) == ["ab", "shadow"]
    assert not any(e.running for e in tried)
    assert registry.get("fraud-direct@production").version == 1
    assert "both experiments are stopped (abandoned)" in result.out
    # the lifecycle step: estimated accuracy falls before outcomes arrive; the retrained
    # candidate passes the gate, goes into a shadow experiment, and production stays where it was
    assert "estimated accuracy of the latest 5 days (no outcome yet)" in result.out
    assert "PASS loans:2 against loans:1" in result.out
    assert "shadow: loans:2 is in shadow beside production" in result.out
    assert registry.get("loans@production").version == 1
    registry.store.dispose()


DEFAULTS = """
name = "visits"
[data]
path = "data.csv"
target = "label"
[estimator]
class = "sklearn.linear_model.LogisticRegression"
params = { max_iter = 300 }
"""


@pytest.fixture
def visits(data) -> pd.DataFrame:
    """The transactions with the columns an export drags along: an id, a timestamp, a code
    unique per row, and a copy of another model's verdict."""
    n = len(data)
    return data.drop(columns="ts").assign(
        visit_id=np.arange(10_000, 10_000 + n),
        visited_at=pd.date_range("2026-01-01", periods=n, freq="37min").astype(str),
        code=[f"C{i:05d}" for i in range(n)],
        old_score=data.label,
    )


def test_default_features_warn_about_ids_codes_and_leaks_and_leave_dates_out(
    registry, tmp_path, visits
):
    """With features omitted: ids, high-cardinality codes and target copies warn; dates go."""
    path = write_config(tmp_path, DEFAULTS, visits)
    with pytest.warns(SlipwayWarning) as caught:
        mv = train(path, registry)
    notes = [str(w.message) for w in caught if issubclass(w.category, SlipwayWarning)]
    assert len(notes) == 4, notes
    assert notes[0].startswith("column 'visited_at' holds dates (e.g. '2026-01-01 00:00:00')")
    assert "left out of the features" in notes[0]
    assert notes[1].startswith("column 'visit_id' looks like an identifier (400 distinct values")
    assert notes[2].startswith("column 'code' looks like an identifier")
    assert notes[3].startswith("column 'old_score' matches the target 'label' almost exactly")
    assert all("data.exclude" in n for n in notes[1:])
    assert "visited_at" not in mv.feature_names and "visit_id" in mv.feature_names


def test_exclude_leaves_columns_out_without_a_warning(registry, tmp_path, visits):
    """data.exclude removes the columns the warnings named; nothing more is said."""
    body = DEFAULTS.replace(
        'target = "label"', 'target = "label"\nexclude = ["visit_id", "code", "old_score"]'
    )
    path = write_config(tmp_path, body, visits.drop(columns="visited_at"))
    mv = train(path, registry)  # warnings are errors here: none may be emitted
    assert mv.feature_names == ["amount", "hour", "merchant", "country"]


def test_a_listed_date_column_is_refused_not_one_hot_encoded(registry, tmp_path, visits):
    """Naming a date column as a feature is a config problem saying what to do instead."""
    body = DEFAULTS.replace(
        'target = "label"', 'target = "label"\nfeatures = ["amount", "visited_at"]'
    )
    with pytest.raises(ConfigError) as info:
        train(write_config(tmp_path, body, visits), registry)
    (problem,) = info.value.problems
    assert problem.startswith("data.features: column 'visited_at' holds dates")
    assert "Derive numeric columns from it" in problem


def test_a_one_hot_encoding_beyond_the_budget_is_refused_naming_the_column(
    registry, tmp_path, visits
):
    """The dense one-hot matrix is estimated before training; over budget, the widest
    categorical columns are named."""
    body = DEFAULTS.replace(
        'target = "label"',
        'target = "label"\nfeatures = ["amount", "merchant", "code"]\nonehot_budget_mb = 0.5',
    )
    with pytest.raises(ConfigError) as info:
        train(write_config(tmp_path, body, visits), registry)
    (problem,) = info.value.problems
    assert problem.startswith(
        "data: one-hot encoding would build a 1,010.0 KiB matrix (320 rows x 404 columns"
    )
    assert "'code' has 400 distinct values, 'merchant' has 3 distinct values" in problem
    assert "over the 512.0 KiB budget (data.onehot_budget_mb)" in problem


def test_train_reports_each_step(registry, tmp_path, data):
    """progress= gets each step as it starts."""
    steps: list[str] = []
    path = write_config(tmp_path, GOOD.format(path="data.csv"), data)
    train(path, registry, progress=steps.append)
    assert steps == [
        "checking the config and the data",
        "fitting LogisticRegression on 300 rows",
        "registering fraud: validation metrics, 3-fold cross-validation, contract, profile",
    ]


def test_cli_train_shows_steps_with_durations_and_the_data_notes(capsys, env, tmp_path, visits):
    """`slipway train` prints each finished step with its time and each note as a warning."""
    result = run_cli(capsys, "train", str(write_config(tmp_path, DEFAULTS, visits)))
    assert result.code == 0, result.err
    assert re.search(r"checking the config and the data \(\d+\.\ds\)", result.out)
    assert re.search(r"fitting LogisticRegression on 320 rows \(\d+\.\ds\)", result.out)
    assert "warning: column 'visit_id' looks like an identifier" in result.err
    assert "warning: column 'visited_at' holds dates" in result.err


def test_cli_retrain_prints_the_data_notes_as_train_does(capsys, env, tmp_path, visits):
    """`slipway retrain` fits through the same checks: each note is one warning line."""
    body = 'alias = "production"\n' + DEFAULTS.replace("[data]", '[data]\nexclude = ["code"]')
    path = write_config(tmp_path, body, visits)
    assert run_cli(capsys, "train", str(path)).code == 0
    result = run_cli(capsys, "retrain", "visits", "--config", str(path))
    assert result.code in (0, 1, 3), result.err  # the gate may lack a holdout this small
    assert "warning: column 'visit_id' looks like an identifier" in result.err
    assert "SlipwayWarning" not in result.err


def test_the_data_window_is_checked_with_everything_else(tmp_path, data):
    """A bad data.since, or one without a time column, is listed beside the other problems;
    a window holding too few rows is named with its start; a good one keeps the recent rows."""
    from datetime import UTC, datetime, timedelta

    from slipway.train import check, fit

    bad = (
        GOOD.format(path="data.csv")
        .replace('time_column = "ts"', 'since = "soon"')
        .replace("C = 0.5", "C = -1")
    )
    with pytest.raises(ConfigError) as info:
        check(write_config(tmp_path, bad, data))
    assert info.value.problems == [
        "estimator.params.C: The 'C' parameter of LogisticRegression must be a float in the "
        "range (0.0, inf]. Got -1 instead.",
        "data.since: 'soon' is not a duration like 90d, 12w or 36h",
    ]
    no_time = GOOD.format(path="data.csv").replace('time_column = "ts"', 'since = "2d"')
    with pytest.raises(ConfigError) as info:
        check(write_config(tmp_path, no_time, data))
    assert info.value.problems == ["data.since: a data window needs data.time_column"]
    path = write_config(tmp_path, GOOD.format(path="data.csv"), data)
    now = datetime(2026, 1, 17, 16, tzinfo=UTC)  # the last row is 2026-01-17 15:00
    with pytest.raises(ConfigError) as info:
        check(path, since=timedelta(hours=5), now=now)
    problem, folds = info.value.problems  # the class counts are checked on the window too
    assert folds.startswith("validation.cv: 3 folds need at least 3 training rows of each class")
    assert (
        problem.startswith("data.since: only 5 rows of ")
        and "newer than 2026-01-17 11:00" in problem
    )
    trained = fit(path, since=timedelta(days=4), now=now)
    assert trained.data["rows_read"] == 400 and trained.data["rows"] == 96
    assert len(trained.X_train) + len(trained.X_val) == 96
