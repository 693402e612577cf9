"""Feature definitions: event sources, windowed aggregates, row features and feature sets.

Everything is checked when it is defined (names, aggregations, windows, columns, row-feature
signatures) or when definitions are combined (:func:`resolve`: duplicate names, unknown inputs,
cycles between row features). A resolved :class:`Definitions` has a code hash (the aggregate
specs and the row features' source) and a JSON record that the registry keeps with a version.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slipway.exceptions import FeatureDefinitionError

AGGREGATIONS = ("count", "sum", "mean", "min", "max", "last", "count_distinct")
# The aggregations that read their column as numbers: text there is an error.
NUMERIC_AGGREGATIONS = ("sum", "mean", "min", "max")
NEEDS_COLUMN = frozenset({"sum", "mean", "min", "max", "last", "count_distinct"})
NUMERIC_ONLY = frozenset({"sum", "mean", "min", "max"})
# Without events in the window: count and sum are 0, the others null unless `fillna` says.
ZERO_DEFAULT = frozenset({"count", "sum", "count_distinct"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_WINDOW = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_SCALARS = (str, int, float, bool)


def check_name(name: Any, what: str) -> str:
    """A feature, set or column name: a Python identifier of at most 100 characters."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise FeatureDefinitionError(
            f"{what} name {name!r} is not valid: use letters, digits and '_', starting with a "
            "letter or '_', at most 100 characters."
        )
    return name


def parse_window(text: Any, what: str = "window") -> int:
    """``"90s"``, ``"15m"``, ``"24h"``, ``"30d"`` -> microseconds."""
    m = _WINDOW.match(text) if isinstance(text, str) else None
    if not m or int(m[1]) <= 0:
        raise FeatureDefinitionError(
            f"{what} {text!r} is not a window: use a positive whole number and a unit s, m, h "
            "or d (e.g. 30d, 24h, 15m)."
        )
    return int(m[1]) * UNIT_US[m[2]]


class EventSource:
    """Where events come from: a source name in the store, Parquet files, or a DataFrame.

    ``source`` is a source name (events ingested into the store under that name, or
    ``table=`` naming a table of yours in the store's database), a Parquet file, directory or
    glob, or a pandas DataFrame (then ``name`` is required). ``entity`` and ``timestamp`` name
    the columns holding the entity key and the event time; ``id`` optionally names a column of
    unique event ids (ingestion is idempotent by it).
    """

    def __init__(
        self,
        source: str | pd.DataFrame,
        entity: str,
        timestamp: str,
        *,
        name: str | None = None,
        id: str | None = None,
        table: str | None = None,
    ) -> None:
        self.entity = check_name(entity, "Entity column")
        self.timestamp = check_name(timestamp, "Timestamp column")
        self.id = None if id is None else check_name(id, "Event id column")
        self.frame: pd.DataFrame | None = None
        self.path: str | None = None
        self.table: str | None = None
        if isinstance(source, pd.DataFrame):
            if name is None:
                raise FeatureDefinitionError(
                    "EventSource from a DataFrame needs name=..., the source name events are "
                    "stored under for serving (e.g. name='transactions')."
                )
            self.kind, self.frame = "frame", source
            missing = [c for c in (entity, timestamp, id) if c and c not in source.columns]
            if missing:
                raise FeatureDefinitionError(
                    f"EventSource {name!r}: the DataFrame has no column(s) {missing} "
                    f"(it has {list(map(str, source.columns))[:10]})."
                )
        elif isinstance(source, str) and _is_path(source):
            self.kind, self.path = "parquet", source
            name = name or _path_name(source)
        elif isinstance(source, str):
            self.kind = "table" if table else "store"
            self.table = table
            name = name or source
        else:
            raise FeatureDefinitionError(
                f"EventSource takes a source name, a Parquet path or glob, or a DataFrame; got "
                f"{type(source).__name__}."
            )
        self.name = check_name(name, "Event source")

    def spec(self) -> dict[str, Any]:
        """What defines the source's meaning (name and columns); part of the code hash."""
        return {"name": self.name, "entity": self.entity, "timestamp": self.timestamp}

    def to_record(self) -> dict[str, Any]:
        """The spec plus where the data lives (DataFrames are not recorded, only their name)."""
        return {**self.spec(), "id": self.id, "kind": self.kind, "path": self.path,
                "table": self.table}  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> EventSource:
        """Inverse of :meth:`to_record`; a recorded DataFrame source reads the store."""
        if record.get("kind") == "parquet" and record.get("path"):
            return cls(record["path"], record["entity"], record["timestamp"],
                       name=record["name"], id=record.get("id"))  # fmt: skip
        return cls(record["name"], record["entity"], record["timestamp"],
                   id=record.get("id"), table=record.get("table"))  # fmt: skip

    def __repr__(self) -> str:
        return f"EventSource({self.name!r}, entity={self.entity!r}, timestamp={self.timestamp!r})"


