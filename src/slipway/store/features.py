"""Queries of the features tables: event sources, idempotent event inserts, windowed reads.

Events are ``(source, entity, ts, event_id, payload)`` rows; ``ts`` is int64 microseconds since
the epoch (UTC) and ``payload`` the event's other columns as JSON text. The online read takes
the events of a few entities in one time range with one indexed query.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from slipway.clock import utcnow
from slipway.store.engine import Store, driver_errors
from slipway.store.schema import feature_events, feature_sources

# Rows per INSERT statement: 6 parameters each, well under SQLite's 32,766 variables.
_INSERT_ROWS = 2000
# Entities per IN list of one read (bound parameters, so the statement is cached per size).
_READ_ENTITIES = 500


@dataclass(frozen=True)
class EventRow:
    """One event as stored: payload is JSON text of the columns other than entity and time."""

    event_id: str
    entity: str
    ts: int
    payload: str


@dataclass(frozen=True)
class SourceRecord:
    """A known event source: its columns and where it is read from offline."""

    name: str
    entity: str
    timestamp: str
    spec: dict[str, Any]
    created_at: datetime
    materialized: dict[str, Any]


def now_us() -> int:
    """The current time as int64 microseconds since the epoch."""
    return time.time_ns() // 1000


def save_source(store: Store, spec: Mapping[str, Any]) -> SourceRecord:
    """Record a source, or check it against the one recorded under its name.

    Returns the stored record; raises ValueError when the name is taken by a source with other
    entity or timestamp columns (the caller turns it into its own error).
    """
    with store.write() as conn:
        row = conn.execute(
            sa.select(feature_sources).where(feature_sources.c.name == spec["name"])
        ).first()
        if row is None:
            conn.execute(
                feature_sources.insert().values(
                    name=spec["name"],
                    entity=spec["entity"],
                    timestamp=spec["timestamp"],
                    spec=dict(spec),
                    created_at=utcnow(),
                    materialized={},
                )
            )
        elif (row.entity, row.timestamp) != (spec["entity"], spec["timestamp"]):
            raise ValueError(
                f"event source {spec['name']!r} is recorded with entity {row.entity!r} and "
                f"timestamp {row.timestamp!r}, not {spec['entity']!r} and {spec['timestamp']!r}"
            )
        else:
            merged = {**row.spec, **{k: v for k, v in spec.items() if v is not None}}
            # Columns read as numbers: every registration's, never forgotten by a later one.
            numeric = set(row.spec.get("numeric") or ()) | set(spec.get("numeric") or ())
            if numeric:
                merged["numeric"] = sorted(numeric)
            if merged != row.spec:
                conn.execute(
                    feature_sources.update()
                    .where(feature_sources.c.name == spec["name"])
                    .values(spec=merged)
                )
    found = get_source(store, spec["name"])
    assert found is not None
    return found


def get_source(store: Store, name: str) -> SourceRecord | None:
    """The recorded source of that name, or None."""
    with store.read() as conn:
        row = conn.execute(sa.select(feature_sources).where(feature_sources.c.name == name)).first()
    return None if row is None else _source(row)


def list_sources(store: Store) -> list[SourceRecord]:
    """Every recorded source, by name."""
    with store.read() as conn:
        rows = conn.execute(sa.select(feature_sources).order_by(feature_sources.c.name)).all()
    return [_source(r) for r in rows]


def set_materialized(store: Store, name: str, state: Mapping[str, Any]) -> None:
    """Remember how far a source was copied into the events table."""
    with store.write() as conn:
        conn.execute(
            feature_sources.update()
            .where(feature_sources.c.name == name)
            .values(materialized=dict(state))
        )


def insert_events(conn: Connection, source: str, events: Sequence[EventRow]) -> int:
    """Insert events in the connection's transaction, skipping ids already stored; how many
    were new."""
    if not events:
        return 0
    stamp = now_us()
    statement = (
        _insert(conn.dialect.name)(feature_events)
        .on_conflict_do_nothing()
        .returning(feature_events.c.event_id)
    )
    added = 0
    for start in range(0, len(events), _INSERT_ROWS):
        part = events[start : start + _INSERT_ROWS]
        values = [
            {"source": source, "entity": e.entity, "ts": e.ts, "event_id": e.event_id,
             "payload": e.payload, "ingested_at": stamp}
            for e in part
        ]  # fmt: skip
        # executemany with RETURNING: SQLAlchemy batches it into multi-row statements, and
        # the ids returned are exactly the rows that were new.
        added += len(conn.execute(statement, values).all())
    return added


def add_events(store: Store, source: str, events: Sequence[EventRow]) -> int:
    """:func:`insert_events` in a transaction of its own."""
    with store.write() as conn:
        return insert_events(conn, source, events)


def read_window(
    conn: Connection, source: str, entities: Iterable[str], lo: int, hi: int
) -> tuple[list[str], list[int], list[str]]:
    """Entity, time and payload of the events of ``entities`` with ``lo <= ts < hi``, in
    (entity, time) order. One statement per 500 entities (an indexed range scan per entity),
    in ``conn``'s transaction. It goes to the driver's own cursor as text (prepared and cached
    by the driver) and its rows come back with one ``fetchall``: SQLAlchemy's per-call
    compilation and per-row result objects cost more than the scan."""
    return _read_window(conn.connection, conn.dialect.paramstyle, source, entities, lo, hi)


class WindowReader:
    """:func:`read_window` on a driver connection: a pooled one outside any transaction
    (:func:`window_reader`, serving's enrichment: each read sees every event committed before
    it starts), or a write transaction's (enrichment that records its rows)."""

    def __init__(self, store: Store, dbapi_connection: Any) -> None:
        self._conn = dbapi_connection
        self._engine = store.engine
        self._style = store.engine.dialect.paramstyle

    def read(
        self, source: str, entities: Iterable[str], lo: int, hi: int
    ) -> tuple[list[str], list[int], list[str]]:
        """As :func:`read_window`; the driver's operational errors raised as SQLAlchemy's."""
        with driver_errors(self._engine):
            return _read_window(self._conn, self._style, source, entities, lo, hi)


