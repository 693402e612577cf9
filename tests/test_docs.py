"""The docs keep up with the code: every CLI command is documented."""

from __future__ import annotations

from pathlib import Path

import typer

from slipway.cli import app

ROOT = Path(__file__).resolve().parents[1]


def commands(group, prefix: str = "slipway") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(cmd, "commands"):
            if getattr(cmd, "invoke_without_command", False):
                out.append(path)  # a group that is also a command (`slipway monitor NAME`)
            out.extend(commands(cmd, path))
        else:
            out.append(path)
    return out


def test_every_cli_command_has_a_section_in_docs_cli():
    """docs/cli.md has a heading for each command the CLI offers, and none it does not."""
    documented = {
        line.removeprefix("## ").strip("`")
        for line in (ROOT / "docs" / "cli.md").read_text().splitlines()
        if line.startswith("## `slipway")
    }
    offered = set(commands(typer.main.get_command(app)))
    assert offered == documented


def test_readme_opens_with_the_two_commands():
    """A newcomer sees `make quickstart` and `make test` first."""
    head = (ROOT / "README.md").read_text().split("```sh", 1)[1].split("```", 1)[0]
    assert "make quickstart" in head and "make test" in head
