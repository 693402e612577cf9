"""What every command shares: consoles, the registry from settings, JSON output."""

from __future__ import annotations

import io
import json
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import typer
from rich.console import Console
from rich.markup import escape

from slipway.config import Settings
from slipway.exceptions import SlipwayError, SlipwayWarning
from slipway.registry import Registry

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

JsonOption = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")
# Help is plain text wrapped within 80 columns, whatever the terminal's width.
HELP_WIDTH = 80


def typer_app(**options: Any) -> typer.Typer:
    """A Typer app (the CLI or one of its groups) with Slipway's help style.

    Help is click's plain layout wrapped within 80 columns (Typer's rich panels stretch to the
    terminal's width and squeeze option descriptions at 80), and no group offers Typer's
    shell-completion options.
    """
    context = {"max_content_width": HELP_WIDTH, **options.pop("context_settings", {})}
    return typer.Typer(
        rich_markup_mode=None, add_completion=False, context_settings=context, **options
    )


def settings() -> Settings:
    """Settings from the environment, read once per command."""
    return Settings.from_env()


def registry() -> Registry:
    """The registry the environment points at."""
    return Registry(settings())


def print_error(exc: BaseException) -> None:
    """One line on stderr for a known error (a config error adds one line per problem).

    Anything else is a bug: one line naming it, and the traceback only when SLIPWAY_DEBUG=1.
    """
    if isinstance(exc, SlipwayError):
        lines = str(exc).splitlines() or [type(exc).__name__]
    else:
        lines = [f"unexpected {type(exc).__name__}: {exc}".splitlines()[0]]
        if os.environ.get("SLIPWAY_DEBUG") == "1":
            traceback.print_exception(exc)
        else:
            lines[0] += " (set SLIPWAY_DEBUG=1 to see the traceback)"
    err_console.print(f"[bold red]error:[/] {lines[0]}", soft_wrap=True, markup=True)
    for line in lines[1:]:
        err_console.print(line, soft_wrap=True, markup=False)


def print_json(data: Any) -> None:
    """Write JSON to stdout, unwrapped, one document per call."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def warnings_printed() -> Iterator[None]:
    """Warnings (Slipway's notes about the data, every time; the libraries' own) print as one
    ``warning:`` line on stderr as they happen, not as Python's file:line report."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always", SlipwayWarning)
        yield


def _show_warning(
    message: Warning | str, category: type[Warning], *_: object, **__: object
) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(str(message))}", soft_wrap=True)


class Report(Protocol):
    """What :func:`emit` prints: a rich renderable with JSON and HTML forms."""

    def to_json(self) -> str: ...

    def to_html(self) -> str: ...


def emit(report: Report, fmt: str, out: Path | None, what: str) -> None:
    """Print ``report`` as ``fmt`` ("table", "json" or "html") on stdout, or write it to
    ``out`` and say "``what`` written to ``out``" on stderr."""
    if fmt == "json":
        text = report.to_json()
    elif fmt == "html":
        text = report.to_html()
    else:
        if out is None:
            console.print(report)
            return
        capture = Console(record=True, width=120, file=io.StringIO())
        capture.print(report)
        text = capture.export_text()
    if out is None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    out.write_text(text + "\n", encoding="utf-8")
    err_console.print(f"{what} written to {out}", soft_wrap=True)
