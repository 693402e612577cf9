"""`--help` reads well in an 80-column terminal, and `help()` on the public functions shows
every option."""

from __future__ import annotations

import inspect

import pytest
import typer
from typer.testing import CliRunner

import slipway
from slipway.cli import app
from tests.test_docs import commands

COMMANDS = commands(typer.main.get_command(app))


@pytest.mark.parametrize("path", ["slipway", *COMMANDS])
def test_help_fits_80_columns_without_completion_options(path):
    """Every command's help wraps within 80 columns even in a wide terminal, offers no shell
    completion options, and no command summary is cut short."""
    args = [*path.split()[1:], "--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"}, prog_name="slipway")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Usage: slipway")
    assert max(len(line) for line in lines) <= 80, result.output
    assert "--install-completion" not in result.output
    assert "--show-completion" not in result.output
    listed = result.output.split("Commands:", 1)[1] if "Commands:" in result.output else ""
    assert not [line for line in listed.splitlines() if line.endswith("...")], listed


PUBLIC = {
    slipway.register: {
        "X_val", "y_val", "description", "tags", "format", "cv", "unseen", "band",
        "abs_limit", "bounds", "nullable", "ranges", "alias", "seed", "onnx",
    },
    slipway.score_file: {
        "output", "key_column", "chunk_size", "engine", "scheduler", "run_id", "query",
        "overwrite", "progress", "registry",
    },
    slipway.load: {"backend"},
    slipway.promote: {"alias"},
    slipway.rollback: {"alias"},
    slipway.score: {"key_column"},
}  # fmt: skip


@pytest.mark.parametrize("func", list(PUBLIC), ids=lambda f: f.__name__)
def test_public_functions_spell_out_every_option(func):
    """help() shows each keyword the function accepts, by name, in the signature and the
    docstring: no **options."""
    params = inspect.signature(func).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert PUBLIC[func] <= set(params)
    doc = inspect.getdoc(func) or ""
    for name in PUBLIC[func]:
        assert name in doc, f"{func.__name__}'s docstring does not describe {name}"
    assert len(doc.splitlines()) >= 3


def test_register_keeps_the_options_of_the_registry_method():
    """slipway.register takes exactly Registry.register's keywords, with the same defaults."""
    top = inspect.signature(slipway.register).parameters
    method = dict(inspect.signature(slipway.Registry.register).parameters)
    method.pop("self")
    assert list(top) == list(method)
    assert {k: p.default for k, p in top.items()} == {k: p.default for k, p in method.items()}
