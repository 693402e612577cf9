"""`slipway batch MODEL_REF INPUT ...` scores; `slipway batch runs list|show` reports.

``batch`` is a group that is also a command: any first argument that is not a subcommand
name (``runs``) is a model reference, so both spellings the issue promises work as written.
A model named ``runs`` is scored as ``runs:VERSION`` or ``runs@ALIAS``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from typer.core import TyperGroup

from slipway.batch.runs import DEFAULT_CHUNK_SIZE, EXIT_FAILED, BatchRun, RunLog
from slipway.cli._common import JsonOption, console, err_console, print_json, registry, typer_app

T = TypeVar("T")
_SCORE_ARGS = "slipway.batch.score_args"


class BatchGroup(TyperGroup):
    """``slipway batch``: a group (``runs``) that is also a command (the scorer).

    Any first argument that is not a subcommand name is a model reference (or an option, or
    ``--help``), and the whole command line goes to the scorer, which runs as
    ``slipway batch`` itself so its usage line and help read that way.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands:
            ctx.meta[_SCORE_ARGS] = args
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        args = ctx.meta.pop(_SCORE_ARGS, None)
        if args is None:
            return super().invoke(ctx)
        scorer = typer.main.get_command(score_app)
        with ctx:
            sub = scorer.make_context(ctx.info_name, args, parent=ctx.parent)
            with sub:
                return scorer.invoke(sub)


class EngineChoice(StrEnum):
    local = "local"
    dask = "dask"


