"""Artifacts: content addressed, atomic, immutable, verified before any deserialization."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from slipway import artifacts as art
from slipway.config import Settings
from slipway.exceptions import ArtifactCorrupted, ArtifactMissing, UntrustedArtifact
from slipway.registry import Registry


class Canary:
    """Unpickling this object writes a file: proof that deserialization happened."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class CanaryClassifier(LogisticRegression):
    """A real classifier that carries a canary in its state."""


def test_put_is_content_addressed_and_idempotent(tmp_path):
    """The file name is the sha256; writing the same bytes twice keeps one read-only file."""
    store = art.ArtifactStore(tmp_path)
    digest = store.put(b"hello")
    assert digest == art.sha256_bytes(b"hello")
    path = store.path(digest)
    assert path.parts[-3:] == ("sha256", digest[:2], digest[2:])
    assert store.put(b"hello") == digest
    assert oct(path.stat().st_mode & 0o777) == "0o444"
    assert store.get(digest) == b"hello"
    assert [p.name for p in path.parent.iterdir()] == [digest[2:]]  # no temp files left


def test_put_repairs_a_corrupted_copy(tmp_path):
    """Re-putting bytes whose file was damaged rewrites it atomically."""
    store = art.ArtifactStore(tmp_path)
    digest = store.put(b"payload")
    path = store.path(digest)
    path.chmod(0o644)
    path.write_bytes(b"damaged")
    assert store.check(digest) == "corrupted"
    store.put(b"payload")
    assert store.check(digest) == "ok"


def test_get_refuses_mismatched_or_missing_bytes(tmp_path):
    """Corrupted bytes raise with both hashes; missing files raise ArtifactMissing."""
    store = art.ArtifactStore(tmp_path)
    digest = store.put(b"payload")
    store.path(digest).chmod(0o644)
    store.path(digest).write_bytes(b"paylXad")
    with pytest.raises(ArtifactCorrupted, match=digest):
        store.get(digest)
    with pytest.raises(ArtifactMissing):
        store.get("0" * 64)
    with pytest.raises(ValueError, match="not a hex sha256"):
        store.path("../../etc/passwd")


@pytest.mark.parametrize(
    "name", ["../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "g" + "0" * 63, ""]
)
def test_only_64_lowercase_hex_digits_name_an_artifact(tmp_path, name):
    """A path component that is not exactly a sha256 digest never reaches the file system."""
    with pytest.raises(ValueError, match="not a hex sha256"):
        art.ArtifactStore(tmp_path).path(name)


def test_unknown_formats_are_refused_by_name():
    """dump_model and load_model name the formats they know."""
    with pytest.raises(ValueError, match="Unknown artifact format 'pickle'; use one of joblib"):
        art.dump_model(object(), "pickle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Unknown artifact format 'pickle'; use one of joblib"):
        art.load_model(b"", "pickle")  # type: ignore[arg-type]
    assert art.untrusted_types(b"not skops", "joblib") == []


def test_altered_pickle_never_runs_its_payload(tmp_path, make_fitted):
    """A malicious pickle altered on disk by one byte fails before deserialization."""
    canary = tmp_path / "canary"
    reg = Registry(Settings(home=tmp_path / "home"))
    X = np.random.default_rng(0).normal(size=(50, 2))
    clf = CanaryClassifier().fit(X, X[:, 0] > 0)
    clf.payload = Canary(str(canary))
    mv = reg.register(clf, "evil", X)
    canary.unlink(missing_ok=True)  # registration itself does not unpickle; be sure anyway
    path = reg.artifacts.path(mv.sha256)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupted):
        reg.load("evil:1")
    assert not canary.exists()
    # Control: the untouched artifact really would have run the payload.
    path.write_bytes(bytes(data[:-2] + bytes([data[-2] ^ 0x01]) + data[-1:]))
    reg.load("evil:1")
    assert canary.exists()


class SwapOnReopen:
    """Rewrites a file with other bytes just before its second open, as if it were replaced
    between two reads; counts the opens. An audit hook sees every open, whichever API makes it
    (hooks cannot be removed, so it goes inert once the test ends)."""

    def __init__(self, path, later: bytes) -> None:
        self.path, self.later = os.fspath(path), later
        self.opens = 0
        self.active = True
        self._busy = False
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if not self.active or self._busy or event != "open" or not isinstance(args[0], str | Path):
            return
        if os.fspath(args[0]) != self.path:
            return
        self.opens += 1
        if self.opens == 2:
            self._busy = True
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
                os.write(fd, self.later)
                os.close(fd)
            finally:
                self._busy = False


