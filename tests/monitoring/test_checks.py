"""slipway.monitor on frames and arrays: edge cases get a status, never a crash."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import slipway
from slipway.exceptions import ConfigError
from slipway.monitoring import DriftReport, monitor


@pytest.fixture
def reference():
    """A mixed frame: numbers, a category, a constant and a nullable column."""
    rng = np.random.default_rng(0)
    n = 2_000
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n),
            "merchant": rng.choice(["grocery", "travel", "gaming"], n),
            "flag": np.ones(n),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        }
    )


def test_top_level_monitor_accepts_arrays_like_check_feature_drift():
    """slipway.monitor takes two 1-D arrays and returns a report with a status."""
    rng = np.random.default_rng(1)
    report = slipway.monitor(rng.normal(size=1_000), rng.normal(1, 1, size=1_000))
    assert isinstance(report, DriftReport)
    assert report.status == "ALERT" and report.flagged == ["feature_0"]


def test_empty_window_marks_every_feature_empty(reference):
    """No rows: each feature says "empty" and the run WARNs."""
    report = monitor(reference, reference.head(0))
    assert {f.status for f in report.features.values()} == {"empty"}
    assert report.status == "WARN" and report.reasons[0].code == "empty_window"


def test_single_row_window_is_insufficient_data(reference):
    """One row is never enough to judge."""
    report = monitor(reference, reference.head(1))
    assert report.features["amount"].status == "insufficient_data"
    assert report.features["merchant"].status == "insufficient_data"


def test_all_null_feature_gets_its_own_status_and_a_quality_flag(reference):
    """A feature missing in every row says "all_null"; its null rate raises a WARN."""
    current = reference.sample(500, random_state=0).assign(score=np.nan)
    report = monitor(reference, current)
    assert report.features["score"].status == "all_null"
    assert any(r.code == "quality_null_rate" for r in report.reasons)
    assert report.status == "WARN"


def test_constant_feature_equal_on_both_sides_is_constant(reference):
    """A feature that is one value on both sides is reported constant, not tested."""
    report = monitor(reference, reference.sample(500, random_state=1))
    assert report.features["flag"].status == "constant"
    assert report.features["flag"].p_value is None


def test_constant_reference_moved_is_drift(reference):
    """When a constant reference moves, the change is flagged (normalized effects are infinite)."""
    current = reference.sample(500, random_state=2).assign(flag=2.0)
    result = monitor(reference, current).features["flag"]
    assert result.flagged and result.effects["mean_shift"] == float("inf")


def test_feature_never_seen_in_the_reference_and_a_missing_one(reference):
    """An extra column says not_in_reference, a dropped one says missing; both WARN."""
    current = reference.sample(500, random_state=3).drop(columns="merchant").assign(new=1.0)
    report = monitor(reference, current)
    assert report.features["new"].status == "not_in_reference"
    assert report.features["merchant"].status == "missing"
    assert {"not_in_reference", "missing_feature"} <= {r.code for r in report.reasons}


def test_unseen_categories_are_measured_and_flagged(reference):
    """A category never seen in the reference shows as unseen share and a quality flag."""
    current = reference.sample(1_000, random_state=4).copy()
    current.loc[current.index[:200], "merchant"] = "crypto"
    report = monitor(reference, current)
    result = report.features["merchant"]
    assert result.effects["unseen_share"] == pytest.approx(0.2)
    assert result.flagged and result.test == "chi2"
    assert any(r.code == "quality_unseen_category" for r in report.reasons)


def test_every_edge_case_serializes_to_strict_json(reference):
    """Infinite effects and missing values become null; the JSON parses back to a report."""
    current = reference.head(300).assign(flag=5.0, score=np.nan, extra="x")
    report = monitor(reference, current)
    text = report.to_json()
    data = json.loads(text)
    assert data["status"] == report.status
    again = DriftReport.from_dict(data)
    assert again.features.keys() == report.features.keys()
    assert again.status == report.status


def test_per_feature_floors_and_severity(reference):
    """A higher floor turns a flag into "minor"; severity warn turns ALERT into WARN."""
    rng = np.random.default_rng(5)
    current = reference.sample(1_500, random_state=5).copy()
    current["amount"] = current["amount"] * 1.4 + rng.normal(0, 1, len(current))
    assert monitor(reference, current).features["amount"].flagged
    floors = {"mean_shift": 10, "variance_ratio": 100, "wasserstein": 10, "psi": 10}
    lenient = monitor(reference, current, thresholds={"amount": floors})
    assert lenient.features["amount"].status == "minor"
    quiet = monitor(reference, current, thresholds={"amount": {"severity": "warn"}})
    assert quiet.features["amount"].flagged and quiet.status == "WARN"


def test_bad_thresholds_name_the_feature_and_the_key(reference):
    """An unknown threshold or a negative floor is a ConfigError listing each problem."""
    with pytest.raises(ConfigError) as info:
        monitor(reference, reference, thresholds={"amount": {"mean_shfit": 1, "psi": -1}})
    assert "amount.mean_shfit: unknown threshold" in str(info.value)
    assert "amount.psi" in str(info.value)


def test_extra_statistics_are_plain_callables(reference):
    """A statistic (reference, current) -> float is reported; with a floor it can flag."""
    current = reference.sample(800, random_state=6)

    def iqr_ratio(ref, cur):
        return float(
            np.subtract(*np.percentile(cur, [75, 25])) / np.subtract(*np.percentile(ref, [75, 25]))
        )

    def broken(ref, cur):
        raise RuntimeError("boom")

    report = monitor(reference, current, statistics={"iqr": iqr_ratio, "broken": broken})
    amount = report.features["amount"]
    assert amount.extra["iqr"] == pytest.approx(iqr_ratio(reference.amount, current.amount))
    assert "boom" in amount.extra["broken"]["error"]
    assert amount.floors.keys() == {"mean_shift", "variance_ratio", "wasserstein", "psi"}


def test_an_extra_statistic_with_a_floor_flags_only_a_significant_shift(reference):
    """A statistic above its floor is an effect like the others: it flags a shift the test
    finds significant (the built-in floors set out of reach), and never a tiny one."""
    current = reference.sample(800, random_state=6)
    out_of_reach = {"amount": {"mean_shift": 10, "variance_ratio": 100, "wasserstein": 10}}
    options = {"statistics": {"tiny": (lambda r, c: 1.0, 0.5)}, "thresholds": out_of_reach}
    tiny = monitor(reference, current.assign(amount=current.amount * 1.02), **options)
    amount = tiny.features["amount"]
    assert amount.effects["tiny"] == 1.0 and amount.floors["tiny"] == 0.5
    assert amount.exceeded == ["tiny"] and amount.p_adjusted > 0.5
    assert amount.status == "ok" and not amount.flagged and "amount" not in tiny.flagged
    large = monitor(reference, current.assign(amount=current.amount * 1.3), **options)
    amount = large.features["amount"]
    assert amount.p_adjusted < 1e-6 and amount.exceeded == ["tiny"]
    assert amount.flagged and large.flagged == ["amount"] and large.status == "ALERT"
    assert "tiny 1 (floor 0.5)" in amount.message
    options["statistics"] = {"tiny": (lambda r, c: 0.4, 0.5)}
    below = monitor(reference, current.assign(amount=current.amount * 1.3), **options)
    assert below.features["amount"].status == "minor"


def test_prediction_drift_from_frames(reference):
    """Reference and current predictions are compared as their own group."""
    rng = np.random.default_rng(7)
    report = monitor(
        reference,
        reference.sample(1_000, random_state=7),
        reference_predictions=rng.beta(2, 5, 3_000),
        current_predictions=rng.beta(5, 2, 1_000),
    )
    [pred] = report.latest.prediction
    assert pred.group == "prediction" and pred.flagged
    assert any(r.code == "prediction_drift" for r in report.reasons)


def test_inputs_of_any_shape_line_up_by_the_references_names(reference):
    """An array window takes the reference frame's column names; ``features`` picks columns
    (unknown names ignored); a column only in the window keeps its own kind; predictions are
    compared only when both sides are given."""
    numbers = reference[["amount", "score"]].fillna(0.0)
    window = numbers.sample(600, random_state=8)
    from_array = monitor(numbers, window.to_numpy())
    assert list(from_array.features) == ["amount", "score"]
    assert {f.status for f in from_array.features.values()} == {"ok"}
    picked = monitor(reference, reference.sample(600, random_state=9), features=["amount", "nope"])
    assert list(picked.features) == ["amount"]
    extra = monitor(reference, reference.head(300).assign(new=1.5, tag="x"))
    assert (extra.features["new"].kind, extra.features["tag"].kind) == ("numeric", "categorical")
    one_sided = monitor(reference, window.assign(merchant="grocery"), reference_predictions=[0.5])
    assert one_sided.latest.prediction == []


def test_monitoring_all_is_sorted_and_complete():
    """slipway.monitoring's __all__ is sorted and names each public attribute."""
    import slipway.monitoring as m

    assert m.__all__ == sorted(m.__all__)
    public = {  # dir: names imported on first use (slipway/_lazy.py) too
        n for n in dir(m) if not n.startswith("_") and not isinstance(getattr(m, n), type(m))
    }
    public.discard("annotations")
    assert public == set(m.__all__)


