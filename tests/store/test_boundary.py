"""The storage boundary: store/ is the only package that talks SQL."""

from __future__ import annotations

import ast
from pathlib import Path

import slipway

SRC = Path(slipway.__file__).parent


def _imports_sqlalchemy(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "sqlalchemy" for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            return True
    return False


def test_only_the_store_imports_sqlalchemy():
    """No module outside slipway/store imports SQLAlchemy, not even lazily inside a function."""
    offenders = [
        str(p.relative_to(SRC))
        for p in sorted(SRC.rglob("*.py"))
        if "store" not in p.relative_to(SRC).parts[:1] and _imports_sqlalchemy(p)
    ]
    assert offenders == []
    assert _imports_sqlalchemy(SRC / "store" / "engine.py")  # the check does see imports
