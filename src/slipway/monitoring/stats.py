"""Pure statistical functions behind the drift checks.

Each function takes plain numpy arrays and returns numbers; nothing here knows about models,
frames or the store. The two-sample functions on numbers take *sorted* arrays of finite
values, so a caller sorts each sample once and every statistic reuses it (sorting is the one
cost that grows with the window, and a monitoring run over a million rows pays it once per
feature).

Conventions (documented in docs/monitoring.md and checked against scipy/statsmodels):

- KS: two-sided, Smirnov's asymptotic distribution, i.e. scipy's ``method="asymp"``:
  ``p = kstwo.sf(D, round(n*m/(n+m)))``.
- Chi-square: test of homogeneity on the 2 x k table of counts, no Yates correction.
- Wasserstein: the 1-D earth mover's distance between the empirical distributions.
- PSI: over the reference deciles; empty bins get a share of ``PSI_EMPTY_SHARE``.
- Jensen-Shannon: distance (the square root of the divergence) in base 2, so it lies in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from slipway import _lazy

if TYPE_CHECKING:
    from scipy import special, stats
else:  # imported on first use: serving workers import the report types, not the statistics
    special, stats = _lazy.Module("scipy.special"), _lazy.Module("scipy.stats")

# A bin of the PSI holding no value in one sample gets this share instead of 0 (the common
# convention, also Evidently's), so the logarithm stays finite; other bins are not rescaled.
PSI_EMPTY_SHARE = 1e-4


@dataclass(frozen=True)
class TestResult:
    """A significance test's statistic and p-value."""

    statistic: float
    p_value: float


@dataclass(frozen=True)
class Merged:
    """Two sorted samples merged: the pooled values in order and each ECDF on them."""

    values: np.ndarray
    cdf_a: np.ndarray
    cdf_b: np.ndarray


def merge_sorted(a: np.ndarray, b: np.ndarray) -> Merged:
    """Merge two sorted samples and evaluate both ECDFs at every pooled value.

    Positions come from searching the smaller sample in the larger one (cheap), not from
    sorting the pooled values again. Inside a run of equal values the ECDFs are partial; only
    the last element of a run carries the true value, which is where KS looks and where the
    Wasserstein integral's weights (the gaps between values) are non-zero.
    """
    if a.size > b.size:
        swapped = merge_sorted(b, a)
        return Merged(swapped.values, swapped.cdf_b, swapped.cdf_a)
    total = a.size + b.size
    slots = np.arange(a.size) + np.searchsorted(b, a, side="right")
    from_a = np.zeros(total, dtype=bool)
    from_a[slots] = True
    values = np.empty(total, dtype=np.float64)
    values[from_a] = a
    values[~from_a] = b
    count_a = np.cumsum(from_a)
    count_b = np.arange(1, total + 1) - count_a
    return Merged(values, count_a / a.size, count_b / b.size)


def ks_wasserstein(a: np.ndarray, b: np.ndarray, block: int = 1 << 20) -> tuple[float, float]:
    """The KS distance and the Wasserstein distance of two sorted samples, as
    :func:`ks_statistic` and :func:`wasserstein` of :func:`merge_sorted` give them, with memory
    bounded by ``block``: the pooled values are merged a range at a time (cut at values of the
    larger sample, so equal values never straddle two ranges)."""
    n, m = a.size, b.size
    larger = b if m >= n else a
    cuts = larger[block::block]
    ia = np.concatenate(([0], np.searchsorted(a, cuts, side="left"), [n]))
    ib = np.concatenate(([0], np.searchsorted(b, cuts, side="left"), [m]))
    d, dist = 0.0, 0.0
    last: tuple[float, float] | None = None  # (value, |F_a - F_b|) at the previous range's end
    for k in range(ia.size - 1):
        part_a, part_b = a[ia[k] : ia[k + 1]], b[ib[k] : ib[k + 1]]
        if part_a.size + part_b.size == 0:
            continue
        values, count_a, count_b = _merge_counts(part_a, part_b)
        gap = np.abs((count_a + ia[k]) / n - (count_b + ib[k]) / m)
        run_end = np.empty(values.size, dtype=bool)
        np.not_equal(values[1:], values[:-1], out=run_end[:-1])
        run_end[-1] = True
        d = max(d, float(np.max(gap[run_end])))
        if last is not None:
            dist += last[1] * (float(values[0]) - last[0])
        dist += float(np.dot(gap[:-1], np.diff(values)))
        last = (float(values[-1]), float(gap[-1]))
    return d, dist


