"""The input contract: what it learns from training data and how it judges requests."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from slipway.contract import Contract, FieldSpec
from slipway.exceptions import ConfigError, ContractViolation, InvalidModel


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [10.0, 20.0, 110.0, np.nan],
            "hour": pd.Series([0, 5, 23, 12], dtype="int64"),
            "country": ["US", "GB", "US", None],
            "is_new": [True, False, False, True],
        }
    )


@pytest.fixture
def contract(frame: pd.DataFrame) -> Contract:
    return Contract.learn(frame)


def codes(checked) -> list[tuple]:
    return [(p.row, p.field, p.code) for p in checked.errors]


def test_learns_names_kinds_ranges_categories_and_nulls(contract: Contract):
    """Each column's kind, range, categories and null-ness come from the training frame."""
    f = {s.name: s for s in contract.fields}
    assert contract.names == ["amount", "hour", "country", "is_new"]
    assert (f["amount"].kind, f["amount"].min, f["amount"].max) == ("number", 10.0, 110.0)
    assert f["amount"].nullable and not f["hour"].nullable
    assert f["hour"].kind == "integer"
    assert f["country"].kind == "category" and f["country"].categories == ("GB", "US")
    assert f["country"].nullable
    assert f["is_new"].kind == "boolean"


def test_default_band_is_ten_widths_beyond_the_training_range(contract: Contract):
    """The plausibility band extends the range by 10x its width each side."""
    amount = contract.fields[0]
    assert (amount.low, amount.high) == (10.0 - 1000.0, 110.0 + 1000.0)
    ok = contract.validate([{"amount": 1109.0, "hour": 1, "country": "US", "is_new": True}])
    bad = contract.validate([{"amount": 1111.0, "hour": 1, "country": "US", "is_new": True}])
    assert ok.ok and codes(bad) == [(0, "amount", "out_of_range")]


@pytest.mark.parametrize(("value", "band"), [(5.0, (-45.0, 55.0)), (0.0, (-10.0, 10.0))])
def test_a_constant_training_column_gets_a_band_of_its_magnitude(value, band):
    """A column with one value has no width: the band uses |value| (or 1 at zero) instead,
    so other plausible values pass and only implausible ones are refused."""
    c = Contract.learn(pd.DataFrame({"x": [value] * 5, "n": pd.Series([3] * 5, dtype="int64")}))
    x, n = c.fields
    assert (x.low, x.high) == band and (n.low, n.high) == (-27.0, 33.0)
    inside = [{"x": band[0] + 0.5, "n": -26}, {"x": value + 1.0, "n": 4}, {"x": band[1], "n": 33}]
    assert c.validate(inside).ok
    outside = c.validate([{"x": band[1] + 1.0, "n": 3}, {"x": value, "n": 34}])
    assert codes(outside) == [(0, "x", "out_of_range"), (1, "n", "out_of_range")]


def test_absolute_limit_applies_even_inside_a_wide_band():
    """|x| > 1e12 is rejected whatever the training range."""
    c = Contract.learn(pd.DataFrame({"x": [-1e13, 1e13]}))
    assert codes(c.validate([{"x": 2e12}])) == [(0, "x", "out_of_range")]
    assert c.validate([{"x": 5e11}]).ok


def test_bounds_override_the_band():
    """Explicit bounds replace the learned band for that field."""
    c = Contract.learn(pd.DataFrame({"x": [0.0, 1.0]}), bounds={"x": (0.0, 2.0)})
    assert codes(c.validate([{"x": 2.5}])) == [(0, "x", "out_of_range")]


def test_every_problem_of_a_request_is_reported_at_once(contract: Contract):
    """Missing, unknown, wrong type, NaN, Inf, out of range, unseen: all in one pass."""
    rows = [
        {"amount": "12.5", "hour": 3, "country": "US", "is_new": 1},
        {"amount": float("inf"), "hour": 2.5, "country": "FR", "is_new": True, "extra": 1},
        {"hour": None, "country": "US", "is_new": False},
        {"amount": 5e12, "hour": True, "country": 7, "is_new": None},
    ]
    checked = contract.validate(rows)
    assert codes(checked) == [
        (0, "amount", "wrong_type"),
        (0, "is_new", "wrong_type"),
        (1, "amount", "not_finite"),
        (1, "hour", "wrong_type"),
        (1, "country", "unseen_category"),
        (1, "extra", "unknown_field"),
        (2, "amount", "missing_field"),
        (2, "hour", "null"),
        (3, "amount", "out_of_range"),
        (3, "hour", "wrong_type"),
        (3, "country", "wrong_type"),
        (3, "is_new", "null"),
    ]
    assert checked.bad_rows.tolist() == [True, True, True, True]


