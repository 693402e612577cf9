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


def test_skops_refuses_untrusted_types_by_name(tmp_path):
    """A function outside the trusted list is named in the error; trusting it loads."""
    X = np.random.default_rng(0).normal(size=(40, 2))
    pipe = make_pipeline(FunctionTransformer(_double), StandardScaler(), LogisticRegression())
    pipe.fit(X, X[:, 0] > 0)
    reg = Registry(Settings(home=tmp_path / "home"))
    with pytest.warns(UserWarning, match="outside the trusted list"):
        mv = reg.register(pipe, "fn", X, format="skops")
    untrusted = mv.meta["untrusted_types"]
    assert any(t.endswith("_double") for t in untrusted)
    with pytest.raises(UntrustedArtifact, match="_double") as info:
        reg.load("fn:1")
    assert info.value.path == str(reg.artifacts.path(mv.sha256))  # names the file it refused
    trusting = Registry(Settings(home=tmp_path / "home", trusted_types=tuple(untrusted)))
    np.testing.assert_array_equal(trusting.load("fn:1").predict(X), pipe.predict(X))