class Aggregate:
    """A windowed aggregate of one event source's events before the row's time.

    ``agg`` is one of count, sum, mean, min, max, last, count_distinct; every one but count
    reads ``column``. The window ``[t - window, t)`` excludes the row's own time; ``None``
    means all history (bounded by the feature set's ``ttl``). ``where`` keeps only events whose
    columns equal the given values. Without events, count, sum and count_distinct are 0 and
    the others null, or ``fillna``. ``dtype`` is float64 (int64 for counts); a ``last`` of a
    text column takes ``dtype="str"``.
    """

    def __init__(
        self,
        name: str,
        source: EventSource,
        agg: str,
        column: str | None = None,
        window: str | None = None,
        *,
        where: Mapping[str, Any] | None = None,
        fillna: Any = None,
        dtype: str | None = None,
    ) -> None:
        self.name = check_name(name, "Feature")
        if not isinstance(source, EventSource):
            raise FeatureDefinitionError(
                f"Aggregate {name!r}: source must be an EventSource, not {type(source).__name__}."
            )
        if agg not in AGGREGATIONS:
            raise FeatureDefinitionError(
                f"Aggregate {name!r}: {agg!r} is not an aggregation; use one of "
                f"{', '.join(AGGREGATIONS)}."
            )
        if agg in NEEDS_COLUMN and column is None:
            raise FeatureDefinitionError(
                f"Aggregate {name!r}: {agg} needs column=..., the event column it reads."
            )
        if column is not None:
            check_name(column, f"Aggregate {name!r}: column")
            if column in (source.entity, source.timestamp):
                raise FeatureDefinitionError(
                    f"Aggregate {name!r}: column {column!r} is the source's entity or timestamp."
                )
        self.source, self.agg, self.column = source, agg, column
        self.window = None if window is None else window.strip()
        self.window_us = None if window is None else parse_window(window, f"Aggregate {name!r}")
        self.where = dict(where or {})
        for key, value in self.where.items():
            check_name(key, f"Aggregate {name!r}: where column")
            if not isinstance(value, _SCALARS):
                raise FeatureDefinitionError(
                    f"Aggregate {name!r}: where[{key!r}] must be a string, number or boolean, "
                    f"not {type(value).__name__}."
                )
        if fillna is not None:
            if agg in ZERO_DEFAULT:
                raise FeatureDefinitionError(
                    f"Aggregate {name!r}: a {agg} of no events is already 0; fillna applies to "
                    "mean, min, max and last."
                )
            if not isinstance(fillna, _SCALARS):
                raise FeatureDefinitionError(
                    f"Aggregate {name!r}: fillna must be a number or string, not "
                    f"{type(fillna).__name__}."
                )
        self.fillna = fillna
        self.dtype = _agg_dtype(name, agg, dtype)

    def spec(self) -> dict[str, Any]:
        """The declarative definition, as recorded and hashed."""
        return {
            "kind": "aggregate",
            "name": self.name,
            "source": self.source.name,
            "agg": self.agg,
            "column": self.column,
            "window": self.window,
            "where": self.where,
            "fillna": self.fillna,
            "dtype": self.dtype,
        }

    def __repr__(self) -> str:
        window = f", window={self.window!r}" if self.window else ""
        column = f", column={self.column!r}" if self.column else ""
        return f"Aggregate({self.name!r}, {self.source.name!r}, {self.agg!r}{column}{window})"


