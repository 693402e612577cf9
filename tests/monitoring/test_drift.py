"""decide(): the run's p-values corrected exactly as statsmodels does, for every policy."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from slipway.monitoring import monitor
from slipway.monitoring.drift import FeatureResult, decide
from slipway.monitoring.policy import Policy

METHODS = {"bh": "fdr_bh", "bonferroni": "bonferroni"}


def pending(p_values):
    """Undecided KS results whose effects all exceed their floors: p alone decides the flag."""
    return [
        FeatureResult(
            f"f{i}",
            "numeric",
            test="ks",
            p_value=float(p),
            reference_rows=1_000,
            current_rows=500,
            floors={"mean_shift": 0.1},
            effects={"mean_shift": 1.0},
            exceeded=["mean_shift"],
        )
        for i, p in enumerate(p_values)
    ]


# Spread so that Benjamini-Hochberg, Bonferroni and no correction each flag a different set.
P_VALUES = np.array([0.001, 0.004, 0.006, 0.012, 0.02, 0.03, 0.045, 0.2, 0.5, 0.8])


@pytest.mark.parametrize("correction", ["bh", "bonferroni", "none"])
def test_decide_corrects_like_statsmodels_and_flags_what_it_rejects(correction):
    """p_adjusted equals multipletests' for bh and bonferroni (raw p for none); flags follow."""
    results = pending(P_VALUES)
    decide(results, Policy(correction=correction))
    got = np.array([r.p_adjusted for r in results])
    if correction == "none":
        expected, reject = P_VALUES, P_VALUES <= 0.05
    else:
        reject, expected, _, _ = multipletests(P_VALUES, alpha=0.05, method=METHODS[correction])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert [r.flagged for r in results] == reject.tolist()
    assert sum(reject) == {"bh": 6, "bonferroni": 2, "none": 7}[correction]


def test_significance_is_judged_at_the_policys_alpha_inclusive():
    """A corrected p exactly at alpha is significant; alpha is the policy's, not 0.05."""
    results = pending([0.01, 0.2])
    decide(results, Policy(alpha=0.02, correction="bonferroni"))
    assert [r.p_adjusted for r in results] == [0.02, 0.4]
    assert [r.status for r in results] == ["drift", "ok"]


def test_a_significant_result_below_every_floor_is_minor_not_flagged():
    """Significance alone never flags: without an exceeded effect the status is minor."""
    results = pending([1e-6, 0.5])
    results[0].exceeded = []
    decide(results, Policy())
    assert [r.status for r in results] == ["minor", "ok"]


@pytest.mark.parametrize("correction", ["bh", "bonferroni", "none"])
def test_the_minimum_detectable_shift_uses_the_corrected_level(correction):
    """With k tests the detectable shift is computed at alpha / k (alpha uncorrected), never
    below the floor."""
    from slipway.monitoring import stats

    for k in (1, 20):
        results = pending([0.5] * k)
        decide(results, Policy(correction=correction))
        level = 0.05 if correction == "none" else 0.05 / k
        expected = stats.detectable_mean_shift(1_000, 500, level)
        assert results[0].min_detectable == pytest.approx(expected, rel=1e-12)
        assert results[0].detectable_unit == "sd"


