"""Features and registered versions: what registration records, what loading attaches.

At registration, :func:`describe` splits the pipeline's input into computed features and raw
fields, learns the *request* contract (raw fields, entity keys as free text, the time as a
date-time) and returns the record kept in the version's metadata under ``features``. At load,
:func:`enricher` rebuilds the definitions (importable code, checked against the record) and
returns the :class:`~slipway.features.online.OnlineFeatures` the model predicts through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from slipway.contract import Contract, FieldSpec
from slipway.exceptions import FeatureDefinitionError, InvalidModel
from slipway.features.definitions import Definitions, resolve
from slipway.features.online import OnlineFeatures
from slipway.features.records import SkewPolicy, importable, registered
from slipway.tolerance import tolerated

if TYPE_CHECKING:
    from slipway.store import Store
    from slipway.versions import ModelVersion


def describe(
    features: Sequence[Any],
    pipeline: Any,
    X_train: Any,
    *,
    at: str | None = None,
    record_events: bool | str = False,
    contract_options: Mapping[str, Any] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """(the pipeline's input columns, the ``features`` record) for a version with features."""
    defs = resolve(features)
    if not defs.names:
        raise InvalidModel("features=[] defines no feature; leave it out instead.")
    if not isinstance(X_train, pd.DataFrame):
        raise InvalidModel(
            "A model with features is trained on a DataFrame (training_frame's output); "
            f"X_train is a {type(X_train).__name__}."
        )
    at = at or _default_at(defs)
    columns = [str(c) for c in X_train.columns]
    fitted = getattr(pipeline, "feature_names_in_", None)
    keys = {at, *defs.entities}
    inputs = (
        [str(c) for c in fitted] if fitted is not None else [c for c in columns if c not in keys]
    )
    missing = [c for c in inputs if c not in columns]
    if missing:
        raise InvalidModel(f"X_train lacks the pipeline's input column(s) {missing}.")
    computed = set(defs.names)
    if not computed & set(inputs):
        raise InvalidModel(
            f"The pipeline reads none of the features {defs.names}; was it trained on "
            "training_frame's output?"
        )
    for key in sorted(keys & set(inputs)):
        raise InvalidModel(
            f"The pipeline reads {key!r}, the entity key or time; features are computed from "
            "them, the pipeline should read the features (and raw fields)."
        )
    raw = [c for c in inputs if c not in computed]
    raw += [c for c in defs.raw_inputs if c not in raw and c not in keys]
    absent = [c for c in raw if c not in columns]
    if absent:
        readers = ", ".join(r.name for r in defs.row_features if set(r.inputs) & set(absent))
        raise InvalidModel(
            f"X_train lacks the raw field(s) {absent} that row feature(s) {readers} read; "
            "include them so requests can be checked."
        )
    options = _raw_options(contract_options or {}, raw)
    handled = {k: v for k, v in tolerated(pipeline, inputs).items() if k in raw}
    learned = Contract.learn(X_train[raw], tolerated=handled, **options) if raw else None
    fields = list(learned.fields) if learned else []
    for entity in defs.entities:
        fields.append(_entity_spec(entity, X_train))
    fields.append(FieldSpec(at, "datetime", "datetime64[ns]"))
    unseen = options.get("unseen")
    request = Contract(
        tuple(fields), "frame", "float64", "flag" if unseen == "flag" else "reject",
        options.get("band", 10.0), options.get("abs_limit", 1e12),
    )  # fmt: skip
    record = _record_source(defs, record_events, request)
    return inputs, {
        "definitions": defs.to_record(),
        "hash": defs.code_hash,
        "names": defs.names,
        "at": at,
        "entities": defs.entities,
        "record": record,
        "request_contract": request.to_dict(),
    }


def definitions(mv: ModelVersion, *, as_registered: bool = True) -> Definitions:
    """A version's definitions: as registered (the audit's truth), or as importable now."""
    record = mv.meta["features"]["definitions"]
    return registered(record) if as_registered else importable(record, "warn", mv.ref)


def enricher(
    mv: ModelVersion, store: Store, *, skew: SkewPolicy = "refuse", record: bool = False
) -> OnlineFeatures:
    """The enrichment step of a version with features (FeatureSkew if its code changed)."""
    meta = mv.meta["features"]
    defs = importable(meta["definitions"], skew, mv.ref)
    return OnlineFeatures(
        defs,
        store,
        Contract.from_dict(meta["request_contract"]),
        mv.contract,
        meta["at"],
        model=mv.name,
        record=meta.get("record") if record else None,
    )


def _raw_options(options: Mapping[str, Any], raw: Sequence[str]) -> dict[str, Any]:
    """The contract options that apply to the raw fields: per-field overrides (``nullable``,
    ``unseen``, ``ranges``, ``bounds``) of computed features are the pipeline contract's."""
    out = {k: v for k, v in options.items() if v is not None}
    for key in ("unseen", "ranges", "bounds"):
        if isinstance(out.get(key), Mapping):
            out[key] = {f: v for f, v in out[key].items() if f in raw}
    nullable = out.get("nullable", ())
    if isinstance(nullable, Mapping):
        out["nullable"] = {f: v for f, v in nullable.items() if f in raw}
    else:
        out["nullable"] = [f for f in nullable if f in raw]
    return out


def _default_at(defs: Definitions) -> str:
    names = sorted({s.timestamp for s in defs.sources.values()})
    if len(names) == 1:
        return names[0]
    raise FeatureDefinitionError(
        f"The event sources use different time columns ({', '.join(names)}); name the "
        "request's time field with at=..."
    )


def _entity_spec(entity: str, X_train: pd.DataFrame) -> FieldSpec:
    """Entity keys are identifiers: any value of the training type, never a category check."""
    if entity in X_train.columns and pd.api.types.is_integer_dtype(X_train[entity].dtype):
        return FieldSpec(entity, "integer", str(X_train[entity].dtype))
    return FieldSpec(entity, "category", "object")


def _record_source(defs: Definitions, record_events: bool | str, request: Contract) -> str | None:
    if not record_events:
        return None
    names = sorted(defs.sources)
    if isinstance(record_events, str):
        if record_events not in defs.sources:
            raise InvalidModel(
                f"record_events={record_events!r} is not a source of these features "
                f"({', '.join(names)})."
            )
        name = record_events
    elif len(names) == 1:
        name = names[0]
    else:
        raise InvalidModel(
            f"The features read several sources ({', '.join(names)}); say which one requests "
            "are recorded into: record_events='NAME'."
        )
    source = defs.sources[name]
    have = set(request.names)
    needed = {c for b in defs.aggregates if b.agg.source.name == name
              for c in [b.agg.column, *b.agg.where] if c}  # fmt: skip
    lacking = sorted(needed - have)
    if lacking or source.entity not in have:
        raise InvalidModel(
            f"Requests cannot be recorded as {name!r} events: they do not carry "
            f"{sorted(lacking + ([source.entity] if source.entity not in have else []))}, "
            "which its aggregates read."
        )
    return name
