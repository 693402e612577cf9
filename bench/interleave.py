"""Interleaved rounds for benches whose run-to-run noise is larger than the effect measured.

A bench that compares states (no experiment, an A/B test, shadow mode...) against a baseline
runs them in rounds, each round ``B X1 B X2 ... B Xn B``: every state between two baseline
runs, the states in a new random order each round (:func:`schedule`). Each state's run is
then read as a ratio to the geometric mean of the baseline runs right before and after it
(:func:`bracketed_ratios`), so a machine that slows down or speeds up over a minute moves
both sides of the ratio alike; and the ratios of the rounds are summarised by their median and
a distribution-free interval for it (:func:`median_interval`, the sign test's order
statistics), from which a goal is read as met, missed, or not decidable at this noise
(:func:`verdict`).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def schedule(baseline: str, states: Sequence[str], rounds: int, seed: int = 0) -> list[str]:
    """The run order: ``rounds`` rounds of ``B X1 B X2 ... B Xn``, the X shuffled anew each
    round (seeded), and a final ``B`` so that every state run has a baseline on both sides."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    if baseline in states:
        raise ValueError(f"the baseline {baseline!r} is not one of the states compared to it")
    rng = random.Random(seed)
    order: list[str] = []
    for _ in range(rounds):
        shuffled = list(states)
        rng.shuffle(shuffled)
        for state in shuffled:
            order += [baseline, state]
    return [*order, baseline]


def bracketed_ratios(runs: Sequence[tuple[str, float]], baseline: str) -> dict[str, list[float]]:
    """Each non-baseline run's value over the geometric mean of the nearest baseline run
    before it and the nearest after it (the one there is, at either end), per state in run
    order.

    The geometric mean, not the arithmetic: for noisy figures such as a p99, the larger of two
    baseline runs dominates their arithmetic mean, which biases every ratio below 1 (by 14%
    for log-normal noise of sigma 0.8) where the geometric mean leaves a state that changes
    nothing at a median ratio of 1. ``runs``: (state, value) in the order they ran. A state
    with no baseline run at all has no ratios; a baseline value of 0 or NaN makes that ratio
    NaN (dropped by the summaries).
    """
    base = [i for i, (state, _) in enumerate(runs) if state == baseline]
    out: dict[str, list[float]] = {}
    for i, (state, value) in enumerate(runs):
        if state == baseline:
            continue
        before = [j for j in base if j < i][-1:]
        after = [j for j in base if j > i][:1]
        neighbours = [runs[j][1] for j in before + after]
        out.setdefault(state, [])
        if not neighbours:
            continue
        if not all(v > 0 for v in neighbours):  # NaN included
            out[state].append(math.nan)
            continue
        reference = math.prod(neighbours) ** (1 / len(neighbours))
        out[state].append(value / reference)
    return out


@dataclass(frozen=True)
class Interval:
    """A median and a distribution-free interval for it over ``n`` values.

    ``coverage``: the chance that the interval holds the true median, exactly, from the sign
    test (the values are assumed independent, nothing about their distribution); below the
    coverage asked for when there are too few values for it (then the interval is min to max).
    """

    median: float
    low: float
    high: float
    coverage: float
    n: int

    def __str__(self) -> str:
        if self.n == 0:
            return "no data"
        return f"{self.median:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _binomial_cdf(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_interval(values: Sequence[float], coverage: float = 0.9) -> Interval:
    """The median of ``values`` (NaN dropped) and the narrowest order-statistic interval
    ``[x(k), x(n+1-k)]`` whose sign-test coverage is at least ``coverage``.

    With n values the interval between the k-th smallest and the k-th largest holds the
    median with probability ``1 - 2 P(Binomial(n, 1/2) <= k - 1)``: 8 values give 93% for
    the 2nd and 7th, 10 give 98% for the 2nd and 9th and 89% for the 3rd and 8th. With fewer
    than 5 values no interval reaches 90%; min to max is returned with its lower coverage.
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), e.g. 0.9, not {coverage}")
    xs = sorted(v for v in values if not math.isnan(v))
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0.0, 0)
    k = 1  # min to max: coverage 1 - 2 / 2**n
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _binomial_cdf(k, n) >= coverage:
        k += 1
    achieved = 1 - 2 * _binomial_cdf(k - 1, n)
    return Interval(statistics.median(xs), xs[k - 1], xs[n - k], achieved, n)


def verdict(interval: Interval, limit: float, *, at_most: bool) -> str:
    """ "met" when the whole interval is on the goal's side of ``limit`` (``at_most``: a ratio
    that must not exceed it; else one that must not fall below it), "missed" when the whole
    interval is on the other side, else "cannot tell at this noise" with the side the median
    leans to."""
    if interval.n == 0:
        return "cannot tell: no data"
    good = (lambda v: v <= limit) if at_most else (lambda v: v >= limit)
    if good(interval.low) and good(interval.high):
        return "met"
    if not good(interval.low) and not good(interval.high):
        return "missed"
    lean = "met" if good(interval.median) else "missed"
    return f"cannot tell at this noise (median leans {lean})"
