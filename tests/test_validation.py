"""The validation fast path agrees with the general path on every input it accepts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.contract import Contract
from slipway.validation import _validate_general, validate

FRAME = pd.DataFrame(
    {
        "amount": [1.0, 5.0, 250.0],
        "count": pd.Series([0, 3, 40], dtype="int64"),
        "country": ["US", "GB", "NG"],
        "new": [True, False, True],
    }
)
CONTRACTS = {
    "mixed": Contract.learn(FRAME),
    "numeric": Contract.learn(FRAME[["amount", "count"]]),
    "array": Contract.learn(np.array([[0.0, -1.0, 5.0], [2.0, 1.0, 9.0]])),
}

values = st.one_of(
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["US", "GB", "XX", "", "1.5"]),
    st.booleans(),
    st.none(),
)


def same(a, b) -> bool:
    if a.dtype == object or b.dtype == object:
        return list(a) == list(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(CONTRACTS)),
    n=st.integers(1, 4),
    data=st.data(),
    as_lists=st.booleans(),
)
def test_fast_path_accepts_only_what_the_general_path_accepts(name, n, data, as_lists):
    """Whenever the fast path answers, the general path finds no problem and the same columns."""
    contract = CONTRACTS[name]
    rows = [{f: data.draw(values) for f in contract.names} for _ in range(n)]
    if as_lists:
        rows = [[r[f] for f in contract.names] for r in rows]
    fast = contract.plan.try_fast(contract, rows)
    general = _validate_general(contract, rows)
    if fast is not None:
        assert general.ok, general.errors
        for f in contract.names:
            assert same(fast.columns[f], general.columns[f]), f
        assert np.array_equal(
            np.asarray(fast.model_input(), dtype=float) if name != "mixed" else 0,
            np.asarray(general.model_input(), dtype=float) if name != "mixed" else 0,
        )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 250), st.integers(0, 40), st.sampled_from(["US", "GB"]),
                          st.booleans()), min_size=1, max_size=5))  # fmt: skip
def test_clean_requests_take_the_fast_path(rows):
    """Clean records never fall back to the slow path."""
    contract = CONTRACTS["mixed"]
    records = [dict(zip(contract.names, r, strict=True)) for r in rows]
    fast = contract.plan.try_fast(contract, records)
    assert fast is not None
    pd.testing.assert_frame_equal(fast.frame(), _validate_general(contract, records).frame())


def test_date_times_are_iso_strings_or_date_objects_converted_to_utc():
    """UTC strings (Z, +00:00, none) take the fast path with the general path's values; other
    offsets are converted to UTC; date objects pass; nulls only where allowed; anything else is
    the wrong type."""
    import datetime as dt

    train = pd.DataFrame(
        {"when": pd.to_datetime(["2026-01-01 10:00", "2026-01-02 00:00", None]), "x": [1.0] * 3}
    )
    contract = Contract.learn(train)
    utc = ["2026-01-01T10:00:00Z", "2026-01-01T10:00:00+00:00", "2026-01-01T10:00:00"]
    records = [{"when": w, "x": 1.0} for w in [*utc, "2026-01-01"]]
    fast = contract.plan.try_fast(contract, records)
    assert fast is not None
    expected = np.array(["2026-01-01T10:00"] * 3 + ["2026-01-01T00:00"], dtype="datetime64[ns]")
    np.testing.assert_array_equal(fast.columns["when"], expected)
    np.testing.assert_array_equal(_validate_general(contract, records).columns["when"], expected)
    others = [
        "2026-01-01T12:00:00+02:00",
        "2026-01-01T05:30:00-04:30",
        dt.datetime(2026, 1, 1, 10),
        dt.date(2026, 1, 1),
        np.datetime64("2026-01-01T10:00"),
        None,
        "soon",
        5,
        "2026-13-01",
    ]
    rows = [{"when": w, "x": 1.0} for w in others]
    assert contract.plan.try_fast(contract, rows[:2]) is None  # offsets: the general path
    checked = contract.validate(rows)
    assert [(p.row, p.code) for p in checked.errors] == [
        (6, "wrong_type"),
        (7, "wrong_type"),
        (8, "wrong_type"),
    ]
    got = checked.columns["when"]
    want = ["2026-01-01T10:00", "2026-01-01T10:00", "2026-01-01T10:00", "2026-01-01T00:00"]
    np.testing.assert_array_equal(got[[0, 1, 2, 3]], np.array(want, dtype="datetime64[ns]"))
    assert got[4] == np.datetime64("2026-01-01T10:00") and np.isnat(got[5:]).all()
    strict = Contract.learn(train.dropna())
    refused = strict.validate([{"when": None, "x": 1.0}, {"x": 1.0}])
    assert [(p.row, p.code) for p in refused.errors] == [(0, "null"), (1, "missing_field")]
    frame = pd.DataFrame({"when": pd.to_datetime(["2026-01-03"]), "x": [2.0]})
    np.testing.assert_array_equal(
        contract.validate(frame).columns["when"], frame["when"].to_numpy()
    )


def test_frames_built_from_records_have_the_training_dtypes():
    """Records become a frame with the training dtypes: a pandas categorical with the training
    categories, a ``string`` column as ``string``; a row subset keeps them."""
    train = pd.DataFrame(
        {
            "colour": pd.Categorical(["red", "blue", "red"], categories=["red", "blue", "green"]),
            "label": pd.array(["x", "y", "x"], dtype="string"),
            "n": [1.0, 2.0, 3.0],
        }
    )
    contract = Contract.learn(train)
    records = [{"colour": "blue", "label": "y", "n": 1.5}, {"colour": "red", "label": "x", "n": 2}]
    checked = contract.validate(records)
    for frame in (checked.frame(), checked.frame(np.array([1]))):
        assert list(frame["colour"].cat.categories) == ["blue", "green", "red"]
        assert str(frame["label"].dtype) == "string" and frame["n"].dtype == np.float64
    assert checked.frame(np.array([1])).iloc[0].tolist() == ["red", "x", 2.0]


def test_nullable_booleans_keep_their_nulls_and_unnamed_frames_are_positional():
    """A boolean column trained with nulls takes true, false and null; an array-trained model
    takes a frame without column names by position."""
    flags = Contract.learn(pd.DataFrame({"b": pd.Series([True, None, False], dtype=object)}))
    checked = flags.validate([{"b": True}, {"b": None}, {"b": np.bool_(False)}])
    assert checked.ok and checked.columns["b"].tolist() == [True, None, False]
    assert checked.frame()["b"].tolist() == [True, None, False]  # not cast to bool
    matrix = np.array([[0.0, 1.0], [2.0, 3.0]])
    positional = Contract.learn(matrix)
    unnamed = positional.validate(pd.DataFrame(matrix))
    assert unnamed.ok
    np.testing.assert_array_equal(unnamed.model_input(), matrix)
    named = positional.validate(pd.DataFrame(matrix, columns=["a", "b"]))
    assert {p.code for p in named.errors} == {"missing_field", "unknown_field"}


def test_a_huge_integer_or_a_pandas_null_is_reported_once_as_what_it_is():
    """In a field without nulls, 10**400 is out of range (not also a null), pd.NA and pd.NaT
    are nulls (not the wrong type); where nulls are allowed they pass."""
    strict = Contract.learn(pd.DataFrame({"n": [1.0, 2.0]}))
    checked = strict.validate([{"n": 10**400}, {"n": pd.NA}, {"n": pd.NaT}, {"n": 1.5}])
    assert [(p.row, p.code) for p in checked.errors] == [
        (0, "out_of_range"),
        (1, "null"),
        (2, "null"),
    ]
    loose = Contract.learn(pd.DataFrame({"n": [1.0, None]}))
    assert loose.validate([{"n": pd.NA}, {"n": pd.NaT}]).ok


def test_a_null_is_never_out_of_range_and_infinity_is_only_not_finite():
    """Where nulls are allowed a null passes even when the range excludes 0 (years), in records
    and frames; infinity is reported once, as not finite, not also as out of range."""
    years = Contract.learn(pd.DataFrame({"year": [2001.0, None, 2024.0]}))
    assert years.fields[0].nullable and years.fields[0].low > 0
    assert years.validate([{"year": None}, {"year": float("nan")}, {"year": 2010}]).ok
    assert years.validate(pd.DataFrame({"year": [np.nan, 2010.0]})).ok
    checked = years.validate([{"year": float("inf")}, {"year": -float("inf")}, {"year": 0.0}])
    assert [(p.row, p.code) for p in checked.errors] == [
        (0, "not_finite"),
        (1, "not_finite"),
        (2, "out_of_range"),
    ]


def test_range_edges_are_inside_on_both_paths():
    """A value exactly at a bound or at the absolute limit is accepted (by the fast path when
    the request is clean), one just past it is refused, in records and in frames."""
    train = pd.DataFrame({"n": [0.0, 1.0], "m": [0.0, 1.0]})
    contract = Contract.learn(train, bounds={"n": (-3, 7), "m": (-50, 50)}, abs_limit=20)
    edges = [{"n": -3.0, "m": 20.0}, {"n": 7, "m": -20}]
    assert contract.plan.try_fast(contract, edges) is not None
    assert contract.plan.try_fast(contract, [[-3.0, 20.0], [7, -20]]) is not None
    assert _validate_general(contract, edges).ok
    assert contract.validate(pd.DataFrame(edges)).ok
    past = [{"n": -3.5, "m": 0.0}, {"n": 7.5, "m": 0.0}, {"n": 0.0, "m": 20.5}, {"n": 0, "m": -21}]
    for rows in (past, pd.DataFrame(past)):
        checked = contract.validate(rows)
        assert [(p.row, p.field, p.code) for p in checked.errors] == [
            (0, "n", "out_of_range"),
            (1, "n", "out_of_range"),
            (2, "m", "out_of_range"),
            (3, "m", "out_of_range"),
        ]
    mixed = Contract.learn(
        train.assign(c=["a", "b"]), bounds={"n": (-3, 7), "m": (-50, 50)}, abs_limit=20
    )
    fast = mixed.plan.try_fast(mixed, [{**e, "c": "a"} for e in edges])
    assert fast is not None and fast.columns["n"].tolist() == [-3.0, 7.0]


def test_a_frame_unlike_the_training_one_is_rebuilt_from_its_checked_values():
    """A frame whose dtypes differ from training (integers for floats) is not handed over as
    given: it is rebuilt, with its boolean column's values and the numbers as floats."""
    contract = Contract.learn(pd.DataFrame({"flag": [True, False], "x": [1.0, 2.0]}))
    checked = contract.validate(pd.DataFrame({"flag": [False, True], "x": [3, 4]}))
    assert checked.ok and checked.source is None
    out = checked.frame()
    assert out["flag"].tolist() == [False, True] and out["flag"].dtype == bool
    assert out["x"].tolist() == [3.0, 4.0] and out["x"].dtype == np.float64


