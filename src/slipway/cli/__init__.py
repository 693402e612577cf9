"""The ``slipway`` command: a thin shell over the library.

Each command parses its options, calls one library function and prints the result. Library
errors become one line on stderr and a non-zero exit here, at the edge, and nowhere else.
"""

from __future__ import annotations

from typing import Annotated

import typer

from slipway._version import __version__
from slipway.cli import (
    batch,
    experiment,
    features,
    keys,
    lifecycle,
    models,
    monitor,
    predictions,
    serve,
    train,
)
from slipway.cli._common import print_error, typer_app

app = typer_app(
    name="slipway",
    help="Take a scikit-learn model from a notebook to production and keep it healthy there.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"slipway {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print Slipway's version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Take a scikit-learn model from a notebook to production and keep it healthy there."""


# short_help: the one line each command gets in `slipway --help`, within 80 columns.
app.add_typer(models.app, name="models")
app.add_typer(
    monitor.app, name="monitor", short_help="Check a model's traffic; exit 0/1/2 OK/WARN/ALERT."
)
app.add_typer(keys.app, name="keys")
app.add_typer(
    batch.app, name="batch", short_help="Score files or a query in chunks; runs list|show."
)
app.add_typer(experiment.app, name="experiment", short_help="A/B tests and shadow deployments.")
app.add_typer(
    features.app, name="features", short_help="Feature events and the training/serving skew audit."
)
app.command("train", short_help="Train from a config file and register the model.")(
    train.train_command
)
app.command(
    "quickstart", short_help="The whole loop on generated data: train, serve, score, monitor."
)(train.quickstart_command)
app.command("serve", short_help="Serve production models over HTTP, and the console at /ui.")(
    serve.serve_command
)
app.command(
    "check",
    cls=lifecycle.CannotRunCommand,
    short_help="Gate a candidate version against production; exit 0/1/3.",
)(lifecycle.check_command)
app.command(
    "retrain",
    cls=lifecycle.CannotRunCommand,
    short_help="Train a new version, gate it against production, shadow it.",
)(lifecycle.retrain_command)
app.add_typer(
    predictions.app, name="predictions", short_help="The prediction log: list, tail, export."
)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: a known error prints one line and exits 1, usage errors exit 2.

    Commands with exit codes of their own (``slipway monitor``) handle errors themselves.
    """
    try:
        app(args=argv, prog_name="slipway")
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # the edge: nothing reaches the user as a bare traceback
        print_error(exc)
        raise SystemExit(1) from None
