"""Settings come from SLIPWAY_* variables, with errors that quote the variable."""

from __future__ import annotations

import pytest

from slipway.config import Settings
from slipway.exceptions import ConfigError


def test_defaults(monkeypatch):
    """Home defaults to ./.slipway and the database to SQLite inside it."""
    for var in ("SLIPWAY_HOME", "SLIPWAY_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    s = Settings.from_env()
    assert str(s.home) == ".slipway"
    assert s.resolved_database_url.startswith("sqlite:///") and s.resolved_database_url.endswith(
        ".slipway/slipway.db"
    )


def test_environment_overrides(monkeypatch, tmp_path):
    """Every field reads its SLIPWAY_ variable; lists are comma separated."""
    monkeypatch.setenv("SLIPWAY_HOME", str(tmp_path))
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("SLIPWAY_TRUSTED_TYPES", "a.B, c.D")
    monkeypatch.setenv("SLIPWAY_ON_VERSION_MISMATCH", "refuse")
    s = Settings.from_env()
    assert s.home == tmp_path and s.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert s.trusted_types == ("a.B", "c.D") and s.on_version_mismatch == "refuse"
    assert s.artifacts_dir == tmp_path / "artifacts"


def test_bad_values_name_the_variable(monkeypatch):
    """A bad value raises ConfigError quoting the variable name."""
    monkeypatch.setenv("SLIPWAY_ON_VERSION_MISMATCH", "maybe")
    monkeypatch.setenv("SLIPWAY_PROFILE_SAMPLE_ROWS", "-1")
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    assert [p.split(":")[0] for p in info.value.problems] == [
        "SLIPWAY_ON_VERSION_MISMATCH",
        "SLIPWAY_PROFILE_SAMPLE_ROWS",
    ]


@pytest.mark.parametrize("value", ["1e308", "inf", "nan", "-1"])
@pytest.mark.parametrize(
    "variable",
    [
        "SLIPWAY_SERVE_LOG_FLUSH_SECONDS",
        "SLIPWAY_SERVE_POLL_SECONDS",
        "SLIPWAY_SERVE_HEADER_TIMEOUT_SECONDS",
        "SLIPWAY_SERVE_BODY_TIMEOUT_SECONDS",
        "SLIPWAY_SERVE_BATCH_WAIT_MS",
        "SLIPWAY_ALERT_WEBHOOK_TIMEOUT",
        "SLIPWAY_ALERT_WEBHOOK_BACKOFF",
    ],
)
def test_every_duration_is_bounded(monkeypatch, variable, value):
    """Durations that would overflow a thread's wait (1e308, inf) or mean nothing are refused."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    assert info.value.problems[0].startswith(variable)


def test_every_float_setting_is_bounded_above():
    """No float field can be set to a value a thread's wait or a deadline cannot take."""
    for name, field in Settings.model_fields.items():
        if field.annotation is float:
            bounded = [m for m in field.metadata if hasattr(m, "le") or hasattr(m, "lt")]
            assert bounded, f"{name} has no upper bound"
