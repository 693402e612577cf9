"""Problems with values, and the two ways Slipway writes a value: as data and in a message.

:func:`jsonable` serialises: numpy scalars become Python values, NaN and infinities become
``None`` (JSON ``null``), strings are kept whole. Labels, class names, categories, reports and
logged outputs go through it (the prediction log's writer uses orjson, which follows the same
rule). :func:`display` describes a value for a person, in an error message or a problem's
``value``: strings and other values are cut to 200 characters, and NaN and infinities are
spelled ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` so the client sees what it sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# A field absent from a row (distinct from an explicit null).
MISSING: Any = object()
# Longest text a message shows of one value.
DISPLAY_CHARS = 200


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one value of a request (``row`` is None for whole-request issues)."""

    code: str
    expected: str
    row: int | None = None
    field: str | None = None
    value: Any = None

    def describe(self) -> str:
        """One sentence a person can act on."""
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        prefix = ", ".join(where) + ": " if where else ""
        if self.code in ("missing_field", "unknown_field", "wrong_shape"):
            return prefix + self.expected
        return f"{prefix}got {_show(self.value)}, expected {self.expected}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping; ``value`` as :func:`display` shows it."""
        return {
            "row": self.row,
            "field": self.field,
            "code": self.code,
            "value": display(self.value),
            "expected": self.expected,
            "message": self.describe(),
        }


def py_value(v: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else unchanged."""
    return v.item() if isinstance(v, np.generic) else v


def jsonable(v: Any) -> Any:
    """``v`` as JSON-ready data, never truncated: numpy to Python, non-finite floats to None,
    mappings and sequences element by element, other objects as their ``repr``."""
    v = py_value(v)
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(jsonable(k)): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if v is MISSING:
        return None
    return repr(v)


def display(v: Any) -> Any:
    """``v`` as a message shows it (JSON-ready): cut to 200 characters, NaN spelled out."""
    v = py_value(v)
    if v is None or v is MISSING or isinstance(v, bool | int):
        return None if v is MISSING else v
    if isinstance(v, str):
        return v[:DISPLAY_CHARS]
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    text = repr(v)
    return text if len(text) <= DISPLAY_CHARS else text[: DISPLAY_CHARS - 3] + "..."


def _show(v: Any) -> str:
    """``v`` inside a sentence: quoted when it is text."""
    if v is None:
        return "null"
    shown = display(v)
    return (
        repr(shown) if isinstance(shown, str) and not isinstance(py_value(v), float) else str(shown)
    )
