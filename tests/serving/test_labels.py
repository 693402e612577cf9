"""match_label: feedback labels against a version's classes."""

from __future__ import annotations

import pytest

from slipway.serving.labels import match_label


@pytest.mark.parametrize(
    ("label", "classes", "expected"),
    [
        (1, [0.0, 1.0], (1.0, True)),
        ("1", [0.0, 1.0], (1.0, True)),
        ("1.0", [0, 1], (1, True)),
        (1.0, [0, 1], (1, True)),
        ("yes", [0, 1], ("yes", False)),
        ("yes", ["no", "yes"], ("yes", True)),
        (1, ["0", "1"], ("1", True)),
        (1, [1, "1"], (1, True)),
        (1.0, [1, "1"], (1, True)),
        ("01", [1, "1"], ("01", False)),
        (True, [0, 1], (True, False)),
        (True, [False, True], (True, True)),
        (2, [0, 1], (2, False)),
        ("nan", [0, 1], ("nan", False)),
        ("3.5", None, (3.5, True)),
        (3, None, (3, True)),
        ("high", None, ("high", False)),
        (False, None, (False, False)),
    ],
)
def test_match_label(label, classes, expected):
    """Exact classes match; one numeric class by value is normalised; the rest do not match."""
    got = match_label(label, classes)
    assert got == expected and type(got[0]) is type(expected[0])
