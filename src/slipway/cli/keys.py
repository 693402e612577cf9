"""`slipway keys ...`: create, list and revoke the API keys of the HTTP service."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from slipway.cli._common import JsonOption, console, err_console, print_json, settings, typer_app
from slipway.keys import KeyStore
from slipway.provenance import current_user
from slipway.store import Store

app = typer_app(help="API keys for `slipway serve`: create, list, revoke.", no_args_is_help=True)


class RoleChoice(StrEnum):
    """Roles a key can have."""

    predict = "predict"
    admin = "admin"


def _keys() -> tuple[KeyStore, str]:
    """The key store, and the user its audit events name."""
    s = settings()
    return KeyStore(Store(s.resolved_database_url)), current_user(s.user)


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A unique name, e.g. the client's.")],
    role: Annotated[
        RoleChoice, typer.Option("--role", help="predict: every route but reload; admin: all.")
    ] = RoleChoice.predict,
) -> None:
    """Create a key and print it once; only its sha256 is stored."""
    keys, actor = _keys()
    key, token = keys.create(name, role.value, actor=actor)
    # The key alone on stdout, so `KEY=$(slipway keys create ...)` works; the rest on stderr.
    err_console.print(
        f"created {key.role} key {key.name!r}; it is shown once, store it now "
        "(send it as `Authorization: Bearer KEY` or `X-API-Key: KEY`):"
    )
    console.print(token, soft_wrap=True)


@app.command("list")
def list_keys(as_json: bool = JsonOption) -> None:
    """List keys: name, role, prefix, created, revoked. Never the keys themselves."""
    keys = _keys()[0].list()
    if as_json:
        print_json([k.to_dict() for k in keys])
        return
    if not keys:
        console.print("No API keys yet. Create one: slipway keys create --name NAME --role predict")
        return
    table = Table()
    for column in ("name", "role", "prefix", "created", "status"):
        table.add_column(column)
    for k in keys:
        status = "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M:%S}"
        table.add_row(k.name, k.role, k.prefix + "…", f"{k.created_at:%Y-%m-%d %H:%M:%S}", status)
    console.print(table)


@app.command("revoke", short_help="Revoke a key; servers refuse it within seconds.")
def revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key; running servers refuse it within a few seconds, without a restart."""
    keys, actor = _keys()
    key = keys.revoke(name, actor=actor)
    assert key.revoked_at is not None
    console.print(f"key {key.name!r} revoked (at {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC)")
