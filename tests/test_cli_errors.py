"""Inputs that once escaped as "unexpected ...Error": each is now one line naming the problem."""

from __future__ import annotations

import pytest

from slipway.registry import Registry
from tests.cli_helpers import run_cli

HUGE = "99999999999999999999"


@pytest.fixture
def fraud(env, make_fitted):
    """A registered, promoted ``fraud`` in the environment's store."""
    reg = Registry(env)
    fitted = make_fitted("frame", n=300)
    reg.register(fitted.pipeline, "fraud", fitted.X_train, fitted.y_train, alias="production")
    yield reg
    reg.store.dispose()


def one_known_line(result) -> str:
    """The error line of a failed command, checked to be a known error and a single line."""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert "unexpected" not in result.err and "Traceback" not in result.err
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("models", "show", f"fraud:{HUGE}"),
        ("models", "promote", "fraud", HUGE),
        ("models", "archive", "fraud", HUGE),
    ],
)
def test_a_version_number_too_big_for_the_database_is_simply_not_found(capsys, fraud, args):
    """A 20-digit version (OverflowError before) is a version that does not exist."""
    result = run_cli(capsys, *args)
    assert result.code == 1
    assert f"Model 'fraud' has no version {HUGE} (latest is 1)." in one_known_line(result)


def test_batch_of_an_empty_csv_file_says_it_is_empty(capsys, fraud, tmp_path):
    """A zero-byte CSV (EmptyDataError before) is a known batch input error."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = run_cli(capsys, "batch", "fraud", str(empty), "--output", str(tmp_path / "o.parquet"))
    assert result.code == 1
    line = one_known_line(result)
    assert "empty.csv" in line and "is empty: it has no header row" in line


def test_a_monitor_config_that_is_not_utf8_is_a_config_error(capsys, fraud, tmp_path):
    """A Latin-1 monitor config (UnicodeDecodeError before) exits 3 naming the file."""
    config = tmp_path / "monitor.toml"
    config.write_bytes("alpha = 0.01 # écart\n".encode("latin-1"))
    result = run_cli(capsys, "monitor", "fraud", "--config", str(config))
    assert result.code == 3
    assert "monitor.toml is not UTF-8 text" in one_known_line(result)


def test_a_train_config_that_is_not_utf8_is_a_config_error(capsys, env, tmp_path):
    """The same for `slipway train`."""
    config = tmp_path / "train.toml"
    config.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    result = run_cli(capsys, "train", str(config))
    assert result.code == 1 and "train.toml is not UTF-8 text" in one_known_line(result)


def test_slipway_home_pointing_at_a_file_is_a_config_error(capsys, tmp_path, monkeypatch):
    """SLIPWAY_HOME=<a file> (FileExistsError before) names the setting."""
    home = tmp_path / "home"
    home.write_text("not a directory")
    monkeypatch.setenv("SLIPWAY_HOME", str(home))
    monkeypatch.delenv("SLIPWAY_DATABASE_URL", raising=False)
    result = run_cli(capsys, "models", "list")
    assert result.code == 1
    assert f"SLIPWAY_HOME={home} is a file, not a directory" in one_known_line(result)


def test_a_sqlite_url_into_a_missing_directory_is_refused_not_created(
    capsys, tmp_path, monkeypatch
):
    """SLIPWAY_DATABASE_URL into a directory that does not exist: an error, nothing created;
    the default database under SLIPWAY_HOME is still created on first use."""
    missing = tmp_path / "nonexistent" / "dir"
    monkeypatch.setenv("SLIPWAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", f"sqlite:///{missing}/x.db")
    result = run_cli(capsys, "models", "list")
    assert result.code == 1 and "which does not exist" in one_known_line(result)
    assert not missing.parent.exists()
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", "")  # set but empty: the default database
    assert run_cli(capsys, "models", "list").code == 0
    assert (tmp_path / "home" / "slipway.db").is_file()
