"""Reading request bodies: raw bytes -> JSON -> the shape a route takes, checked by hand.

Bodies are parsed with orjson, which refuses ``NaN`` and ``Infinity`` literals, and their shape
is checked here rather than by a pydantic model: unknown top-level fields are refused, nothing
is coerced, and every problem is reported at once. The values inside the rows are left to the
model's contract (which refuses ``true`` or ``"1.5"`` where a number is expected).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from slipway.exceptions import InvalidRequest, MalformedRequest
from slipway.problems import Problem
from slipway.serving.feedback import BatchRef, FeedbackKey, UnitRef
from slipway.serving.limits import check_depth, check_rows

PREDICT_FIELDS = ("instances", "features", "unit_id", "unit_ids")
_UNIT_ID_MAX = 200


def parse_json(raw: bytes, max_depth: int) -> Any:
    """The body as JSON; MalformedRequest (400) when it is empty, not JSON or too deep."""
    if not raw.strip():
        raise MalformedRequest("The request body is empty; send a JSON object.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(
            f"The request body is not valid JSON ({exc}). Note that NaN and Infinity are not "
            "JSON: send null for a missing value."
        ) from None
    # Nesting needs an opening bracket per level: a body with few cannot be too deep, and
    # counting bytes costs far less than walking the parsed value (brackets inside strings
    # only make the walk happen).
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        check_depth(value, max_depth)
    return value


def kind(value: Any) -> str:
    """The JSON name of a value's type, for messages (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        if not value:
            return "an empty string"
        if "\x00" in value:
            return "a string containing the NUL character (\\u0000)"
        return f"a string of {len(value)} characters"
    return "an array" if isinstance(value, list) else "an object"


def unknown_fields(body: dict[str, Any], allowed: Sequence[str], problems: list[Problem]) -> None:
    """Add a problem for every top-level field the route does not take."""
    for name in body:
        if name not in allowed:
            problems.append(
                Problem(
                    "unknown_field",
                    f"this field is not part of the request; allowed: {', '.join(allowed)}",
                    field=str(name)[:100],
                )
            )


def is_text(value: Any, max_length: int) -> bool:
    """Whether ``value`` is a string of 1 to ``max_length`` characters that a database can
    store as text (PostgreSQL refuses the NUL character)."""
    return isinstance(value, str) and 0 < len(value) <= max_length and "\x00" not in value


def wrong(field: str, expected: str, value: Any, row: int | None = None) -> Problem:
    """A problem with a top-level field's type (the value is described, not echoed)."""
    return Problem("wrong_type", expected, row, field, kind(value))


def refuse(problems: list[Problem]) -> None:
    """Raise InvalidRequest (422) listing ``problems`` if there are any."""
    if problems:
        shown = "; ".join(p.describe() for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InvalidRequest(f"The request body is not usable: {shown}{more}", problems)


def object_body(value: Any, example: str) -> dict[str, Any]:
    """The body as an object, or a 422 saying what it should look like."""
    if not isinstance(value, dict):
        refuse([Problem("wrong_shape", f"the body must be a JSON object like {example}")])
    assert isinstance(value, dict)
    return value


@dataclass
class PredictRequest:
    """A ``/v1/models/{name}/predict`` body: rows (records or one positional row) and unit ids.

    ``unit_id`` is the unit the request is routed for: the body's ``unit_id``, or the one
    ``unit_ids`` value every row carries; None when rows carry different units (or none).
    """

    rows: list[Any]
    unit_ids: list[str | None] | None = None
    unit_id: str | None = None


def predict_request(value: Any) -> PredictRequest:
    """Check a predict body: ``instances`` or ``features``, optional ``unit_id(s)``."""
    body = object_body(value, '{"instances": [{...}]} or {"features": [...]}')
    problems: list[Problem] = []
    unknown_fields(body, PREDICT_FIELDS, problems)
    rows: list[Any] = []
    if ("instances" in body) == ("features" in body):
        problems.append(
            Problem(
                "wrong_shape",
                'send exactly one of "instances" (a list of records) and "features" (one row)',
            )
        )
    elif "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            problems.append(
                wrong("instances", "a non-empty list of objects, one per row", instances)
            )
        else:
            for i, row in enumerate(instances):
                if not isinstance(row, dict):
                    problems.append(wrong("instances", "an object {field: value}", row, i))
            rows = instances
    else:
        features = body["features"]
        if not isinstance(features, list | dict):
            problems.append(
                wrong("features", "an object {field: value} or a list of values", features)
            )
        else:
            rows = [features]
    unit_ids = _unit_ids(body, len(rows), problems)
    refuse(problems)
    if "unit_id" in body:
        return PredictRequest(rows, unit_ids, body["unit_id"])
    return PredictRequest(rows, unit_ids, common_unit(unit_ids))