@pytest.mark.parametrize("correction", ["bh", "bonferroni", "none"])
def test_a_monitoring_run_corrects_across_features_and_predictions(make_table, correction):
    """monitor() pools every tested feature and prediction output into one correction."""
    rng = np.random.default_rng(8)
    reference = make_table(3_000, seed=8)
    current = make_table(600, seed=9, shift={0: 0.12, 1: 0.15, 3: 0.3})
    report = monitor(
        reference,
        current,
        correction=correction,
        reference_predictions=rng.beta(2, 5, 3_000),
        current_predictions=rng.beta(2.2, 5, 600),
    )
    window = report.latest
    tested = [r for r in [*window.features, *window.prediction] if r.p_value is not None]
    assert len(tested) == 21  # 20 features and the prediction
    p = np.array([r.p_value for r in tested])
    got = np.array([r.p_adjusted for r in tested])
    expected = p if correction == "none" else multipletests(p, method=METHODS[correction])[1]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_numeric_histograms_cut_the_reference_range_in_20_bins():
    """Shares per bin as np.histogram over the reference's range, and the window's share
    below and above it; a constant reference gets a range of one around its value."""
    import pandas as pd

    reference = pd.DataFrame({"x": np.arange(100.0)})
    current = pd.DataFrame({"x": [-5.0, 0.0, 0.0, 49.5, 99.0, 150.0, 200.0, 300.0]})
    hist = monitor(reference, current, min_rows=2).features["x"].histogram
    edges = np.linspace(0.0, 99.0, 21)
    np.testing.assert_allclose(hist["edges"], edges)
    np.testing.assert_allclose(hist["reference"], np.histogram(reference.x, edges)[0] / 100)
    np.testing.assert_allclose(hist["current"], np.histogram(current.x, edges)[0] / 8)
    assert (hist["current_below"], hist["current_above"]) == (1 / 8, 3 / 8)
    constant = pd.DataFrame({"x": np.full(60, 5.0)})
    hist = monitor(constant, current, min_rows=2).features["x"].histogram
    np.testing.assert_allclose(hist["edges"], np.linspace(4.5, 5.5, 21))
    assert hist["reference"][10] == 1.0 and sum(hist["reference"]) == 1.0
    assert (hist["current_below"], hist["current_above"]) == (3 / 8, 5 / 8)


def test_categorical_histograms_show_the_top_12_categories_then_the_others():
    """Categories by their larger share (ties in name order), unseen ones marked, the rest
    summed into one "(N others)" bar."""
    import pandas as pd

    ref_counts = {f"c{i:02d}": 100 - 5 * i for i in range(14)}  # c00 the largest
    cur_counts = {**ref_counts, "c13": 300, "new": 200}
    del cur_counts["c00"]

    def frame(counts):
        return pd.DataFrame({"cat": [k for k, n in counts.items() for _ in range(n)]})

    ref, cur = frame(ref_counts), frame(cur_counts)
    hist = monitor(ref, cur).features["cat"].histogram
    r = {k: n / len(ref) for k, n in ref_counts.items()}
    c = {k: n / len(cur) for k, n in cur_counts.items()}
    names = sorted(set(r) | set(c), key=lambda k: (-max(r.get(k, 0), c.get(k, 0)), k))
    top, rest = names[:12], names[12:]
    assert hist["categories"] == [*top, f"({len(rest)} others)"] and len(rest) == 3
    np.testing.assert_allclose(
        hist["reference"], [*(r.get(k, 0) for k in top), sum(r.get(k, 0) for k in rest)]
    )
    np.testing.assert_allclose(
        hist["current"], [*(c.get(k, 0) for k in top), sum(c.get(k, 0) for k in rest)]
    )
    assert hist["unseen"] == [k == "new" for k in top] + [False]
    assert "new" in top
    few = monitor(frame({"a": 60, "b": 40}), frame({"a": 50, "b": 50})).features["cat"]
    assert few.histogram["categories"] == ["a", "b"]  # no "others" bar when nothing is left


def test_rare_categories_are_pooled_before_chi_square():
    """Categories expected fewer than 5 times on a side are tested as one; 5 is enough."""
    import pandas as pd
    from scipy import stats as sps

    ref = {"a": 490, "b": 500, "e": 5, "c": 4, "d": 1}
    cur = {"a": 510, "b": 480, "e": 5, "c": 0, "d": 5}

    def frame(counts):
        return pd.DataFrame({"cat": [k for k, n in counts.items() for _ in range(n)]})

    result = monitor(frame(ref), frame(cur)).features["cat"]
    pooled = [[490, 500, 5, 5], [510, 480, 5, 5]]  # c and d pooled, e (expected 5) kept
    expected = sps.chi2_contingency(pooled, correction=False)
    assert result.extra["categories_tested"] == 4
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    from slipway.monitoring import stats

    js = stats.detectable_js_distance(1_000, 1_000, 4, 0.05)
    assert result.min_detectable == pytest.approx(max(js, 0.1), rel=1e-12)
    assert result.detectable_unit == "js"


