"""The ``slipway`` command: a thin shell over the library.

Each command parses its options, calls one library function and prints the result. Library
errors become one line on stderr and a non-zero exit here, at the edge, and nowhere else.
"""

from __future__ import annotations

import typer

from slipway.cli import batch, models, train
from slipway.cli._common import err_console
from slipway.exceptions import SlipwayError

app = typer.Typer(
    name="slipway",
    help="Take a scikit-learn model from a notebook to production and keep it healthy there.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models.app, name="models")
app.add_typer(batch.app, name="batch")
app.command("train")(train.train_command)
app.command("quickstart")(train.quickstart_command)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a known error prints one line and exits 1, usage errors exit 2."""
    try:
        app(args=argv, prog_name="slipway")
    except SlipwayError as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        err_console.print(f"[bold red]error:[/] {lines[0]}", soft_wrap=True)
        for line in lines[1:]:
            err_console.print(line, soft_wrap=True)
        raise SystemExit(1) from None