def test_categorical_statistics_get_aligned_category_counts(reference):
    """(fn, floor, "categorical") measures category counts; numeric ones never see them."""
    current = reference.sample(800, random_state=7)
    seen = {}

    def top_share_gap(ref, cur):
        seen["sizes"] = (ref.size, cur.size, ref.sum(), cur.sum())
        return float(abs(ref.max() / ref.sum() - cur.max() / cur.sum()))

    report = monitor(
        reference,
        current,
        statistics={"gap": (top_share_gap, 0.0, "categorical"), "n": lambda r, c: float(r.size)},
    )
    merchant, amount = report.features["merchant"], report.features["amount"]
    assert seen["sizes"] == (3, 3, 2_000, 800)
    assert merchant.effects["gap"] == merchant.extra["gap"] and "gap" in merchant.floors
    assert "n" not in merchant.extra and amount.extra["n"] == 2_000.0 and "gap" not in amount.extra
    with pytest.raises(ConfigError, match="'numeric' or 'categorical'"):
        monitor(reference, current, statistics={"x": (top_share_gap, None, "text")})


def test_builtin_effects_are_statistics_in_one_registry():
    """The built-in effects are registered Statistics, the same protocol users extend."""
    from slipway.monitoring import drift

    assert list(drift.BUILTIN["numeric"]) == ["mean_shift", "variance_ratio", "wasserstein", "psi"]
    assert list(drift.BUILTIN["categorical"]) == ["js", "unseen_share"]
    r, c = np.array([5.0, 5.0, 0.0]), np.array([2.0, 4.0, 4.0])
    assert drift.BUILTIN["categorical"]["unseen_share"](r, c) == 0.4
