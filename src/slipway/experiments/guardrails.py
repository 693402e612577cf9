"""Guardrails: bounds that stop an A/B test on their own when the treatment hurts.

Three checks, each comparing the treatment with the control over the same period, so a bad
hour for everyone trips nothing:

- ``error_rate``: the treatment's error rate from labels exceeds the control's by more than
  ``max_error_rate_increase``, judged by the lower end of the always-valid confidence
  sequence (so checking every few seconds does not make false stops likely);
- ``failures`` and ``refused``: the share of the treatment's requests whose model call raised
  (a 5xx), or that its contract refused (a 422), exceeds the control's by more than
  ``max_failure_rate_increase``;
- ``latency``: the treatment's p99 latency exceeds the control's by more than
  ``max_p99_increase_ms`` (serving workers time each model call; reports read request latency
  from the log).

Shadow deployments have no guardrails: their answers never reach anyone, so a failing or slow
shadow is reported, not stopped.
"""

from __future__ import annotations

import math
from collections.abc import MutableSequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from slipway.exceptions import ConfigError
from slipway.experiments import stats


@dataclass(frozen=True)
class Guardrails:
    """The bounds of one experiment (stored in its config); see docs/experiments.md."""

    max_error_rate_increase: float = 0.02
    max_failure_rate_increase: float = 0.01
    max_p99_increase_ms: float = 50.0
    min_requests: int = 100  # per arm, before the failure and latency checks count
    min_labels: int = 200  # per arm, before the error-rate check counts

    @classmethod
    def parse(cls, items: list[str] | dict[str, Any] | None) -> Guardrails:
        """From ``["name=value", ...]`` (the CLI's ``--guardrail``) or a mapping."""
        if not items:
            return cls()
        pairs: dict[str, Any] = {}
        if isinstance(items, dict):
            pairs = dict(items)
        else:
            for item in items:
                name, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"Guardrail {item!r} is not NAME=VALUE.")
                pairs[name.strip()] = value.strip()
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in pairs.items():
            if name not in known:
                raise ConfigError(f"Unknown guardrail {name!r}; known: {', '.join(sorted(known))}.")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"Guardrail {name}={value!r} is not a number.") from None
            if not math.isfinite(number) or number < 0:
                raise ConfigError(f"Guardrail {name}={value!r} must be a number >= 0.")
            values[name] = int(number) if name.startswith("min_") else number
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One guardrail's state: the measured excess of treatment over control and its bound."""

    name: str
    value: float | None
    bound: float
    tripped: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        value = self.value if self.value is None or math.isfinite(self.value) else None
        return {**asdict(self), "value": value}


@dataclass
class ArmCounts:
    """What one arm's requests did: requests, failures, and latencies (ms)."""

    requests: int = 0
    failures: int = 0
    times_ms: MutableSequence[float] = field(default_factory=list)

    def p99(self) -> float:
        """The 99th percentile of the recorded latencies."""
        if not self.times_ms:
            return math.nan
        return float(np.percentile(np.asarray(self.times_ms), 99))


def check_failures(
    g: Guardrails, treatment: ArmCounts, control: ArmCounts, name: str = "failures"
) -> Check:
    """Treatment failure rate minus control failure rate, against its bound."""
    if treatment.requests < g.min_requests:
        return Check(
            name,
            None,
            g.max_failure_rate_increase,
            False,
            f"waiting for {g.min_requests} treatment requests ({treatment.requests} so far)",
        )
    # A merged model call that raised is retried request by request, so a worker may count a
    # failure twice: a rate is never above 1.
    rate_t = min(1.0, treatment.failures / treatment.requests)
    rate_c = min(1.0, control.failures / control.requests) if control.requests else 0.0
    excess = rate_t - rate_c
    return Check(
        name,
        excess,
        g.max_failure_rate_increase,
        excess > g.max_failure_rate_increase,
        f"{name}: treatment {treatment.failures} of {treatment.requests} requests "
        f"({rate_t:.1%}), control {control.failures} of {control.requests} ({rate_c:.1%})",
    )


def check_latency(g: Guardrails, treatment: ArmCounts, control: ArmCounts) -> Check:
    """Treatment p99 model time minus control's, against its bound."""
    n_t, n_c = len(treatment.times_ms), len(control.times_ms)
    if min(n_t, n_c) < g.min_requests:
        return Check(
            "latency",
            None,
            g.max_p99_increase_ms,
            False,
            f"waiting for {g.min_requests} timings per arm (treatment {n_t}, control {n_c})",
        )
    p_t, p_c = treatment.p99(), control.p99()
    excess = p_t - p_c
    return Check(
        "latency",
        excess,
        g.max_p99_increase_ms,
        excess > g.max_p99_increase_ms,
        f"p99 latency: treatment {p_t:.1f} ms, control {p_c:.1f} ms",
    )


def check_error_rate(
    g: Guardrails,
    treatment_wrong: np.ndarray,
    control_wrong: np.ndarray,
    *,
    tuning_n: float = 10_000,
    alpha: float = 0.05,
) -> Check:
    """The always-valid lower bound of (treatment error rate - control error rate) against its
    bound; ``*_wrong`` are 1 for each labeled prediction the arm got wrong, else 0."""
    n_t, n_c = int(treatment_wrong.size), int(control_wrong.size)
    if min(n_t, n_c) < g.min_labels:
        return Check(
            "error_rate",
            None,
            g.max_error_rate_increase,
            False,
            f"waiting for {g.min_labels} labeled predictions per arm "
            f"(treatment {n_t}, control {n_c})",
        )
    t, c = stats.Summary.of(treatment_wrong), stats.Summary.of(control_wrong)
    seq = stats.sequential_test(t.mean - c.mean, t.sem2 + c.sem2, n_t + n_c, tuning_n, alpha)
    low = seq.interval.low
    return Check(
        "error_rate",
        low,
        g.max_error_rate_increase,
        low > g.max_error_rate_increase,
        f"error rate: treatment {t.mean:.2%}, control {c.mean:.2%}; the increase is at least "
        f"{low:+.2%} (always-valid {1 - alpha:.0%} bound)",
    )
