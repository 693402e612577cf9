"""`slipway models ...`: list, show, promote, rollback, unalias, archive, delete, audit,
verify."""

from __future__ import annotations

from typing import Annotated

import typer

from slipway.cli import _render
from slipway.cli._common import (
    JsonOption,
    console,
    err_console,
    print_json,
    registry,
    typer_app,
)
from slipway.exceptions import InvalidReference
from slipway.versions import DEFAULT_ALIAS, parse_ref

app = typer_app(
    help="Registered models: inspect, promote, roll back, verify.", no_args_is_help=True
)

AliasOption = typer.Option("--alias", "-a", help="The alias to move.")


@app.command("list")
def list_models(
    name: Annotated[str | None, typer.Argument(help="List this model's versions.")] = None,
    as_json: bool = JsonOption,
) -> None:
    """List models, or the versions of one model."""
    reg = registry()
    if name is None:
        summaries = reg.models()
        if as_json:
            print_json([m.to_dict() for m in summaries])
        elif not summaries:
            console.print("No models registered yet. Try `slipway quickstart`.")
        else:
            console.print(_render.models_table(summaries))
        return
    versions = reg.versions(name)
    if as_json:
        print_json([v.to_dict() for v in versions])
    else:
        console.print(_render.versions_table(versions))


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    as_json: bool = JsonOption,
) -> None:
    """Show a version's model card: metrics, contract, provenance."""
    from slipway.lifecycle import checks_of

    reg = registry()
    mv = reg.get(ref)
    checks = checks_of(reg, mv.ref)
    if as_json:
        print_json({**mv.to_dict(), "checks": [c.to_dict() for c in checks]})
    else:
        console.print(_render.model_card(mv))
        console.print(_render.checks_of_version(mv, checks))


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to promote.", min=1)],
    alias: Annotated[str, AliasOption] = DEFAULT_ALIAS,
) -> None:
    """Point an alias at a version."""
    reg = registry()
    mv = reg.promote(name, version, alias=alias)
    console.print(f"{alias} of {name} → version {mv.version}")
    moved = next((e for e in reg.audit(name, limit=1) if e.action == "promote"), None)
    if moved is not None and moved.detail.get("checked") is False:
        err_console.print(
            f"[yellow]warning:[/] {name}:{version} has no passing check; run `slipway check "
            f"{name}:{version}` before promoting (SLIPWAY_PROMOTE_UNCHECKED=refuse enforces it).",
            soft_wrap=True,
        )


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, AliasOption] = DEFAULT_ALIAS,
) -> None:
    """Move an alias back to the version it held before."""
    mv = registry().rollback(name, alias=alias)
    console.print(f"{alias} of {name} rolled back → version {mv.version}")


@app.command("unalias")
def unalias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="The alias to remove, e.g. production.")],
) -> None:
    """Remove an alias (a server stops serving a model that loses its production alias)."""
    version = registry().unalias(name, alias)
    console.print(f"{alias} of {name} removed (it pointed at version {version})")


@app.command("archive")
def archive(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to archive.", min=1)],
) -> None:
    """Retire a version (kept on record, never promoted again)."""
    mv = registry().archive(name, version)
    console.print(f"{mv.ref} archived")


@app.command("delete", short_help="Delete versions no alias points at.")
def delete(
    ref: Annotated[str, typer.Argument(help="NAME (every version) or NAME:VERSION.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a version (or all of a model's) that no alias points at."""
    name, version, alias = parse_ref(ref)
    if alias is not None:
        raise InvalidReference(
            f"{ref!r}: delete takes NAME or NAME:VERSION; a version an alias points at cannot "
            "be deleted."
        )
    reg = registry()
    what = f"{name}:{version}" if version is not None else f"every version of {name}"
    if version is None:
        what += f" ({len(reg.versions(name))})"
    else:
        reg.get(ref)  # an unknown version is reported before asking
    if not yes:
        typer.confirm(f"Delete {what}? This cannot be undone", abort=True)
    done = reg.delete(name, version)
    versions = ", ".join(f"{name}:{v}" for v in done.versions)
    console.print(
        f"deleted {versions}; {len(done.removed)} artifact file(s) removed"
        + (f", {len(done.kept)} kept (other versions use them)" if done.kept else ""),
        soft_wrap=True,
    )


@app.command("audit", short_help="Who registered, promoted, rolled back what, when.")
def audit(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(help="How many events, newest first.", min=1)] = 50,
    as_json: bool = JsonOption,
) -> None:
    """Show the audit trail: who registered, promoted, rolled back or archived what, when."""
    events = registry().audit(name, limit=limit)
    if as_json:
        print_json([e.to_dict() for e in events])
    else:
        console.print(_render.audit_table(events))


@app.command("verify", short_help="Re-hash artifacts, load each model afresh; exit 1 if bad.")
def verify(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    load: Annotated[
        bool, typer.Option("--load/--no-load", help="Also load each model in a fresh process.")
    ] = True,
    as_json: bool = JsonOption,
) -> None:
    """Re-hash every artifact and load each model in a fresh process; exit 1 on any failure."""
    checks = registry().verify(name, load=load)
    if as_json:
        print_json([c.__dict__ for c in checks])
    else:
        console.print(_render.checks_table(checks))
    bad = [c for c in checks if c.status != "ok"]
    if bad:
        if not as_json:
            for c in bad:
                if c.detail:
                    console.print(f"{c.model}:{c.version} {c.role}: {c.detail}", soft_wrap=True)
            console.print(f"[bold red]{len(bad)} of {len(checks)} artifacts failed[/]")
        raise typer.Exit(1)
    if not as_json:
        console.print(f"[green]all {len(checks)} artifacts verified[/]")
