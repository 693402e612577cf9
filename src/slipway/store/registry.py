"""The registry's tables: models, their versions, aliases and alias history, the audit log.

Each function is one transaction and raises the registry's errors (:class:`ModelNotFound`,
:class:`RegistryConflict`) with the facts it found. Versions, summaries and audit events come
back as dicts keyed by the fields of :class:`~slipway.versions.ModelVersion`,
:class:`~slipway.versions.ModelSummary` and :class:`~slipway.versions.AuditEvent`, which
:class:`~slipway.registry.Registry` builds from them.

Version numbers come from a per-model counter incremented under the row lock, so concurrent
registrations get distinct consecutive numbers; alias moves lock the alias row first, so two
promotions of one alias apply one after the other.

Deleting versions and recording new ones take one lock (the write transaction itself on SQLite,
an advisory lock on PostgreSQL), so a delete that removes the artifact files no version refers
to any more never decides while a registration of the same bytes is being recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from slipway.clock import utcnow
from slipway.exceptions import ModelNotFound, RegistryConflict
from slipway.store.audit import record_event
from slipway.store.engine import Store, upsert
from slipway.store.lifecycle import passing_check
from slipway.store.schema import alias_history, aliases, model_versions, models

Record = dict[str, Any]
MAX_VERSION = 2**31 - 1  # the largest number the INTEGER version column holds
# pg_advisory_xact_lock key shared by add_version and delete_versions ("slipway-artifacts").
_PG_ARTIFACTS_LOCK = 0x51_1957_A27F


@dataclass(frozen=True)
class Deleted:
    """What a delete did: the versions removed, and their artifacts removed and kept."""

    name: str
    versions: tuple[int, ...]
    removed: tuple[str, ...]  # artifact sha256s no remaining version refers to (files deleted)
    kept: tuple[str, ...]  # artifact sha256s still used by another version (files kept)


def add_version(
    store: Store,
    name: str,
    *,
    sha256: str,
    format: str,
    actor: str,
    description: str,
    tags: Mapping[str, str],
    meta: Mapping[str, Any],
) -> int:
    """Record the next version of ``name`` (creating the model on its first version)."""
    with store.write() as conn:
        _artifacts_lock(conn)
        number = _next_version(conn, name)
        conn.execute(
            model_versions.insert().values(
                model_name=name,
                version=number,
                sha256=sha256,
                format=format,
                status="active",
                created_at=utcnow(),
                created_by=actor,
                description=description,
                tags=dict(tags),
                meta=dict(meta),
            )
        )
        record_event(conn, actor, "register", name, version=number, detail={"sha256": sha256})
    return number


def resolve(
    store: Store, name: str, version: int | None, alias: str | None, default_alias: str
) -> int:
    """The version ``name`` with ``version`` or ``alias`` means; with neither, the one
    ``default_alias`` points at, else the newest active version."""
    with store.read() as conn:
        _check_model(conn, name)
        if version is not None:
            return version
        if alias is not None:
            found = _alias_target(conn, name, alias)
            if found is None:
                have = _alias_map(conn, name)
                listed = ", ".join(f"{a} -> {v}" for a, v in have.items())
                hint = f" (it has {listed})" if have else " (it has no aliases)"
                raise ModelNotFound(f"Model {name!r} has no alias {alias!r}{hint}.")
            return found
        found = _alias_target(conn, name, default_alias)
        if found is not None:
            return found
        latest = conn.execute(
            sa.select(sa.func.max(model_versions.c.version)).where(
                model_versions.c.model_name == name, model_versions.c.status == "active"
            )
        ).scalar()
        if latest is None:
            raise ModelNotFound(f"Model {name!r} has no active versions.")
        return int(latest)


def version(store: Store, name: str, number: int) -> Record:
    """Version ``number`` of ``name``, with the aliases that point at it."""
    with store.read() as conn:
        row = _version_row(conn, sa.select(model_versions), name, number)
        if row is None:
            raise ModelNotFound(
                f"Model {name!r} has no version {number} (latest is {_latest(conn, name)})."
            )
        return _version(row, _alias_map(conn, name))


def versions(store: Store, name: str) -> list[Record]:
    """Every version of ``name``, oldest first."""
    with store.read() as conn:
        rows = conn.execute(
            sa.select(model_versions)
            .where(model_versions.c.model_name == name)
            .order_by(model_versions.c.version)
        ).all()
        if not rows:
            raise ModelNotFound(f"No model named {name!r}.{_known(conn)}")
        amap = _alias_map(conn, name)
    return [_version(r, amap) for r in rows]


def summaries(store: Store) -> list[Record]:
    """Every model with its version count and aliases, by name (a model whose versions were
    all deleted is left out)."""
    with store.read() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                sa.select(model_versions.c.model_name, sa.func.count()).group_by(
                    model_versions.c.model_name
                )
            ).all()
        )
        amaps: dict[str, dict[str, int]] = {}
        for r in conn.execute(sa.select(aliases)).all():
            amaps.setdefault(r.model_name, {})[r.alias] = r.version
        rows = conn.execute(sa.select(models).order_by(models.c.name)).all()
    return [
        {
            "name": r.name,
            "created_at": r.created_at,
            "latest_version": r.latest_version,
            "versions": counts.get(r.name, 0),
            "aliases": amaps.get(r.name, {}),
        }
        for r in rows
        if counts.get(r.name)
    ]


def alias_map(store: Store, name: str) -> dict[str, int]:
    """Alias -> version for one model, by alias."""
    with store.read() as conn:
        return _alias_map(conn, name)


def alias_targets(store: Store, alias: str, names: Sequence[str] = ()) -> dict[str, int]:
    """Model -> the version its ``alias`` points at, for every model that has that alias (or
    only for ``names``)."""
    query = sa.select(aliases.c.model_name, aliases.c.version).where(aliases.c.alias == alias)
    if names:
        query = query.where(aliases.c.model_name.in_(list(names)))
    with store.read() as conn:
        return {r.model_name: int(r.version) for r in conn.execute(query)}


def promote(
    store: Store,
    name: str,
    number: int,
    alias: str,
    actor: str,
    *,
    detail: Mapping[str, Any] | None = None,
    checks: Literal["off", "warn", "refuse"] = "off",
) -> None:
    """Point ``alias`` at active version ``number`` and record the move (if it is one).

    With ``checks`` on, a move from another version records the newest passing gate check of
    ``number`` (``check_id``) or ``checked: false``, and ``"refuse"`` refuses it without one.
    """
    with store.write() as conn:
        status = _status(conn, name, number)
        if status != "active":
            raise RegistryConflict(
                f"Version {number} of {name!r} is {status}; only active versions can be promoted."
            )
        current = _alias_target(conn, name, alias, lock=True)
        if checks != "off" and current is not None and current != number:
            check_id = passing_check(conn, name, number)
            if check_id is None and checks == "refuse":
                raise RegistryConflict(
                    f"Version {number} of {name!r} has no passing check; run `slipway check "
                    f"{name}:{number}` first (SLIPWAY_PROMOTE_UNCHECKED=refuse)."
                )
            gate = {"checked": False} if check_id is None else {"check_id": check_id}
            detail = {**(detail or {}), **gate}
        if current != number:
            _set_alias(conn, name, alias, number)
            conn.execute(
                alias_history.insert().values(
                    model_name=name, alias=alias, version=number, set_at=utcnow()
                )
            )
            record_event(
                conn,
                actor,
                "promote",
                name,
                version=number,
                alias=alias,
                from_version=current,
                to_version=number,
                detail=detail,
            )


def rollback(
    store: Store, name: str, alias: str, actor: str, *, detail: Mapping[str, Any] | None = None
) -> int:
    """Move ``alias`` back to the version it held before its latest move; that version."""
    with store.write() as conn:
        _check_model(conn, name)
        current = _alias_target(conn, name, alias, lock=True)
        history = conn.execute(
            sa.select(alias_history.c.id, alias_history.c.version)
            .where(
                alias_history.c.model_name == name,
                alias_history.c.alias == alias,
                alias_history.c.rolled_back == sa.false(),
            )
            .order_by(alias_history.c.id.desc())
            .limit(2)
        ).all()
        if current is None:
            raise RegistryConflict(f"Model {name!r} has no alias {alias!r} to roll back.")
        if len(history) < 2:
            raise RegistryConflict(
                f"Alias {alias!r} of {name!r} has no earlier version to roll back to "
                f"(it has only ever pointed at version {current})."
            )
        target = int(history[1].version)
        status = _status(conn, name, target)
        if status != "active":
            raise RegistryConflict(
                f"Alias {alias!r} of {name!r} would roll back to version {target}, which "
                f"is {status}; promote a version explicitly instead."
            )
        conn.execute(
            alias_history.update()
            .where(alias_history.c.id == history[0].id)
            .values(rolled_back=True)
        )
        _set_alias(conn, name, alias, target)
        record_event(
            conn,
            actor,
            "rollback",
            name,
            version=target,
            alias=alias,
            from_version=current,
            to_version=target,
            detail=detail,
        )
    return target


def remove_alias(
    store: Store, name: str, alias: str, actor: str, *, detail: Mapping[str, Any] | None = None
) -> int:
    """Delete ``alias`` of ``name`` and record it; the version it pointed at."""
    with store.write() as conn:
        _check_model(conn, name)
        current = _alias_target(conn, name, alias, lock=True)
        if current is None:
            have = _alias_map(conn, name)
            listed = ", ".join(f"{a} -> {v}" for a, v in have.items())
            hint = f"it has {listed}" if have else "it has no aliases"
            raise ModelNotFound(f"Model {name!r} has no alias {alias!r} ({hint}).")
        conn.execute(aliases.delete().where(aliases.c.model_name == name, aliases.c.alias == alias))
        record_event(
            conn,
            actor,
            "unalias",
            name,
            version=current,
            alias=alias,
            from_version=current,
            detail=detail,
        )
    return current


def archive(
    store: Store, name: str, number: int, actor: str, *, detail: Mapping[str, Any] | None = None
) -> None:
    """Mark version ``number`` archived, unless an alias still holds it."""
    with store.write() as conn:
        status = _status(conn, name, number)
        held = [a for a, v in _alias_map(conn, name).items() if v == number]
        if held:
            raise RegistryConflict(
                f"Version {number} of {name!r} is held by alias(es) {', '.join(held)}; "
                "promote another version first."
            )
        if status != "archived":
            conn.execute(
                model_versions.update()
                .where(model_versions.c.model_name == name, model_versions.c.version == number)
                .values(status="archived")
            )
            record_event(conn, actor, "archive", name, version=number, detail=detail)


def delete_versions(
    store: Store,
    name: str,
    number: int | None,
    actor: str,
    *,
    remove: Callable[[Sequence[str]], None],
    detail: Mapping[str, Any] | None = None,
) -> Deleted:
    """Delete version ``number`` of ``name`` (every version when None), unless an alias holds
    one of them, with their alias history; audit one ``delete`` event per version.

    ``remove`` is called, inside the transaction, with the artifact hashes no remaining version
    of any model refers to: the caller deletes those files. The model's row stays, so version
    numbers are never reused, even after its last version is gone.
    """
    with store.write() as conn:
        _artifacts_lock(conn)
        _check_model(conn, name)
        query = sa.select(model_versions).where(model_versions.c.model_name == name)
        if number is not None:
            _status(conn, name, number)
            query = query.where(model_versions.c.version == number)
        rows = conn.execute(query.order_by(model_versions.c.version)).all()
        if not rows:
            raise ModelNotFound(f"Model {name!r} has no versions left to delete.")
        doomed = [int(r.version) for r in rows]
        held = {a: v for a, v in _alias_map(conn, name).items() if v in doomed}
        if held:
            listed = ", ".join(f"{a} -> {v}" for a, v in held.items())
            alias = next(iter(held))
            raise RegistryConflict(
                f"Cannot delete {_which(name, number)}: alias(es) {listed} point at it. Point "
                f"the alias elsewhere (`slipway models promote {name} N --alias {alias}`) or "
                f"remove it (`slipway models unalias {name} {alias}`) first."
            )
        shas = {r.version: _artifact_hashes(r) for r in rows}
        conn.execute(
            alias_history.delete().where(
                alias_history.c.model_name == name, alias_history.c.version.in_(doomed)
            )
        )
        conn.execute(
            model_versions.delete().where(
                model_versions.c.model_name == name, model_versions.c.version.in_(doomed)
            )
        )
        still: set[str] = set()
        for r in conn.execute(sa.select(model_versions.c.sha256, model_versions.c.meta)):
            still |= _artifact_hashes(r)
        gone = set().union(*shas.values())
        removed, kept = sorted(gone - still), sorted(gone & still)
        for v in doomed:
            record_event(
                conn,
                actor,
                "delete",
                name,
                version=v,
                detail={
                    **(detail or {}),
                    "removed": sorted(shas[v] - still),
                    "kept": sorted(shas[v] & still),
                },
            )
        remove(removed)  # inside the transaction: no registration can record these meanwhile
    return Deleted(name, tuple(doomed), tuple(removed), tuple(kept))


# -- within a transaction --------------------------------------------------------------------


def _check_model(conn: sa.Connection, name: str) -> None:
    if conn.execute(sa.select(models.c.name).where(models.c.name == name)).first() is None:
        raise ModelNotFound(f"No model named {name!r}.{_known(conn)}")


def _status(conn: sa.Connection, name: str, number: int) -> str:
    _check_model(conn, name)
    row = _version_row(conn, sa.select(model_versions.c.status), name, number)
    if row is None:
        raise ModelNotFound(
            f"Model {name!r} has no version {number} (latest is {_latest(conn, name)})."
        )
    return str(row.status)


def _artifacts_lock(conn: sa.Connection) -> None:
    """Serialize registrations with deletes (SQLite's write transaction already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_ARTIFACTS_LOCK)))


def _artifact_hashes(row: Any) -> set[str]:
    """Every artifact a version row refers to: its model and the files in ``meta``."""
    recorded = (row.meta or {}).get("artifacts") or {}
    return {row.sha256, *(v for v in recorded.values() if isinstance(v, str))}


def _which(name: str, number: int | None) -> str:
    return f"{name}:{number}" if number is not None else f"model {name!r}"


def _version_row(conn: sa.Connection, query: sa.Select[Any], name: str, number: int) -> Any:
    """The row of version ``number``, or None; a number no version can have (it would
    overflow the column) is simply not found."""
    if number > MAX_VERSION:
        return None
    return conn.execute(
        query.where(model_versions.c.model_name == name, model_versions.c.version == number)
    ).first()


def _latest(conn: sa.Connection, name: str) -> int | None:
    return conn.execute(sa.select(models.c.latest_version).where(models.c.name == name)).scalar()


def _next_version(conn: sa.Connection, name: str) -> int:
    insert = upsert(conn, models).values(name=name, created_at=utcnow(), latest_version=0)
    conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
    # The UPDATE takes the row lock: a concurrent registration waits, then sees our number.
    return int(
        conn.execute(
            models.update()
            .where(models.c.name == name)
            .values(latest_version=models.c.latest_version + 1)
            .returning(models.c.latest_version)
        ).scalar_one()
    )


def _alias_target(conn: sa.Connection, name: str, alias: str, *, lock: bool = False) -> int | None:
    query = sa.select(aliases.c.version).where(
        aliases.c.model_name == name, aliases.c.alias == alias
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    return None if row is None else int(row.version)


def _set_alias(conn: sa.Connection, name: str, alias: str, number: int) -> None:
    now = utcnow()
    stmt = upsert(conn, aliases).values(
        model_name=name, alias=alias, version=number, updated_at=now
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["model_name", "alias"], set_={"version": number, "updated_at": now}
        )
    )


def _alias_map(conn: sa.Connection, name: str) -> dict[str, int]:
    rows = conn.execute(
        sa.select(aliases.c.alias, aliases.c.version)
        .where(aliases.c.model_name == name)
        .order_by(aliases.c.alias)
    ).all()
    return {r.alias: int(r.version) for r in rows}


def _known(conn: sa.Connection) -> str:
    column = model_versions.c.model_name  # models whose versions were all deleted are gone
    names = conn.execute(sa.select(column).distinct().order_by(column).limit(10)).scalars()
    listed = ", ".join(names)
    return f" Known models: {listed}." if listed else " The registry is empty."


def _version(row: Any, amap: Mapping[str, int]) -> Record:
    return {
        "name": row.model_name,
        "version": int(row.version),
        "sha256": row.sha256,
        "format": row.format,
        "status": row.status,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "description": row.description,
        "tags": dict(row.tags or {}),
        "meta": dict(row.meta),
        "aliases": tuple(a for a, v in amap.items() if v == row.version),
    }
