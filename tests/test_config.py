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
