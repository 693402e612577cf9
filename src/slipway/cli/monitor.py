"""`slipway monitor NAME` (check a model's recent traffic) and `slipway monitor history NAME`.

Exit codes are the verdict, so cron and CI can act on them: 0 OK, 1 WARN, 2 ALERT, and 3 when
the check could not run at all (unknown model, bad option, unreachable database), so that an
error is never mistaken for a WARN.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from typer._click.core import Context
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from slipway.cli._common import (
    console,
    emit,
    err_console,
    print_error,
    print_json,
    registry,
    typer_app,
)
from slipway.clock import utcnow

if TYPE_CHECKING:
    from slipway.monitoring import DriftReport
    from slipway.monitoring.runner import Progress, RunSummary

# Monitoring (its runner, statistics and estimators) is imported by the commands that run it,
# so that `slipway serve` (this process is its worker) does not load it; see slipway/_lazy.py.

CANNOT_RUN = 3


class Format(StrEnum):
    """How a report is printed."""

    terminal = "terminal"
    json = "json"
    html = "html"


class BaselineChoice(StrEnum):
    """What the window's inputs are compared with."""

    reference = "reference"
    previous = "previous"


class MonitorGroup(TyperGroup):
    """`monitor NAME ...` runs the check; `monitor SUBCOMMAND ...` runs the subcommand.

    Click would read `history` as the NAME argument of the group; a first word that names a
    subcommand is routed to it instead. Usage errors exit with CANNOT_RUN, not 2 (ALERT).
    """

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            # Fill the group's own parameters with their defaults ("--" ends options, so no
            # NAME is read and no-args-is-help does not fire).
            super(TyperGroup, self).parse_args(ctx, ["--"])
            ctx._protected_args, ctx.args = args[:1], args[1:]
            return ctx.args
        rest = super().parse_args(ctx, args)
        if ctx._protected_args:
            ctx.fail(f"unexpected argument {ctx._protected_args[0]!r}")
        return rest

    def make_context(self, *args: Any, **kwargs: Any) -> Context:
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as exc:
            exc.exit_code = CANNOT_RUN
            raise

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            exc.exit_code = CANNOT_RUN
            raise


app = typer_app(
    cls=MonitorGroup,
    invoke_without_command=True,
    no_args_is_help=True,
    context_settings={"allow_interspersed_args": True},
    help="Check a model's traffic for drift, quality and performance; exit 0 OK, 1 WARN, "
    "2 ALERT, 3 could not run.",
)


