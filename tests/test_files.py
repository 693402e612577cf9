"""Atomic writes: all or nothing, and nothing left behind."""

from __future__ import annotations

import pytest

from slipway.files import atomic_write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    """An exception inside the block keeps the previous content and removes the temp file."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def broken() -> None:
        with atomic_write(target) as fh:
            fh.write(b"half of the new")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        broken()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_finished_write_replaces_the_file_with_the_given_mode(tmp_path):
    """The new content appears whole, with the requested permissions."""
    target = tmp_path / "out.bin"
    with atomic_write(target, mode=0o444) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new" and oct(target.stat().st_mode & 0o777) == "0o444"
