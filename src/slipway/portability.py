"""Will a registered pipeline load in another process? Checked at registration and at load.

A pickled pipeline stores its classes and functions by reference, ``module.name``, so it loads
only where that module can be imported. Code from installed packages loads wherever they are
installed; the user's own code is the trap: a function defined in a notebook lives in
``__main__``, which no other process has, and a module next to the notebook is importable only
from that directory. Registration refuses the first outright and loads the pipeline in a fresh
interpreter when it uses the second (:class:`LoadCheck`); the modules are recorded, and every
load checks them before unpickling (:func:`check_importable`), so ``slipway serve`` says which
module is missing and how to provide it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from slipway import artifacts as art
from slipway.exceptions import InvalidModel, UnloadableArtifact

_FIX = (
    "make that module importable wherever the model is loaded (slipway serve, slipway batch, "
    "another notebook): install its project (pip install -e .), or add its directory to "
    "PYTHONPATH for every process, this one included (restart the notebook kernel after "
    "export PYTHONPATH=...)"
)


def refuse_main(code: art.Code) -> None:
    """Refuse a pipeline that uses classes or functions defined in ``__main__``."""
    names = code.in_main
    if not names:
        return
    listed = ", ".join(names)
    first = names[0]
    raise InvalidModel(
        f"The pipeline uses {listed}, defined in __main__ (this notebook or script), so no "
        f"other process can load it: slipway serve would fail with \"Can't get attribute "
        f"{first!r} on <module '__main__'>\". Move {listed} into a module file, e.g. "
        f"mytransforms.py, import it from there (from mytransforms import {first}), refit the "
        f"pipeline and register again; then {_FIX}."
    )


class LoadCheck:
    """Loads a pipeline's bytes in a fresh interpreter while registration goes on, when the
    pipeline uses modules outside the installed packages (else it does nothing)."""

    def __init__(
        self, code: art.Code, payload: bytes, fmt: art.Format, trusted: Sequence[str] = ()
    ) -> None:
        self.code, self.payload, self.fmt = code, payload, fmt
        self.trusted = tuple(trusted)  # the skops types registration trusts
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._load: art.FreshLoad | None = None

    def __enter__(self) -> LoadCheck:
        if self.code.local:
            self._tmp = tempfile.TemporaryDirectory(prefix="slipway-check-")
            path = Path(self._tmp.name) / "model"
            path.write_bytes(self.payload)
            item = art.Loadable(
                self.fmt, path, art.sha256_bytes(self.payload), len(self.payload), self.trusted
            )
            self._load = art.FreshLoad([item])
        return self

    def raise_for_failure(self) -> None:
        """Wait for the fresh interpreter; raise InvalidModel saying what to do if it failed."""
        if self._load is None:
            return
        error = self._load.errors()[0]
        self._load = None
        if error is not None:
            raise InvalidModel(explain(self.code, error))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._load is not None:
            self._load.cancel()
        if self._tmp is not None:
            self._tmp.cleanup()


def explain(code: art.Code, error: str) -> str:
    """Why a pipeline did not load in a fresh interpreter, and what to do about it."""
    missing = re.search(r"No module named '([^']+)'", error)
    modules = list(code.local)
    if missing:
        wanted = missing.group(1)
        modules = [m for m in modules if m == wanted or m.startswith(wanted + ".")] or modules
    uses = "; ".join(f"{m} ({', '.join(code.users(m))})" for m in modules)
    roots = sorted({str(r) for r in map(_search_root, modules) if r is not None})
    if roots:
        where = (
            f", importable here only because {' and '.join(roots)} is this process's working "
            "directory or was added to sys.path"
        )
        path = f"export PYTHONPATH={':'.join(roots)}"
    else:
        where, path = "", "add its directory to PYTHONPATH"
    return (
        f"The pipeline does not load in a fresh Python process of this environment ({error}), "
        "so slipway serve, slipway batch and other notebooks could not load it either. It uses "
        f"{uses}{where}. Make the module importable for every process: install its project "
        f"(pip install -e .), or {path} before starting Python (restart the notebook kernel) "
        "and slipway serve; then register again."
    )


def local_roots(code: art.Code) -> dict[str, str | None]:
    """Each of the user's own modules with the directory this process imported it from."""
    roots = {m: _search_root(m) for m in code.local}
    return {m: None if r is None else str(r) for m, r in roots.items()}


def check_importable(ref: str, modules: list[str], local: Mapping[str, str | None]) -> None:
    """Before unpickling a version: raise UnloadableArtifact if a module it needs is missing.

    ``local`` maps the user's own modules to the directory they were imported from when the
    version was registered (as :func:`local_roots` recorded it).
    """
    missing = art.missing_modules(modules)
    if not missing:
        return
    roots = sorted({str(local[m]) for m in missing if local.get(m)})
    own = [m for m in missing if m in local]
    kind = "the model's own code" if own else "installed packages"
    where = (
        f" (at registration it came from {', '.join(roots)}: export PYTHONPATH={':'.join(roots)})"
        if roots
        else ""
    )
    raise UnloadableArtifact(
        f"{ref} cannot be loaded in this process: it needs {', '.join(missing)} ({kind}), which "
        "cannot be imported here. Make it importable for this process: pip install the package, "
        f"or add the module's directory to PYTHONPATH{where}; then start it again."
    )


def is_lookup_failure(exc: BaseException) -> bool:
    """Whether unpickling failed to find a module, or a name in one (pickle's "Can't get
    attribute 'f' on <module ...>", skops' "module 'x' has no attribute 'f'")."""
    if isinstance(exc, ImportError):
        return True
    text = str(exc)
    return text.startswith("Can't get attribute") or (
        text.startswith("module '") and "has no attribute" in text
    )


def unloadable(ref: str, exc: BaseException) -> UnloadableArtifact:
    """The error for a version whose unpickling failed on an import or a missing attribute."""
    text = f"{type(exc).__name__}: {exc}"
    if "__main__" in text:
        why = (
            "it refers to code defined in the notebook or script that registered it (__main__); "
            "register it again from a module (see docs/registry.md, 'Your own code')"
        )
    else:
        why = (
            "it refers to code this process cannot import: make that module importable here "
            "(pip install the package, or add its directory to PYTHONPATH) and start it again"
        )
    return UnloadableArtifact(f"{ref} cannot be loaded in this process ({text}): {why}.")


def _search_root(module: str) -> Path | None:
    """The sys.path entry ``module`` was imported from here, if this process imported it."""
    file = art.where_imported(module)
    if file is None:
        return None
    root = file.parent.parent if file.name == "__init__.py" else file.parent
    for _ in range(module.count(".")):
        root = root.parent
    return root
