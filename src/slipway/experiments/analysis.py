"""From observations to a verdict: the tests, the sample size still needed, and the rule that
decides. Pure functions; :mod:`slipway.experiments.desk` feeds them from the store.

The rule, in order (docs/experiments.md explains it for users):

1. *cannot trust: SRM* when the arms' sizes do not fit the configured split (chi-square
   p < ``srm_alpha``, 0.001 by default): assignment or logging is broken, so any difference
   may come from who got which arm.
2. *cannot trust: too few outcomes* while an arm has fewer than ``min_outcomes`` observations.
3. The always-valid sequential test (mSPRT) decides *better* or *worse* as soon as its
   confidence sequence excludes 0. It may be looked at after every request.
4. Once both arms reach the planned sample size (the size giving ``power`` to detect
   ``min_effect``), the fixed-horizon test (z-test or Welch) decides at level ``alpha``: that
   is the one look it is designed for, and it has more power than the sequential test there.
5. Otherwise *no detectable difference at this sample size*, with the observations each arm
   still needs, and how long that takes at the current rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from slipway.experiments import stats
from slipway.experiments.metrics import Metric

BETTER, WORSE, NO_DIFFERENCE, CANNOT_TRUST = "better", "worse", "no_difference", "cannot_trust"
TEXT = {
    BETTER: "candidate better",
    WORSE: "candidate worse",
    NO_DIFFERENCE: "no detectable difference at this sample size",
}


@dataclass(frozen=True)
class Plan:
    """How an experiment is analysed; fixed when it starts (``Experiment.config``)."""

    alpha: float = 0.05
    power: float = 0.8
    min_effect: float | None = None  # in metric units; None: the metric's default
    tuning_n: float = 10_000  # observations at which the sequential test is tightest
    min_outcomes: int = 100  # per arm, before any verdict
    srm_alpha: float = 0.001

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Plan:
        """The settings stored in an experiment's config (unknown keys ignored)."""
        known = {k: config[k] for k in cls.__dataclass_fields__ if k in config}
        return cls(**known)


@dataclass(frozen=True)
class Verdict:
    """How an experiment ends, the test that decided, and why."""

    code: str
    text: str
    decided_by: str | None
    why: str
    needed: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass
