"""The statistics behind experiment verdicts: pure functions on counts and summaries.

Nothing here knows about models, arms or the store. Samples are passed as :class:`Summary`
(count, mean, variance), so a test over a million outcomes costs three numbers per arm, and
every two-sample function takes ``(treatment, control)`` in that order: differences are
treatment minus control. Each function equals a statsmodels or scipy function on the same data
(``tests/experiments/test_stats.py`` checks them to 1e-9):

=============================  =================================================================
here                           reference
=============================  =================================================================
:func:`two_proportion_ztest`   ``statsmodels.stats.proportion.proportions_ztest`` (pooled, 2-sided)
:func:`welch_ttest`            ``statsmodels.stats.weightstats.ttest_ind(usevar="unequal")``
:func:`proportion_diff_ci`     ``statsmodels...confint_proportions_2indep(method="wald")``
:func:`mean_diff_ci`           ``statsmodels...CompareMeans.tconfint_diff(usevar="unequal")``
:func:`proportion_effectsize`  ``statsmodels.stats.proportion.proportion_effectsize`` (Cohen's h)
:func:`normal_power`           ``statsmodels.stats.power.NormalIndPower().power``
:func:`required_nobs`          ``statsmodels.stats.power.NormalIndPower().solve_power``
:func:`mcnemar_exact`          ``statsmodels.stats.contingency_tables.mcnemar(exact=True)``
:func:`paired_ttest`           ``statsmodels.stats.weightstats.DescrStatsW(d).ttest_mean()``
:func:`srm_test`               ``scipy.stats.chisquare`` against the configured split
=============================  =================================================================

:func:`sequential_test` has no statsmodels counterpart: it is the mixture sequential
probability ratio test (mSPRT, Johari et al. 2017, "Peeking at A/B tests") on the difference of
two means with a normal mixing distribution, whose dual is the normal-mixture confidence
sequence of Howard et al. (2021) that GrowthBook also uses. Its closed form is checked against
the mixture likelihood ratio integrated numerically, and its false-positive rate under peeking
by simulation. :func:`mcnemar_nobs` is Connor's (1987) sample size for McNemar's test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from slipway import _lazy

if TYPE_CHECKING:
    from scipy import optimize, stats
else:  # imported on first use: serving workers import this module, and rarely call it
    optimize, stats = _lazy.Module("scipy.optimize"), _lazy.Module("scipy.stats")


@dataclass(frozen=True)
class Summary:
    """A sample as count, mean and variance (``ddof=1``; 0 for fewer than two values)."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, values: np.ndarray) -> Summary:
        """The summary of an array of numbers."""
        x = np.asarray(values, dtype=float)
        n = int(x.size)
        if n == 0:
            return cls(0, math.nan, math.nan)
        return cls(n, float(x.mean()), float(x.var(ddof=1)) if n > 1 else 0.0)

    @classmethod
    def of_counts(cls, successes: int, n: int) -> Summary:
        """The summary of ``n`` zeros and ones, ``successes`` of them ones."""
        if n == 0:
            return cls(0, math.nan, math.nan)
        p = successes / n
        return cls(n, p, p * (1 - p) * n / (n - 1) if n > 1 else 0.0)

    @property
    def sem2(self) -> float:
        """The squared standard error of the mean."""
        return self.var / self.n if self.n else math.nan


@dataclass(frozen=True)
class TestResult:
    """A test's statistic and two-sided p-value (``df`` for t-tests)."""

    statistic: float
    p_value: float
    df: float | None = None


@dataclass(frozen=True)
class Interval:
    """A confidence interval for a difference (treatment minus control)."""

    low: float
    high: float

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval."""
        return value < self.low or value > self.high


# -- fixed-horizon tests ---------------------------------------------------------------------


def two_proportion_ztest(count1: int, nobs1: int, count2: int, nobs2: int) -> TestResult:
    """z-test of p1 = p2 with the pooled proportion in the standard error (two-sided)."""
    p1, p2 = count1 / nobs1, count2 / nobs2
    pooled = (count1 + count2) / (nobs1 + nobs2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / nobs1 + 1 / nobs2))
    if se == 0:
        return TestResult(math.nan, math.nan)
    z = (p1 - p2) / se
    return TestResult(float(z), float(2 * stats.norm.sf(abs(z))))


def welch_ttest(a: Summary, b: Summary) -> TestResult:
    """Welch's t-test of mean(a) = mean(b) (unequal variances, Satterthwaite df, two-sided)."""
    va, vb = a.sem2, b.sem2
    se2 = va + vb
    if not se2 > 0:
        return TestResult(math.nan, math.nan, math.nan)
    t = (a.mean - b.mean) / math.sqrt(se2)
    df = se2**2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return TestResult(float(t), float(2 * stats.t.sf(abs(t), df)), float(df))


