"""The registry: versions, metadata, references, aliases, audit, integrity, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from slipway.config import Settings
from slipway.exceptions import (
    ArtifactCorrupted,
    IncompatibleEnvironment,
    InvalidModel,
    InvalidReference,
    ModelNotFound,
    RegistryConflict,
    VersionMismatchWarning,
)
from slipway.registry import Registry
from slipway.store import registry as registry_tables


def test_register_records_the_whole_story(registry, make_fitted):
    """Metadata: who, when, task, steps, params, features, metrics, data, env, artifacts."""
    fitted = make_fitted("frame")
    mv = registry.register(
        fitted.pipeline,
        "fraud",
        fitted.X_train,
        fitted.y_train,
        X_val=fitted.X_val,
        y_val=fitted.y_val,
        description="LR v1",
        tags={"team": "risk"},
        cv=3,
    )
    assert (mv.name, mv.version, mv.status) == ("fraud", 1, "active")
    assert mv.created_by == "tester" and mv.description == "LR v1" and mv.tags == {"team": "risk"}
    assert mv.task == "classification" and mv.classes == [0, 1]
    assert [s["name"] for s in mv.meta["steps"]] == ["pre", "model"]
    assert mv.meta["params"]["model__max_iter"] == 500
    assert mv.feature_names == ["amount", "hour", "merchant", "country"]
    assert set(mv.metrics) == {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "brier",
        "calibration_error",
    }
    assert set(mv.meta["cv"]["accuracy"]) == {"mean", "std", "folds"}
    assert mv.meta["training"]["rows"] == len(fitted.X_train)
    assert len(mv.meta["training"]["fingerprint"]) == 64
    assert {"python", "scikit-learn", "numpy", "joblib"} <= set(mv.meta["env"])
    assert set(mv.meta["artifacts"]) == {
        "model",
        "profile",
        "sample",
        "reference_predictions",
        "onnx",
        "estimator",
    }
    assert mv.meta["artifacts"]["model"] == mv.sha256 and len(mv.sha256) == 64


def test_validation_metrics_match_sklearn_on_the_same_predictions(registry, make_fitted):
    """Recorded metrics equal sklearn's own functions on the validation data."""
    from sklearn import metrics

    fitted = make_fitted("frame")
    mv = registry.register(
        fitted.pipeline, "m", fitted.X_train, fitted.y_train, X_val=fitted.X_val, y_val=fitted.y_val
    )
    proba = fitted.pipeline.predict_proba(fitted.X_val)[:, 1]
    labels = fitted.pipeline.predict(fitted.X_val)
    assert mv.metrics["roc_auc"] == pytest.approx(metrics.roc_auc_score(fitted.y_val, proba))
    assert mv.metrics["f1"] == pytest.approx(metrics.f1_score(fitted.y_val, labels))
    assert mv.metrics["brier"] == pytest.approx(metrics.brier_score_loss(fitted.y_val, proba))


def test_regression_metrics(registry, make_fitted):
    """Regressors get MAE, RMSE and R²."""
    fitted = make_fitted("regressor")
    mv = registry.register(
        fitted.pipeline, "r", fitted.X_train, fitted.y_train, X_val=fitted.X_val, y_val=fitted.y_val
    )
    assert mv.task == "regression" and set(mv.metrics) == {"mae", "rmse", "r2"}
    assert mv.metrics["r2"] > 0.9


def test_reference_profile_sample_and_predictions_are_stored(registry, make_fitted):
    """The drift reference is kept: profile, a bounded sample, validation predictions."""
    fitted = make_fitted("frame", n=800)
    registry.settings = Settings(**{**registry.settings.model_dump(), "profile_sample_rows": 100})
    mv = registry.register(
        fitted.pipeline, "m", fitted.X_train, fitted.y_train, X_val=fitted.X_val, y_val=fitted.y_val
    )
    profile = registry.profile(mv)
    amount = profile["features"]["amount"]
    assert len(amount["percentiles"]) == 101 and len(amount["deciles"]) == 9
    assert amount["min"] == fitted.X_train["amount"].min()
    assert sum(profile["features"]["merchant"]["shares"].values()) == pytest.approx(1.0)
    sample = registry.reference_sample(mv)
    assert len(sample) == 100 and list(sample.columns) == mv.feature_names
    preds = registry.reference_predictions(mv)
    assert list(preds.columns) == ["label", "proba:0", "proba:1"]
    assert len(preds) == len(fitted.X_val)