def common_unit(unit_ids: list[str | None] | None) -> str | None:
    """The unit id every row carries, or None when they differ (or none is given)."""
    if not unit_ids:
        return None
    first = unit_ids[0]
    return first if all(u == first for u in unit_ids) else None


def unit_id_parameter(params: dict[str, Any], problems: list[Problem]) -> str | None:
    """V2's ``parameters.unit_id``: the unit a request is routed (and logged) for."""
    uid = params.get("unit_id")
    if uid is not None and not is_text(uid, _UNIT_ID_MAX):
        problems.append(
            wrong("parameters.unit_id", f"a string of 1 to {_UNIT_ID_MAX} characters", uid)
        )
        return None
    return uid


def _unit_ids(body: dict[str, Any], n: int, problems: list[Problem]) -> list[str | None] | None:
    if "unit_id" in body and "unit_ids" in body:
        problems.append(Problem("wrong_shape", 'send "unit_id" or "unit_ids", not both'))
        return None
    if "unit_id" in body:
        uid = body["unit_id"]
        if uid is None:
            return None
        if not is_text(uid, _UNIT_ID_MAX):
            problems.append(wrong("unit_id", f"a string of 1 to {_UNIT_ID_MAX} characters", uid))
            return None
        return [uid] * n
    if "unit_ids" in body:
        uids = body["unit_ids"]
        if not isinstance(uids, list) or len(uids) != n:
            problems.append(wrong("unit_ids", f"a list of {n} strings, one per instance", uids))
            return None
        for i, uid in enumerate(uids):
            if uid is not None and not is_text(uid, _UNIT_ID_MAX):
                problems.append(wrong("unit_ids", "a string of 1 to 200 characters", uid, i))
        return uids
    return None


@dataclass
class FeedbackRequest:
    """A ``/v1/feedback`` body: true labels (by prediction id, by a model's unit id, or by a
    batch row's key), and business outcomes by prediction id."""

    labels: list[tuple[FeedbackKey, Any]]
    outcomes: list[tuple[str, str, float]]


# Outcome values beyond this would overflow the analysis's sums of squares (a million of them
# stay far below float64's 1.8e308); revenue in any currency is far below it.
OUTCOME_VALUE_MAX = 1e15
_OUTCOME_MAX = 100
_BATCH_KEY_MAX = 200  # batch keys longer than this are rejected when scored
_RUN_ID_MAX = 64
_ITEM_SHAPE = (
    'each item must be {"prediction_id": "...", "label": ...}, '
    '{"model": "...", "unit_id": "...", "label": ...}, '
    '{"model": "...", "batch_key": "...", "run_id": "..." (optional), "label": ...} or '
    '{"prediction_id": "...", "outcome": "converted", "value": 1.0} (value defaults to 1)'
)
_NAMES = ("prediction_id", "unit_id", "batch_key")


def _shape_problem(keys: set[str]) -> str:
    """What is wrong with the fields of a feedback item that has no known shape."""
    named = [n for n in _NAMES if n in keys]
    if len(named) > 1:
        return (
            f"this item names its prediction {len(named)} ways ({', '.join(named)}); send "
            'one: "prediction_id", "unit_id" (with "model") or "batch_key" (with "model")'
        )
    if "run_id" in keys and "batch_key" not in keys:
        return '"run_id" names a batch run: send it with "model" and "batch_key"'
    return _ITEM_SHAPE