def test_the_bytes_deserialized_are_the_bytes_that_were_hashed(tmp_path):
    """A file swapped between two reads cannot slip through: load() hashes the very bytes it
    unpickles, so tampered bytes (replaced by the genuine ones after they are read) fail before
    any deserialization."""
    canary = tmp_path / "canary"
    reg = Registry(Settings(home=tmp_path / "home"))
    X = np.random.default_rng(0).normal(size=(50, 2))
    mv = reg.register(LogisticRegression().fit(X, X[:, 0] > 0), "m", X)
    path = reg.artifacts.path(mv.sha256)
    genuine = path.read_bytes()
    evil = CanaryClassifier().fit(X, X[:, 0] > 0)
    evil.payload = Canary(str(canary))
    path.chmod(0o644)
    path.write_bytes(art.dump_model(evil, "joblib"))
    swap = SwapOnReopen(path, genuine)
    try:
        with pytest.raises(ArtifactCorrupted, match=mv.sha256):
            reg.load("m:1")
    finally:
        swap.active = False
    assert not canary.exists()
    assert swap.opens == 1  # read once: the bytes checked are the bytes kept


def test_skops_round_trip_with_default_trusted_types(registry, make_fitted):
    """format='skops' stores with skops and loads sklearn pipelines without extra trust."""
    fitted = make_fitted("frame")
    mv = registry.register(fitted.pipeline, "s", fitted.X_train, format="skops")
    assert mv.format == "skops" and "skops" in mv.meta["env"]
    model = registry.load("s:1")
    np.testing.assert_array_equal(
        model.predict(fitted.X_val), fitted.pipeline.predict(fitted.X_val)
    )


def _double(x):
    return x * 2


def test_skops_refuses_untrusted_types_at_registration_by_name(tmp_path):
    """A function outside skops' defaults is named when registering, and nothing is stored;
    trusting it (argument or SLIPWAY_TRUSTED_TYPES) records the trust, which loading uses."""
    X = np.random.default_rng(0).normal(size=(40, 2))
    pipe = make_pipeline(FunctionTransformer(_double), StandardScaler(), LogisticRegression())
    pipe.fit(X, X[:, 0] > 0)
    reg = Registry(Settings(home=tmp_path / "home"))
    with pytest.raises(UntrustedArtifact, match="_double") as info:
        reg.register(pipe, "fn", X, format="skops")
    assert "trusted=[" in str(info.value) and reg.models() == []
    [needed] = info.value.types
    mv = reg.register(pipe, "fn", X, format="skops", trusted=[needed])
    assert mv.meta["trusted_types"] == [needed]
    np.testing.assert_array_equal(reg.load("fn:1").predict(X), pipe.predict(X))
    by_setting = Registry(Settings(home=tmp_path / "home", trusted_types=(needed,)))
    assert by_setting.register(pipe, "fn", X, format="skops").meta["trusted_types"] == [needed]