@app.callback()
def check(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help="Model: NAME (production, else latest), NAME:VERSION or NAME@ALIAS."),
    ] = None,
    since: Annotated[str, typer.Option(help="How far back to look, e.g. 24h, 30d.")] = "24h",
    until: Annotated[
        str | None,
        typer.Option(help="End the span here, not now: 2026-11-05T14:00:00Z, a date, or 2h ago."),
    ] = None,
    window: Annotated[
        str | None, typer.Option(help="Split --since into windows of this length, e.g. 1d.")
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", help="terminal, json or html.")
    ] = Format.terminal,
    out: Annotated[Path | None, typer.Option(help="Write the report to this file.")] = None,
    baseline: Annotated[
        BaselineChoice,
        typer.Option(help="Compare inputs with the reference or the previous window."),
    ] = BaselineChoice.reference,
    every: Annotated[
        str | None, typer.Option(help="Run again at this interval until stopped, e.g. 1h.")
    ] = None,
    count: Annotated[
        int | None, typer.Option(help="With --every: stop after this many runs.", min=1)
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file with alpha, floors and per-feature thresholds.")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Significance level after correction.")
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            help="What to read: log, batch, batch:RUN_ID, or an exported log (.parquet or dir)."
        ),
    ] = "log",
    engine: Annotated[
        str, typer.Option(help="local, or dask to read an exported log on a Dask cluster.")
    ] = "local",
    scheduler: Annotated[
        str | None, typer.Option(help="With --engine dask: the cluster's scheduler address.")
    ] = None,
    on_alert: Annotated[
        str | None,
        typer.Option(
            help='Run this command after each run that ends in ALERT, e.g. "slipway retrain '
            'fraud --config train.toml" (no shell; the reason is in SLIPWAY_TRIGGER_REASON).'
        ),
    ] = None,
) -> None:
    """Check NAME's recent traffic; exit 0 OK, 1 WARN, 2 ALERT, 3 could not run."""
    if ctx.invoked_subcommand is not None:
        return
    if name is None:
        raise UsageError("Missing argument 'NAME'.", ctx)
    with _cannot_run():
        from slipway.monitoring import Monitor, Policy, load_policy
        from slipway.monitoring.runner import parse_duration, parse_until

        policy = load_policy(config) if config else Policy()
        if alpha is not None:
            policy = replace(policy, alpha=alpha)
        span, step = (
            parse_duration(since, "--since"),
            parse_duration(window, "--window") if window else None,
        )
        interval = parse_duration(every, "--every") if every else None
        monitor = Monitor(registry(), policy)
        if until:
            parse_until(until, utcnow())  # a bad --until fails before the first run

        reading: dict[str, Any] = {"source": source, "engine": engine, "scheduler": scheduler}

        def run() -> DriftReport:
            end = parse_until(until, utcnow()) if until else None  # "2h" ago moves with --every
            with _progress() as progress:
                return monitor.run(
                    name,
                    since=span,
                    window=step,
                    baseline=baseline.value,
                    until=end,
                    progress=progress,
                    **reading,
                )

        started = time.monotonic()
        report = run()
        on_alert = on_alert or policy.on_alert
        emit(report, fmt.value, out, f"{report.status}: report")
        _on_alert(report, on_alert)
        runs = 1
        while interval is not None and (count is None or runs < count):
            # Runs start every --every, whatever each run takes.
            time.sleep(max(0.0, interval.total_seconds() - (time.monotonic() - started)))
            started = time.monotonic()
            try:
                report = run()
            except Exception as exc:  # a watcher outlives a database hiccup; it says so
                print_error(exc)
                err_console.print(f"retrying in {every}")
                continue
            finally:
                runs += 1
            emit(report, fmt.value, out, f"{report.status}: report")
            _on_alert(report, on_alert)
    raise typer.Exit(report.exit_code)


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    limit: Annotated[int, typer.Option(help="How many runs, newest first.", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List a model's stored monitoring runs, newest first."""
    with _cannot_run():
        from slipway.monitoring import Monitor

        runs = Monitor(registry(), sinks=[]).history(name, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in runs])
    elif not runs:
        console.print(f"No monitoring runs of {name} yet. Try `slipway monitor {name}`.")
    else:
        console.print(_history_table(name, runs))


def _on_alert(report: DriftReport, command: str | None) -> None:
    """Run the --on-alert command after an ALERT, telling it why through its environment."""
    if command is None or report.status != "ALERT":
        return
    reasons = "; ".join(r.message for r in report.reasons[:3])
    env = {
        **os.environ,
        "SLIPWAY_TRIGGER": "alert",
        "SLIPWAY_TRIGGER_REASON": f"monitoring run {report.run_id} of {report.model}: "
        f"ALERT: {reasons}",
        "SLIPWAY_ALERT_RUN_ID": str(report.run_id),
        "SLIPWAY_ALERT_MODEL": str(report.model),
    }
    err_console.print(f"ALERT: running {command}", soft_wrap=True)
    try:
        done = subprocess.run(shlex.split(command), env=env, check=False)
    except OSError as exc:
        err_console.print(f"--on-alert command could not start: {exc}", soft_wrap=True)
        return
    err_console.print(f"--on-alert command exited {done.returncode}", soft_wrap=True)


def _history_table(name: str, runs: list[RunSummary]) -> Table:
    table = Table(title=f"Monitoring runs of {name}", title_justify="left")
    for col in ("run", "at", "version", "window", "rows", "status", "first reason", "alerts"):
        table.add_column(col)
    style = {"OK": "green", "WARN": "yellow", "ALERT": "bold red"}
    for r in runs:
        window = (
            f"{r.window_start:%m-%d %H:%M:%S} → {r.window_end:%m-%d %H:%M:%S}"
            if r.window_start and r.window_end
            else "-"
        )
        failed = [a["sink"] for a in r.alerts if not a.get("delivered")]
        table.add_row(
            str(r.id),
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
            str(r.version),
            window,
            f"{r.rows:,}",
            f"[{style[r.status]}]{r.status}[/]",
            (r.reasons[0][:80] if r.reasons else "-"),
            ("failed: " + ", ".join(failed))
            if failed
            else ", ".join(a["sink"] for a in r.alerts) or "-",
        )
    return table


@contextmanager
def _progress() -> Iterator[Progress | None]:
    """A progress display on stderr while a run reads the log and checks its windows, only
    when stderr is an interactive terminal (cron and pipes get nothing); it vanishes at the end.
    """
    if not err_console.is_interactive:
        yield None
        return
    bar = RichProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def show(step: str, done: int, total: int | None) -> None:
        count = f"{done:,} rows" if total is None else f"{done:,}/{total:,} windows"
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=total, completed=done, count=count)
        else:
            bar.update(tasks[step], total=total, completed=done, count=count)

    with bar:
        yield show


@contextmanager
def _cannot_run() -> Iterator[None]:
    """Errors exit 3 here: 1 and 2 already mean WARN and ALERT."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:  # any failure, known or a crash, must not look like WARN (1) to cron
        print_error(exc)
        raise typer.Exit(CANNOT_RUN) from None