def feedback_request(value: Any, max_items: int) -> FeedbackRequest:
    """Check a feedback body: ``{"feedback": [item, ...]}``, each item a label
    (``{"prediction_id", "label"}``, or ``{"model", "unit_id", "label"}`` for the unit's latest
    prediction) or a business outcome (``{"prediction_id", "outcome", "value"}``, ``value`` a
    number, 1 when left out)."""
    body = object_body(value, '{"feedback": [{"prediction_id": "...", "label": 1}]}')
    problems: list[Problem] = []
    unknown_fields(body, ("feedback",), problems)
    items = body.get("feedback")
    out = FeedbackRequest([], [])
    if not isinstance(items, list) or not items:
        problems.append(
            wrong("feedback", "a non-empty list of {prediction_id, label} or outcome items", items)
        )
    elif len(items) > max_items:
        check_rows(len(items), max_items)
    else:
        for i, item in enumerate(items):
            keys = set(item) if isinstance(item, dict) else set()
            by_unit = keys == {"model", "unit_id", "label"}
            by_key = keys - {"run_id"} == {"model", "batch_key", "label"}
            is_label = keys == {"prediction_id", "label"} or by_unit or by_key
            is_outcome = keys in (
                {"prediction_id", "outcome"},
                {"prediction_id", "outcome", "value"},
            )
            if not (is_label or is_outcome):
                problems.append(Problem("wrong_shape", _shape_problem(keys), i, "feedback"))
                continue
            if is_label:
                label = item["label"]
                if label is None or isinstance(label, list | dict):
                    problems.append(
                        wrong("label", "the true label: a string, number or boolean", label, i)
                    )
            if by_unit:
                model, uid = item["model"], item["unit_id"]
                if not is_text(model, 200):
                    problems.append(wrong("model", "a model name (string)", model, i))
                if not is_text(uid, _UNIT_ID_MAX):
                    problems.append(wrong("unit_id", "a string of 1 to 200 characters", uid, i))
                out.labels.append((UnitRef(model, uid), label))
                continue
            if by_key:
                out.labels.append((_batch_ref(item, i, problems), label))
                continue
            pid = item["prediction_id"]
            if not is_text(pid, 64):
                problems.append(wrong("prediction_id", "a prediction id (string)", pid, i))
            if is_label:
                out.labels.append((pid, label))
                continue
            name, amount = item["outcome"], item.get("value", 1.0)
            if not is_text(name, _OUTCOME_MAX):
                expected = f"an outcome name of 1 to {_OUTCOME_MAX} characters"
                problems.append(wrong("outcome", expected, name, i))
            number = isinstance(amount, int | float) and not isinstance(amount, bool)
            number = number and abs(amount) <= OUTCOME_VALUE_MAX
            if not number:
                expected = (
                    f"a number from -{OUTCOME_VALUE_MAX:.0e} to {OUTCOME_VALUE_MAX:.0e} "
                    "(1.0 for a conversion)"
                )
                problems.append(wrong("value", expected, amount, i))
            out.outcomes.append((pid, name, float(amount) if number else 0.0))
    refuse(problems)
    return out


def _batch_ref(item: dict[str, Any], i: int, problems: list[Problem]) -> BatchRef:
    """A ``{"model", "batch_key", "run_id"?}`` item's reference, its problems added."""
    model, key, run = item["model"], item["batch_key"], item.get("run_id")
    if not is_text(model, 200):
        problems.append(wrong("model", "a model name (string)", model, i))
    if not is_text(key, _BATCH_KEY_MAX):
        expected = f"the row's key as text, 1 to {_BATCH_KEY_MAX} characters"
        problems.append(wrong("batch_key", expected, key, i))
    if run is not None and not is_text(run, _RUN_ID_MAX):
        expected = f"a batch run id of 1 to {_RUN_ID_MAX} characters, or null for the latest run"
        problems.append(wrong("run_id", expected, run, i))
    return BatchRef(model, key, run)