class RowFeature:
    """A vectorized function of raw fields and other features: one value per row.

    Its parameters name its inputs. It is called with one numpy array per input (the time
    field as a pandas Series of UTC datetimes, for ``.dt``) and returns an array-like of one
    value per row.
    """

    def __init__(
        self, fn: Callable[..., Any], *, name: str | None = None, dtype: str = "float64"
    ) -> None:
        if not callable(fn):
            raise FeatureDefinitionError(f"row_feature takes a function, not {type(fn).__name__}.")
        self.fn = fn
        self.name = check_name(name or getattr(fn, "__name__", ""), "Feature")
        params = inspect.signature(fn).parameters.values()
        bad = [p.name for p in params if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if bad:
            raise FeatureDefinitionError(
                f"Row feature {self.name!r}: *args/**kwargs ({', '.join(bad)}) cannot name "
                "inputs; give each input its own parameter."
            )
        self.inputs = tuple(p.name for p in params)
        if not self.inputs:
            raise FeatureDefinitionError(
                f"Row feature {self.name!r} takes no inputs; its parameters name the raw fields "
                "and features it reads."
            )
        if self.name in self.inputs:
            raise FeatureDefinitionError(f"Row feature {self.name!r} reads itself.")
        self.dtype = _check_dtype(self.name, dtype)
        self.module = getattr(fn, "__module__", None)
        self.qualname = getattr(fn, "__qualname__", self.name)
        self.source = _source_of(fn)
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def spec(self) -> dict[str, Any]:
        """What is hashed: inputs, dtype and the function's source text."""
        return {
            "kind": "row",
            "name": self.name,
            "inputs": list(self.inputs),
            "dtype": self.dtype,
            "source": self.source,
        }

    def __repr__(self) -> str:
        return f"<row_feature {self.name}({', '.join(self.inputs)})>"


def row_feature(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, dtype: str = "float64"
) -> Any:
    """Decorator: ``@row_feature`` or ``@row_feature(dtype="int64")`` makes a RowFeature."""
    if fn is not None:
        return RowFeature(fn, name=name, dtype=dtype)
    return lambda f: RowFeature(f, name=name, dtype=dtype)


class FeatureSet:
    """Named features of one entity: windowed aggregates (and row features) computed per key.

    ``ttl`` caps how far back any aggregate of the set looks (an aggregate without a window
    then covers ``ttl``).
    """

    def __init__(
        self,
        name: str,
        entity: str,
        features: Sequence[Aggregate | RowFeature],
        *,
        ttl: str | None = None,
    ) -> None:
        self.name = check_name(name, "Feature set")
        self.entity = check_name(entity, "Entity")
        self.ttl = None if ttl is None else ttl.strip()
        self.ttl_us = None if ttl is None else parse_window(ttl, f"Feature set {name!r} ttl")
        self.features = list(features)
        seen: set[str] = set()
        for f in self.features:
            if not isinstance(f, Aggregate | RowFeature):
                raise FeatureDefinitionError(
                    f"Feature set {name!r}: {f!r} is neither an Aggregate nor a row feature."
                )
            if f.name in seen:
                raise FeatureDefinitionError(f"Feature set {name!r} defines {f.name!r} twice.")
            seen.add(f.name)
            if isinstance(f, Aggregate) and f.source.entity != self.entity:
                raise FeatureDefinitionError(
                    f"Feature set {name!r} is keyed by {entity!r}, but {f.name!r} reads source "
                    f"{f.source.name!r}, keyed by {f.source.entity!r}; use one entity per set."
                )
        # Where the set was defined, so serving can import it again by module and attribute.
        self.module = sys._getframe(1).f_globals.get("__name__")

    def spec(self) -> dict[str, Any]:
        """Name, entity, ttl and member names."""
        return {
            "kind": "set",
            "name": self.name,
            "entity": self.entity,
            "ttl": self.ttl,
            "features": [f.name for f in self.features],
        }

    def __repr__(self) -> str:
        return f"FeatureSet({self.name!r}, entity={self.entity!r}, {len(self.features)} features)"


@dataclass(frozen=True)
class Bound:
    """An aggregate as computed: its entity field and effective lookback (window, ttl)."""

    agg: Aggregate
    entity: str
    lookback_us: int | None

    @property
    def name(self) -> str:
        """The feature's name."""
        return self.agg.name


@dataclass
class Definitions:
    """A resolved, ordered list of features: what training_frame and serving compute."""

    aggregates: list[Bound]
    row_features: list[RowFeature]
    sets: list[FeatureSet] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """Every computed feature, aggregates first, row features in dependency order."""
        return [b.name for b in self.aggregates] + [r.name for r in self.row_features]

    @property
    def entities(self) -> list[str]:
        """Entity key fields the input must carry."""
        return sorted({b.entity for b in self.aggregates})

    @property
    def sources(self) -> dict[str, EventSource]:
        """Event sources by name."""
        return {b.agg.source.name: b.agg.source for b in self.aggregates}

    @property
    def raw_inputs(self) -> list[str]:
        """Fields row features read that no feature computes."""
        computed = set(self.names)
        out: list[str] = []
        for r in self.row_features:
            out.extend(i for i in r.inputs if i not in computed and i not in out)
        return out

    def hashes(self) -> dict[str, str]:
        """Per feature: sha256 of its spec (with its set's entity and ttl, and its source)."""
        out = {}
        for b in self.aggregates:
            spec = {**b.agg.spec(), "entity": b.entity, "lookback_us": b.lookback_us,
                    "source_spec": b.agg.source.spec()}  # fmt: skip
            out[b.name] = _sha(spec)
        for r in self.row_features:
            out[r.name] = _sha(r.spec())
        return out

    def numeric_columns(self, source: str) -> list[str]:
        """The columns of ``source`` an aggregate reads as numbers (sum, mean, min, max):
        recorded with the source, so events holding text there are refused when they arrive
        instead of failing every later computation over them."""
        return sorted(
            {
                b.agg.column
                for b in self.aggregates
                if b.agg.source.name == source
                and b.agg.agg in NUMERIC_AGGREGATIONS
                and b.agg.column is not None
            }
        )

    @property
    def code_hash(self) -> str:
        """One sha256 over every feature's hash: changes when any definition does."""
        return _sha(sorted(self.hashes().items()))

    def to_record(self) -> dict[str, Any]:
        """The JSON kept with a registered version (see :func:`from_record`)."""
        return {
            "hash": self.code_hash,
            "hashes": self.hashes(),
            "sources": {
                n: {**s.to_record(), "numeric": self.numeric_columns(n)}
                for n, s in sorted(self.sources.items())
            },
            "sets": [{**s.spec(), "ref": _ref_of(s)} for s in self.sets],
            "aggregates": [
                {**b.agg.spec(), "entity": b.entity, "lookback_us": b.lookback_us}
                for b in self.aggregates
            ],
            "row_features": [
                {**r.spec(), "module": r.module, "qualname": r.qualname, "path": _module_dir(r)}
                for r in self.row_features
            ],
        }


def resolve(items: Iterable[Any] | Definitions) -> Definitions:
    """Flatten feature sets, aggregates and row features into ordered, checked definitions.

    Raises FeatureDefinitionError for duplicate names and cycles between row features.
    """
    if isinstance(items, Definitions):
        return items
    aggregates: list[Bound] = []
    rows: list[RowFeature] = []
    sets: list[FeatureSet] = []
    for item in _flat(items):
        if isinstance(item, FeatureSet):
            sets.append(item)
            for f in item.features:
                if isinstance(f, Aggregate):
                    aggregates.append(Bound(f, item.entity, _lookback(f, item.ttl_us)))
                else:
                    rows.append(f)
        elif isinstance(item, Aggregate):
            aggregates.append(Bound(item, item.source.entity, item.window_us))
        elif isinstance(item, RowFeature):
            rows.append(item)
        else:
            raise FeatureDefinitionError(
                f"{item!r} is not a feature: pass FeatureSets, Aggregates and row features."
            )
    names = [b.name for b in aggregates] + [r.name for r in rows]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FeatureDefinitionError(f"Features defined more than once: {', '.join(dupes)}.")
    by_source: dict[str, EventSource] = {}
    for b in aggregates:
        s = b.agg.source
        seen = by_source.setdefault(s.name, s)
        if seen is not s and seen.spec() != s.spec():
            raise FeatureDefinitionError(
                f"Two event sources are named {s.name!r} with different columns "
                f"({seen.spec()} and {s.spec()}); give them different names."
            )
    return Definitions(aggregates, _order(rows, {b.name for b in aggregates}), sets)


def _flat(items: Iterable[Any]) -> Iterable[Any]:
    for item in items:
        if isinstance(item, list | tuple):
            yield from _flat(item)
        else:
            yield item


def _order(rows: list[RowFeature], aggregates: set[str]) -> list[RowFeature]:
    """Row features so that each comes after the features it reads; cycles are errors."""
    by_name = {r.name: r for r in rows}
    done: list[RowFeature] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(r: RowFeature, path: list[str]) -> None:
        if state.get(r.name) == 2:
            return
        if state.get(r.name) == 1:
            cycle = [*path[path.index(r.name) :], r.name]
            raise FeatureDefinitionError(
                f"Row features read each other in a cycle: {' -> '.join(cycle)}."
            )
        state[r.name] = 1
        for i in r.inputs:
            if i in by_name:
                visit(by_name[i], [*path, r.name])
        state[r.name] = 2
        done.append(r)

    for r in rows:
        visit(r, [])
    return done


def _lookback(agg: Aggregate, ttl_us: int | None) -> int | None:
    if agg.window_us is None:
        return ttl_us
    return agg.window_us if ttl_us is None else min(agg.window_us, ttl_us)


def _agg_dtype(name: str, agg: str, dtype: str | None) -> str:
    if agg in ("count", "count_distinct"):
        if dtype not in (None, "int64"):
            raise FeatureDefinitionError(f"Aggregate {name!r}: a {agg} is int64, not {dtype!r}.")
        return "int64"
    if dtype is None:
        return "float64"
    if dtype == "str":
        if agg != "last":
            raise FeatureDefinitionError(
                f"Aggregate {name!r}: only last can be a string; {agg} is numeric."
            )
        return "str"
    return _check_dtype(name, dtype)


def _check_dtype(name: str, dtype: str) -> str:
    if dtype == "str":
        return dtype
    try:
        kind: str = np.dtype(dtype).kind
    except TypeError:
        kind = ""
    if kind not in "biuf":
        raise FeatureDefinitionError(
            f"Feature {name!r}: dtype {dtype!r} is not supported; use float64, int64, bool or str."
        )
    return str(np.dtype(dtype))


def _source_of(fn: Callable[..., Any]) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):  # defined in a REPL: the bytecode stands in for the text
        code = getattr(fn, "__code__", None)
        return "" if code is None else code.co_code.hex()


def _ref_of(s: FeatureSet) -> dict[str, str] | None:
    """Module and attribute a feature set can be imported again by (None from __main__)."""
    module = sys.modules.get(s.module or "")
    if module is None or s.module == "__main__":
        return None
    for attr, value in vars(module).items():
        if value is s:
            return {"module": s.module or "", "attr": attr, "path": _dir_of(module)}
    return None


def _module_dir(r: RowFeature) -> str | None:
    module = sys.modules.get(r.module or "")
    return None if module is None or r.module == "__main__" else _dir_of(module)


def _dir_of(module: Any) -> str:
    """The sys.path entry a module was imported from (its file's root for a package)."""
    path = getattr(module, "__file__", None)
    if not path:
        return ""
    root = Path(path).resolve().parent
    for _ in range(module.__name__.count(".")):
        root = root.parent
    return str(root)


def _sha(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _is_path(text: str) -> bool:
    return "/" in text or "*" in text or text.endswith((".parquet", ".pq")) or "\\" in text


def _path_name(path: str) -> str:
    p = Path(path)
    stem = p.name.split(".")[0]
    if "*" in stem or not stem:
        stem = p.parent.name
    return re.sub(r"[^A-Za-z0-9_]", "_", stem) or "events"