@contextmanager
def window_reader(store: Store) -> Iterator[WindowReader]:
    """A :class:`WindowReader` on a pooled connection, returned to the pool on exit."""
    with store.read_driver() as conn:
        yield WindowReader(store, conn)


def _read_window(
    dbapi_connection: Any, paramstyle: str, source: str, entities: Iterable[str], lo: int, hi: int
) -> tuple[list[str], list[int], list[str]]:
    keys = sorted(set(entities))
    ents: list[str] = []
    stamps: list[int] = []
    payloads: list[str] = []
    mark = "?" if paramstyle == "qmark" else "%s"
    cursor = dbapi_connection.cursor()
    try:
        for start in range(0, len(keys), _READ_ENTITIES):
            part = keys[start : start + _READ_ENTITIES]
            sql = _READS.get((mark, len(part)))
            if sql is None:
                marks = ", ".join([mark] * len(part))
                sql = _READS[(mark, len(part))] = (
                    "SELECT entity, ts, payload FROM feature_events "  # noqa: S608  # only marks
                    f"WHERE source = {mark} AND entity IN ({marks}) AND ts < {mark} "
                    f"AND ts >= {mark} ORDER BY entity, ts"
                )
            cursor.execute(sql, (source, *part, hi, lo))
            rows = cursor.fetchall()
            if rows:
                e, t, p = zip(*rows, strict=True)
                ents += e
                stamps += t
                payloads += p
    finally:
        cursor.close()
    return ents, stamps, payloads


_READS: dict[tuple[str, int], str] = {}