def test_a_category_without_nulls_refuses_each_kind_of_null():
    """None, NaN and pd.NA in a category field trained without nulls are each a null problem;
    a category field trained with nulls takes them."""
    strict = Contract.learn(pd.DataFrame({"c": ["a", "b"]}))
    checked = strict.validate([{"c": None}, {"c": float("nan")}, {"c": pd.NA}, {"c": "a"}])
    assert [(p.row, p.code) for p in checked.errors] == [(0, "null"), (1, "null"), (2, "null")]
    loose = Contract.learn(pd.DataFrame({"c": ["a", None]}))
    assert loose.validate([{"c": None}, {"c": float("nan")}, {"c": pd.NA}]).ok


def test_only_input_exactly_like_the_training_data_is_handed_over_as_given():
    """A frame with the training names, order and dtypes (categories included), or a 2-D array
    of the training dtype for an array model, is kept as the source; anything else is not."""
    train = pd.DataFrame(
        {
            "x": [1.0, 2.0],
            "y": [3.0, 4.0],
            "c": pd.Categorical(["a", "b"]),
            "k": pd.Series([1, 2], dtype="int64"),
        }
    )
    contract = Contract.learn(train)
    same = train.copy()
    assert contract.validate(same).source is same
    assert contract.validate(same).frame() is same
    unlike = [
        same[["c", "x", "y", "k"]],  # reordered
        same[["y", "x", "c", "k"]],  # reordered, the same dtypes in the same places
        same.assign(k=same["k"].astype("int32")),  # another dtype
        same.assign(c=pd.Categorical(["a", "b"], categories=["a", "b", "z"])),  # categories
    ]
    for frame in unlike:
        assert contract.validate(frame).source is None
    matrix = np.array([[0.0, 1.0], [2.0, 3.0]])
    positional = Contract.learn(matrix)
    assert positional.validate(matrix).source is matrix
    assert positional.validate(matrix.astype(np.float32)).source is None
    assert Contract.learn(train[["x"]]).validate(matrix[:, :1]).source is None  # frame model
    for rows in (matrix[0], matrix[None]):  # 1-D: one row; 3-D: not a table
        assert positional.validate(rows).source is None