def test_versions_are_consecutive_and_refs_resolve(registry, make_fitted):
    """name:N, name@alias, and name = production else latest."""
    fitted = make_fitted("frame")
    for _ in range(3):
        registry.register(fitted.pipeline, "m", fitted.X_train)
    assert [v.version for v in registry.versions("m")] == [1, 2, 3]
    assert registry.get("m").version == 3
    registry.promote("m", 2)
    assert registry.get("m").version == 2
    assert registry.get("m@production").version == 2
    assert registry.get("m:1").version == 1
    with pytest.raises(ModelNotFound, match=r"has no version 9 \(latest is 3\)"):
        registry.get("m:9")
    with pytest.raises(ModelNotFound, match="no alias 'candidate' .*production -> 2"):
        registry.get("m@candidate")
    with pytest.raises(ModelNotFound, match="No model named 'nope'. Known models: m."):
        registry.get("nope")
    with pytest.raises(InvalidReference):
        registry.get("m:x")


def test_promote_and_rollback_walk_the_alias_history(registry, make_fitted):
    """Rollback returns to the version held before, repeatedly, and each move is audited."""
    fitted = make_fitted("frame")
    for _ in range(3):
        registry.register(fitted.pipeline, "m", fitted.X_train)
    for v in (1, 2, 3):
        registry.promote("m", v, alias="production")
    assert registry.rollback("m").version == 2
    assert registry.rollback("m").version == 1
    with pytest.raises(RegistryConflict, match="no earlier version"):
        registry.rollback("m")
    assert registry.aliases("m") == {"production": 1}
    moves = [
        (e.action, e.from_version, e.to_version)
        for e in registry.audit("m")
        if e.action in ("promote", "rollback")
    ]
    assert moves == [
        ("rollback", 2, 1),
        ("rollback", 3, 2),
        ("promote", 2, 3),
        ("promote", 1, 2),
        ("promote", None, 1),
    ]
    assert all(e.actor == "tester" for e in registry.audit("m"))


def test_archive_keeps_the_version_but_blocks_promotion(registry, make_fitted):
    """Archived versions load by number, never resolve as latest, and cannot be promoted."""
    fitted = make_fitted("frame")
    registry.register(fitted.pipeline, "m", fitted.X_train)
    registry.register(fitted.pipeline, "m", fitted.X_train)
    registry.promote("m", 1)
    with pytest.raises(RegistryConflict, match="held by alias"):
        registry.archive("m", 1)
    registry.archive("m", 2)
    assert registry.get("m:2").status == "archived"
    assert registry.load("m:2").version.version == 2
    with pytest.raises(RegistryConflict, match="archived"):
        registry.promote("m", 2)
    registry.register(fitted.pipeline, "m", fitted.X_train)
    assert registry.get("m:3").version == 3  # numbers are never reused


def test_rollback_refuses_to_land_on_an_archived_version(registry, make_fitted):
    """If the previous version was archived since, rollback says so instead of serving it."""
    fitted = make_fitted("frame")
    for _ in range(3):
        registry.register(fitted.pipeline, "m", fitted.X_train)
    registry.promote("m", 1)
    registry.promote("m", 2)
    registry.archive("m", 1)
    with pytest.raises(RegistryConflict, match="version 1, which is archived"):
        registry.rollback("m")
    assert registry.aliases("m") == {"production": 2}


def test_models_summary(registry, make_fitted):
    """models() lists every model with counts and aliases."""
    fitted = make_fitted("frame")
    registry.register(fitted.pipeline, "b", fitted.X_train)
    registry.register(fitted.pipeline, "a", fitted.X_train, alias="candidate")
    summaries = registry.models()
    assert [(m.name, m.versions, m.aliases) for m in summaries] == [
        ("a", 1, {"candidate": 1}),
        ("b", 1, {}),
    ]


def test_alias_versions_answer_for_every_model_with_the_alias_or_only_those_named(
    registry, make_fitted
):
    """alias_versions() maps each model with the alias to its version; names narrow it down."""
    fitted = make_fitted("frame")
    for name in ("a", "b", "c"):
        registry.register(fitted.pipeline, name, fitted.X_train)
        registry.register(fitted.pipeline, name, fitted.X_train)
    registry.promote("a", 2)
    registry.promote("b", 1)
    registry.promote("c", 2, alias="candidate")
    assert registry.alias_versions("production") == {"a": 2, "b": 1}
    assert registry.alias_versions("production", ["b", "c"]) == {"b": 1}
    assert registry.alias_versions("candidate") == {"c": 2}
    registry.promote("a", 1)
    assert registry.alias_versions("production", ["a"]) == {"a": 1}