def test_problem_messages_name_row_field_value_and_expectation(contract: Contract):
    """A problem reads as one actionable sentence and serializes to plain JSON."""
    checked = contract.validate(
        [{"amount": float("nan"), "hour": 300, "country": "US", "is_new": True}]
    )
    (hour,) = [p for p in checked.errors if p.field == "hour"]
    assert (
        hour.describe() == "row 0, field 'hour': got 300, expected an integer between -230 and 253"
    )
    data = hour.to_dict()
    assert data["value"] == 300 and data["code"] == "out_of_range"
    bad_json = contract.validate(
        [{"amount": float("inf"), "hour": 1, "country": "US", "is_new": True}]
    )
    assert json.loads(json.dumps(bad_json.errors[0].to_dict()))["value"] == "Infinity"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            FieldSpec("x", "number", "float64", low=-1.5, high=2.0),
            "a finite number between -1.5 and 2",
        ),
        (FieldSpec("x", "number", "float64", low=-1.5), "a finite number"),
        (FieldSpec("x", "integer", "int64", low=0, high=9), "an integer between 0 and 9"),
        (FieldSpec("x", "integer", "int64"), "an integer"),
        (FieldSpec("x", "boolean", "bool"), "true or false"),
        (FieldSpec("x", "datetime", "datetime64[ns]"), "a date-time (ISO 8601)"),
        (FieldSpec("x", "category", "object"), "a string"),
        (FieldSpec("x", "category", "object", categories=("a", 2)), "one of 'a', 2"),
        (
            FieldSpec("x", "category", "object", categories=tuple("abcdefghij")),
            "one of " + ", ".join(repr(c) for c in "abcdefghij"),
        ),
        (
            FieldSpec("x", "category", "object", categories=tuple("abcdefghijk")),
            "one of " + ", ".join(repr(c) for c in "abcdefghij") + ", ... (11 in all)",
        ),
    ],
)
def test_each_kind_of_field_describes_what_it_expects(spec, expected):
    """The "expected ..." of a problem, per kind: bounds, the first ten categories, a count."""
    assert spec.expectation() == expected


def test_nan_is_allowed_only_where_training_had_nulls(contract: Contract):
    """amount had a null in training, hour did not."""
    checked = contract.validate(
        [{"amount": float("nan"), "hour": float("nan"), "country": None, "is_new": True}]
    )
    assert codes(checked) == [(0, "hour", "null")]


def test_strict_types_refuse_bools_and_numeric_strings(contract: Contract):
    """true is not a number and "1.5" is not a number: no silent coercion."""
    checked = contract.validate([{"amount": True, "hour": "3", "country": "US", "is_new": "true"}])
    assert codes(checked) == [
        (0, "amount", "wrong_type"),
        (0, "hour", "wrong_type"),
        (0, "is_new", "wrong_type"),
    ]


def test_unseen_category_can_be_flagged_instead_of_rejected(frame: pd.DataFrame):
    """With unseen='flag' the row passes and a warning names the category."""
    c = Contract.learn(frame, unseen="flag")
    checked = c.validate([{"amount": 1.0, "hour": 1, "country": "FR", "is_new": True}])
    assert checked.ok
    assert [(w.field, w.value, w.code) for w in checked.warnings] == [
        ("country", "FR", "unseen_category")
    ]


def test_arrays_get_positional_names_and_a_plain_vector_row_works():
    """A 20-column array trains a contract named feature_0..feature_19; lists validate."""
    X = np.random.default_rng(0).normal(size=(50, 20))
    c = Contract.learn(X)
    assert c.names == [f"feature_{i}" for i in range(20)] and c.input_kind == "array"
    checked = c.validate([X[0].tolist()])
    assert checked.ok
    np.testing.assert_array_equal(checked.model_input(), X[:1])
    named = c.validate([dict(zip(c.names, X[1].tolist(), strict=True))])
    np.testing.assert_array_equal(named.model_input(), X[1:2])


