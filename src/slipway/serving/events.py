"""``POST /v1/events``: events for features, batched and idempotent by event id.

A router factory ``(service) -> APIRouter`` contributed to :func:`create_app` by the
composition root. The body names a source recorded in the store (by a registration with
features, or ``slipway features ingest``) and carries events, each with its id (the source's
id column, else ``event_id``), its entity key and its time; other fields are the event's
columns. Events already stored (same id) are counted as duplicates, never stored twice. The
answer comes once the events are committed, so the next prediction sees them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from slipway.exceptions import FeatureDefinitionError
from slipway.features.definitions import EventSource
from slipway.features.engine import times_us
from slipway.features.ingest import ingest_records, is_number, recorded_source
from slipway.problems import Problem
from slipway.serving import bodies
from slipway.serving.limits import check_rows
from slipway.serving.schemas import ErrorOut, EventsOut
from slipway.serving.service import GUARDED, Service, json_response

DEFAULT_ID = "event_id"
_ID_MAX = 200


def router(service: Service) -> APIRouter:
    """The ``/v1/events`` route of one service."""
    api = APIRouter(prefix="/v1", tags=["v1"], responses=GUARDED)
    settings, store = service.settings, service.registry.store

    @api.post(
        "/events",
        operation_id="post_events",
        response_model=EventsOut,
        responses={
            400: {"model": ErrorOut, "description": "Not JSON, NaN/Infinity, or too deep."},
            422: {"model": ErrorOut, "description": "Unknown source, or events without an id, "
                  "entity key or time; `problems` lists every problem."},
        },
    )  # fmt: skip
    def post_events(raw: bytes = Depends(_raw_body)) -> Response:
        """Store events of a source for feature computation; idempotent per event id."""
        value = bodies.parse_json(raw, settings.serve_max_json_depth)
        name, records = _request(value, settings.serve_max_rows)
        try:
            source, numeric = recorded_source(store, name)
        except FeatureDefinitionError as exc:
            bodies.refuse([Problem("unknown_source", str(exc), None, "source", name)])
            raise
        source = _with_id(source)
        _check_events(source, records, numeric)
        return json_response(ingest_records(store, source, records).to_dict())

    return api


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _request(value: Any, max_rows: int) -> tuple[str, list[dict[str, Any]]]:
    body = bodies.object_body(value, '{"source": "transactions", "events": [{...}]}')
    problems: list[Problem] = []
    bodies.unknown_fields(body, ("source", "events"), problems)
    name, events = body.get("source"), body.get("events")
    if not isinstance(name, str) or not name:
        problems.append(bodies.wrong("source", "the name of an event source (a string)", name))
    if not isinstance(events, list) or not events:
        problems.append(bodies.wrong("events", "a non-empty list of objects", events))
    else:
        check_rows(len(events), max_rows)
        for i, e in enumerate(events):
            if not isinstance(e, dict):
                problems.append(bodies.wrong("events", "an object {column: value}", e, i))
    bodies.refuse(problems)
    assert isinstance(name, str) and isinstance(events, list)
    return name, events


def _key(v: Any) -> bool:
    """An id or entity key: a non-empty string or an integer, at most 200 characters, without
    the NUL character (PostgreSQL cannot store it in text)."""
    if isinstance(v, bool) or not isinstance(v, str | int):
        return False
    if isinstance(v, str) and "\x00" in v:
        return False
    return 0 < len(str(v)) <= _ID_MAX


def _with_id(source: EventSource) -> EventSource:
    if source.id is not None:
        return source
    return EventSource(source.name, source.entity, source.timestamp, id=DEFAULT_ID,
                       table=source.table)  # fmt: skip


def _check_events(
    source: EventSource, records: list[dict[str, Any]], numeric: tuple[str, ...] = ()
) -> None:
    """Every event has an id, an entity key and a time, and numbers (or null) in the columns
    an aggregate reads as numbers; every problem reported at once."""
    problems: list[Problem] = []
    assert source.id is not None
    for i, e in enumerate(records):
        for column in numeric:
            if column in e and not is_number(e[column]):
                expected = "a number or null (an aggregate takes its sum, mean, min or max)"
                problems.append(Problem("wrong_type", expected, i, column, e[column]))
        for field, expected in (
            (
                source.id,
                f"a unique event id (string or integer, at most {_ID_MAX} characters, no NUL)",
            ),
            (source.entity, "the entity key (string or integer, no NUL)"),
        ):
            v = e.get(field)
            if field not in e:
                problems.append(Problem("missing_field", f"this required field is missing; "
                                        f"expected {expected}", i, field))  # fmt: skip
            elif not _key(v):
                problems.append(Problem("wrong_type", expected, i, field, v))
        ts = e.get(source.timestamp)
        if source.timestamp not in e:
            problems.append(Problem("missing_field", "this required field is missing; expected "
                                    "a date-time (ISO 8601)", i, source.timestamp))  # fmt: skip
        elif not isinstance(ts, str):
            problems.append(Problem("wrong_type", "a date-time (ISO 8601)", i, source.timestamp,
                                    ts))  # fmt: skip
        else:
            try:
                times_us([ts], source.timestamp)
            except FeatureDefinitionError:
                problems.append(Problem("wrong_type", "a date-time (ISO 8601)", i,
                                        source.timestamp, ts))  # fmt: skip
    bodies.refuse(problems)
