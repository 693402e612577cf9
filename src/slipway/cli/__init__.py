"""The ``slipway`` command: a thin shell over the library.

Each command parses its options, calls one library function and prints the result. Library
errors become one line on stderr and a non-zero exit here, at the edge, and nowhere else.
"""

from __future__ import annotations

import typer

from slipway.cli import batch, features, keys, lifecycle, models, monitor, serve, train
from slipway.cli._common import print_error

app = typer.Typer(
    name="slipway",
    help="Take a scikit-learn model from a notebook to production and keep it healthy there.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models.app, name="models")
app.add_typer(monitor.app, name="monitor")
app.add_typer(keys.app, name="keys")
app.add_typer(batch.app, name="batch")
app.add_typer(features.app, name="features")
app.command("train")(train.train_command)
app.command("quickstart")(train.quickstart_command)
app.command("serve")(serve.serve_command)
app.command("check", cls=lifecycle.CannotRunCommand)(lifecycle.check_command)
app.command("retrain", cls=lifecycle.CannotRunCommand)(lifecycle.retrain_command)


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
