"""Guardrail checks: each trips on the treatment's excess over the control, never before its
minimum counts, and their bounds parse from the CLI's NAME=VALUE form."""

from __future__ import annotations

import numpy as np
import pytest

from slipway.exceptions import ConfigError
from slipway.experiments.guardrails import (
    ArmCounts,
    Guardrails,
    check_error_rate,
    check_failures,
    check_latency,
)

G = Guardrails()


def test_latency_trips_on_the_treatment_s_p99_excess_only():
    """A treatment 80 ms slower at p99 trips the 50 ms default; both arms slow trips nothing."""
    rng = np.random.default_rng(0)
    fast = list(rng.uniform(5, 10, 500))
    slow = list(rng.uniform(85, 90, 500))
    tripped = check_latency(G, ArmCounts(500, 0, slow), ArmCounts(500, 0, fast))
    assert tripped.tripped and tripped.value == pytest.approx(
        np.percentile(slow, 99) - np.percentile(fast, 99)
    )
    calm = check_latency(G, ArmCounts(500, 0, slow), ArmCounts(500, 0, list(slow)))
    assert not calm.tripped and calm.value == pytest.approx(0.0)


def test_latency_waits_for_enough_timings():
    """Fewer than min_requests timings in an arm: no value, not tripped, and says why."""
    check = check_latency(G, ArmCounts(50, 0, [1000.0] * 50), ArmCounts(500, 0, [1.0] * 500))
    assert check.value is None and not check.tripped and "waiting for 100" in check.detail


def test_failures_compare_rates_and_cap_double_counted_retries():
    """5% failing treatment vs 1% control trips the 1-point bound; a bad hour for both does
    not; a rate above 1 from retried merged calls counts as 1."""
    assert check_failures(G, ArmCounts(1000, 50), ArmCounts(1000, 10)).tripped
    both = check_failures(G, ArmCounts(1000, 50), ArmCounts(1000, 45))
    assert not both.tripped and both.value == pytest.approx(0.005)
    capped = check_failures(G, ArmCounts(100, 150), ArmCounts(100, 0), name="refused")
    assert capped.value == pytest.approx(1.0) and capped.name == "refused"


def test_error_rate_trips_only_when_the_always_valid_bound_clears_the_limit():
    """A 10-point error increase on 2,000 labels per arm trips; a 1-point one does not."""
    rng = np.random.default_rng(1)
    control = (rng.random(2000) < 0.10).astype(float)
    worse = (rng.random(2000) < 0.20).astype(float)
    slightly = (rng.random(2000) < 0.11).astype(float)
    tripped = check_error_rate(G, worse, control)
    assert tripped.tripped and tripped.value > G.max_error_rate_increase
    assert tripped.value < worse.mean() - control.mean()  # a lower bound, not the estimate
    assert not check_error_rate(G, slightly, control).tripped
    assert check_error_rate(G, worse[:100], control).value is None


def test_bounds_parse_from_name_value_and_refuse_nonsense():
    """NAME=VALUE pairs set bounds (min_* as integers); unknown names and negatives are
    refused naming them."""
    g = Guardrails.parse(["max_p99_increase_ms=20", "min_requests=30"])
    assert g.max_p99_increase_ms == 20.0 and g.min_requests == 30
    assert isinstance(g.min_requests, int)
    with pytest.raises(ConfigError, match="Unknown guardrail 'p99'"):
        Guardrails.parse(["p99=3"])
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        Guardrails.parse({"max_error_rate_increase": -1})
    with pytest.raises(ConfigError, match="is not NAME=VALUE"):
        Guardrails.parse(["max_p99_increase_ms"])
