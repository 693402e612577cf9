"""What every command shares: consoles, the registry from settings, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from slipway.config import Settings
from slipway.registry import Registry

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

JsonOption = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")


def settings() -> Settings:
    """Settings from the environment, read once per command."""
    return Settings.from_env()


def registry() -> Registry:
    """The registry the environment points at."""
    return Registry(settings())


def print_json(data: Any) -> None:
    """Write JSON to stdout, unwrapped, one document per call."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
