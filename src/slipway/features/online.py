"""Online enrichment: a version's features for validated rows, from the store's events.

:class:`OnlineFeatures` is the :class:`~slipway.predict.Enricher` the registry attaches to a
loaded version registered with features. For a batch of rows it reads, per event source, the
events of the batch's entities in the one time range that covers every row's windows (one
indexed query), and hands them with the rows to the same engine ``training_frame`` uses. With
request recording on (serving, when the version was registered with ``record_events``), the
rows are written as events of their source in the same transaction, and each row also sees
the rows of its own batch that came before it in time, exactly as training will.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from slipway.contract import Contract
from slipway.exceptions import FeaturesUnavailable
from slipway.features.definitions import Definitions
from slipway.features.engine import Events, entity_text
from slipway.features.offline import compute_columns
from slipway.features.sources import needed_columns, payload_events
from slipway.predict import Enriched
from slipway.problems import Problem
from slipway.store import TRANSIENT, Store
from slipway.store import features as sql
from slipway.validation import Validated

_FAR_PAST = -(2**62)


@dataclass(frozen=True)
class SourceStats:
    """What one batch found in one source: rows, rows whose entity had no event, and the age
    (seconds) of the newest event each row with events used."""

    model: str
    source: str
    rows: int
    missing: int
    ages: np.ndarray


Observer = Callable[[SourceStats], None]


class OnlineFeatures:
    """Computes a version's features for request rows from the events in the store."""

    def __init__(
        self,
        defs: Definitions,
        store: Store,
        contract: Contract,
        model_contract: Contract,
        at: str,
        *,
        model: str = "model",
        record: str | None = None,
    ) -> None:
        self.defs, self.store, self.at, self.model = defs, store, at, model
        self.contract = contract
        self.model_contract = model_contract
        self.names: Sequence[str] = defs.names
        self.record = record
        self.observer: Observer | None = None
        self._columns = {name: needed_columns(defs, name) for name in defs.sources}
        self._lookback: dict[str, int | None] = {}
        for b in defs.aggregates:
            name = b.agg.source.name
            have = self._lookback.get(name, 0)
            self._lookback[name] = (
                None if b.lookback_us is None or have is None else max(have, b.lookback_us)
            )
        self._payload = [
            f.name for f in contract.fields if f.name != at and f.name not in defs.entities
        ]

    def refuse_unstorable(self, checked: Validated) -> None:
        """Refuse rows whose entity key (or the id of the event a recording model stores) holds
        a NUL character: PostgreSQL can neither store nor compare such text, and events with
        one are refused, so the same request gets the same 422 naming the field on every store
        instead of a database error."""
        fields = list(self.defs.entities)
        if self.record is not None and (event_id := self.defs.sources[self.record].id):
            fields.append(event_id)
        bad: list[tuple[int, str, str]] = []
        for name in fields:
            values = checked.columns.get(name)
            if values is None:
                continue
            for i, v in enumerate(np.asarray(values, dtype=object).tolist()):
                if isinstance(v, str) and "\x00" in v:
                    bad.append((i, name, v))
        if not bad:
            return
        if checked.bad_rows.size != checked.n_rows:
            checked.bad_rows = np.zeros(checked.n_rows, dtype=bool)
        expected = "a key without the NUL character (\\u0000), which the event store cannot hold"
        for i, name, v in bad:
            checked.errors.append(Problem("wrong_type", expected, i, name, v))
            checked.bad_rows[i] = True

    @property
    def local_reads(self) -> bool:
        """Whether :meth:`enrich` only reads a local SQLite file: no network round trip, no
        write transaction (a recording version writes its requests' events), so no wait on
        anything but the file (in WAL mode readers never wait for a writer). Serving may then
        enrich small, cheap calls on its event loop."""
        return self.record is None and self.store.dialect == "sqlite"

    def enrich(self, checked: Validated) -> Enriched:
        """The pipeline's input for ``checked`` (request rows), features computed."""
        n = checked.n_rows
        usable = ~checked.bad_rows if checked.bad_rows.size == n else np.ones(n, dtype=bool)
        raw = checked.columns[self.at]
        t = np.where(usable, np.asarray(raw).astype("datetime64[us]").astype(np.int64), 0)
        usable &= ~np.isnat(np.asarray(raw, dtype="datetime64[us]"))
        columns = dict(checked.columns)
        events: dict[str, Events] = {}
        if usable.any():
            events = self._read(columns, t, usable)
        else:
            events = {name: Events.empty(cols) for name, cols in self._columns.items()}
        computed = compute_columns(self.defs, columns, t, self.at, events, usable)
        model_columns = {}
        for spec in self.model_contract.fields:
            values = computed[spec.name] if spec.name in computed else columns[spec.name]
            if spec.kind in ("number", "integer") and np.asarray(values).dtype.kind in "biuf":
                values = np.asarray(values).astype(spec.dtype, copy=False)
            model_columns[spec.name] = values
        result = Validated(
            self.model_contract,
            model_columns,
            n,
            list(checked.errors),
            list(checked.warnings),
            checked.bad_rows,
        )
        return Enriched(result, computed)

    # -- reading -----------------------------------------------------------------------------

    def _read(
        self, columns: dict[str, Any], t: np.ndarray, usable: np.ndarray
    ) -> dict[str, Events]:
        hi = int(t[usable].max())
        out: dict[str, Events] = {}
        try:
            if self.record is not None:
                with self.store.write() as conn:
                    reader = sql.WindowReader(self.store, conn.connection)
                    out = self._fetch(reader, columns, t, usable, hi)
                    recorded = self._recorded(columns, t, usable)
                    sql.insert_events(conn, self.record, recorded[1])
            else:
                # No transaction: one statement per source, each sees every event committed
                # before it (SQLAlchemy's connection and BEGIN/COMMIT cost more than the read).
                with sql.window_reader(self.store) as reader:
                    out = self._fetch(reader, columns, t, usable, hi)
        except TRANSIENT as exc:
            raise FeaturesUnavailable(
                f"{self.model}: the feature events cannot be read ({type(exc).__name__}); "
                "retry shortly.",
                retry_after=1,
            ) from exc
        if self.record is not None:
            out[self.record] = _concat(out[self.record], recorded[0])
        return out

    def _fetch(
        self,
        reader: sql.WindowReader,
        columns: dict[str, Any],
        t: np.ndarray,
        usable: np.ndarray,
        hi: int,
    ) -> dict[str, Events]:
        out: dict[str, Events] = {}
        for name, source in self.defs.sources.items():
            keys = entity_text(np.asarray(columns[source.entity])[usable])
            lookback = self._lookback.get(name)
            lo = _FAR_PAST if lookback is None else int(t[usable].min()) - lookback
            ents, stamps, payloads = reader.read(name, keys, lo, hi)
            events = payload_events(ents, stamps, payloads, self._columns[name])
            out[name] = events
            if self.observer is not None:
                self.observer(self._stats(name, keys, t[usable], events))
        return out

    def _recorded(
        self, columns: Mapping[str, Any], t: np.ndarray, usable: np.ndarray
    ) -> tuple[Events, list[sql.EventRow]]:
        """This batch's rows as events of the recorded source (stored, and seen by later rows)."""
        assert self.record is not None
        source = self.defs.sources[self.record]
        rows = np.flatnonzero(usable)
        keys = entity_text(np.asarray(columns[source.entity])[rows])
        payload_cols = [c for c in self._payload if c != source.id]
        stored = []
        for k, i in enumerate(rows.tolist()):
            values = {c: _plain(columns[c][i]) for c in payload_cols}
            given = columns[source.id][i] if source.id and source.id in columns else None
            event_id = str(given) if given is not None else str(uuid.uuid4())
            stored.append(
                sql.EventRow(event_id, str(keys[k]), int(t[i]), orjson.dumps(values).decode())
            )
        value_columns = {
            c: np.asarray(columns[c])[rows] if c in columns else np.full(len(rows), np.nan)
            for c in self._columns[self.record]
        }
        return Events(keys, t[rows].astype(np.int64), value_columns), stored

    def _stats(self, name: str, keys: np.ndarray, t: np.ndarray, events: Events) -> SourceStats:
        newest: dict[str, int] = {}
        for e, ts in zip(events.entity.tolist(), events.ts.tolist(), strict=True):
            if ts > newest.get(e, _FAR_PAST):
                newest[e] = ts
        ages = [
            (ti - newest[k]) / 1e6
            for k, ti in zip(keys.tolist(), t.tolist(), strict=True)
            if k in newest and newest[k] < ti
        ]
        missing = sum(1 for k in keys.tolist() if k not in newest)
        return SourceStats(self.model, name, len(keys), missing, np.asarray(ages))


def _concat(a: Events, b: Events) -> Events:
    columns = {}
    for c in a.columns:
        left, right = np.asarray(a.columns[c]), np.asarray(b.columns[c])
        if left.dtype.kind == "f" and right.dtype.kind in "biuf":
            columns[c] = np.concatenate([left, right.astype(np.float64)])
        else:
            columns[c] = np.concatenate([left.astype(object), right.astype(object)])
    return Events(
        np.concatenate([a.entity.astype(object), b.entity.astype(object)]),
        np.concatenate([a.ts, b.ts]),
        columns,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, np.datetime64):
        return str(value)
    return value
