"""`slipway serve`: the HTTP service for every model with a production alias."""

from __future__ import annotations

from typing import Annotated

import typer

from slipway.cli._common import err_console, settings


def serve_command(
    host: Annotated[
        str, typer.Option(help="Interface to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(help="Worker processes (use PostgreSQL as the store with several).", min=1),
    ] = 1,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Serve only this model (repeat for several)."),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without API keys (trusted networks only).")
    ] = False,
    require_all: Annotated[
        bool,
        typer.Option(
            "--require-all",
            help="Ready only while every model to serve is loaded (default: at least one).",
        ),
    ] = False,
    graceful_timeout: Annotated[
        int, typer.Option(help="Seconds in-flight requests get to finish on SIGTERM.", min=1)
    ] = 30,
    access_log: Annotated[
        bool, typer.Option(help="Write one JSON line per request to stdout.")
    ] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    console: Annotated[
        bool | None,
        typer.Option(
            "--console/--no-console",
            help="Serve the web console at /ui (default: SLIPWAY_SERVE_CONSOLE, on).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve predictions over HTTP (and the web console at /ui) until SIGTERM or Ctrl-C."""
    from slipway import app
    from slipway.serving import server
    from slipway.serving.docs import docs_hint

    config = server.settings_for(
        settings(),
        models=model or (),
        auth=not no_auth,
        workers=workers,
        console=console,
        require_all=require_all,
    )
    served = server.preflight(config)
    if no_auth:
        err_console.print(
            "[bold yellow]warning:[/] --no-auth: every route is open to anyone who can reach "
            f"{host}:{port}."
        )
    if not served:
        err_console.print(
            "[yellow]note:[/] no model has a production alias yet; the server will start "
            "serving each one as soon as it is promoted."
        )
    else:
        err_console.print(f"serving {', '.join(served)} on http://{host}:{port}")
    if config.serve_console:
        err_console.print(f"console on http://{host}:{port}/ui (log in with an admin key)")
    for problem in server.missing_code(config):
        err_console.print(f"[bold yellow]warning:[/] {problem}", soft_wrap=True)
    hint = docs_hint(
        f"http://{host}:{port}", auth=config.serve_auth, public_docs=config.serve_public_docs
    )
    err_console.print(hint, soft_wrap=True)
    app.serve(
        config,
        host=host,
        port=port,
        graceful_timeout=graceful_timeout,
        log_level=log_level,
        access_log=access_log,
    )
