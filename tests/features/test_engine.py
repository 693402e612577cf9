"""The point-in-time engine: no leakage, equal to a brute-force reference on random histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import slipway.features as sf
from slipway.exceptions import FeatureDefinitionError
from slipway.features.engine import _sort_order
from tests.features.helpers import START, history

WINDOWS = ["1s", "90s", "1h", "1d", "30d"]


def brute(events: pd.DataFrame, rows: pd.DataFrame, agg: str, window: str | None, where=None):
    """One feature per row by filtering the events of the row's card, one row at a time."""
    out = []
    for r in rows.itertuples():
        e = events[(events.card_id == r.card_id) & (events.ts < r.ts)]
        if window is not None:
            e = e[e.ts >= r.ts - pd.Timedelta(sf.definitions.parse_window(window), unit="us")]
        if where:
            for k, v in where.items():
                e = e[e[k] == v]
        values = e.amount.dropna()
        if agg == "count":
            out.append(len(e))
        elif agg == "sum":
            out.append(values.sum())
        elif agg == "count_distinct":
            out.append(e.merchant.nunique())
        elif agg == "last":
            top = e.dropna(subset=["amount"])
            top = top[top.ts == top.ts.max()] if len(top) else top
            out.append(top.amount.max() if len(top) else np.nan)
        else:
            out.append(getattr(values, agg)() if len(values) else np.nan)
    return np.asarray(out, dtype=float)


def compute(events, rows, agg, window, where=None):
    source = sf.EventSource(events, entity="card_id", timestamp="ts", name="tx")
    column = None if agg == "count" else ("merchant" if agg == "count_distinct" else "amount")
    feature = sf.Aggregate("f", source, agg, column, window, where=where)
    return sf.training_frame(rows, [feature], at="ts")["f"].to_numpy(dtype=float)


@st.composite
def histories(draw):
    """Small event histories with ties, nulls and rows at exactly an event's time."""
    n = draw(st.integers(0, 40))
    cards = ["a", "b", "c"]
    times = draw(st.lists(st.integers(0, 200), min_size=n, max_size=n))
    events = pd.DataFrame(
        {
            "card_id": draw(st.lists(st.sampled_from(cards), min_size=n, max_size=n)),
            "ts": START + pd.to_timedelta(np.asarray(times, dtype=np.int64) * 30, unit="s"),
            "amount": draw(
                st.lists(
                    st.one_of(st.none(), st.floats(-1e3, 1e3, allow_nan=False)),
                    min_size=n,
                    max_size=n,
                )
            ),
            "merchant": draw(st.lists(st.sampled_from(["x", "y"]), min_size=n, max_size=n)),
        }
    )
    events["amount"] = events["amount"].astype(float)
    m = draw(st.integers(1, 15))
    row_times = draw(st.lists(st.integers(0, 210), min_size=m, max_size=m))
    if n:  # some rows exactly at an event's time: that event must not count
        k = min(3, m, n)
        row_times[:k] = times[:k]
    rows = pd.DataFrame(
        {
            "card_id": draw(st.lists(st.sampled_from([*cards, "unknown"]), min_size=m, max_size=m)),
            "ts": START + pd.to_timedelta(np.asarray(row_times, dtype=np.int64) * 30, unit="s"),
        }
    )
    return events, rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=histories(),
    agg=st.sampled_from(["count", "sum", "mean", "min", "max", "last", "count_distinct"]),
    window=st.sampled_from([*WINDOWS, None]),
    time_ordered=st.booleans(),
)
def test_aggregates_equal_a_brute_force_reference_and_never_leak(data, agg, window, time_ordered):
    """Every aggregate equals filtering events strictly before each row (property test), with
    events in any order or in time order (the engine's faster sort)."""
    events, rows = data
    if time_ordered:
        events = events.sort_values("ts", kind="stable").reset_index(drop=True)
    mine = compute(events, rows, agg, window)
    theirs = brute(events, rows, agg, window)
    np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-9, equal_nan=True)


@settings(max_examples=20, deadline=None)
@given(data=histories(), shift=st.integers(0, 5))
def test_events_at_or_after_a_rows_time_never_change_its_features(data, shift):
    """An event of the row's own entity at or after the row's time leaves its features alone."""
    events, rows = data
    for i in range(min(len(rows), 4)):
        row = rows.iloc[[i]]
        future = row.assign(ts=row.ts + pd.Timedelta(seconds=shift), amount=1e6, merchant="z")
        more = pd.concat([events, future], ignore_index=True)
        for agg in ("count", "sum", "max", "last", "count_distinct"):
            np.testing.assert_array_equal(
                compute(more, row, agg, "30d"), compute(events, row, agg, "30d")
            )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=histories())
def test_many_aggregates_in_one_call_each_equal_the_reference(data):
    """Aggregates computed together (as serving does: shared spans, filters and prefix
    counts) each equal the brute force, whatever their filter on one column and window."""
    events, rows = data
    source = sf.EventSource(events, entity="card_id", timestamp="ts", name="tx")
    cases, feats = {}, []
    for agg in ("count", "sum", "mean", "max", "last", "count_distinct"):
        column = None if agg == "count" else ("merchant" if agg == "count_distinct" else "amount")
        for window in ("1h", None):
            for where in (None, {"merchant": "x"}, {"merchant": "y"}):
                name = f"{agg}_{window}_{where and where['merchant']}"
                cases[name] = (agg, window, where)
                feats.append(sf.Aggregate(name, source, agg, column, window, where=where))
    out = sf.training_frame(rows, feats, at="ts")
    for name, (agg, window, where) in cases.items():
        np.testing.assert_allclose(
            out[name].to_numpy(dtype=float), brute(events, rows, agg, window, where),
            rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name,
        )  # fmt: skip