def test_effects_of_a_constant_reference_are_zero_or_infinite():
    """No spread in the reference: no move is 0 (ratio 1), any move is infinite."""
    from slipway.monitoring import drift

    same, ones, twos = np.full(5, 1.0), np.ones(5), np.array([1.0, 1.0, 2.0, 2.0, 2.0])
    assert drift.mean_shift(same, ones) == 0.0 and drift.mean_shift(same, twos) == np.inf
    assert drift.wasserstein(same, ones) == 0.0 and drift.wasserstein(same, twos) == np.inf
    assert drift.variance_ratio(same, ones) == 1.0 and drift.variance_ratio(same, twos) == np.inf
    one = np.array([3.0])
    assert drift.variance_ratio(one, one) == 1.0 and drift.variance_ratio(one, twos) == np.inf
    assert drift.variance_ratio(twos, one) == 0.0
    ref, cur = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 3.0, 5.0])
    assert drift.mean_shift(ref, cur) == pytest.approx(1.5 / ref.std(), rel=1e-12)
    assert drift.variance_ratio(ref, cur) == pytest.approx(4.0 / ref.var(ddof=1), rel=1e-12)


def test_the_variance_floor_flags_halving_or_doubling_inclusive_the_others_strictly():
    """variance_ratio 2 flags ratios >= 2 or <= 1/2; other floors flag only values above."""
    from slipway.monitoring.drift import _exceeds

    assert [_exceeds("variance_ratio", v, 2.0) for v in (2.0, 0.5, 1.99, 0.51)] == [
        True,
        True,
        False,
        False,
    ]
    assert [_exceeds("psi", v, 0.2) for v in (0.2, 0.21)] == [False, True]
    assert not _exceeds("psi", None, 0.2) and not _exceeds("psi", float("nan"), 0.2)


def test_results_are_keyed_by_group_name_and_baseline_and_round_trip():
    """A feature is keyed by its name, a prediction output by group, name and baseline;
    to_dict/from_dict round-trip, and histogram=False leaves the histogram out."""
    feature = FeatureResult("amount", "numeric", histogram={"edges": [0, 1]})
    output = FeatureResult("proba", "numeric", group="prediction", baseline="validation")
    assert feature.key == "amount" and output.key == "prediction:proba@validation"
    assert FeatureResult.from_dict(feature.to_dict()) == feature
    assert feature.to_dict(histogram=False)["histogram"] is None
    assert feature.to_dict()["histogram"] == {"edges": [0, 1]}