def test_delete_removes_a_version_and_only_the_artifacts_nothing_else_uses(registry, make_fitted):
    """A deleted version is gone, its own files too; files another version uses stay."""
    fitted = make_fitted("frame")
    other = clone(fitted.pipeline).set_params(model__C=0.01).fit(fitted.X_train, fitted.y_train)
    first = registry.register(fitted.pipeline, "m", fitted.X_train, fitted.y_train)
    second = registry.register(other, "m", fitted.X_train, fitted.y_train, onnx=False)
    own = {first.meta["artifacts"][r] for r in ("model", "reference_predictions", "onnx")}
    shared = {first.meta["artifacts"][r] for r in ("profile", "sample")}
    assert shared == {second.meta["artifacts"][r] for r in ("profile", "sample")}
    done = registry.delete("m", 1)
    assert done.versions == (1,) and set(done.removed) == own and set(done.kept) == shared
    assert not any(registry.artifacts.path(sha).exists() for sha in own)
    assert all(registry.artifacts.path(sha).exists() for sha in shared)
    with pytest.raises(ModelNotFound, match="no version 1"):
        registry.get("m:1")
    assert [v.version for v in registry.versions("m")] == [2]
    assert {c.status for c in registry.verify()} == {"ok"}
    event = registry.audit("m", limit=1)[0]
    assert (event.action, event.version, event.actor) == ("delete", 1, "tester")
    assert set(event.detail["removed"]) == own and set(event.detail["kept"]) == shared


def test_delete_refuses_a_version_an_alias_points_at(registry, make_fitted):
    """An aliased version stays, and the message names the alias and both ways out."""
    fitted = make_fitted("frame")
    registry.register(fitted.pipeline, "m", fitted.X_train, onnx=False, alias="production")
    with pytest.raises(RegistryConflict, match=r"production -> 1.*promote.*unalias m production"):
        registry.delete("m", 1)
    with pytest.raises(RegistryConflict, match="production -> 1"):
        registry.delete("m")
    assert registry.get("m:1").version == 1
    assert {c.status for c in registry.verify()} == {"ok"}


def test_rollback_skips_a_deleted_version(registry, make_fitted):
    """The alias history forgets a deleted version: rollback lands on the one before it."""
    fitted = make_fitted("frame")
    for _ in range(3):
        registry.register(fitted.pipeline, "m", fitted.X_train, onnx=False)
    for v in (1, 2, 3):
        registry.promote("m", v)
    registry.delete("m", 2)
    assert registry.rollback("m").version == 1


def test_deleting_every_version_hides_the_model_but_never_reuses_numbers(registry, make_fitted):
    """NAME alone deletes every version; registering the name again continues the numbering,
    and artifacts another model shares are kept."""
    fitted = make_fitted("frame")
    for _ in range(2):
        registry.register(fitted.pipeline, "gone", fitted.X_train, onnx=False)
    kept = registry.register(fitted.pipeline, "kept", fitted.X_train, onnx=False)
    done = registry.delete("gone")
    assert done.versions == (1, 2) and done.removed == ()
    assert set(done.kept) == set(kept.meta["artifacts"].values())
    assert [m.name for m in registry.models()] == ["kept"]
    with pytest.raises(ModelNotFound, match="No model named 'gone'. Known models: kept."):
        registry.versions("gone")
    with pytest.raises(ModelNotFound, match="no versions left"):
        registry.delete("gone")
    again = registry.register(fitted.pipeline, "gone", fitted.X_train, onnx=False)
    assert again.version == 3
    assert registry.load("kept").predict(fitted.X_val).shape == (len(fitted.X_val),)


def test_a_registration_puts_back_a_file_a_delete_removed_meanwhile(
    registry, make_fitted, monkeypatch
):
    """A delete between writing the files and recording the version cannot leave it without
    its artifacts: the registration writes them again."""
    fitted = make_fitted("frame")
    old = registry.register(fitted.pipeline, "m", fitted.X_train, onnx=False)
    record = registry_tables.add_version

    def delete_first(*args, **kwargs):
        registry.delete("m", old.version)  # removes the files the new version has just put
        return record(*args, **kwargs)

    monkeypatch.setattr(registry_tables, "add_version", delete_first)
    new = registry.register(fitted.pipeline, "m", fitted.X_train, onnx=False)
    assert new.meta["artifacts"] == old.meta["artifacts"]
    assert {c.status for c in registry.verify("m")} == {"ok"}
    assert registry.load("m:2").predict(fitted.X_val).shape == (len(fitted.X_val),)