def test_where_filter_and_row_order_are_kept():
    """A filtered count equals the brute force, and rows come back in input order."""
    events = history(500, cards=5)
    rows = events.sample(80, random_state=3)[["card_id", "ts"]]
    got = compute(events, rows, "count", "7d", where={"merchant": "travel"})
    np.testing.assert_array_equal(got, brute(events, rows, "count", "7d", {"merchant": "travel"}))
    source = sf.EventSource(events, entity="card_id", timestamp="ts", name="tx")
    out = sf.training_frame(rows, [sf.Aggregate("n", source, "count", window="1d")], at="ts")
    assert out.index.equals(rows.index) and out.card_id.tolist() == rows.card_id.tolist()


def test_unknown_entity_gets_zero_counts_and_null_or_fillna():
    """No events: count and sum 0, mean null, or the fillna value."""
    events = history(100, cards=3)
    source = sf.EventSource(events, entity="card_id", timestamp="ts", name="tx")
    feats = [
        sf.Aggregate("n", source, "count", window="1d"),
        sf.Aggregate("s", source, "sum", column="amount", window="1d"),
        sf.Aggregate("m", source, "mean", column="amount", window="1d"),
        sf.Aggregate("f", source, "mean", column="amount", window="1d", fillna=-1.0),
    ]
    rows = pd.DataFrame({"card_id": ["nobody"], "ts": [START + pd.Timedelta(days=5)]})
    out = sf.training_frame(rows, feats, at="ts").iloc[0]
    assert (out.n, out.s, out.f) == (0, 0.0, -1.0) and np.isnan(out.m)


def _star(*values):
    return values


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda s: sf.Aggregate("x", s, "median", "amount", "1d"), "not an aggregation"),
        (lambda s: sf.Aggregate("x", s, "mean", window="1d"), "needs column"),
        (lambda s: sf.Aggregate("x", s, "count", window="7 days"), "not a window"),
        (lambda s: sf.Aggregate("x y", s, "count", window="1d"), "not valid"),
        (lambda s: sf.Aggregate("x", s, "count", window="1d", fillna=0), "already 0"),
        (lambda s: sf.FeatureSet("set", "user_id", [sf.Aggregate("x", s, "count")]), "keyed by"),
        (lambda s: sf.row_feature(_star), "cannot name"),
    ],
)
def test_bad_definitions_are_refused_with_the_reason(make, match):
    """Each mistake in a definition is an error naming it."""
    source = sf.EventSource("tx", entity="card_id", timestamp="ts")
    with pytest.raises(FeatureDefinitionError, match=match):
        make(source)


def test_cycles_and_unknown_inputs_are_clear_errors():
    """Row features reading each other in a cycle, or a field the input lacks, are refused."""

    @sf.row_feature
    def a(b):
        return b

    @sf.row_feature
    def b(a):
        return a

    with pytest.raises(FeatureDefinitionError, match="cycle: a -> b -> a"):
        sf.resolve([a, b])

    @sf.row_feature
    def c(missing_field):
        return missing_field

    rows = pd.DataFrame({"ts": [START]})
    with pytest.raises(FeatureDefinitionError, match="missing_field"):
        sf.training_frame(rows, [c], at="ts")


def test_code_hash_changes_with_a_window_a_fillna_or_a_functions_source():
    """The hash names the definition: any change to a spec or a function's source moves it."""
    source = sf.EventSource("tx", entity="card_id", timestamp="ts")

    def defs(window="7d", fillna=0.0):
        return sf.resolve([sf.Aggregate("m", source, "mean", "amount", window, fillna=fillna)])

    base = defs().code_hash
    assert defs().code_hash == base
    assert defs(window="3d").code_hash != base and defs(fillna=1.0).code_hash != base

    def f1(x):
        return x + 1

    def f2(x):
        return x + 2

    f2.__name__ = "f1"
    assert sf.resolve([sf.row_feature(f1)]).code_hash != sf.resolve([sf.row_feature(f2)]).code_hash


@pytest.mark.parametrize("entities", [50, 70_000])
def test_time_ordered_events_sort_like_the_general_sort(entities):
    """Events in time order are put in (entity, time) order exactly as a stable sort of the
    keys would, with entity codes of one and of two 16-bit digits."""
    rng = np.random.default_rng(entities)
    n = 200_000
    codes = rng.integers(0, entities, n).astype(np.int64)
    ts = np.sort(rng.integers(0, 10**9, n))
    ts[1000:1100] = ts[1000]  # ties keep their order
    key = codes * (10**9 + 2) + ts
    np.testing.assert_array_equal(_sort_order(key, codes, ts), np.argsort(key, kind="stable"))


def test_many_rows_over_many_events_equal_the_reference_on_a_sample():
    """Beyond the small-input paths (20,000 events and more), rows in random order get the
    features of a per-row filter, in their own order."""
    events = history(30_000, cards=300, days=90, seed=4).sample(frac=1.0, random_state=5)
    rows = history(5_000, cards=320, days=95, seed=6)[["card_id", "ts"]].sample(
        frac=1.0, random_state=7
    )
    for agg, window in (("count", "30d"), ("mean", "7d"), ("max", "1d"), ("last", None)):
        got = compute(events, rows, agg, window)
        pick = np.arange(0, len(rows), 50)
        want = brute(events, rows.iloc[pick], agg, window)
        np.testing.assert_allclose(got[pick], want, rtol=1e-9, atol=1e-9, equal_nan=True)
