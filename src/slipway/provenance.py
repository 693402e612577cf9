"""Where a model came from: data fingerprint, library versions, git commit, user."""

from __future__ import annotations

import getpass
import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def fingerprint(X: Any, y: Any = None) -> str:
    """sha256 over the values, column names and dtypes of the training data (and target)."""
    h = hashlib.sha256()
    for part in (X, y):
        if part is None:
            continue
        if isinstance(part, pd.Series):
            part = part.to_frame()
        if isinstance(part, pd.DataFrame):
            h.update(repr([(str(c), str(t)) for c, t in part.dtypes.items()]).encode())
            h.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
        else:
            arr = np.ascontiguousarray(np.asarray(part))
            h.update(f"{arr.shape}{arr.dtype}".encode())
            if arr.dtype == object:
                frame = pd.DataFrame(arr.reshape(len(arr), -1))
                h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
            else:
                h.update(arr.tobytes())
    return h.hexdigest()


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of Python and the libraries a pickled pipeline depends on."""
    names = ("scikit-learn", "numpy", "scipy", "pandas", "joblib", "slipway", *extra)
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def minor(version: str) -> str:
    """``"1.5.2"`` -> ``"1.5"``."""
    return ".".join(version.split(".")[:2])


def git_commit(cwd: Path | None = None) -> dict[str, Any] | None:
    """The caller's git commit and whether the work tree had changes, or None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def current_user(configured: str | None = None) -> str:
    """The configured user, else the OS user, else ``"unknown"``."""
    if configured:
        return configured
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