def paired_ttest(diffs: Summary) -> TestResult:
    """One-sample t-test of mean(d) = 0 on paired differences (two-sided)."""
    if diffs.n < 2 or not diffs.var > 0:
        return TestResult(math.nan, math.nan, None)
    t = diffs.mean / math.sqrt(diffs.sem2)
    df = diffs.n - 1
    return TestResult(t, float(2 * stats.t.sf(abs(t), df)), float(df))


def mcnemar_exact(b: int, c: int) -> TestResult:
    """McNemar's exact test on the discordant pairs: ``b`` one way, ``c`` the other.

    The statistic is ``min(b, c)``; the p-value is the two-sided binomial probability of a
    split at least that uneven when each discordant pair goes either way with probability 1/2.
    """
    low = min(b, c)
    p = 2 * float(stats.binom.cdf(low, b + c, 0.5))
    return TestResult(float(low), min(p, 1.0))


def srm_test(counts: list[int], shares: list[float]) -> TestResult:
    """Chi-square goodness of fit of assignment ``counts`` to the configured ``shares``."""
    observed = np.asarray(counts, dtype=float)
    expected = observed.sum() * np.asarray(shares, dtype=float) / float(np.sum(shares))
    if observed.sum() == 0 or np.any(expected == 0):
        return TestResult(math.nan, math.nan)
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    return TestResult(chi2, float(stats.chi2.sf(chi2, len(counts) - 1)))


# -- intervals -------------------------------------------------------------------------------


def proportion_diff_ci(
    count1: int, nobs1: int, count2: int, nobs2: int, alpha: float = 0.05
) -> Interval:
    """Wald interval for p1 - p2 (unpooled standard error)."""
    p1, p2 = count1 / nobs1, count2 / nobs2
    half = stats.norm.isf(alpha / 2) * math.sqrt(p1 * (1 - p1) / nobs1 + p2 * (1 - p2) / nobs2)
    return Interval(float(p1 - p2 - half), float(p1 - p2 + half))


def mean_diff_ci(a: Summary, b: Summary, alpha: float = 0.05) -> Interval:
    """Welch t interval for mean(a) - mean(b)."""
    df = welch_ttest(a, b).df
    if df is None or math.isnan(df):
        return Interval(math.nan, math.nan)
    half = stats.t.isf(alpha / 2, df) * math.sqrt(a.sem2 + b.sem2)
    d = a.mean - b.mean
    return Interval(float(d - half), float(d + half))


def paired_diff_ci(diffs: Summary, alpha: float = 0.05) -> Interval:
    """t interval for the mean of paired differences."""
    if diffs.n < 2:
        return Interval(math.nan, math.nan)
    half = stats.t.isf(alpha / 2, diffs.n - 1) * math.sqrt(diffs.sem2)
    return Interval(float(diffs.mean - half), float(diffs.mean + half))


# -- power and sample size -------------------------------------------------------------------


def proportion_effectsize(p1: float, p2: float) -> float:
    """Cohen's h: ``2 asin(sqrt(p1)) - 2 asin(sqrt(p2))``, the effect size of two proportions."""
    return 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))


def normal_power(
    effect_size: float, nobs1: float, alpha: float = 0.05, ratio: float = 1.0
) -> float:
    """Power of a two-sided two-sample z-test with ``nobs1`` and ``ratio * nobs1`` observations."""
    nobs = 1.0 / (1.0 / nobs1 + 1.0 / (nobs1 * ratio))
    shift = effect_size * math.sqrt(nobs)
    crit = stats.norm.isf(alpha / 2)
    return float(stats.norm.sf(crit - shift) + stats.norm.cdf(-crit - shift))