class Comparison:
    """A metric compared between control and treatment (or between paired answers)."""

    metric: str
    control: float
    treatment: float
    difference: float  # treatment - control, in metric units
    interval: stats.Interval  # fixed-horizon interval at 1 - alpha
    test: str
    statistic: float
    p_value: float
    sequential: stats.Sequential
    observations: dict[str, int]
    planned: dict[str, float]  # observations per arm for `power` at min_effect
    min_effect: float
    power_now: float  # power at the current sample size to detect min_effect
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def relative(self) -> float:
        """The difference relative to the control's value."""
        return self.difference / self.control if self.control else math.nan

    def reached(self) -> bool:
        """Whether every arm has its planned sample size."""
        return all(self.observations[a] >= self.planned[a] for a in self.planned)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become null)."""
        return _clean(
            {
                "metric": self.metric,
                "control": self.control,
                "treatment": self.treatment,
                "difference": self.difference,
                "relative": self.relative,
                "interval": [self.interval.low, self.interval.high],
                "test": self.test,
                "statistic": self.statistic,
                "p_value": self.p_value,
                "sequential": {
                    "interval": [self.sequential.interval.low, self.sequential.interval.high],
                    "p_value": self.sequential.p_value,
                },
                "observations": self.observations,
                "planned": self.planned,
                "min_effect": self.min_effect,
                "power_now": self.power_now,
                **self.extra,
            }
        )


RELATIVE_MIN_EFFECT = 0.05  # continuous metrics: 5% of the control's mean by default


def min_effect_for(m: Metric, plan: Plan, control: stats.Summary) -> float:
    """The smallest difference worth detecting, in metric units: the plan's, else the metric's
    default (2 points of accuracy, 1 point of conversion), else 5% of the control's mean (a
    tenth of its standard deviation when the mean is 0)."""
    if plan.min_effect is not None:
        return plan.min_effect
    if m.default_min_effect is not None:
        return m.default_min_effect
    if control.n < 2:
        return math.nan
    if control.mean != 0:
        return RELATIVE_MIN_EFFECT * abs(control.mean)
    return 0.1 * math.sqrt(control.var) if control.var > 0 else math.nan


def compare_arms(
    m: Metric,
    treatment: np.ndarray,
    control: np.ndarray,
    plan: Plan,
    ratio: float,
) -> Comparison:
    """Compare two independent samples of metric values (treatment, control).

    ``ratio`` is the expected treatment/control size ratio (split / (1 - split)), used for the
    planned sample sizes.
    """
    t, c = stats.Summary.of(treatment), stats.Summary.of(control)
    effect = min_effect_for(m, plan, c)
    diff = t.mean - c.mean if t.n and c.n else math.nan
    if m.binary:
        st, sc = round(t.mean * t.n) if t.n else 0, round(c.mean * c.n) if c.n else 0
        if t.n and c.n:
            test = stats.two_proportion_ztest(st, t.n, sc, c.n)
            interval = stats.proportion_diff_ci(st, t.n, sc, c.n, plan.alpha)
        else:
            test, interval = (
                stats.TestResult(math.nan, math.nan),
                stats.Interval(math.nan, math.nan),
            )
        name = "two-proportion z-test"
        es = binary_effect(c.mean, effect, m.direction)
    else:
        test = (
            stats.welch_ttest(t, c) if t.n > 1 and c.n > 1 else stats.TestResult(math.nan, math.nan)
        )
        interval = (
            stats.mean_diff_ci(t, c, plan.alpha)
            if t.n > 1 and c.n > 1
            else stats.Interval(math.nan, math.nan)
        )
        name = "Welch's t-test"
        pooled = math.sqrt((t.var + c.var) / 2) if t.n > 1 and c.n > 1 else math.nan
        es = effect / pooled if pooled and pooled > 0 else math.nan
    sequential = stats.sequential_test(
        diff if math.isfinite(diff) else 0.0,
        t.sem2 + c.sem2 if t.n > 1 and c.n > 1 else math.nan,
        t.n + c.n,
        plan.tuning_n,
        plan.alpha,
    )
    if math.isfinite(es) and es != 0:
        n_control = stats.required_nobs(abs(es), plan.alpha, plan.power, ratio)
        planned = {"control": n_control, "treatment": n_control * ratio}
        power_now = stats.normal_power(abs(es), c.n, plan.alpha, t.n / c.n) if t.n and c.n else 0.0
    else:
        planned = {"control": math.inf, "treatment": math.inf}
        power_now = math.nan
    return Comparison(
        m.name,
        c.mean if c.n else math.nan,
        t.mean if t.n else math.nan,
        diff,
        interval,
        name,
        test.statistic,
        test.p_value,
        sequential,
        {"control": c.n, "treatment": t.n},
        planned,
        effect,
        power_now,
    )


def binary_effect(p: float, effect: float, direction: int) -> float:
    """Cohen's h between the control's rate moved by ``effect`` (the better way) and it."""
    if not (0 <= p <= 1) or not math.isfinite(effect):
        return math.nan
    moved = min(max(p + direction * effect, 1e-9), 1 - 1e-9)
    base = min(max(p, 1e-9), 1 - 1e-9)
    return stats.proportion_effectsize(moved, base)


def decide(
    m: Metric,
    comparison: Comparison,
    plan: Plan,
    *,
    srm: stats.TestResult | None = None,
    rates: dict[str, float] | None = None,
    evidence: dict[str, int] | None = None,
    paired: bool = False,
) -> Verdict:
    """The verdict on one comparison; ``rates`` are observations per second per arm, for how
    long the experiment must still run; ``evidence`` what the too-few-outcomes rule counts per
    arm (default: the observations); ``paired`` for shadow comparisons (one sample)."""
    if srm is not None and math.isfinite(srm.p_value) and srm.p_value < plan.srm_alpha:
        return Verdict(
            CANNOT_TRUST,
            "cannot trust: sample ratio mismatch (SRM)",
            "SRM check",
            f"The arms' sizes do not fit the configured split (chi-square {srm.statistic:.1f}, "
            f"p = {srm.p_value:.2g} < {plan.srm_alpha}): units are not assigned or not "
            "logged as configured, so a difference between the arms may come from who was in "
            "them. Find the cause (a filter, a crash in one arm, bots) before reading the "
            "metrics.",
        )
    obs = comparison.observations
    counted = evidence or obs
    if min(counted.values()) < plan.min_outcomes:
        what = "labeled predictions" if m.source == "labels" else "predictions with an outcome"
        needed = {a: max(0, plan.min_outcomes - n) for a, n in counted.items()}
        return Verdict(
            CANNOT_TRUST,
            "cannot trust: too few outcomes",
            "sample size",
            f"Fewer than {plan.min_outcomes} {what} in "
            f"{'the pairs' if paired else 'an arm'} ({_counts(counted)}); no test is read "
            "before that.",
            {"observations": needed},
        )
    if not math.isfinite(comparison.difference):
        return Verdict(
            CANNOT_TRUST,
            "cannot trust: the metric cannot be computed",
            "arithmetic",
            f"The difference between the arms is not a finite number "
            f"({_n(comparison.difference)}): outcome values too large to add up in double "
            "precision. Check the outcomes sent.",
        )
    better_sign = m.direction
    who = "the pairs" if paired else "every arm"
    seq = comparison.sequential
    if seq.interval.excludes(0.0):
        code = BETTER if comparison.difference * better_sign > 0 else WORSE
        return Verdict(
            code,
            TEXT[code],
            "sequential test",
            f"The always-valid confidence sequence for the difference, "
            f"[{_n(seq.interval.low)}, {_n(seq.interval.high)}], excludes 0 "
            f"(always-valid p = {seq.p_value:.3g} <= {plan.alpha}). It holds however often "
            "the results were looked at, so this decision stands at any time.",
        )
    if comparison.reached() and comparison.p_value < plan.alpha:
        code = BETTER if comparison.difference * better_sign > 0 else WORSE
        return Verdict(
            code,
            TEXT[code],
            "fixed-horizon test",
            f"{who.capitalize()} reached the planned sample size "
            f"({_counts(_round(comparison.planned))}) for {plan.power:.0%} power at a "
            f"difference of {_n(comparison.min_effect)}; there {comparison.test} gives "
            f"p = {comparison.p_value:.3g} < "
            f"{plan.alpha} (difference {_n(comparison.difference)}, "
            f"{1 - plan.alpha:.0%} CI [{_n(comparison.interval.low)}, "
            f"{_n(comparison.interval.high)}]). The sequential test has not decided yet.",
        )
    remaining = {a: max(0.0, comparison.planned[a] - obs[a]) for a in comparison.planned}
    seconds = None
    if rates:
        waits = [
            remaining[a] / rates[a] if rates.get(a) else math.inf for a in remaining if remaining[a]
        ]
        seconds = max(waits) if waits else 0.0
    if comparison.reached():
        why = (
            f"{who.capitalize()} reached the planned sample size and {comparison.test} finds "
            f"no difference (p = {comparison.p_value:.3g}; {1 - plan.alpha:.0%} CI "
            f"[{_n(comparison.interval.low)}, {_n(comparison.interval.high)}]): a difference "
            f"of {_n(comparison.min_effect)} or more would have been found with "
            f"{plan.power:.0%} probability."
        )
    else:
        why = (
            f"Neither test has decided: the sequential test's interval "
            f"[{_n(seq.interval.low)}, {_n(seq.interval.high)}] contains 0, and the planned "
            f"sample size for {plan.power:.0%} power at a difference of "
            f"{_n(comparison.min_effect)} is {_counts(_round(comparison.planned))}; "
            f"still needed: {_counts(_round(remaining))}"
            + (f" (about {_duration(seconds)} at the current rate)." if seconds else ".")
        )
    return Verdict(
        NO_DIFFERENCE,
        TEXT[NO_DIFFERENCE],
        None,
        why,
        {"observations": _round(remaining), "seconds": seconds},
    )


def srm_check(counts: dict[str, int], split: float) -> stats.TestResult:
    """Chi-square of the arms' assignment counts (units, or requests without one) against the
    split."""
    return stats.srm_test([counts["control"], counts["treatment"]], [1 - split, split])


def _counts(values: dict[str, Any]) -> str:
    return ", ".join(f"{a} {_int(v)}" for a, v in values.items())


def _round(values: dict[str, float]) -> dict[str, float]:
    return {a: math.ceil(v) if math.isfinite(v) else math.inf for a, v in values.items()}


def _int(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, int | float) and math.isfinite(v) else "unbounded"


def _n(v: float) -> str:
    return f"{v:+.4g}" if math.isfinite(v) else "n/a"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "forever"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
