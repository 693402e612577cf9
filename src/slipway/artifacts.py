"""Content-addressed artifact files: written atomically, never changed, verified before use.

A file's name is the sha256 of its bytes (``artifacts/sha256/ab/cdef...``). Reading returns
the bytes only after hashing them and comparing with the hash the caller expects, so a model
is deserialized from exactly the bytes that were checked: nothing unverified is unpickled.

Before any byte is read, the opened path must be a regular file (a symlink to ``/dev/zero``
or a FIFO would make hashing spin or block for ever) and, when the caller knows the size
recorded at registration, exactly that size; at most that many bytes are ever read.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Literal

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
        if self.check(digest, len(data)) == "ok":
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or (target.exists() and not target.is_file()):
            target.unlink()  # whatever replaced the file goes; the real bytes come back
        with atomic_write(target, mode=0o444) as fh:
            fh.write(data)
        return digest

    def get(self, sha256: str, size: int | None = None) -> bytes:
        """The artifact's bytes, after checking they still hash to ``sha256``.

        ``size`` is the byte count recorded at registration (None for versions registered
        before sizes were recorded: then only the file type is checked before hashing).
        """
        target = self.path(sha256)
        with self._open(target, sha256, size) as fh:
            data = fh.read() if size is None else fh.read(size + 1)
        if size is not None and len(data) != size:
            raise ArtifactCorrupted(
                str(target),
                sha256,
                reason=f"it changed size while being read ({size:,} bytes "
                "recorded at registration)",
            )
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ArtifactCorrupted(str(target), sha256, actual)
        return data

    @staticmethod
    def _open(target: Path, sha256: str, size: int | None) -> IO[bytes]:
        """Open ``target`` for reading, refusing anything but a regular file of ``size`` bytes.

        Checked on the opened descriptor (no race between the check and the read); opened
        non-blocking, so a FIFO put in its place cannot make the open wait for a writer.
        """
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ArtifactMissing(
                f"Artifact {target} is missing; restore it from a backup or register the "
                "model again."
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ArtifactCorrupted(
                    str(target), sha256, reason=f"it is {_kind(info.st_mode)}, not a regular file"
                )
            if size is not None and info.st_size != size:
                raise ArtifactCorrupted(
                    str(target),
                    sha256,
                    reason=f"it is {info.st_size:,} bytes, but {size:,} were recorded at "
                    "registration",
                )
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    @staticmethod
    def hash_file(path: Path) -> str:
        """sha256 of a file, read in chunks."""
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def check(self, sha256: str, size: int | None = None) -> Literal["ok", "missing", "corrupted"]:
        """Re-hash one artifact on disk without loading it (its type and size checked first)."""
        return self.diagnose(sha256, size)[0]

    def diagnose(
        self, sha256: str, size: int | None = None
    ) -> tuple[Literal["ok", "missing", "corrupted"], str]:
        """:meth:`check`, and a sentence saying what is wrong ("" when ok)."""
        target = self.path(sha256)
        try:
            with self._open(target, sha256, size) as fh:
                h = hashlib.sha256()
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
        except ArtifactMissing:
            return "missing", "the file is missing"
        except ArtifactCorrupted as exc:
            return "corrupted", exc.reason
        if h.hexdigest() != sha256:
            return "corrupted", f"its bytes hash to {h.hexdigest()}"
        return "ok", ""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "something else"


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
