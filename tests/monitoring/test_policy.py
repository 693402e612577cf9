"""The monitoring policy: documented defaults, per-feature floors, and every bad setting refused."""

from __future__ import annotations

import pytest

from slipway.exceptions import ConfigError
from slipway.monitoring.policy import (
    Policy,
    QualityFloors,
    Thresholds,
    load_policy,
    make_policy,
)

DOCUMENTED = {  # docs/monitoring.md, "Options"
    "alpha": 0.05,
    "correction": "bh",
    "min_rows": 50,
    "thresholds": {
        "mean_shift": 0.1,
        "variance_ratio": 2.0,
        "wasserstein": 0.1,
        "psi": 0.2,
        "js": 0.1,
        "severity": "alert",
    },
    "features": {},
    "quality": {
        "null_rate": 0.05,
        "out_of_range": 0.01,
        "unseen_category": 0.01,
        "contract_violations": 0.01,
    },
    "min_labels": 50,
    "performance_tolerance": 0.02,
    "bootstrap": 200,
    "seed": 0,
    "on_alert": None,
}


def test_the_defaults_are_the_documented_ones():
    """Policy() holds the defaults docs/monitoring.md lists, and records them as such."""
    assert Policy().to_dict() == DOCUMENTED
    assert make_policy().to_dict() == DOCUMENTED


def test_each_bad_setting_is_refused_all_at_once_and_the_edges_are_allowed():
    """alpha strictly inside (0, 1), a known correction, min_rows >= 2, bootstrap >= 20."""
    for fine in [
        {"alpha": 0.999, "correction": "none", "min_rows": 2, "bootstrap": 20},
        {"alpha": 1e-9, "correction": "bonferroni"},
    ]:
        assert Policy(**fine).alpha == fine["alpha"]
    with pytest.raises(ConfigError) as info:
        Policy(alpha=1.0, correction="holm", min_rows=1, bootstrap=19)  # type: ignore[arg-type]
    assert info.value.problems == [
        "alpha must be between 0 and 1, got 1.0",
        "correction must be bh, bonferroni or none, got 'holm'",
        "min_rows must be at least 2, got 1",
        "bootstrap must be at least 20 resamples, got 19",
    ]
    with pytest.raises(ConfigError, match="alpha must be between 0 and 1, got 0"):
        Policy(alpha=0)


def test_star_sets_every_features_floors_and_a_feature_overrides_some_of_them():
    """ "*" replaces the defaults; a named feature starts from them and changes only its keys."""
    policy = make_policy(
        thresholds={"amount": {"psi": 0.5}, "*": {"psi": 0.3, "js": 0.2}, "age": Thresholds(js=0)},
        alpha=0.01,
    )
    assert policy.alpha == 0.01 and policy.thresholds == Thresholds(psi=0.3, js=0.2)
    assert policy.for_feature("amount") == Thresholds(psi=0.5, js=0.2)
    assert policy.for_feature("age") == Thresholds(js=0)
    assert policy.for_feature("other") is policy.thresholds
    again = make_policy(policy, thresholds={"country": {"severity": "warn"}}, seed=3)
    assert set(again.features) == {"amount", "age", "country"} and again.seed == 3
    assert again.for_feature("country") == Thresholds(psi=0.3, js=0.2, severity="warn")
    assert again.to_dict()["features"]["country"]["severity"] == "warn"
    assert policy.features.keys() == {"amount", "age"}  # the base policy is left as it was
    with pytest.raises(ConfigError, match=r"Unknown monitoring option\(s\): alhpa, sed\."):
        make_policy(alhpa=0.01, sed=1)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"psi": -0.1}, "amount.psi: must be a non-negative number, got -0.1"),
        ({"psi": "high"}, "amount.psi: must be a non-negative number, got 'high'"),
        ({"psi": True}, "amount.psi: must be a non-negative number, got True"),
        ({"severity": "page"}, "amount.severity: must be 'warn' or 'alert', got 'page'"),
        ({"mean_shfit": 1}, "amount.mean_shfit: unknown threshold"),
        ({"variance_ratio": 0.5}, "amount.variance_ratio: must be at least 1 (it is symmetric)"),
    ],
)
def test_bad_floors_are_refused_naming_the_feature_and_key(value, problem):
    """Floors are non-negative numbers (variance_ratio at least 1), severity warn or alert."""
    with pytest.raises(ConfigError) as info:
        make_policy(thresholds={"amount": value})
    assert info.value.problems == [problem]
    assert "known: js, mean_shift, psi, severity, variance_ratio, wasserstein" in str(info.value)


def test_the_edges_of_the_floors_are_allowed():
    """Zero floors, a variance ratio of exactly 1, integer floors and both severities pass."""
    edges = {"mean_shift": 0, "psi": 0.0, "variance_ratio": 1, "wasserstein": 2}
    assert make_policy(thresholds={"a": edges}).for_feature("a") == Thresholds(**edges)
    for severity in ("warn", "alert"):
        got = make_policy(thresholds={"a": {"severity": severity}}).for_feature("a")
        assert got.severity == severity
    with pytest.raises(ConfigError, match="Thresholds for 'a' must be a mapping, got 0.3"):
        make_policy(thresholds={"a": 0.3})


def test_a_toml_file_sets_options_floors_per_feature_and_quality(tmp_path):
    """Top-level options, [thresholds] for every feature, [features.NAME], [quality]."""
    path = tmp_path / "monitor.toml"
    path.write_text(
        "alpha = 0.01\nmin_rows = 100\n[thresholds]\npsi = 0.25\n"
        "[features.amount]\nmean_shift = 0.2\n[quality]\nnull_rate = 1\n"
    )
    policy = load_policy(path)
    assert (policy.alpha, policy.min_rows) == (0.01, 100)
    assert policy.thresholds == Thresholds(psi=0.25)
    assert policy.for_feature("amount") == Thresholds(psi=0.25, mean_shift=0.2)
    assert policy.quality == QualityFloors(null_rate=1.0)
    assert isinstance(policy.quality.null_rate, float)
    path.write_text("alpha = 0.01\n")
    assert load_policy(path).quality == QualityFloors() and load_policy(path).features == {}


def test_an_unreadable_or_invalid_toml_file_is_refused_naming_it(tmp_path):
    """A missing file, non-UTF-8 bytes, bad TOML and unknown [quality] keys are ConfigErrors."""
    path = tmp_path / "monitor.toml"
    with pytest.raises(ConfigError, match="Cannot read monitoring config .*monitor.toml"):
        load_policy(path)
    path.write_bytes(b"alpha = 0.01\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 18\)"):
        load_policy(path)
    path.write_text("alpha = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_policy(path)
    for quality in ["[quality]\nnulls = 0.1\n", "quality = 0.1\n"]:
        path.write_text(quality)
        with pytest.raises(ConfigError, match=r"\[quality\] takes only contract_violations, "):
            load_policy(path)