def test_a_fraction_is_refused_in_an_integer_field_and_taken_in_a_number_field():
    """2.5 is the wrong type for an integer field on every path; a number field takes it, by the
    fast path, and the integer column keeps its training dtype."""
    for name in ("numeric", "mixed"):
        contract = CONTRACTS[name]
        row = {"amount": 2.5, "count": 3, "country": "US", "new": True}
        clean = [{f: row[f] for f in contract.names}]
        fast = Contract.from_dict(contract.to_dict()).plan.try_fast(contract, clean)
        assert fast is not None and fast.columns["count"].dtype == np.int64, name
        bad = [{**clean[0], "amount": 2.0, "count": 2.5}]
        assert contract.plan.try_fast(contract, bad) is None, name
        codes = [(p.field, p.code) for p in contract.validate(bad).errors]
        assert codes == [("count", "wrong_type")], name


def test_a_range_open_on_one_side_still_takes_the_fast_path():
    """A field whose range leaves a side open (``ranges=(None, 5)``) takes clean requests by the
    fast path, values far out on the open side included."""
    contract = Contract.learn(pd.DataFrame({"n": [0.0, 1.0]}), ranges={"n": (None, 5)})
    fast = contract.plan.try_fast(contract, [{"n": -1e6}, {"n": 5}])
    assert fast is not None and fast.columns["n"].tolist() == [-1e6, 5.0]
    upper = Contract.learn(pd.DataFrame({"n": [0.0, 1.0]}), ranges={"n": (-5, None)})
    assert upper.plan.try_fast(upper, [{"n": 1e6}]) is not None