@pytest.mark.parametrize("kind", ["gradient_boosting", "random_forest"])
def test_tree_ensembles_in_skops_need_trust_once_at_registration(registry, make_fitted, kind):
    """A tree ensemble with format='skops' fails at registration (not at load) unless its
    Tree type is trusted; then it loads with no setting, from the recorded trust."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    from slipway.exceptions import InvalidModel

    fitted = make_fitted("array", n=300)
    model = (GradientBoostingClassifier(n_estimators=10) if kind == "gradient_boosting"
             else RandomForestClassifier(n_estimators=5, random_state=0))  # fmt: skip
    pipe = make_pipeline(StandardScaler(), model).fit(fitted.X_train, fitted.y_train)
    with pytest.raises(UntrustedArtifact, match=r"sklearn\.tree\._tree\.Tree"):
        registry.register(pipe, "trees", fitted.X_train, fitted.y_train, format="skops")
    mv = registry.register(pipe, "trees", fitted.X_train, fitted.y_train, format="skops",
                           trusted=["sklearn.tree._tree.Tree"])  # fmt: skip
    assert mv.meta["trusted_types"] == ["sklearn.tree._tree.Tree"]
    assert registry.settings.trusted_types == ()
    loaded = registry.load(mv.ref)
    np.testing.assert_array_equal(
        loaded.predict_proba(fitted.X_val), pipe.predict_proba(fitted.X_val)
    )
    with pytest.raises(InvalidModel, match="format='skops' only"):
        registry.register(pipe, "trees", fitted.X_train, trusted=["sklearn.tree._tree.Tree"])


def test_skops_versions_registered_before_trust_was_recorded_still_use_the_setting(tmp_path):
    """An older skops version (no recorded trust) loads with SLIPWAY_TRUSTED_TYPES, as before."""
    import sqlalchemy as sa

    from slipway.store.schema import model_versions

    X = np.random.default_rng(0).normal(size=(40, 2))
    pipe = make_pipeline(FunctionTransformer(_double), LogisticRegression()).fit(X, X[:, 0] > 0)
    reg = Registry(Settings(home=tmp_path / "home"))
    [needed] = art.untrusted_types(art.dump_model(pipe, "skops"), "skops")
    mv = reg.register(pipe, "fn", X, format="skops", trusted=[needed])
    meta = {k: v for k, v in mv.meta.items() if k != "trusted_types"}
    with reg.store.write() as conn:
        conn.execute(sa.update(model_versions).values(meta=meta))
    with pytest.raises(UntrustedArtifact, match="_double") as info:
        reg.load("fn:1")
    assert info.value.path == str(reg.artifacts.path(mv.sha256))  # names the file it refused
    trusting = Registry(Settings(home=tmp_path / "home", trusted_types=(needed,)))
    np.testing.assert_array_equal(trusting.load("fn:1").predict(X), pipe.predict(X))


def _within(seconds: float, work):
    """Run ``work`` in a daemon thread; (finished in time, its result or exception)."""
    import threading

    out: list = []

    def run():
        try:
            out.append(("ok", work()))
        except Exception as exc:
            out.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return (not thread.is_alive()), (out[0] if out else None)


@pytest.mark.parametrize("replacement", ["dev-zero", "fifo", "directory"])
def test_an_artifact_that_is_not_a_regular_file_is_refused_before_reading(
    registry, make_fitted, tmp_path, replacement
):
    """A symlink to /dev/zero, a FIFO or a directory in an artifact's place: verify and load
    refuse it at once, naming what it is (before, verify spun for ever and load ran out of
    memory)."""
    import os

    fitted = make_fitted("array", n=200)
    mv = registry.register(fitted.pipeline, "m", fitted.X_train)
    path = registry.artifacts.path(mv.sha256)
    path.unlink()
    if replacement == "dev-zero":
        path.symlink_to("/dev/zero")
        kind = "a character device"
    elif replacement == "fifo":
        os.mkfifo(path)
        kind = "a FIFO"
    else:
        path.mkdir()
        kind = "a directory"
    finished, outcome = _within(30, lambda: registry.verify("m"))
    assert finished, "verify never returned"
    [model] = [c for c in outcome[1] if c.role == "model"]
    assert model.status == "corrupted" and f"it is {kind}, not a regular file" in model.detail
    finished, outcome = _within(30, lambda: registry.load("m:1"))
    assert finished and outcome[0] == "raised" and isinstance(outcome[1], ArtifactCorrupted)
    assert "not a regular file" in str(outcome[1])


def test_a_file_larger_than_recorded_is_refused_by_its_size(registry, make_fitted):
    """The size recorded at registration is checked before hashing, for every artifact."""
    fitted = make_fitted("array", n=200)
    mv = registry.register(fitted.pipeline, "m", fitted.X_train)
    assert set(mv.meta["artifact_sizes"]) == set(mv.meta["artifacts"].values())
    size = mv.meta["artifact_sizes"][mv.sha256]
    path = registry.artifacts.path(mv.sha256)
    path.chmod(0o644)
    with open(path, "ab") as fh:
        fh.write(b"\0" * 1000)
    with pytest.raises(ArtifactCorrupted, match=f"but {size:,} were recorded at registration"):
        registry.load("m:1")
    [check] = [c for c in registry.verify("m") if c.role == "model"]
    assert check.status == "corrupted" and f"{size + 1000:,} bytes" in check.detail


def test_versions_without_recorded_sizes_still_refuse_non_regular_files(registry, make_fitted):
    """A version registered before sizes were recorded: a /dev/zero symlink is still refused."""
    import sqlalchemy as sa

    from slipway.store.schema import model_versions

    fitted = make_fitted("array", n=200)
    mv = registry.register(fitted.pipeline, "m", fitted.X_train)
    meta = {k: v for k, v in mv.meta.items() if k != "artifact_sizes"}
    with registry.store.write() as conn:
        conn.execute(sa.update(model_versions).values(meta=meta))
    assert registry.load("m:1").predict(fitted.X_train[:3]).shape == (3,)
    path = registry.artifacts.path(mv.sha256)
    path.unlink()
    path.symlink_to("/dev/zero")
    finished, outcome = _within(30, lambda: registry.load("m:1"))
    assert finished and isinstance(outcome[1], ArtifactCorrupted)


def test_a_skops_regressors_loss_model_loads_without_any_trust_setting(registry, make_fitted):
    """The DLE loss model Slipway fits at registration is stored in skops too: the types it
    needs are recorded with the version, so it loads with no SLIPWAY_TRUSTED_TYPES."""
    from slipway import estimation

    reg = make_fitted("regressor")
    mv = registry.register(reg.pipeline, "r", reg.X_train, reg.y_train, X_val=reg.X_val,
                           y_val=reg.y_val, format="skops")  # fmt: skip
    assert registry.settings.trusted_types == ()
    assert mv.meta["estimator_trusted_types"]  # a tree ensemble: beyond skops' defaults
    loss = registry.estimator(mv)
    assert isinstance(loss, estimation.LossModel)
    m, _ = loss.losses(reg.X_val, reg.pipeline.predict(reg.X_val))
    assert np.all(m >= 0)
    size = mv.artifact_size(mv.meta["artifacts"]["estimator"])
    assert size == registry.artifacts.path(mv.meta["artifacts"]["estimator"]).stat().st_size
