"""Atomic file writes: a temporary file beside the target, fsynced, renamed into place.

A reader (or a resumed run) sees the old file or the whole new one, never a torn write; after a
crash only a hidden ``.<name>.*.tmp`` file can be left behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(target: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``target`` when the block ends without an error.

    The data and the directory entry are fsynced, so the new file survives a power cut once the
    block has returned. ``mode`` sets the permissions before the rename (e.g. 0o444).
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
