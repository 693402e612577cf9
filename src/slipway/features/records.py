"""Definitions back from a version's record: as registered, or as importable now (skew guard).

A registered version keeps its definitions' record (:meth:`Definitions.to_record`): aggregate
specs, the row features' source text and import paths, and a hash per feature. Serving imports
the feature code again and compares hashes: code that changed since registration is refused
(``SLIPWAY_FEATURE_SKEW=refuse``, the default) or served with a warning (``warn``), naming the
features that changed. The skew audit recomputes with the definitions *as registered*.
"""

from __future__ import annotations

import importlib
import math
import sys
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from slipway.exceptions import FeatureDefinitionError, FeatureSkew, SlipwayWarning
from slipway.features.definitions import (
    Aggregate,
    Bound,
    Definitions,
    EventSource,
    FeatureSet,
    RowFeature,
    row_feature,
)

SkewPolicy = Literal["refuse", "warn"]


class FeatureSkewWarning(SlipwayWarning):
    """Serving a version with feature code that differs from what it was registered with."""


def registered(record: Mapping[str, Any]) -> Definitions:
    """The definitions exactly as registered (row features compiled from their recorded text
    when their module no longer has the same code)."""
    sources = {n: EventSource.from_record(s) for n, s in record["sources"].items()}
    aggregates = [_aggregate(spec, sources) for spec in record["aggregates"]]
    rows = []
    for spec in record["row_features"]:
        current = _import_row(spec)
        if current is not None and _same(current, spec, record):
            rows.append(current)
        else:
            rows.append(_compile_row(spec))
    return Definitions(aggregates, rows)


def importable(
    record: Mapping[str, Any], policy: SkewPolicy = "refuse", what: str = "this version"
) -> Definitions:
    """The definitions as the code importable now has them, checked against the record.

    Feature sets and row features are imported by module and name where they were recorded
    (notebook definitions, which cannot be, are used as registered). Differences raise
    FeatureSkew naming the changed features, or warn when ``policy`` is ``"warn"``.
    """
    base = registered(record)
    hashes: dict[str, str] = record.get("hashes", {})
    by_name = {b.name: b for b in base.aggregates}
    changes: list[str] = []
    for s in record.get("sets", []):
        current = _import_set(s)
        if current is None:
            continue
        fresh = {f.name: f for f in current.features if isinstance(f, Aggregate)}
        for name in s["features"]:
            if name not in by_name:
                continue
            if name not in fresh:
                changes.append(f"{name} (no longer in feature set {s['name']!r})")
                continue
            lookback = _lookback(fresh[name], current.ttl_us)
            candidate = Bound(fresh[name], current.entity, lookback)
            probe = Definitions([candidate], [])
            if probe.hashes()[name] != hashes.get(name):
                changes.append(f"{name} ({_diff(by_name[name], candidate)})")
                by_name[name] = candidate
    rows = []
    for spec, kept in zip(record["row_features"], base.row_features, strict=True):
        now = _import_row(spec)
        if now is None:
            rows.append(kept)
        elif not _same(now, spec, record):
            changes.append(f"{spec['name']} (its source code changed)")
            rows.append(now)
        else:
            rows.append(now)
    defs = Definitions([by_name[b.name] for b in base.aggregates], rows)
    if changes:
        message = (
            f"The feature code importable now differs from what {what} was registered with: "
            f"{'; '.join(changes)}. Serving it would compute features differently from "
            "training."
        )
        names = [c.split(" ", 1)[0] for c in changes]
        if policy == "refuse":
            raise FeatureSkew(
                message + " Refusing (SLIPWAY_FEATURE_SKEW=refuse): restore the code, or "
                "register a version trained with the new definitions.",
                names,
            )
        warnings.warn(
            message + " Serving anyway (SLIPWAY_FEATURE_SKEW=warn).", FeatureSkewWarning,
            stacklevel=3,
        )  # fmt: skip
    return defs


def _aggregate(spec: Mapping[str, Any], sources: Mapping[str, EventSource]) -> Bound:
    agg = Aggregate(
        spec["name"],
        sources[spec["source"]],
        spec["agg"],
        spec.get("column"),
        spec.get("window"),
        where=spec.get("where") or None,
        fillna=spec.get("fillna"),
        dtype=spec.get("dtype"),
    )
    return Bound(agg, spec["entity"], spec.get("lookback_us"))


def _lookback(agg: Aggregate, ttl_us: int | None) -> int | None:
    if agg.window_us is None:
        return ttl_us
    return agg.window_us if ttl_us is None else min(agg.window_us, ttl_us)


def _diff(before: Bound, after: Bound) -> str:
    a, b = before.agg.spec(), after.agg.spec()
    parts = [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a) if a.get(k) != b.get(k)]
    if before.lookback_us != after.lookback_us and not parts:
        parts.append("ttl changed")
    if before.entity != after.entity:
        parts.append(f"entity {before.entity!r} -> {after.entity!r}")
    return ", ".join(parts) or "its source changed"


def _same(current: RowFeature, spec: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    return Definitions([], [current]).hashes()[current.name] == record.get("hashes", {}).get(
        spec["name"]
    )


def _import(module: str | None, path: str | None) -> Any:
    if not module or module == "__main__":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        if not path:
            return None
    if path not in sys.path:
        sys.path.append(path)
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _import_set(spec: Mapping[str, Any]) -> FeatureSet | None:
    ref = spec.get("ref")
    if not ref:
        return None
    module = _import(ref["module"], ref.get("path"))
    value = getattr(module, ref["attr"], None) if module is not None else None
    return value if isinstance(value, FeatureSet) else None


def _import_row(spec: Mapping[str, Any]) -> RowFeature | None:
    module = _import(spec.get("module"), spec.get("path"))
    if module is None:
        return None
    value: Any = module
    for part in str(spec.get("qualname") or spec["name"]).split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    if isinstance(value, RowFeature):
        return value
    if callable(value):
        return RowFeature(value, name=spec["name"], dtype=spec.get("dtype", "float64"))
    return None


def _compile_row(spec: Mapping[str, Any]) -> RowFeature:
    """A row feature from its recorded source text: the code the version was trained with.

    The text comes from the registry, whose artifacts already hold code (pickled pipelines);
    it is run in a namespace with numpy, pandas, math and slipway.features.
    """
    import slipway.features as sf

    namespace: dict[str, Any] = {
        "np": np, "numpy": np, "pd": pd, "pandas": pd, "math": math, "sf": sf,
        "row_feature": row_feature,
    }  # fmt: skip
    module = sys.modules.get(spec.get("module") or "")
    if module is not None:
        namespace = {**vars(module), **namespace}
    source = spec.get("source") or ""
    try:
        code = compile(source, f"<registered row feature {spec['name']}>", "exec")
        exec(code, namespace)  # noqa: S102  # the registered feature code, see the docstring
    except Exception as exc:
        raise FeatureDefinitionError(
            f"Row feature {spec['name']!r} cannot be rebuilt from its registered source "
            f"({type(exc).__name__}: {exc}); make {spec.get('module')}.{spec.get('qualname')} "
            "importable."
        ) from None
    value = namespace.get(str(spec.get("qualname") or spec["name"]).split(".")[-1])
    if isinstance(value, RowFeature):
        value.source = source
        return value
    if callable(value):
        made = RowFeature(value, name=spec["name"], dtype=spec.get("dtype", "float64"))
        made.source = source
        return made
    raise FeatureDefinitionError(
        f"Row feature {spec['name']!r}: its registered source does not define it."
    )