def test_compare_names_why_a_feature_is_not_judged():
    """Each status that is not a verdict says why, naming the baseline; min_rows is enough."""
    from slipway.monitoring import columns
    from slipway.monitoring.drift import compare
    from slipway.monitoring.policy import Thresholds

    th = Thresholds(severity="warn")
    five = columns.numeric([1.0, 2.0, 3.0, 4.0, np.nan, 5.0])
    four = columns.numeric([1.0, 2.0, 3.0, 4.0])
    cats = columns.categorical(["a", "b", "a", "b", "a"])

    def check(ref, cur, baseline="reference", min_rows=5):
        return compare("x", ref, cur, th, min_rows=min_rows, baseline=baseline)

    r = check(None, five, "previous")
    assert (r.status, r.message) == ("not_in_reference", "x never appears in the previous window")
    assert (r.current_rows, r.null_rate, r.reference_rows) == (5, pytest.approx(1 / 6), 0)
    assert r.reference_null_rate == 0.0
    r = check(five, None, "validation")
    assert (r.status, r.message) == ("missing", "x is absent from the window")
    assert (r.reference_rows, r.reference_null_rate) == (5, pytest.approx(1 / 6))
    assert (r.current_rows, r.null_rate) == (0, 0.0)
    r = check(five, cats, "validation")
    assert (r.status, r.message) == (
        "skipped",
        "x is numeric in the validation predictions, categorical now",
    )
    for ref, cur in [(columns.skipped(5), columns.skipped(5)), (columns.skipped(5), five)]:
        r = check(ref, cur)
        assert (r.status, r.message) == ("skipped", "x is not compared (date-times always move)")
    r = check(five, four)
    assert r.message == "4 value(s) in the window; at least 5 are needed"
    r = check(four, five, "previous")
    assert r.message == "4 value(s) in the previous window; at least 5 are needed"
    assert r.status == "insufficient_data" and r.severity == "warn"
    assert check(five, five).status == "pending" and check(five, five).test == "ks"
    one = columns.categorical(["a"] * 6)
    assert check(one, one).status == "constant"
    moved = check(one, columns.categorical(["b"] * 6))
    assert moved.status == "pending" and moved.test == "chi2"
    import pandas as pd

    b_of_ab = columns.categorical(pd.Categorical(["b"] * 6, categories=["a", "b"]))
    c_of_ac = columns.categorical(pd.Categorical(["c"] * 6, categories=["a", "c"]))
    assert check(b_of_ab, c_of_ac).status == "pending"  # an unused category is not the value
    r = check(five, columns.numeric([np.nan, np.nan]))
    assert r.status == "all_null"
    assert r.message == "every value is missing (reference: 16.7% missing)"
    assert check(five, columns.numeric([])).status == "empty"


def test_decide_explains_each_verdict():
    """A flag names the effects over their floors; minor and ok give the p-values, ok also
    the smallest shift this sample detects."""
    results = pending([0.001, 0.002, 0.5])
    results[1].exceeded = []
    results[1].effects = {"mean_shift": None}  # as read back from JSON, where NaN is null
    results[2].test, results[2].extra = "chi2", {"categories_tested": 3}
    results[2].floors, results[2].effects = {"js": 0.1}, {"js": 0.01}
    decide(results, Policy(correction="none"))
    drift_, minor, ok = results
    assert drift_.message == "shifted: mean moved 1 SD (floor 0.1) (ks p=0.001, corrected 0.001)"
    assert minor.message == (
        "significant but small: mean moved n/a (floor 0.1), each below its floor "
        "(ks p=0.002, corrected 0.002)"
    )
    assert ok.message.startswith("no significant shift (chi2 p=0.5, corrected 0.5); this sample")
    assert ok.message.endswith(f"detects shifts of {ok.min_detectable:.3g} JS or more")


def test_the_effects_of_a_numeric_feature_are_its_statistics():
    """Each numeric effect a run reports is the statistic of the sorted present values."""
    import pandas as pd

    from slipway.monitoring import stats

    rng = np.random.default_rng(12)
    ref, cur = rng.normal(0, 1, 800), rng.normal(0.3, 1.4, 500)
    effects = monitor(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})).features["x"].effects
    a, b = np.sort(ref), np.sort(cur)
    edges = stats.decile_edges(a)
    assert effects["psi"] == pytest.approx(
        stats.psi(stats.bin_shares(a, edges), stats.bin_shares(b, edges)), rel=1e-12
    )
    assert effects["mean_shift"] == pytest.approx(abs(b.mean() - a.mean()) / a.std(), rel=1e-12)
    assert effects["variance_ratio"] == pytest.approx(b.var(ddof=1) / a.var(ddof=1), rel=1e-12)
    w = stats.wasserstein(stats.merge_sorted(a, b)) / a.std()
    assert effects["wasserstein"] == pytest.approx(w, rel=1e-9)


@pytest.mark.parametrize("correction", ["bh", "bonferroni", "none"])
def test_a_run_with_nothing_to_test_decides_nothing(correction):
    """When every check is an edge case (no p-value), decide() leaves them as they are."""
    done = [FeatureResult("x", "numeric", status=s) for s in ("empty", "insufficient_data")]
    decide(done, Policy(correction=correction))
    assert [(r.status, r.p_adjusted) for r in done] == [
        ("empty", None),
        ("insufficient_data", None),
    ]
