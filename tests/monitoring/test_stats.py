"""Each statistic equals scipy's or statsmodels' on seeded data, to 1e-9 relative."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from slipway.monitoring import stats

SIZES = [(30, 10_000), (10_000, 30), (500, 700), (100_000, 10_000)]


def samples(n, m, seed, *, ties=False):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(0.1, 1.2, size=m)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return np.sort(a), np.sort(b)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("n", "m"), SIZES)
def test_ks_equals_scipy_asymptotic(n, m, ties):
    """Statistic and p-value equal scipy.stats.ks_2samp(method="asymp"), ties included."""
    a, b = samples(n, m, n + m, ties=ties)
    ours = stats.ks_test(a, b)
    theirs = sps.ks_2samp(a, b, method="asymp")
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-9)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("n", "m"), SIZES)
def test_wasserstein_equals_scipy(n, m, ties):
    """The merged-ECDF integral equals scipy.stats.wasserstein_distance."""
    a, b = samples(n, m, 7 * n + m, ties=ties)
    ours = stats.wasserstein(stats.merge_sorted(a, b))
    assert ours == pytest.approx(sps.wasserstein_distance(a, b), rel=1e-9)


@pytest.mark.parametrize("k", [2, 5, 40])
def test_chi_square_equals_scipy_without_yates(k):
    """Homogeneity chi-square equals chi2_contingency(correction=False), also for 2 x 2."""
    rng = np.random.default_rng(k)
    r, c = rng.integers(5, 500, k), rng.integers(5, 500, k)
    ours = stats.chi_square(r, c)
    theirs = sps.chi2_contingency(np.vstack([r, c]), correction=False)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-9)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)


def test_chi_square_drops_categories_empty_on_both_sides():
    """A category with no count anywhere does not change the test."""
    with_empty = stats.chi_square(np.array([10, 0, 30]), np.array([20, 0, 15]))
    without = sps.chi2_contingency([[10, 30], [20, 15]], correction=False)
    assert with_empty.p_value == pytest.approx(without.pvalue, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jensen_shannon_equals_scipy_base_2(seed):
    """Distance in base 2 equals scipy's jensenshannon, with zeros on either side."""
    rng = np.random.default_rng(seed)
    p, q = rng.integers(0, 50, 8).astype(float), rng.integers(0, 50, 8).astype(float)
    p[0], q[1] = 0, 0
    assert stats.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9)


def test_psi_over_reference_deciles_with_the_empty_bin_convention():
    """PSI equals summed rel_entr both ways over the decile bins, empty bins at 1e-4."""
    rng = np.random.default_rng(3)
    ref, cur = np.sort(rng.normal(size=5000)), np.sort(rng.normal(3, 0.2, size=800))
    edges = stats.decile_edges(ref)
    bins = np.concatenate(([-np.inf], edges, [np.inf]))
    p = np.histogram(ref, bins)[0] / ref.size
    q = np.histogram(cur, bins)[0] / cur.size
    assert (q == 0).any()  # the convention is exercised
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    expected = np.sum(rel_entr(q, p) + rel_entr(p, q))  # == sum((q - p) * ln(q / p))
    got = stats.psi(stats.bin_shares(ref, edges), stats.bin_shares(cur, edges))
    assert got == pytest.approx(expected, rel=1e-9)


def test_decile_bins_collapse_on_ties():
    """A reference that is mostly one value gets fewer, distinct bin edges."""
    ref = np.sort(np.r_[np.zeros(700), np.arange(1, 301)].astype(float))
    edges = stats.decile_edges(ref)
    assert np.all(np.diff(edges) > 0) and edges[0] == 0 and len(edges) < 9


@pytest.mark.parametrize("seed", [0, 1])
def test_benjamini_hochberg_equals_statsmodels(seed):
    """Adjusted p-values equal multipletests(method="fdr_bh"), in the input order."""
    p = np.random.default_rng(seed).uniform(size=40) ** 3
    expected = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(stats.benjamini_hochberg(p), expected, rtol=1e-9)


@pytest.mark.parametrize(("k", "n"), [(0, 20), (3, 20), (50, 100), (999, 1000), (20, 20)])
def test_wilson_interval_equals_statsmodels(k, n):
    """Wilson bounds equal proportion_confint(method="wilson")."""
    lo, hi = proportion_confint(k, n, method="wilson")
    ours = stats.wilson_interval(k, n)
    assert ours[0] == pytest.approx(lo, rel=1e-9, abs=1e-12)
    assert ours[1] == pytest.approx(hi, rel=1e-9, abs=1e-12)


def test_detectable_shift_shrinks_with_the_sample_and_is_detected_at_its_size():
    """The detectable mean shift falls with n, and a shift of that size reaches the critical D."""
    small = stats.detectable_mean_shift(100, 10_000, 0.05 / 20)
    large = stats.detectable_mean_shift(100_000, 10_000, 0.05 / 20)
    assert small > large > 0
    d = 2 * sps.norm.cdf(small / 2) - 1  # KS distance between N(0,1) and N(small,1)
    assert stats.ks_pvalue(d, 100, 10_000) == pytest.approx(0.05 / 20, rel=1e-6)


@pytest.mark.parametrize("block", [3, 64, 1 << 20])
def test_ks_and_wasserstein_in_blocks_equal_scipy(block):
    """Merged a range at a time (ties across ranges included), the distances equal scipy's."""
    rng = np.random.default_rng(7)
    a = np.sort(np.round(rng.normal(0, 1, 700), 1))
    b = np.sort(np.round(rng.normal(0.2, 1.3, 2_000), 1))
    for x, y in ((a, b), (b, a), (a[:5], b)):
        d, w = stats.ks_wasserstein(x, y, block=block)
        assert d == pytest.approx(sps.ks_2samp(x, y).statistic, rel=1e-12)
        assert w == pytest.approx(sps.wasserstein_distance(x, y), rel=1e-12)


