"""Problem and the JSON helpers: serialisation never cuts, display does; NaN has one spelling."""

from __future__ import annotations

import math

import numpy as np
import orjson

from slipway.problems import Problem, display, jsonable
from slipway.store.predictions import to_json


def test_jsonable_keeps_long_text_and_display_cuts_it_to_200_characters():
    """Serialising keeps every character; a message shows at most 200."""
    long = "y" * 500
    assert jsonable(long) == long and jsonable({long: [long]}) == {long: [long]}
    assert display(long) == long[:200]
    assert len(display(object())) <= 200


def test_non_finite_floats_are_null_as_data_and_spelled_out_in_messages():
    """jsonable and the log writer agree (null); a problem shows the client what it sent."""
    values = {"nan": math.nan, "inf": np.float64(np.inf), "ninf": -math.inf, "ok": np.float32(1.5)}
    assert jsonable(values) == {"nan": None, "inf": None, "ninf": None, "ok": 1.5}
    assert orjson.loads(to_json(values)) == jsonable(values)
    assert jsonable(np.array([1.0, math.nan])) == [1.0, None]
    assert [display(v) for v in (math.nan, math.inf, -math.inf)] == ["NaN", "Infinity", "-Infinity"]
    problem = Problem("not_finite", "a finite number", 0, "amount", math.nan)
    assert problem.to_dict()["value"] == "NaN" and "got NaN" in problem.describe()


def test_problem_is_public_and_lives_in_one_module():
    """slipway.Problem is problems.Problem; contract.py no longer re-exports it."""
    import slipway
    import slipway.contract

    assert slipway.Problem is Problem
    assert not hasattr(slipway.contract, "Problem")
