"""A/B assignment: the split holds, units are sticky, ramps only ever move units into the
treatment, and requests without a unit are drawn at random."""

from __future__ import annotations

import random

import pytest

from slipway.experiments.assignment import (
    CONTROL,
    TREATMENT,
    Assigner,
    assign,
    bucket,
    new_salt,
)


@pytest.mark.parametrize("split", [0.1, 0.5, 0.9])
def test_split_holds_within_two_percent_over_10000_units(split):
    """10,000 distinct units land in the treatment at the configured share, within 2 points."""
    salt = new_salt()
    arms = [assign(salt, f"user-{i}", split) for i in range(10_000)]
    share = arms.count(TREATMENT) / len(arms)
    assert abs(share - split) <= 0.02, share


def test_split_holds_within_two_percent_for_requests_without_units():
    """Per-request random assignment keeps the split too."""
    draw = random.Random(7).random
    arms = [assign("salt", None, 0.3, draw) for _ in range(10_000)]
    assert abs(arms.count(TREATMENT) / 10_000 - 0.3) <= 0.02


def test_a_unit_always_gets_the_same_arm():
    """Asking again (any number of times, in any order) never changes a unit's arm."""
    salt = new_salt()
    first = {u: assign(salt, u, 0.5) for u in map(str, range(2000))}
    for _ in range(3):
        for u in random.sample(list(first), len(first)):
            assert assign(salt, u, 0.5) == first[u]


def test_assignment_depends_only_on_salt_and_unit():
    """Another process computing with the same salt agrees: the bucket is a pure function,
    and a new experiment (a new salt) shuffles units afresh."""
    assert bucket("abc", "user-1") == bucket("abc", "user-1")
    units = [f"u{i}" for i in range(4000)]
    a = [assign("salt-one", u, 0.5) for u in units]
    b = [assign("salt-two", u, 0.5) for u in units]
    agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(units)
    assert 0.45 < agree < 0.55  # independent arms: agree about half the time


def test_raising_the_split_never_moves_a_unit_back_to_control():
    """Ramping 10% -> 30% -> 60%: every treated unit stays treated."""
    salt = new_salt()
    units = [f"u{i}" for i in range(5000)]
    before = {u: assign(salt, u, 0.1) for u in units}
    for split in (0.3, 0.6):
        after = {u: assign(salt, u, split) for u in units}
        assert all(after[u] == TREATMENT for u in units if before[u] == TREATMENT)
        assert sum(after[u] == TREATMENT for u in units) > sum(
            before[u] == TREATMENT for u in units
        )
        before = after


def test_buckets_are_uniform():
    """Bucket points spread evenly over [0, 1): each tenth holds about a tenth of the units."""
    points = [bucket("s", str(i)) for i in range(20_000)]
    counts = [0] * 10
    for p in points:
        assert 0.0 <= p < 1.0
        counts[int(p * 10)] += 1
    assert max(counts) - min(counts) < 400
    assert assign("s", "x", 0.0) == CONTROL and assign("s", "x", 1.0) == TREATMENT


def test_the_request_path_assigner_answers_as_assign():
    """Assigner (set up once, remembering recent units) gives exactly assign()'s arms."""
    salt = new_salt()
    fast = Assigner(salt, 0.37, cached_units=100)
    for i in range(3000):
        unit = f"u{i % 500}"  # repeats, beyond the cache size
        assert fast(unit) == assign(salt, unit, 0.37)
    draw = random.Random(1).random
    assert fast(None, draw) == assign(salt, None, 0.37, random.Random(1).random)