app = typer_app(
    cls=BatchGroup,
    invoke_without_command=True,
    help="Score files or a query in chunks into the database or Parquet "
    "(slipway batch MODEL_REF INPUT [OPTIONS]; see slipway batch --help); list and show runs.",
    no_args_is_help=True,
)
runs_app = typer_app(help="History and status of batch runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


score_app = typer_app()


@score_app.command()
def score_command(
    model_ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    input: Annotated[
        str | None, typer.Argument(help="A CSV or Parquet file, a directory, or a quoted glob.")
    ] = None,
    key_column: Annotated[
        str | None,
        typer.Option("--key-column", help="Column that keys rows (default: row number)."),
    ] = None,
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="db, a .parquet file, or a directory ending in /."),
    ] = "db",
    chunk_size: Annotated[
        int | None,
        typer.Option(
            "--chunk-size", min=1, help=f"Rows per chunk (default {DEFAULT_CHUNK_SIZE:,})."
        ),
    ] = None,
    engine: Annotated[EngineChoice, typer.Option("--engine", help="Where to score.")] = (
        EngineChoice.local
    ),
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Dask scheduler address (default: a local cluster)."),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Name the run; an unfinished run resumes.")
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="Score the rows of this SQL query instead.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing Parquet output.")
    ] = False,
    keep_inputs: Annotated[
        bool,
        typer.Option(
            "--keep-inputs", help="Store each row's inputs too (for monitor --source batch)."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary (for cron).")
    ] = False,
    as_json: bool = JsonOption,
) -> None:
    """Score INPUT with MODEL_REF in chunks; exit 0 if every row scored, 3 with rejects, 1 failed.

    Also: slipway batch runs list | slipway batch runs show RUN_ID.
    """
    # systemd and cron stop jobs with SIGTERM: record the run as interrupted (and resumable)
    # instead of leaving it marked running.
    from slipway.batch.runner import score_file  # the engine loads for this command only

    previous = signal.signal(signal.SIGTERM, _interrupt)
    reg = registry()
    try:
        run = score_file(
            model_ref,
            input,
            output=output,
            key_column=key_column,
            chunk_size=chunk_size,
            engine=engine.value,
            scheduler=scheduler,
            run_id=run_id,
            query=query,
            overwrite=overwrite,
            progress=not (quiet or as_json),
            registry=reg,
            keep_inputs=keep_inputs,
        )
    except KeyboardInterrupt as stop:
        for note in getattr(stop, "__notes__", ["Interrupted."]):
            err_console.print(f"[bold red]error:[/] {note}", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        reg.store.dispose()
    if as_json:
        print_json(run.to_dict())
    elif not quiet:
        console.print(run_card(run))
    raise typer.Exit(run.exit_code)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@runs_app.command("list", short_help="Recent batch runs, newest first.")
def list_runs(
    model: Annotated[str | None, typer.Option("--model", help="Only this model's runs.")] = None,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.", min=1)] = 20,
    as_json: bool = JsonOption,
) -> None:
    """Recent batch runs, newest first: model version, status, rows, timing, output."""
    runs = _run_log(lambda log: log.recent(model=model, limit=limit))
    if as_json:
        print_json([r.to_dict() for r in runs])
    elif not runs:
        console.print("No batch runs yet. Try `slipway batch MODEL_REF INPUT`.")
    else:
        console.print(runs_table(runs))


@runs_app.command("show", short_help="One run in full: lineage, counts, chunks, timing.")
def show_run(
    run_id: Annotated[str, typer.Argument(help="The run id (see `slipway batch runs list`).")],
    as_json: bool = JsonOption,
) -> None:
    """One run in full: lineage, counts, chunks, timing, error, and how to resume it."""
    run = _run_log(lambda log: log.get(run_id))
    if as_json:
        print_json(run.to_dict())
    else:
        console.print(run_card(run))


def _run_log(read: Callable[[RunLog], T]) -> T:
    store = registry().store
    try:
        return read(RunLog(store))
    finally:
        store.dispose()


# -- rendering ------------------------------------------------------------------------------

_STATUS = {"succeeded": "green", "failed": "bold red", "running": "yellow"}


def _status(run: BatchRun, *, short: bool = False) -> str:
    text = f"[{_STATUS.get(run.status, 'white')}]{run.status}[/]"
    if run.status == "running" and not run.owner_alive():
        text += " [red](dead)[/]" if short else " [red](its process is gone: resume it)[/]"
    if run.status == "succeeded" and run.rows_rejected and not short:
        text += " [yellow](with rejects)[/]"
    return text


def _where(run: BatchRun) -> str:
    out = run.output
    return "database" if out.get("kind") == "db" else str(out.get("path"))


def _source(run: BatchRun) -> str:
    src = run.source
    return str(src.get("query") if src.get("kind") == "query" else src.get("input"))


def run_card(run: BatchRun) -> Table:
    """Everything about one run, as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("run", run.run_id)
    grid.add_row("status", _status(run))
    grid.add_row("model", f"{run.ref}  [dim]sha256 {run.sha256}[/]")
    key = run.source.get("key_column") or "row number"
    grid.add_row("input", f"{_source(run)} ({run.source.get('kind')}, key: {key})")
    grid.add_row("fingerprint", str(run.input_fingerprint))
    grid.add_row("output", _where(run))
    if run.rows_rejected and run.output.get("kind") == "parquet":
        grid.add_row("rejects", str(run.output.get("rejects")))
    elif run.rows_rejected:
        grid.add_row("rejects", "batch_rejects table")
    grid.add_row(
        "rows",
        f"{run.rows_in:,} in, {run.rows_scored:,} scored, {run.rows_rejected:,} rejected",
    )
    total = run.progress.get("chunks_total")
    chunks = f"{run.chunks_done:,}" + (f" of {total:,}" if total else "")
    grid.add_row(
        "chunks",
        f"{chunks} done ({run.progress.get('engine')} engine, "
        f"{run.progress.get('chunk_size'):,} rows per chunk)",
    )
    grid.add_row("started", f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC")
    if run.seconds is not None:
        rate = f", {run.rows_in / run.seconds:,.0f} rows/s" if run.seconds > 0 else ""
        grid.add_row("took", f"{run.seconds:,.1f} s{rate}")
    if run.error:
        grid.add_row("error", f"[red]{run.error}[/]")
    if run.status != "succeeded" and not run.owner_alive():
        grid.add_row("resume", f"slipway batch {run.ref} ... --run-id {run.run_id}")
    return grid


def runs_table(runs: list[BatchRun]) -> Table:
    """One line per run."""
    table = Table(title="Batch runs", title_justify="left")
    table.add_column("run", overflow="fold")  # the id users copy: wrap it, never cut it
    table.add_column("model", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for col in ("rows in", "scored", "rejected"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("output", overflow="fold")
    for r in runs:
        table.add_row(
            r.run_id,
            r.ref,
            _status(r, short=True),
            f"{r.rows_in:,}",
            f"{r.rows_scored:,}",
            f"{r.rows_rejected:,}",
            f"{r.started_at:%m-%d %H:%M}",
            _where(r),
        )
    return table
