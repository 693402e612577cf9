"""Feedback labels against the classes of the version that made the prediction.

A classifier trained on ``0.0``/``1.0`` that is sent ``1`` or ``"1"`` would otherwise store
labels the monitor can never score. :func:`match_label` takes a label as sent and the version's
classes (None for a regressor) and returns the label to store and whether it matches:

- a label equal to one class, of the same JSON kind (``1`` and ``1.0`` are both numbers), is
  stored as that class;
- a number or a numeric string (``1``, ``1.0``, ``"1"``, ``" 1.0 "``) whose value equals the
  value of exactly one numeric-looking class is stored as that class (normalised);
- anything else (``"yes"`` for classes ``0``/``1``; ``1`` when the classes are ``1`` and
  ``"1"``) is *unmatched*: stored as sent, and reported in the response, so the sender learns
  of it at once and the monitor counts it as ``unknown_labels``.

For a regressor a number matches, a numeric string is normalised to its number, and anything
else is unmatched. Booleans match only boolean classes (``True`` is not ``1`` here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def match_label(label: Any, classes: Sequence[Any] | None) -> tuple[Any, bool]:
    """``(label to store, matches)`` for ``label`` against ``classes`` (None: a regressor)."""
    if classes is None:
        value = _number(label)
        if isinstance(label, bool) or value is None:
            return label, False
        return (label if isinstance(label, int | float) else value), True
    for c in classes:
        if _same(label, c):
            return c, True
    value = None if isinstance(label, bool) else _number(label)
    if value is not None:
        hits = [c for c in classes if not isinstance(c, bool) and _number(c) == value]
        if len(hits) == 1:
            return hits[0], True
    return label, False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _number(v: Any) -> float | None:
    """The finite value of a number or numeric string; None for anything else."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        x = float(v)
    elif isinstance(v, str):
        try:
            x = float(v.strip())
        except ValueError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None
