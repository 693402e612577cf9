"""`slipway predictions list|tail|export MODEL`: the prediction log without SQL."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from slipway.cli._common import (
    JsonOption,
    console,
    err_console,
    print_json,
    registry,
    typer_app,
)

app = typer_app(
    help="The prediction log without SQL: list, follow and export a model's predictions.",
    no_args_is_help=True,
)

ModelArg = Annotated[
    str, typer.Argument(help="Model: NAME (its production version's fields, else the latest's).")
]


class Format(StrEnum):
    """Export formats."""

    csv = "csv"
    parquet = "parquet"
    json = "json"


def _open(model: str) -> tuple[Any, Any, str]:
    from slipway.monitoring.log import LogSchema

    reg = registry()
    mv = reg.get(model)
    return reg.store, LogSchema.of(mv, reg.versions(mv.name)), mv.name


def _start(since: str | None) -> datetime | None:
    from slipway.monitoring.runner import parse_duration

    return None if since is None else datetime.now(UTC) - parse_duration(since, "--since")


@app.command("list")
def list_command(
    model: ModelArg,
    since: Annotated[str | None, typer.Option(help="Only this far back, e.g. 1h, 7d.")] = None,
    limit: Annotated[int, typer.Option(help="How many predictions, newest first.", min=1)] = 20,
    as_json: bool = JsonOption,
) -> None:
    """The newest predictions of MODEL: time, id, version, answer, ground truth, inputs."""
    from slipway.monitoring.exported import newest

    store, schema, name = _open(model)
    rows = newest(store, schema, name, limit, start=_start(since))
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"No predictions of {name} logged{' in the last ' + since if since else ''}.")
        return
    table = Table(title=f"Newest predictions of {name}", title_justify="left")
    for col in ("at", "prediction_id", "version", "answer", "feedback", "inputs"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            f"{r['created_at']:%Y-%m-%d %H:%M:%S}",
            r["prediction_id"],
            str(r["version"]),
            _answer(r),
            "-" if r.get("feedback") is None else str(r["feedback"]),
            ", ".join(f"{f}={r[c]}" for f, c in _inputs(schema)),
        )
    console.print(table)


@app.command("tail")
def tail_command(
    model: ModelArg,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Show the last N first.")] = 10,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new predictions.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.")] = 2.0,
) -> None:
    """The last predictions of MODEL as JSON lines, oldest first; -f follows new ones."""
    from slipway.monitoring.exported import follow as follow_log

    store, schema, name = _open(model)
    records = follow_log(
        store, schema, name, lines=lines, interval=interval, polls=None if follow else 0
    )
    try:
        for record in records:
            sys.stdout.write(json.dumps(record, default=_iso) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command("export")
def export_command(
    model: ModelArg,
    fmt: Annotated[
        Format, typer.Option("--format", help="csv, parquet or json (JSON lines).")
    ] = Format.csv,
    out: Annotated[
        Path | None, typer.Option(help="File to write (stdout for csv and json without it).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only this far back, e.g. 30d.")] = None,
) -> None:
    """Write MODEL's predictions, with their ground truth, oldest first."""
    from slipway.monitoring.exported import export_log

    store, schema, name = _open(model)
    rows = export_log(store, schema, name, fmt=fmt.value, out=out, start=_start(since))
    if out is not None:
        err_console.print(f"{rows:,} predictions of {name} written to {out}", soft_wrap=True)


def _inputs(schema: Any) -> list[tuple[str, str]]:
    from slipway.monitoring.exported import column_name

    return [(f, column_name(f)) for f in schema.names]


def _answer(record: dict[str, Any]) -> str:
    if record.get("label") is not None:
        scores = [
            f"{k[len('proba:') :]}={v:.3f}"
            for k, v in record.items()
            if k.startswith("proba:") and v is not None
        ]
        return f"{record['label']} ({', '.join(scores)})" if scores else str(record["label"])
    value = record.get("value")
    return "-" if value is None else f"{value:.6g}"


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