def test_wrong_width_is_one_clear_problem():
    """A row with the wrong number of values is reported with both counts."""
    c = Contract.learn(np.zeros((3, 4)) + np.arange(4))
    checked = c.validate([[1.0, 2.0, 3.0]])
    assert [p.describe() for p in checked.errors] == ["row 0: expected 4 values, got 3"]
    shape = c.validate(np.zeros((2, 5)))
    assert shape.errors[0].code == "wrong_shape" and shape.bad_rows.all()


def test_dataframe_columns_are_reordered_and_extras_reported(frame: pd.DataFrame):
    """Columns are matched by name; unknown and missing columns are whole-request problems."""
    c = Contract.learn(frame)
    shuffled = frame[["is_new", "country", "hour", "amount"]]
    checked = c.validate(shuffled)
    assert checked.ok and list(checked.frame().columns) == c.names
    broken = c.validate(frame.drop(columns=["hour"]).assign(color="red"))
    assert codes(broken) == [(None, "hour", "missing_field"), (None, "color", "unknown_field")]


def test_dataframe_input_passes_through_with_training_dtypes(frame: pd.DataFrame):
    """A conforming frame comes out with the same values and dtypes it went in with."""
    c = Contract.learn(frame)
    out = c.validate(frame).frame()
    pd.testing.assert_frame_equal(out, frame, check_dtype=False)
    assert out["hour"].dtype == np.int64


def test_round_trip_through_json(contract: Contract):
    """to_dict/from_dict restore an equal contract."""
    again = Contract.from_dict(json.loads(json.dumps(contract.to_dict())))
    assert again == contract


def test_json_schema_describes_types_bounds_enums_and_nullability(contract: Contract):
    """The JSON Schema names every field as required and forbids others."""
    schema = contract.json_schema()
    assert schema["required"] == contract.names and schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["hour"] == {"type": "integer", "minimum": -230, "maximum": 253}
    assert props["country"]["anyOf"][0] == {"type": "string", "enum": ["GB", "US"]}
    assert props["is_new"] == {"type": "boolean"}
    assert contract.validate([contract.example()]).ok


def test_json_schema_of_non_text_categories_accepts_what_validation_accepts():
    """Integer categories are an enum of integers (not strings); mixed flagged ones any scalar."""
    frame = pd.DataFrame({"level": pd.Categorical([1, 2, 3, 1]), "tag": ["a", 1, "b", 2]})
    refusing = Contract.learn(frame)
    props = refusing.json_schema()["properties"]
    assert props["level"] == {"enum": [1, 2, 3]}
    assert refusing.validate([{"level": 2, "tag": 1}]).ok
    flagging = Contract.learn(frame, unseen="flag")
    assert flagging.json_schema()["properties"]["tag"] == {"type": ["string", "number", "boolean"]}
    assert flagging.validate([{"level": 2, "tag": 7.5}]).ok


def test_high_cardinality_text_is_not_category_checked():
    """A column with more unique values than the cap accepts any string."""
    ids = pd.DataFrame({"id": [f"u{i}" for i in range(10_001)]})
    c = Contract.learn(ids)
    assert c.fields[0].categories is None
    assert c.validate([{"id": "never-seen"}]).ok
    at_the_cap = Contract.learn(ids.head(10_000)).fields[0]  # 10,000 is still a category set
    assert at_the_cap.categories is not None and len(at_the_cap.categories) == 10_000


def test_every_column_kind_is_learned_from_its_dtype_or_its_values():
    """Categorical, datetime, boolean and numeric dtypes, and object columns by their values."""
    frame = pd.DataFrame(
        {
            "cat": pd.Categorical(["b", "a", "b"]),
            "when": pd.to_datetime(["2026-01-01", "2026-01-02", None]),
            "flag": [True, False, True],
            "obj_num": pd.Series([1, 2.5, None], dtype=object),
            "obj_bool": pd.Series([True, None, False], dtype=object),
            "obj_text": pd.Series(["x", 1, None], dtype=object),
            "empty": [np.nan, np.nan, np.nan],
        }
    )
    got = {
        f.name: (f.kind, f.dtype, f.nullable, f.min, f.max, f.categories)
        for f in Contract.learn(frame).fields
    }
    assert got == {
        "cat": ("category", "category", False, None, None, ("a", "b")),
        "when": ("datetime", str(frame["when"].dtype), True, None, None, None),
        "flag": ("boolean", "bool", False, None, None, None),
        "obj_num": ("number", "float64", True, 1.0, 2.5, None),
        "obj_bool": ("boolean", "bool", True, None, None, None),
        "obj_text": ("category", "object", True, None, None, (1, "x")),
        "empty": ("number", "float64", True, None, None, None),
    }
    empty = Contract.learn(frame).fields[-1]
    assert (empty.low, empty.high) == (None, None) and empty.expectation() == "a finite number"


