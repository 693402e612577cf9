"""The validation fast path agrees with the general path on every input it accepts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.contract import Contract
from slipway.validation import _validate_general

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