def test_degenerate_inputs_give_neutral_answers():
    """One category, an empty side or no p-values: no test, no correction, the widest interval."""
    for r, c in [([10, 0], [20, 0]), ([10, 5], [0, 0]), ([0, 0], [3, 4])]:
        assert stats.chi_square(np.array(r), np.array(c)) == stats.TestResult(0.0, 1.0)
    assert stats.benjamini_hochberg(np.array([])).size == 0
    assert stats.bonferroni(np.array([])).size == 0
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    assert stats.detectable_js_distance(500, 500, 1, 0.05) == np.inf
    assert stats.detectable_mean_shift(2, 2, 1e-20) == np.inf  # no D of 2 + 2 values is that rare


@pytest.mark.parametrize("seed", [0, 1])
def test_bonferroni_equals_statsmodels(seed):
    """Adjusted p-values equal multipletests(method="bonferroni"), capped at 1."""
    p = np.random.default_rng(seed).uniform(size=40) ** 3
    expected = multipletests(p, method="bonferroni")[1]
    np.testing.assert_allclose(stats.bonferroni(p), expected, rtol=1e-12)
    assert stats.bonferroni(p).max() == 1.0


@pytest.mark.parametrize("confidence", [0.9, 0.99])
def test_wilson_interval_at_other_confidences_equals_statsmodels(confidence):
    """The confidence level is honoured: statsmodels' alpha = 1 - confidence."""
    lo, hi = proportion_confint(7, 40, alpha=1 - confidence, method="wilson")
    ours = stats.wilson_interval(7, 40, confidence)
    assert ours == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))


@pytest.mark.parametrize(("n", "m", "k"), [(1_000, 1_000, 2), (2_000, 500, 4)])
def test_detectable_js_distance_is_where_chi_square_reaches_its_critical_value(n, m, k):
    """Shares moved until chi-square equals its critical value sit at the detectable JS
    distance (to the small-change approximation the function promises)."""
    level = 0.01
    critical = sps.chi2.isf(level, k - 1)
    base = np.full(k, 1 / k)
    tilt = np.linspace(-1, 1, k)

    def chi2_at(t):
        return stats.chi_square(base * n, (base + t * tilt / k) * m).statistic - critical

    from scipy.optimize import brentq

    t = brentq(chi2_at, 0.0, 0.9)
    moved = stats.jensen_shannon(base * n, (base + t * tilt / k) * m)
    assert stats.detectable_js_distance(n, m, k, level) == pytest.approx(moved, rel=0.02)


def test_ks_is_read_only_at_the_ends_of_runs_of_ties():
    """Inside a run of equal values the ECDFs are partial: never the KS distance, whole or in
    blocks (including blocks that end on the largest gap and blocks of equal sizes)."""
    same = np.array([1.0, 2.0])
    assert stats.ks_test(same, same).statistic == 0.0
    assert stats.ks_wasserstein(same, same) == (0.0, 0.0)
    a, b = np.array([2.0, 3.0]), np.array([1.0, 2.0])  # a partial gap of 1 inside the 2s
    assert stats.ks_test(a, b).statistic == sps.ks_2samp(a, b).statistic == 0.5
    assert stats.ks_wasserstein(a, b) == (0.5, 1.0)
    a, b = np.array([1.0, 2.0]), np.array([0.0, 3.0, 4.0])  # the largest gap ends block 1
    d, w = stats.ks_wasserstein(a, b, block=1)
    assert d == pytest.approx(2 / 3, rel=1e-12)
    assert w == pytest.approx(sps.wasserstein_distance(a, b), rel=1e-12)
    x = np.arange(0.0, 20.0, 2.0)
    for y in (x - 0.5, x + 0.5):  # every block holds as many values of each sample
        d, w = stats.ks_wasserstein(x, y, block=2)
        assert d == pytest.approx(sps.ks_2samp(x, y).statistic, rel=1e-12)
        assert w == pytest.approx(sps.wasserstein_distance(x, y), rel=1e-12)


def test_psi_bins_are_the_reference_deciles_and_empty_bins_on_either_side_are_floored():
    """The edges are the 10th..90th percentiles; an empty reference bin counts as 1e-4 too."""
    x = np.sort(np.random.default_rng(4).normal(size=1_001))
    np.testing.assert_allclose(stats.decile_edges(x), np.percentile(x, range(10, 100, 10)))
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.4, 0.2])
    floored = np.array([0.5, 0.5, 1e-4])
    expected = np.sum((q - floored) * np.log(q / floored))
    assert stats.psi(p, q) == pytest.approx(expected, rel=1e-12)
    assert stats.bin_shares(np.array([]), np.array([0.0, 1.0])).tolist() == [0.0, 0.0, 0.0]


def test_chi_square_keeps_every_category_seen_once_and_counts_its_degrees_of_freedom():
    """Moderate p-values (not underflowed to 0) equal scipy's with k - 1 degrees of freedom."""
    rng = np.random.default_rng(11)
    shares = np.array([0.1, 0.2, 0.3, 0.4])
    for k in (3, 4):
        r = rng.multinomial(1_000, shares[:k] / shares[:k].sum())
        c = rng.multinomial(800, shares[:k] / shares[:k].sum())
        theirs = sps.chi2_contingency(np.vstack([r, c]), correction=False)
        ours = stats.chi_square(r, c)
        assert 1e-6 < theirs.pvalue < 1 and theirs.dof == k - 1
        assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    once = stats.chi_square(np.array([1, 10]), np.array([0, 10]))
    theirs = sps.chi2_contingency([[1, 10], [0, 10]], correction=False)
    assert once.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
