"""Content-addressed artifact files: written atomically, never changed, verified before use.

A file's name is the sha256 of its bytes (``artifacts/sha256/ab/cdef...``). Reading returns
the bytes only after hashing them and comparing with the hash the caller expects, so a model
is deserialized from exactly the bytes that were checked: nothing unverified is unpickled.

Before any byte is read, the opened path must be a regular file (a symlink to ``/dev/zero``
or a FIFO would make hashing spin or block for ever) and, when the caller knows the size
recorded at registration, exactly that size; at most that many bytes are ever read.

A pickled pipeline stores its classes and functions by reference (``module.name``), so it
loads only where those modules can be imported. :func:`code_of` lists what an object refers
to, :func:`load_errors` tries artifacts in a fresh interpreter of the same environment, and
:func:`missing_modules` checks the recorded modules before a process loads a version.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import os
import pickle
import pickletools
import stat
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Literal

from slipway.exceptions import (
    ArtifactCorrupted,
    ArtifactMissing,
    ConfigError,
    InvalidDigest,
    InvalidModel,
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

    def remove(self, sha256: str) -> bool:
        """Delete one artifact file (the registry calls this only for files no version refers
        to); whether there was one."""
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

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


# -- portability: will another process be able to load it? ---------------------------------

# Pickle opcodes that push a string (a global's module and name are pushed this way).
_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"}
    | {"SHORT_BINSTRING", "BINSTRING", "STRING"}
)
_NO_PUSH_OPS = frozenset({"FRAME", "PROTO", "STOP", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
# What the fresh interpreter runs: load each artifact, print one JSON line per artifact. It
# imports only joblib or skops (not slipway), so it costs what unpickling costs. Like
# ArtifactStore.get, it refuses anything but a regular file of the recorded size, and bytes of
# another hash, before unpickling; skops types are trusted only as listed for the artifact.
_CHILD = """
import hashlib, io, json, os, stat, sys
for item in json.loads(sys.argv[1]):
    try:
        fd = os.open(item["path"], os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ValueError("the artifact is not a regular file")
            size = item["size"]
            data = fh.read() if size is None else fh.read(size + 1)
        if size is not None and len(data) != size:
            raise ValueError(f"the artifact is not the {size} bytes recorded at registration")
        if hashlib.sha256(data).hexdigest() != item["sha256"]:
            raise ValueError("the artifact's bytes do not hash to its recorded sha256")
        if item["fmt"] == "joblib":
            import joblib
            joblib.load(io.BytesIO(data))
        else:
            import skops.io as sio
            refused = [t for t in sio.get_untrusted_types(data=data) if t not in item["trusted"]]
            if refused:
                raise ValueError("untrusted skops types: " + ", ".join(refused))
            sio.loads(data, trusted=item["trusted"])
        print(json.dumps(None), flush=True)
    except BaseException as exc:
        print(json.dumps(f"{type(exc).__name__}: {exc}"), flush=True)
"""


@dataclass(frozen=True)
class Loadable:
    """One artifact for a fresh interpreter to load: its format and file, the sha256 (and the
    size, when recorded) its bytes must have, and the skops types trusted for it."""

    fmt: Format
    path: Path
    sha256: str
    size: int | None = None
    trusted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Code:
    """The code a fitted pipeline refers to: each global (a class or function) pickle stores
    by reference as ``(module, qualified name)``, and which of those modules are the user's own
    (neither the standard library nor part of an installed distribution)."""

    globals: tuple[tuple[str, str], ...]
    local: tuple[str, ...]

    @property
    def modules(self) -> list[str]:
        """Every module the artifact imports when it is loaded, sorted."""
        return sorted({module for module, _ in self.globals})

    @property
    def in_main(self) -> list[str]:
        """Names defined in ``__main__`` (a notebook or script): no other process has them."""
        return sorted(name for module, name in self.globals if module == "__main__")

    def users(self, module: str) -> list[str]:
        """The names the artifact takes from ``module``."""
        return sorted(name for m, name in self.globals if m == module)


def code_of(obj: Any) -> Code:
    """The globals ``obj`` refers to once pickled, without writing its arrays anywhere.

    Raises :class:`InvalidModel` when ``obj`` cannot be pickled at all (a lambda, a function
    defined inside another function), naming the object and the fix.
    """
    buf = io.BytesIO()
    try:
        # Protocol 5 with a buffer callback keeps array data out of band: only the structure
        # is written, so this costs little even for a large model.
        pickle.Pickler(buf, protocol=5, buffer_callback=lambda _: None).dump(obj)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise InvalidModel(
            f"The pipeline cannot be saved: {exc}. A lambda, a function defined inside another "
            "function, or an object holding an open resource cannot be pickled: define the "
            "function at the top level of a module (e.g. mytransforms.py), import it from "
            "there, refit and register again."
        ) from None
    found: set[tuple[str, str]] = set()
    memo: dict[Any, Any] = {}
    pushed: list[Any] = []  # the last two values pushed, when they were strings
    for op, arg, _ in pickletools.genops(buf.getvalue()):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            found.add((module, qualname))
        elif name == "STACK_GLOBAL" and len(pushed) == 2 and None not in pushed:
            found.add((pushed[0], pushed[1]))
        if name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed = [*pushed[-1:], memo.get(arg)]
        elif name in _STRING_OPS:
            pushed = [*pushed[-1:], arg]
        elif name not in _NO_PUSH_OPS:
            pushed = [*pushed[-1:], None]
    refs = tuple(sorted(found))
    installed = _installed_top_levels()
    local = sorted(
        {
            module
            for module, _ in refs
            if module != "__main__"
            and module.partition(".")[0] not in sys.stdlib_module_names
            and module.partition(".")[0] not in installed
        }
    )
    return Code(refs, tuple(local))


@functools.cache
def _installed_top_levels() -> frozenset[str]:
    # Scanning the environment's distributions takes a moment; what is installed rarely
    # changes within one process, and a module missed here only costs an extra check.
    return frozenset(metadata.packages_distributions())


def where_imported(module: str) -> Path | None:
    """The file this process imported ``module`` from, if it did."""
    mod = sys.modules.get(module)
    file = getattr(mod, "__file__", None)
    return Path(file) if file else None


class FreshLoad:
    """Artifacts being loaded in a fresh Python process of this environment.

    The process starts at once, so other work can go on meanwhile. It runs this interpreter
    with this process's environment variables, as ``slipway serve`` would, but with ``-P``:
    the current directory is not searched for modules (a console script does not search it
    either).
    """

    def __init__(self, items: Sequence[Loadable]) -> None:
        if not sys.executable:
            raise RuntimeError("sys.executable is unknown: cannot start a fresh interpreter")
        listed = [
            {
                "fmt": it.fmt,
                "path": str(it.path),
                "sha256": it.sha256,
                "size": it.size,
                "trusted": list(it.trusted),
            }
            for it in items
        ]
        argv = [sys.executable, "-P", "-c", _CHILD, json.dumps(listed)]
        self.count = len(items)
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )

    def errors(self, timeout: float = 600.0) -> list[str | None]:
        """Per artifact, None when it loaded, else the error it raised
        (``"ModuleNotFoundError: No module named 'x'"``)."""
        try:
            out, err = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            return [f"it did not finish loading within {timeout:g} s"] * self.count
        results: list[str | None] = [json.loads(line) for line in out.splitlines()[: self.count]]
        if len(results) < self.count:  # the interpreter itself died (a crash, out of memory)
            tail = (err.strip().splitlines() or [f"exit status {self._proc.returncode}"])[-1]
            results += [f"the interpreter stopped: {tail}"] * (self.count - len(results))
        return results

    def cancel(self) -> None:
        """Stop the process if it still runs."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()


def load_errors(items: Sequence[Loadable], *, timeout: float = 600.0) -> list[str | None]:
    """Load each artifact in a fresh interpreter (see :class:`FreshLoad`); per
    artifact, None when it loaded, else the error it raised."""
    if not items:
        return []
    return FreshLoad(items).errors(timeout)


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` this process cannot import (found by their spec only)."""
    missing = []
    for module in modules:
        if module == "__main__":
            missing.append(module)
            continue
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            missing.append(module)
    return missing
