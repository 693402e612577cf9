"""Content-addressed artifact files: written atomically, never changed, verified before use.

A file's name is the sha256 of its bytes (``artifacts/sha256/ab/cdef...``). Reading returns
the bytes only after hashing them and comparing with the hash the caller expects, so a model
is deserialized from exactly the bytes that were checked: nothing unverified is unpickled.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from slipway.exceptions import (
    ArtifactCorrupted,
    ArtifactMissing,
    ConfigError,
    InvalidDigest,
    MissingDependency,
    UntrustedArtifact,
)
from slipway.files import atomic_write

Format = Literal["joblib", "skops"]
FORMATS: tuple[Format, ...] = ("joblib", "skops")
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Immutable files under ``root``, addressed by the sha256 of their content."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """Where the artifact with this hash lives (whether or not it exists)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidDigest(
                f"{sha256[:80]!r} is not a hex sha256 digest: the registry's record of this "
                "artifact is damaged; `slipway models verify` lists what is intact."
            )
        return self.root / "sha256" / sha256[:2] / sha256[2:]

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its sha256. Writing the same bytes twice is a no-op."""
        digest = sha256_bytes(data)
        target = self.path(digest)
        if target.exists() and self.hash_file(target) == digest:
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, mode=0o444) as fh:
            fh.write(data)
        return digest

    def get(self, sha256: str) -> bytes:
        """The artifact's bytes, after checking they still hash to ``sha256``."""
        target = self.path(sha256)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(
                f"Artifact {target} is missing; restore it from a backup or register the "
                "model again."
            ) from None
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ArtifactCorrupted(str(target), sha256, actual)
        return data

    @staticmethod
    def hash_file(path: Path) -> str:
        """sha256 of a file, read in chunks."""
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def check(self, sha256: str) -> Literal["ok", "missing", "corrupted"]:
        """Re-hash one artifact on disk without loading it."""
        target = self.path(sha256)
        if not target.exists():
            return "missing"
        return "ok" if self.hash_file(target) == sha256 else "corrupted"


def dump_model(obj: Any, fmt: Format) -> bytes:
    """Serialize a fitted estimator with joblib or skops."""
    if fmt == "joblib":
        import joblib

        buf = io.BytesIO()
        joblib.dump(obj, buf)
        return buf.getvalue()
    if fmt == "skops":
        return _skops().dumps(obj)
    raise ConfigError(f"Unknown artifact format {fmt!r}; use one of {', '.join(FORMATS)}.")


def untrusted_types(data: bytes, fmt: Format, trusted: Iterable[str] = ()) -> list[str]:
    """Types in a skops payload that are neither trusted by skops nor listed in ``trusted``."""
    if fmt != "skops":
        return []
    allowed = set(trusted)
    return [t for t in _skops().get_untrusted_types(data=data) if t not in allowed]


def load_model(data: bytes, fmt: Format, *, trusted: Iterable[str] = (), source: str = "") -> Any:
    """Deserialize verified bytes. skops refuses any type outside its defaults and ``trusted``."""
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    if fmt == "skops":
        refused = untrusted_types(data, fmt, trusted)
        if refused:
            raise UntrustedArtifact(source or "<bytes>", refused)
        sio = _skops()
        return sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    raise ConfigError(f"Unknown artifact format {fmt!r}; use one of {', '.join(FORMATS)}.")


def _skops() -> Any:
    try:
        import skops.io as sio
    except ImportError:  # pragma: no cover - skops is a core dependency
        raise MissingDependency("skops", "skops", "The skops artifact format") from None
    return sio