def test_learning_refuses_bad_options_and_shapes():
    """A bad unseen policy, a 1-D array and bounds for unknown columns are refused by name."""
    with pytest.raises(ConfigError, match="unseen must be 'reject' or 'flag', not 'drop'"):
        Contract.learn(pd.DataFrame({"x": [1.0]}), unseen="drop")  # type: ignore[arg-type]
    with pytest.raises(InvalidModel, match=r"X_train must be 2-D; got an array of shape \(3,\)"):
        Contract.learn(np.zeros(3))
    with pytest.raises(
        InvalidModel, match=r"bounds name columns that X_train does not have: \['y'\]"
    ):
        Contract.learn(pd.DataFrame({"x": [1.0]}), bounds={"y": (0, 1)})


def test_example_row_is_the_middle_of_each_range_and_the_first_category(contract: Contract):
    """example() is a valid row: range midpoints (integers rounded), False, the first category."""
    assert contract.example() == {"amount": 60.0, "hour": 12, "country": "GB", "is_new": False}
    odd = Contract.learn(
        pd.DataFrame({"x": [0.0, 0.123456], "t": pd.Series(["a", "b"], dtype=object)})
    )
    assert odd.example() == {"x": 0.0617, "t": "a"}
    never_seen = Contract.learn(pd.DataFrame({"x": [np.nan, np.nan]}))
    assert never_seen.example() == {"x": None}  # no range learned: no value to suggest


def test_json_schema_bounds_are_exact_integers_only_where_floats_are_exact():
    """Bounds print as integers when whole and below 2**53, else as the floats they are; a
    flagged-unseen category field has no enum."""
    c = Contract.learn(
        pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0], "t": ["a", "b"]}),
        bounds={"x": (-1.5, 2.0**53 - 1), "y": (-(2.0**53), 2.0**60)},
        unseen="flag",
    )
    props = c.json_schema()["properties"]
    x, y = props["x"], props["y"]
    assert (x["minimum"], type(x["minimum"])) == (-1.5, float)
    assert (x["maximum"], type(x["maximum"])) == (2**53 - 1, int)
    assert (y["minimum"], type(y["minimum"])) == (-(2.0**53), float)
    assert (y["maximum"], type(y["maximum"])) == (2.0**60, float)
    assert props["t"] == {"type": "string"}


def test_validate_clean_answers_only_for_clean_rows(contract: Contract):
    """validate_clean (the fast path) validates clean records and declines anything else."""
    row = {"amount": 12.5, "hour": 3, "country": "US", "is_new": False}
    clean = contract.validate_clean([row])
    assert clean is not None and clean.ok and clean.n_rows == 1
    assert contract.validate_clean([{**row, "hour": "3"}]) is None


def test_raise_for_errors_lists_problems(contract: Contract):
    """ContractViolation carries every problem and says how many there are."""
    checked = contract.validate([{"amount": "x"}])
    with pytest.raises(ContractViolation, match="4 problem") as info:
        checked.raise_for_errors("fraud:1")
    assert len(info.value.problems) == 4
    assert isinstance(info.value, ValueError)


def test_not_a_table_is_a_wrong_shape_problem(contract: Contract):
    """A scalar or a string is refused with a message naming the accepted shapes."""
    checked = contract.validate("amount=3")
    assert checked.errors[0].code == "wrong_shape"
    assert "list of records" in checked.errors[0].describe()


def test_integers_beyond_float_range_are_out_of_range_not_a_crash(contract: Contract):
    """10**400 cannot become a float: it is reported, not raised."""
    checked = contract.validate([{"amount": 10**400, "hour": 1, "country": "US", "is_new": True}])
    assert codes(checked) == [(0, "amount", "out_of_range")]


# -- what the pipeline handles, and per-field overrides ------------------------------------


ROW = {"amount": 20.0, "hour": 1, "country": "US", "is_new": True}