def test_a_contract_without_numbers_takes_the_fast_path():
    """Only categories and booleans: a clean request is answered by the fast path."""
    contract = Contract.learn(pd.DataFrame({"c": ["a", "b"], "flag": [True, False]}))
    fast = contract.plan.try_fast(contract, [{"c": "b", "flag": False}])
    assert fast is not None and fast.columns["c"].tolist() == ["b"]


def test_a_contract_without_fields_hands_the_pipeline_one_empty_row_per_row():
    """A model fitted on zero columns (e.g. a DummyClassifier) gets n rows of nothing, from
    records, arrays and frames alike, and for a subset of rows as many rows as chosen."""
    for training in (np.zeros((3, 0)), pd.DataFrame(index=range(3))):
        contract = Contract.learn(training)
        for rows in ([{}, {}, {}, {}], np.zeros((4, 0)), pd.DataFrame(index=range(4))):
            checked = validate(contract, rows)
            assert checked.ok and checked.n_rows == 4
            given = checked.model_input()
            assert given.shape == (4, 0), (type(training), type(rows))
            assert checked.model_input(np.array([0, 2])).shape == (2, 0)


NULLABLE = Contract.learn(
    pd.DataFrame({"n": pd.Series([1, 2, None], dtype="Int64"), "x": [1.0, 2.0, 3.0]})
)


def test_a_nullable_integer_column_takes_the_fast_path_as_floats():
    """A pandas ``Int64`` field is not cast to a numpy integer dtype (numpy has no ``Int64``):
    a clean request is answered by the fast path with the value as a float."""
    fast = NULLABLE.plan.try_fast(NULLABLE, [{"n": 2, "x": 1.5}])
    assert fast is not None and fast.columns["n"].tolist() == [2.0]


def test_a_category_of_numbers_takes_the_fast_path():
    """Categories that are not all strings (a pandas Categorical of ints) still get the fast
    path for a clean request."""
    contract = Contract.learn(pd.DataFrame({"c": pd.Categorical([1, 2, 1]), "x": [1.0, 2.0, 3.0]}))
    fast = contract.plan.try_fast(contract, [{"c": 2, "x": 1.5}])
    assert fast is not None and fast.columns["c"].tolist() == [2]


def test_input_of_no_known_shape_is_one_problem_for_no_rows():
    """An empty or non-empty string, a list of strings and a 0-d array are each one
    whole-request ``wrong_shape`` problem, with no rows (never read as records or rows)."""
    for rows, said in [
        ("", "a list of records, a DataFrame or a 2-D array; got str"),
        ("oops", "got str"),
        (["ab", "cd"], "got list"),
        (np.array(5.0), "2 columns (n, x); got shape () (a single value, not rows)"),
    ]:
        checked = validate(NULLABLE, rows)
        assert [(p.code, p.row) for p in checked.errors] == [("wrong_shape", None)], rows
        assert said in checked.errors[0].describe()
        assert checked.n_rows == 0 and len(checked.bad_rows) == 0


def test_bad_rows_are_the_rows_a_shape_problem_names_or_all_of_them():
    """A row of the wrong length marks that row bad; a problem of the whole request (a missing
    column) marks every row bad and is listed before the problems of single rows."""
    checked = validate(NULLABLE, [[1, 2.0], [1], [3, 4.0]])
    assert checked.bad_rows.tolist() == [False, True, False]
    frame = validate(NULLABLE, pd.DataFrame({"n": [0.5, 1.0]}))  # no "x"; a fraction in "n"
    assert frame.bad_rows.tolist() == [True, True]
    assert [(p.row, p.field) for p in frame.errors] == [(None, "x"), (0, "n")]