def read_events(
    store: Store,
    source: str,
    *,
    entities: Sequence[str] | None = None,
    before: int | None = None,
) -> tuple[list[str], list[int], list[str], list[str]]:
    """Every event of a source (or of some entities, or before a time): entity, ts, id, payload."""
    query = sa.select(
        feature_events.c.entity,
        feature_events.c.ts,
        feature_events.c.event_id,
        feature_events.c.payload,
    ).where(feature_events.c.source == source)
    if before is not None:
        query = query.where(feature_events.c.ts < before)
    out: tuple[list[str], list[int], list[str], list[str]] = ([], [], [], [])
    chunks: list[Sequence[str] | None] = [None]
    if entities is not None:
        keys = sorted(set(entities))
        chunks = [keys[i : i + _READ_ENTITIES] for i in range(0, len(keys), _READ_ENTITIES)]
    with store.read() as conn:
        for chunk in chunks:
            q = query if chunk is None else query.where(feature_events.c.entity.in_(chunk))
            for entity, ts, event_id, payload in conn.execute(q):
                out[0].append(entity)
                out[1].append(ts)
                out[2].append(event_id)
                out[3].append(payload)
    return out


def event_stats(store: Store, source: str) -> tuple[int, int | None, int | None]:
    """(events, newest ts, newest ingestion time) of a source."""
    query = sa.select(
        sa.func.count(), sa.func.max(feature_events.c.ts), sa.func.max(feature_events.c.ingested_at)
    ).where(feature_events.c.source == source)
    with store.read() as conn:
        count, newest, ingested = conn.execute(query).one()
    return int(count), newest, ingested


def read_table(
    store: Store, table: str, columns: Sequence[str] | None = None
) -> list[tuple[Any, ...]]:
    """Rows of a user's own table in the store's database (the named columns, or all)."""
    meta = sa.MetaData()
    reflected = sa.Table(table, meta, autoload_with=store.engine)
    names = list(columns) if columns is not None else [c.name for c in reflected.c]
    missing = [c for c in names if c not in reflected.c]
    if missing:
        raise KeyError(f"table {table!r} has no column(s) {missing}")
    with store.read() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*[reflected.c[c] for c in names]))]


def table_columns(store: Store, table: str) -> list[str]:
    """The column names of a user's own table in the store's database."""
    return [c.name for c in sa.Table(table, sa.MetaData(), autoload_with=store.engine).c]


def _insert(dialect: str) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _source(row: Any) -> SourceRecord:
    return SourceRecord(
        row.name, row.entity, row.timestamp, dict(row.spec), row.created_at,
        dict(row.materialized or {}),
    )  # fmt: skip


def served_inputs(
    store: Store, model: str, start: datetime, end: datetime, limit: int | None = None
) -> list[tuple[str, datetime, int, str]]:
    """(prediction id, time, version, inputs JSON) of a model's logged predictions in
    [start, end): all of them, or a random ``limit`` of them."""
    from slipway.store.schema import predictions

    query = sa.select(
        predictions.c.prediction_id,
        predictions.c.created_at,
        predictions.c.version,
        sa.cast(predictions.c.inputs, sa.Text),
    ).where(
        predictions.c.model_name == model,
        predictions.c.created_at >= start,
        predictions.c.created_at < end,
    )
    if limit is not None:
        query = query.order_by(sa.func.random()).limit(limit)
    with store.read() as conn:
        return [(r[0], r[1], int(r[2]), r[3]) for r in conn.execute(query)]


def logged_inputs(store: Store, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The logged inputs (raw fields and computed features) of predictions, by id."""
    from slipway.store.schema import predictions

    out: dict[str, dict[str, Any]] = {}
    with store.read() as conn:
        for start in range(0, len(ids), _READ_ENTITIES):
            query = sa.select(predictions.c.prediction_id, predictions.c.inputs).where(
                predictions.c.prediction_id.in_(list(ids[start : start + _READ_ENTITIES]))
            )
            out.update({pid: dict(inputs) for pid, inputs in conn.execute(query)})
    return out
