"""`slipway features ingest|materialize|audit`: events into the store, and the skew audit.

`audit` exits 0 when every served feature equals its offline recomputation, 2 with a table of
the features that differ, and 3 when there was nothing to audit or it could not run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from slipway.cli._common import (
    JsonOption,
    console,
    print_error,
    print_json,
    registry,
    typer_app,
)

if TYPE_CHECKING:
    from slipway.features.audit import AuditReport

# The features engine and the audit are imported by the commands that use them, so that
# `slipway serve` (this process is its worker) does not load them; see slipway/_lazy.py.

app = typer_app(help="Feature events and the training/serving skew audit.", no_args_is_help=True)


@app.command("ingest")
def ingest_command(
    path: Annotated[str, typer.Argument(help="A CSV or Parquet file, directory or glob.")],
    source: Annotated[str, typer.Option(help="The event source the events belong to.")],
    entity: Annotated[str | None, typer.Option(help="Entity key column (new sources).")] = None,
    timestamp: Annotated[str | None, typer.Option(help="Time column (new sources).")] = None,
    id: Annotated[str | None, typer.Option("--id", help="Event id column (optional).")] = None,
    json: bool = JsonOption,
) -> None:
    """Add events to the store (idempotent: events already stored are skipped)."""
    from slipway.features.ingest import ingest

    reg = registry()
    result = ingest(reg.store, path, source, entity=entity, timestamp=timestamp, id=id)
    if json:
        print_json(result.to_dict())
        return
    console.print(
        f"{result.received:,} events read into source {result.source!r}: "
        f"{result.inserted:,} new, {result.duplicates:,} already stored"
    )


@app.command("materialize")
def materialize_command(
    ref: Annotated[str, typer.Argument(help="A model (NAME, NAME:VERSION or NAME@ALIAS).")],
    json: bool = JsonOption,
) -> None:
    """Copy the new events of the model's Parquet or table sources into the store."""
    from slipway.features.ingest import materialize
    from slipway.features.versions import definitions
    from slipway.store import features as feature_store

    reg = registry()
    mv = reg.get(ref)
    if "features" not in mv.meta:
        raise typer.BadParameter(f"{mv.ref} was registered without features.")
    defs = definitions(mv)
    results = {r.source: r for r in materialize(reg.store, list(defs.sources.values()))}
    rows: list[dict[str, Any]] = []
    for name, source in sorted(defs.sources.items()):
        count, newest, _ = feature_store.event_stats(reg.store, name)
        done = results.get(name)
        rows.append(
            {
                "source": name,
                "kind": source.kind,
                "copied": None if done is None else done.inserted,
                "events": count,
                "newest_ts_us": newest,
            }
        )
    if json:
        print_json(rows)
        return
    table = Table("source", "kind", "new events", "events in store", "newest event")
    for r in rows:
        when = "-" if r["newest_ts_us"] is None else _iso(int(r["newest_ts_us"]))
        copied = "(kept in the store)" if r["copied"] is None else f"{r['copied']:,}"
        table.add_row(str(r["source"]), str(r["kind"]), copied, f"{r['events']:,}", when)
    console.print(table)


@app.command("audit")
def audit_command(
    name: Annotated[str, typer.Argument(help="The model whose served features are audited.")],
    since: Annotated[str, typer.Option(help="How far back: 90s, 15m, 24h, 1d, 2w.")] = "1d",
    sample: Annotated[
        int, typer.Option(help="Predictions audited at most (a random sample).", min=1)
    ] = 10_000,
    tolerance: Annotated[
        float, typer.Option(help="Relative tolerance for numbers.", min=0.0)
    ] = 1e-9,
    json: bool = JsonOption,
) -> None:
    """Recompute served features offline, point in time, and compare (exit 0 / 2 / 3)."""
    from slipway.clock import parse_duration
    from slipway.features.audit import EXIT_NOTHING, audit

    try:
        reg = registry()
        window = parse_duration(since, "--since")
        report = audit(
            reg.store,
            name,
            lambda v: reg.get(f"{name}:{v}"),
            since=window,
            sample=sample,
            tolerance=tolerance,
        )
    except Exception as exc:  # the edge: "could not run" is exit 3, never mistaken for skew
        print_error(exc)
        raise typer.Exit(EXIT_NOTHING) from None
    if json:
        print_json(report.to_dict())
    else:
        console.print(render(report))
    raise typer.Exit(report.exit_code)


def render(report: AuditReport) -> Table | str:
    """The audit as a table of features (terminal)."""
    head = (
        f"skew audit of {report.model} over {report.start:%Y-%m-%d %H:%M} - "
        f"{report.end:%Y-%m-%d %H:%M} UTC: {report.rows:,} served predictions"
    )
    if report.status == "nothing":
        return head + ": nothing to audit (no served predictions of a version with features)."
    verdict = (
        "no skew: every feature equals its offline recomputation"
        if report.status == "ok"
        else f"SKEW: {sum(1 for f in report.features if f.mismatches)} feature(s) differ"
    )
    table = Table(title=f"{head}; {verdict}", title_justify="left")
    for col in ("feature", "rows", "mismatches", "example (served vs offline)"):
        table.add_column(col, justify="right" if col in ("rows", "mismatches") else "left")
    for f in report.features:
        example = ""
        if f.examples:
            e = f.examples[0]
            keys = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("served", "offline"))
            example = f"{keys}: {e['served']} vs {e['offline']}"
        style = "bold red" if f.mismatches else None
        table.add_row(f.name, f"{f.rows:,}", f"{f.mismatches:,}", example, style=style)
    return table


def _iso(us: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds")


__all__ = ["app", "render"]