def required_nobs(
    effect_size: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> float:
    """Observations in the first sample for ``power`` (the second has ``ratio`` times as many)."""
    if effect_size == 0 or not math.isfinite(effect_size):
        return math.inf
    crit = stats.norm.isf(alpha / 2)
    # The one-tailed closed form is within one observation; the root refines it.
    guess = (crit + stats.norm.isf(1 - power)) ** 2 / effect_size**2 * (1 + 1 / ratio)

    def gap(n: float) -> float:
        return normal_power(effect_size, n, alpha, ratio) - power

    low, high = max(guess / 2, 1e-6), guess * 2
    while gap(low) > 0:
        low /= 2
    while gap(high) < 0:
        high *= 2
    return float(optimize.brentq(gap, low, high, xtol=1e-12, rtol=4 * np.finfo(float).eps))


def mcnemar_nobs(discordant: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Pairs needed for McNemar's test (Connor 1987): ``discordant`` is the share of pairs
    where the two disagree on correctness, ``delta`` the difference of the two accuracies."""
    if delta == 0 or discordant <= 0 or delta**2 >= discordant:
        return math.inf
    za, zb = stats.norm.isf(alpha / 2), stats.norm.isf(1 - power)
    return float(
        (za * math.sqrt(discordant) + zb * math.sqrt(discordant - delta**2)) ** 2 / delta**2
    )


# -- always-valid sequential test -------------------------------------------------------------


@dataclass(frozen=True)
class Sequential:
    """The always-valid test of a difference at one look.

    ``interval`` is the confidence sequence at this look (it covers the true difference at
    every look at once with probability 1 - alpha), ``p_value`` the always-valid p-value
    ``min(1, 1 / likelihood_ratio)``; the interval excludes 0 exactly when ``p_value <= alpha``.
    """

    interval: Interval
    p_value: float
    likelihood_ratio: float


def mixture_rho2(tuning_n: float, alpha: float = 0.05) -> float:
    """The mixing variance per unit variance that makes the sequence tightest at ``tuning_n``
    observations (Howard et al. 2021): ``(-2 ln a + ln(1 - 2 ln a)) / tuning_n``."""
    la = -2 * math.log(alpha)
    return (la + math.log(la + 1)) / tuning_n


def sequential_test(
    diff: float, variance: float, n: int, tuning_n: float = 10_000, alpha: float = 0.05
) -> Sequential:
    """mSPRT of "difference = 0" for an estimate ``diff`` with sampling ``variance`` from ``n``
    observations in all.

    The estimate is treated as Gaussian with variance ``variance`` (= sigma^2 / n); under the
    alternative the difference is drawn from N(0, tau^2) with ``tau^2 = sigma^2 * rho^2``
    (:func:`mixture_rho2`), which gives the likelihood ratio

        L = sqrt(V / (V + tau^2)) * exp(tau^2 diff^2 / (2 V (V + tau^2)))

    and, inverted, the confidence sequence ``diff +- sqrt(V (1 + n rho^2) / (n rho^2) *
    ln((1 + n rho^2) / alpha^2))``. ``tuning_n`` must be fixed before the data is seen.
    """
    if n <= 0 or not variance > 0:
        return Sequential(Interval(-math.inf, math.inf), 1.0, 1.0)
    log_lr = float(sequential_log_lr(diff, variance, n, tuning_n, alpha))
    nr2 = n * mixture_rho2(tuning_n, alpha)
    half = math.sqrt(variance * (1 + nr2) / nr2 * math.log((1 + nr2) / alpha**2))
    p = 1.0 if log_lr <= 0 else min(1.0, math.exp(-log_lr))
    lr = math.inf if log_lr > 700 else math.exp(log_lr)
    return Sequential(Interval(diff - half, diff + half), p, lr)


def sequential_log_lr(
    diff: np.ndarray | float,
    variance: np.ndarray | float,
    n: np.ndarray | float,
    tuning_n: float = 10_000,
    alpha: float = 0.05,
) -> np.ndarray:
    """The log of the mSPRT likelihood ratio of :func:`sequential_test`, element-wise (so many
    looks of many simulated experiments cost one call); reject at ``log(1 / alpha)``."""
    nr2 = np.asarray(n, dtype=float) * mixture_rho2(tuning_n, alpha)
    d2 = np.asarray(diff, dtype=float) ** 2
    return -0.5 * np.log1p(nr2) + nr2 * d2 / (2 * np.asarray(variance, dtype=float) * (1 + nr2))