def test_nullable_override_lets_nulls_through_and_can_refuse_them(frame: pd.DataFrame):
    """nullable=[...] allows nulls training never had; {field: False} refuses ones it had."""
    c = Contract.learn(frame, nullable={"hour": True, "amount": False})
    f = {s.name: s for s in c.fields}
    assert f["hour"].nullable and f["hour"].null_reason == "set at registration (nullable=)"
    assert not f["amount"].nullable and f["amount"].null_reason is None
    checked = c.validate([{**ROW, "hour": None, "amount": None}])
    assert codes(checked) == [(0, "amount", "null")]
    assert Contract.learn(frame, nullable=["hour"]).validate([{**ROW, "hour": None}]).ok


def test_unseen_per_field_flags_one_field_and_keeps_the_default_elsewhere():
    """unseen={"country": "flag"}: country warns, merchant still refuses."""
    frame = pd.DataFrame({"country": ["US", "GB"], "merchant": ["a", "b"]})
    c = Contract.learn(frame, unseen={"country": "flag"})
    checked = c.validate([{"country": "FR", "merchant": "z"}])
    assert codes(checked) == [(0, "merchant", "unseen_category")]
    assert [(w.field, w.code) for w in checked.warnings] == [("country", "unseen_category")]
    schema = c.json_schema()["properties"]
    assert "enum" not in schema["country"] and schema["merchant"]["enum"] == ["a", "b"]
    assert Contract.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_ranges_replace_the_band_and_may_leave_a_side_open():
    """ranges={"x": (0, None)}: below 0 is refused, any size above is fine (up to abs_limit)."""
    c = Contract.learn(pd.DataFrame({"x": [1.0, 2.0]}), ranges={"x": (0.0, None)})
    assert c.validate([{"x": 1e9}]).ok
    assert codes(c.validate([{"x": -0.5}])) == [(0, "x", "out_of_range")]
    assert c.fields[0].range_reason == "set at registration (ranges=)"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nullable": ["ghost"]}, r"nullable names columns not in X_train: \['ghost'\]"),
        ({"unseen": {"country": "maybe"}}, r"unseen\['country'\] must be 'reject' or 'flag'"),
        ({"ranges": {"amount": (5, 1)}}, r"ranges\['amount'\] has low 5 above high 1"),
        (
            {"ranges": {"amount": (0, 1)}, "bounds": {"amount": (0, 2)}},
            r"bounds and ranges both set \['amount'\]",
        ),
    ],
)
def test_overrides_naming_nothing_or_nonsense_are_refused(frame, options, message):
    """A typo in an override is an error naming it, never silently ignored."""
    with pytest.raises(ValueError, match=message):
        Contract.learn(frame, **options)


def test_what_the_pipeline_handles_is_allowed_with_its_reason(frame: pd.DataFrame):
    """tolerated= (from the fitted pipeline) allows nulls and flags unseen, unless overridden."""
    handled = {
        "hour": {"null": "SimpleImputer (step pre__num)"},
        "country": {"unseen": "OneHotEncoder(handle_unknown='ignore') (step pre__cat)"},
    }
    c = Contract.learn(frame, unseen=None, tolerated=handled)
    f = {s.name: s for s in c.fields}
    assert (
        f["hour"].nullable and f["hour"].null_reason == "handled by SimpleImputer (step pre__num)"
    )
    assert c.unseen_for(f["country"]) == "flag"
    assert f["country"].unseen_reason.startswith("handled by OneHotEncoder")
    assert f["amount"].null_reason == "in the training data"
    checked = c.validate([{**ROW, "hour": None, "country": "FR"}])
    assert checked.ok and checked.warnings[0].field == "country"
    strict = Contract.learn(frame, unseen="reject", tolerated=handled)
    assert codes(strict.validate([{**ROW, "country": "FR"}])) == [(0, "country", "unseen_category")]
    refused = Contract.learn(frame, unseen=None, nullable={"hour": False}, tolerated=handled)
    assert codes(refused.validate([{**ROW, "hour": None}])) == [(0, "hour", "null")]


def test_refusals_say_how_to_allow_a_null_or_an_unseen_category(contract: Contract):
    """The problem's expectation names the register option that would let the value in."""
    checked = contract.validate([{**ROW, "hour": None, "country": "FR"}])
    null, unseen = checked.errors
    assert "register the model with nullable=['hour']" in null.expected
    assert "SimpleImputer" in null.describe()
    assert "register the model with unseen={'country': 'flag'}" in unseen.expected
    assert "OneHotEncoder(handle_unknown='ignore')" in unseen.describe()