def _merge_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two sorted samples merged: the pooled values and how many of each are at or before
    every position (the counts :func:`merge_sorted` divides by the sizes)."""
    if a.size > b.size:
        values, count_b, count_a = _merge_counts(b, a)
        return values, count_a, count_b
    total = a.size + b.size
    slots = np.arange(a.size) + np.searchsorted(b, a, side="right")
    from_a = np.zeros(total, dtype=bool)
    from_a[slots] = True
    values = np.empty(total, dtype=np.float64)
    values[from_a] = a
    values[~from_a] = b
    count_a = np.cumsum(from_a)
    return values, count_a, np.arange(1, total + 1) - count_a


def ks_statistic(merged: Merged) -> float:
    """The two-sample Kolmogorov-Smirnov distance sup |F_a - F_b|."""
    v = merged.values
    run_end = np.empty(v.size, dtype=bool)
    np.not_equal(v[1:], v[:-1], out=run_end[:-1])
    run_end[-1] = True
    return float(np.max(np.abs(merged.cdf_a[run_end] - merged.cdf_b[run_end])))


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Two-sided p-value of a KS distance ``d`` for samples of sizes n and m (asymptotic)."""
    en = n * m / (n + m)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def ks_test(a_sorted: np.ndarray, b_sorted: np.ndarray, merged: Merged | None = None) -> TestResult:
    """Two-sample KS test on sorted samples; equals ``scipy.stats.ks_2samp(method="asymp")``."""
    merged = merged or merge_sorted(a_sorted, b_sorted)
    d = ks_statistic(merged)
    return TestResult(d, ks_pvalue(d, a_sorted.size, b_sorted.size))


def wasserstein(merged: Merged) -> float:
    """The 1-D Wasserstein distance; equals ``scipy.stats.wasserstein_distance``."""
    gaps = np.diff(merged.values)
    return float(np.dot(np.abs(merged.cdf_a[:-1] - merged.cdf_b[:-1]), gaps))


def decile_edges(reference_sorted: np.ndarray) -> np.ndarray:
    """The distinct inner edges of the reference's deciles (up to 9; fewer when values tie)."""
    return np.unique(np.quantile(reference_sorted, np.linspace(0.1, 0.9, 9)))


def bin_shares(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of values in the bins (-inf, e1], (e1, e2], ..., (ek, inf)."""
    cuts = np.searchsorted(sorted_values, edges, side="right")
    counts = np.diff(np.concatenate(([0], cuts, [sorted_values.size])))
    return counts / max(sorted_values.size, 1)


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index: sum of (q - p) * ln(q / p), empty bins floored."""
    p = np.where(reference_shares > 0, reference_shares, PSI_EMPTY_SHARE)
    q = np.where(current_shares > 0, current_shares, PSI_EMPTY_SHARE)
    return float(np.sum((q - p) * np.log(q / p)))


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray) -> TestResult:
    """Chi-square test of homogeneity of two count vectors over the same categories.

    Equals ``scipy.stats.chi2_contingency([reference, current], correction=False)``.
    Categories empty in both samples are dropped.
    """
    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return TestResult(0.0, 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return TestResult(statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1)))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2; equals ``scipy.spatial.distance.jensenshannon``."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    divergence = (np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))) / 2 / math.log(2)
    return float(math.sqrt(max(divergence, 0.0)))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (statsmodels' ``fdr_bh``), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def bonferroni(p_values: np.ndarray) -> np.ndarray:
    """Bonferroni adjusted p-values."""
    p = np.asarray(p_values, dtype=np.float64)
    return np.minimum(1.0, p * p.size)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion, as statsmodels' ``proportion_confint(k, n,
    method="wilson")``."""
    if n == 0:
        return (0.0, 1.0)
    z = float(stats.norm.isf((1 - confidence) / 2))
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def detectable_mean_shift(n: int, m: int, level: float) -> float:
    """Smallest normal location shift, in standard deviations, whose KS distance reaches the
    critical value of a level-``level`` test with samples of sizes n and m.

    For a shift of d standard deviations between two normals the KS distance is
    ``2 * Phi(d / 2) - 1``; a shift this large is detected about half the time.
    """
    en = round(n * m / (n + m))
    critical = float(stats.kstwo.isf(level, en))
    if critical >= 1.0:
        return math.inf
    return float(2 * stats.norm.ppf((1 + critical) / 2))


def detectable_js_distance(n: int, m: int, categories: int, level: float) -> float:
    """Smallest Jensen-Shannon distance a level-``level`` chi-square test detects about half
    the time with samples of sizes n and m over ``categories`` categories.

    For small changes chi-square is about ``en * w**2`` (Cohen's w, ``en = n*m/(n+m)``) and
    the JS distance in bits about ``w / sqrt(8 ln 2)``.
    """
    if categories < 2:
        return math.inf
    en = n * m / (n + m)
    critical = float(stats.chi2.isf(level, categories - 1))
    return math.sqrt(critical / en) / math.sqrt(8 * math.log(2))
