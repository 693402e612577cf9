"""Comparing two versions' answers to the same inputs: agreement, paired tests, shadow health.

In shadow mode every logged prediction carries the candidate's answer to the same request
(``shadow_outputs``); in an A/B test the report re-scores a sample of logged inputs with both
versions. Either way the pairs say how often the versions agree, and, with labels, which one
is right when they do not: when two versions agree on most inputs, only the disagreements
carry information. McNemar's exact test reads exactly those (the discordant pairs), and the
labeled pairs a paired comparison needs follow from the disagreement share (Connor 1987),
usually far fewer than an A/B test of the same difference needs per arm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slipway.experiments import stats
from slipway.experiments.analysis import Comparison, Plan, min_effect_for
from slipway.experiments.metrics import Metric, same_label


@dataclass
class Agreement:
    """How two versions' answers to the same rows compare (rows where both answered)."""

    rows: int
    rate: float  # share of rows with the same label (classifiers) or value (regressors)
    mean_diff: float  # mean of each row's largest probability (or value) difference
    max_diff: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become null)."""
        return {k: _finite(v) for k, v in self.__dict__.items()}


def agreement(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]]) -> Agreement:
    """Label (or value) agreement and probability (or value) differences, row by row."""
    n = len(first)
    if n == 0:
        return Agreement(0, math.nan, math.nan, math.nan)
    if "value" in first[0]:
        a = np.array([float(o["value"]) for o in first])
        b = np.array([float(o["value"]) for o in second])
        diff = np.abs(a - b)
        return Agreement(n, float(np.mean(diff == 0)), float(diff.mean()), float(diff.max()))
    same = np.array([same_label(o, s.get("label")) for o, s in zip(first, second, strict=True)])
    diffs = [_proba_gap(o, s) for o, s in zip(first, second, strict=True)]
    gaps = np.array([d for d in diffs if d is not None], dtype=float)
    mean_gap = float(gaps.mean()) if gaps.size else math.nan
    max_gap = float(gaps.max()) if gaps.size else math.nan
    return Agreement(n, float(same.mean()), mean_gap, max_gap)


def _proba_gap(a: Mapping[str, Any], b: Mapping[str, Any]) -> float | None:
    pa, pb = a.get("probabilities"), b.get("probabilities")
    if not pa or not pb:
        return None
    return max(abs(float(pa[k]) - float(pb.get(k, 0.0))) for k in pa)


def compare_pairs(m: Metric, candidate: np.ndarray, control: np.ndarray, plan: Plan) -> Comparison:
    """Compare paired metric values (the same labeled rows answered by both versions)."""
    cand, ctrl = np.asarray(candidate, dtype=float), np.asarray(control, dtype=float)
    n = int(cand.size)
    d = stats.Summary.of(cand - ctrl)
    c = stats.Summary.of(ctrl)
    effect = min_effect_for(m, plan, c)
    extra: dict[str, Any] = {}
    if m.binary:
        # For accuracy b counts rows the control got right and the candidate wrong; for the
        # error rate the same rows count the other way, and the test is symmetric.
        b = int(np.sum((ctrl == 1) & (cand == 0)))
        c_ = int(np.sum((ctrl == 0) & (cand == 1)))
        test = stats.mcnemar_exact(b, c_)
        name = "McNemar's exact test"
        discordant = (b + c_) / n if n else math.nan
        planned = stats.mcnemar_nobs(discordant, effect, plan.alpha, plan.power) if n else math.inf
        power_now = mcnemar_power(discordant, effect, n, plan.alpha)
        extra["discordant"] = {"control_only": b, "candidate_only": c_}
    else:
        test = stats.paired_ttest(d)
        name = "paired t-test"
        sd = math.sqrt(d.var) if d.n > 1 else math.nan
        es = effect / sd if sd and sd > 0 else math.nan
        # A one-sample z-test on n differences has the power of a two-sample one with 2n per
        # arm (the harmonic size n*n/(n+n) is n/2), hence the halving.
        planned = (
            stats.required_nobs(es, plan.alpha, plan.power) / 2 if math.isfinite(es) else math.inf
        )
        power_now = (
            stats.normal_power(es, 2 * n, plan.alpha) if n and math.isfinite(es) else math.nan
        )
    interval = stats.paired_diff_ci(d, plan.alpha)
    sequential = stats.sequential_test(
        d.mean if n else 0.0, d.sem2 if n > 1 else math.nan, n, plan.tuning_n, plan.alpha
    )
    return Comparison(
        m.name,
        c.mean if n else math.nan,
        float(cand.mean()) if n else math.nan,
        d.mean if n else math.nan,
        interval,
        name,
        test.statistic,
        test.p_value,
        sequential,
        {"pairs": n},
        {"pairs": planned},
        effect,
        power_now,
        extra,
    )


def mcnemar_power(discordant: float, delta: float, n: int, alpha: float = 0.05) -> float:
    """Power of McNemar's test with ``n`` pairs, by the normal approximation behind
    :func:`stats.mcnemar_nobs` (Connor 1987)."""
    if n < 1 or discordant <= 0 or delta**2 >= discordant:
        return math.nan
    za = float(stats.stats.norm.isf(alpha / 2))
    z = (math.sqrt(n) * abs(delta) - za * math.sqrt(discordant)) / math.sqrt(discordant - delta**2)
    return float(stats.stats.norm.cdf(z))


@dataclass
class ShadowHealth:
    """What happened to the shadow requests: answered, failed, or never scored."""

    rows: int
    shadowed: int
    errors: int
    # no shadow answer recorded: the shadow queue was full, the answer came too late, or the
    # shadow was failing or stalled (its work dropped at submit, see slipway_shadow_dropped_total)
    skipped: int
    error_examples: list[str]
    latency_ms: dict[str, dict[str, float | None]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dict(self.__dict__)


def shadow_health(
    primary_latency_ms: np.ndarray, shadow_outputs: Sequence[Mapping[str, Any] | None]
) -> ShadowHealth:
    """Counts of shadow answers and errors, and each side's latency percentiles."""
    answered = [s for s in shadow_outputs if s is not None]
    errors = [s for s in answered if "error" in s]
    examples = list(dict.fromkeys(str(s["error"]) for s in errors))[:3]
    shadow_ms = np.array([float(s.get("latency_ms", math.nan)) for s in answered], dtype=float)
    return ShadowHealth(
        rows=len(shadow_outputs),
        shadowed=len(answered) - len(errors),
        errors=len(errors),
        skipped=len(shadow_outputs) - len(answered),
        error_examples=examples,
        latency_ms={
            "primary": percentiles(primary_latency_ms),
            "shadow": percentiles(shadow_ms[np.isfinite(shadow_ms)]),
        },
    )


def percentiles(values: np.ndarray) -> dict[str, float | None]:
    """p50 and p99 of some latencies (None for none), rounded to microseconds."""
    if values.size == 0:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}


def _finite(v: Any) -> Any:
    return v if not isinstance(v, float) or math.isfinite(v) else None