def test_verify_rehashes_every_artifact(registry, make_fitted):
    """A flipped byte or a deleted file is found by verify."""
    fitted = make_fitted("frame")
    mv = registry.register(fitted.pipeline, "m", fitted.X_train)
    assert {c.status for c in registry.verify()} == {"ok"}
    path = registry.artifacts.path(mv.meta["artifacts"]["profile"])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    registry.artifacts.path(mv.meta["artifacts"]["sample"]).unlink()
    status = {c.role: c.status for c in registry.verify("m")}
    assert status == {
        "model": "ok",
        "profile": "corrupted",
        "sample": "missing",
        "reference_predictions": "ok",
        "onnx": "ok",
    }


def test_corrupted_model_artifact_is_refused_before_loading(registry, make_fitted):
    """One changed byte makes load raise ArtifactCorrupted naming the file and both hashes."""
    fitted = make_fitted("frame")
    mv = registry.register(fitted.pipeline, "m", fitted.X_train)
    path = registry.artifacts.path(mv.sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupted) as info:
        registry.load("m:1")
    assert str(path) in str(info.value) and mv.sha256 in str(info.value)
    assert info.value.actual != info.value.expected


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (object(), "Expected a fitted scikit-learn estimator"),
        (LogisticRegression(), "is not fitted"),
    ],
)
def test_register_refuses_what_it_cannot_serve(registry, obj, match):
    """Unfitted or non-estimator objects are refused with a way out."""
    with pytest.raises(InvalidModel, match=match):
        registry.register(obj, "m", np.zeros((3, 2)))


def test_register_checks_names_and_shapes(registry, make_fitted):
    """Bad names, mismatched lengths and half-given validation data are refused."""
    fitted = make_fitted("frame")
    with pytest.raises(InvalidReference, match="not a valid model name"):
        registry.register(fitted.pipeline, "bad name", fitted.X_train)
    with pytest.raises(InvalidModel, match="X_train has 450 rows but y_train has 3"):
        registry.register(fitted.pipeline, "m", fitted.X_train, fitted.y_train[:3])
    with pytest.raises(InvalidModel, match="both X_val and y_val"):
        registry.register(fitted.pipeline, "m", fitted.X_train, X_val=fitted.X_val)
    assert registry.models() == []


@pytest.mark.parametrize("policy", ["warn", "refuse"])
def test_scikit_learn_minor_version_mismatch(registry, make_fitted, policy):
    """Loading under another sklearn minor version warns, or refuses, naming both versions."""
    fitted = make_fitted("frame")
    mv = registry.register(fitted.pipeline, "m", fitted.X_train)
    with registry.store.write() as conn:
        from slipway.store.schema import model_versions

        meta = {**mv.meta, "env": {**mv.meta["env"], "scikit-learn": "0.24.2"}}
        conn.execute(model_versions.update().values(meta=meta))
    registry.settings = Settings(
        **{**registry.settings.model_dump(), "on_version_mismatch": policy}
    )
    if policy == "warn":
        with pytest.warns(VersionMismatchWarning, match="saved with scikit-learn 0.24.2"):
            registry.load("m:1")
    else:
        with pytest.raises(IncompatibleEnvironment, match="0.24.2.*Refusing"):
            registry.load("m:1")


def test_same_minor_version_loads_silently(registry, make_fitted):
    """No warning when the versions agree."""
    fitted = make_fitted("frame")
    registry.register(fitted.pipeline, "m", fitted.X_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.load("m")


def _register_many(settings_json: str, n: int, start, queue) -> None:
    settings = Settings.model_validate_json(settings_json)
    reg = Registry(settings)
    X = np.random.default_rng(0).normal(size=(60, 2))
    pipe = LogisticRegression().fit(X, X[:, 0] > 0)
    start.wait(timeout=60)
    queue.put([reg.register(pipe, "shared", X).version for _ in range(n)])


@pytest.mark.slow
def test_two_processes_registering_get_distinct_consecutive_versions(settings):
    """Concurrent registrations from two real processes never collide or skip."""
    Registry(settings).store.dispose()  # migrate first so both processes race on data only
    ctx = mp.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Barrier(2)
    procs = [
        ctx.Process(target=_register_many, args=(settings.model_dump_json(), 6, start, queue))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(results[0] + results[1]) == list(range(1, 13))
    assert [v.version for v in Registry(settings).versions("shared")] == list(range(1, 13))
