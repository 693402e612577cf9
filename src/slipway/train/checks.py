"""Everything about a `slipway train` config that can be checked before training, at once.

:func:`check` reads the config and its data and finds every problem in one pass: the TOML's
sections, the model name and alias, the data file, every column named, the target's values, the
estimator class and each of its params (scikit-learn's own constraints), the class counts a
stratified split and cross-validation need, and the size of the one-hot encoding. With
``features`` omitted it also looks at what the default would pick up: date columns are left out
with a note; identifier-like, high-cardinality and target-matching columns get a note.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from sklearn.base import is_classifier, is_regressor
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

from slipway.exceptions import ConfigError, InvalidReference
from slipway.train.config import (
    DataConfig,
    EstimatorConfig,
    TrainConfig,
    ValidationConfig,
    pydantic_problems,
    read_toml,
    section,
)
from slipway.versions import check_alias, check_name


@dataclass
class Plan:
    """A config checked against its data: what training will use, and what to tell the user."""

    config: TrainConfig
    frame: pd.DataFrame
    estimator: Any
    features: list[str]
    categorical: list[str]
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # the source, the window, row counts


def check(
    path: Path,
    *,
    data: Path | None = None,
    since: timedelta | None = None,
    now: datetime | None = None,
) -> Plan:
    """Check everything about a config that can be checked before training, all at once.

    The TOML's sections, the model name and alias, the data file, every named column, the
    target's values, the estimator class and each of its params, the class counts a stratified
    split and cross-validation need, and what the default choice of features would pick up
    (identifiers, dates, high-cardinality categories, a one-hot encoding beyond the memory
    budget). Raises ConfigError listing every problem; returns the plan with its notes.

    ``data`` replaces the config's ``data.path``; ``since`` (or the config's ``data.since``)
    keeps the rows whose ``time_column`` lies within that long before ``now``.
    """
    raw = read_toml(path)
    problems: list[str] = []
    config: TrainConfig | None = None
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems += pydantic_problems(exc)
    data_config = section(DataConfig, raw.get("data"))
    est = section(EstimatorConfig, raw.get("estimator"))
    validation = section(ValidationConfig, raw.get("validation", {}))
    _check_names(raw, problems)
    source: Path | None = None
    if data is not None:
        source = Path(data)
    elif data_config is not None:
        source = Path(path).resolve().parent / data_config.path
    frame = _read_data(source, problems) if source is not None else None
    estimator = _build_estimator(est, problems) if est else None
    window = since
    if data_config is not None:
        if window is None and data_config.since is not None:
            window = _duration(data_config.since, problems)
        if window is not None and not data_config.time_column:
            problems.append("data.since: a data window needs data.time_column")
    info: dict[str, Any] = {"path": str(source)}
    if frame is not None:
        info["rows_read"] = len(frame)
    features: list[str] = []
    categorical: list[str] = []
    notes: list[str] = []
    if frame is not None and data_config is not None:
        time_column = data_config.time_column
        if window is not None and time_column is not None and time_column in frame.columns:
            frame = _recent(frame, time_column, window, now, source, info, problems)
        info["rows"] = len(frame)
        features, categorical, notes = _choose_columns(data_config, frame, problems)
        _check_target(data_config, frame, estimator, validation, problems)
        if validation is not None:
            train_rows = int(len(frame) * (1 - validation.fraction))
            _check_onehot_budget(data_config, frame, features, categorical, train_rows, problems)
    if problems or config is None or frame is None or estimator is None:
        raise ConfigError(f"Config file {path} has {len(problems)} problem(s):", problems)
    return Plan(config, frame, estimator, features, categorical, notes, info)


def _duration(text: str, problems: list[str]) -> timedelta | None:
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(h|d|w)\s*$", text)
    if not m or float(m[1]) <= 0:
        problems.append(f"data.since: {text!r} is not a duration like 90d, 12w or 36h")
        return None
    unit = {"h": "hours", "d": "days", "w": "weeks"}[m[2]]
    return timedelta(**{unit: float(m[1])})


def _recent(
    frame: pd.DataFrame,
    time_column: str,
    window: timedelta,
    now: datetime | None,
    source: Path | None,
    info: dict[str, Any],
    problems: list[str],
) -> pd.DataFrame:
    """The rows of the last ``window`` before ``now``; fewer than 10 is a problem."""
    try:
        stamps = pd.to_datetime(frame[time_column], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        problems.append(f"data.time_column: {time_column!r} does not hold ISO 8601 times: {exc}")
        return frame
    start = (now or datetime.now(UTC)) - window
    recent = frame.loc[(stamps >= start).to_numpy()]
    info.update(since=str(window), start=start.isoformat())
    if len(recent) < 10:
        problems.append(
            f"data.since: only {len(recent)} rows of {source} are newer than "
            f"{start:%Y-%m-%d %H:%M} (the last {window}); widen the window or refresh the data"
        )
    return recent


def _check_names(raw: dict[str, Any], problems: list[str]) -> None:
    for key, check_fn in (("name", check_name), ("alias", check_alias)):
        value = raw.get(key)
        if isinstance(value, str):
            try:
                check_fn(value)
            except InvalidReference as exc:
                problems.append(f"{key}: {exc}")


def _read_data(path: Path, problems: list[str]) -> pd.DataFrame | None:
    if not path.exists():
        problems.append(f"data.path: {path} does not exist")
        return None
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        problems.append(f"data.path: cannot read {path}: {exc}")
        return None
    problems.append(f"data.path: {path} is neither .csv nor .parquet")
    return None


def _choose_columns(
    data: DataConfig, frame: pd.DataFrame, problems: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """The features and categorical columns, problems with the names given, and notes."""
    columns = list(frame.columns)
    have = set(columns)

    def missing(key: str, names: list[str]) -> None:
        for n in names:
            if n not in have:
                problems.append(f"data.{key}: column {n!r} is not in the data ({_cols(columns)})")

    missing("target", [data.target])
    if data.time_column:
        missing("time_column", [data.time_column])
    missing("exclude", data.exclude)
    excluded = {data.target, data.time_column, *data.exclude}
    notes: list[str] = []
    if data.features:
        missing("features", data.features)
        if data.target in data.features:
            problems.append(f"data.features: the target {data.target!r} cannot be a feature")
        features = [c for c in data.features if c in have and c not in set(data.exclude)]
        for c in features:
            example = _dates_example(frame[c])
            if example is not None:
                problems.append(
                    f"data.features: column {c!r} holds dates (e.g. {example!r}); standard "
                    "preprocessing would make every distinct time a category. Derive numeric "
                    "columns from it (hour, day of week, days since ...) and list those, or "
                    "name it data.time_column to validate on the latest rows"
                )
    else:
        features = []
        for c in columns:
            if c in excluded:
                continue
            example = _dates_example(frame[c])
            if example is not None:
                notes.append(
                    f"column {c!r} holds dates (e.g. {example!r}) and is left out of the "
                    "features: standard preprocessing does not encode dates. Derive numeric "
                    "columns from it (hour, day of week) and list them in data.features, or "
                    "name it data.time_column to validate on the latest rows."
                )
                continue
            features.append(c)
        notes += _suspicious_columns(frame, features, data.target)
    if data.categorical:
        missing("categorical", data.categorical)
        outside = [c for c in data.categorical if c in have and c not in features]
        if outside:
            problems.append(f"data.categorical: {outside} are not among the features")
    if not features and data.target in have:
        problems.append("data.features: no feature columns left")
    categorical = data.categorical
    if categorical is None:
        categorical = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    return features, [c for c in categorical if c in features], notes


_DATE_LIKE = re.compile(r"^\s*(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4})([ T]\d|$)")
_ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key)$|^id_|Id$|ID$")
_DATE_SAMPLE = 200


def _dates_example(col: pd.Series) -> str | None:
    """An example value when ``col`` holds dates or times (datetime dtype, or strings that
    read as dates), else None."""
    values = col.dropna()
    if values.empty:
        return None
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return str(values.iloc[0])
    if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        return None
    sample = values.iloc[:_DATE_SAMPLE].astype(str)
    if not sample.map(lambda v: bool(_DATE_LIKE.match(v))).all():
        return None
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return str(sample.iloc[0]) if parsed.notna().all() else None


def _suspicious_columns(frame: pd.DataFrame, features: list[str], target: str) -> list[str]:
    """Notes on default features that look like identifiers, have very many distinct values,
    or match the target almost exactly (a leak: e.g. another model's predictions)."""
    notes = []
    rows = len(frame)
    y = frame[target] if target in frame.columns else None
    for c in features:
        col = frame[c]
        distinct = int(col.nunique(dropna=True))
        numeric = pd.api.types.is_numeric_dtype(col.dtype)
        floats = pd.api.types.is_float_dtype(col.dtype)
        fix = "list the features you mean in data.features, or add it to data.exclude"
        if rows >= 20 and (bool(_ID_NAME.search(str(c))) or (distinct == rows and not floats)):
            notes.append(
                f"column {c!r} looks like an identifier ({distinct:,} distinct values in "
                f"{rows:,} rows) and is a feature because data.features is not given; an id "
                f"tells the model nothing that holds for new rows: {fix}."
            )
        elif not numeric and distinct > _HIGH_CARDINALITY and distinct > rows / 2:
            notes.append(
                f"column {c!r} has {distinct:,} distinct values in {rows:,} rows; one-hot "
                f"encoding makes a column of each and new values will be unseen: {fix}."
            )
        elif y is not None and _matches_target(col, y):
            notes.append(
                f"column {c!r} matches the target {target!r} almost exactly; if it is derived "
                f"from the target (or is another model's prediction of it), it leaks the "
                f"answer and the metrics will be too good: {fix}."
            )
    return notes


_HIGH_CARDINALITY = 100


def _matches_target(col: pd.Series, y: pd.Series) -> bool:
    both = col.notna() & y.notna()
    if both.sum() < 20:
        return False
    a, b = col[both], y[both]
    if pd.api.types.is_numeric_dtype(a.dtype) and pd.api.types.is_numeric_dtype(b.dtype):
        a, b = a.astype(float), b.astype(float)
        if a.std() == 0 or b.std() == 0:
            return False
        return bool(abs(np.corrcoef(a, b)[0, 1]) >= 0.98)
    return bool((a.astype(str) == b.astype(str)).mean() >= 0.98)


def _check_target(
    data: DataConfig,
    frame: pd.DataFrame,
    estimator: Any,
    validation: ValidationConfig | None,
    problems: list[str],
) -> None:
    if data.target not in frame.columns:
        return
    y = frame[data.target]
    nulls = int(y.isna().sum())
    if nulls:
        problems.append(
            f"data.target: column {data.target!r} has {nulls:,} missing value(s); drop those "
            "rows from the data"
        )
    if estimator is None:
        return
    name = type(estimator).__name__
    if is_regressor(estimator) and not pd.api.types.is_numeric_dtype(y.dtype):
        problems.append(
            f"data.target: column {data.target!r} is not numeric, but {name} is a regressor"
        )
    if not is_classifier(estimator) or validation is None:
        return
    counts = y.value_counts()
    if len(counts) < 2:
        problems.append(
            f"data.target: column {data.target!r} has a single class; {name} needs two or more"
        )
        return
    rarest, least = counts.index[-1], int(counts.iloc[-1])
    rarest = rarest.item() if isinstance(rarest, np.generic) else rarest
    if least < 2 and not data.time_column:
        problems.append(
            f"data.target: class {rarest!r} has {least} row; the stratified validation split "
            "needs at least 2 of each class"
        )
    cv = validation.cv
    if cv and int(least * (1 - validation.fraction)) < cv:
        problems.append(
            f"validation.cv: {cv} folds need at least {cv} training rows of each class; class "
            f"{rarest!r} has about {int(least * (1 - validation.fraction))}"
        )


def _check_onehot_budget(
    data: DataConfig,
    frame: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    train_rows: int,
    problems: list[str],
) -> None:
    """Refuse a one-hot encoding whose dense matrix would not fit the memory budget."""
    widths = {c: int(frame[c].nunique(dropna=True)) for c in categorical}
    columns = len(features) - len(categorical) + sum(widths.values())
    need = train_rows * columns * 8  # dense float64, what the encoder hands the estimator
    budget = data.onehot_budget_mb * 2**20
    if need <= budget:
        return
    widest = sorted(widths, key=lambda c: -widths[c])[:3]
    named = ", ".join(f"{c!r} has {widths[c]:,} distinct values" for c in widest)
    problems.append(
        f"data: one-hot encoding would build a {_size(need)} matrix ({train_rows:,} rows x "
        f"{columns:,} columns of float64), over the {_size(budget)} budget "
        f"(data.onehot_budget_mb): {named}. Leave such columns out (data.exclude, or list "
        "data.features), or raise data.onehot_budget_mb if the machine has the memory"
    )


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"  # pragma: no cover


def _build_estimator(config: EstimatorConfig, problems: list[str]) -> Any:
    path = config.class_
    module_name, _, cls_name = path.rpartition(".")
    if not module_name:
        problems.append(f"estimator.class: {path!r} is not a dotted path like sklearn.svm.SVC")
        return None
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError):
        problems.append(f"estimator.class: cannot import {path!r}")
        return None
    if not isinstance(cls, type) or not hasattr(cls, "fit"):
        problems.append(f"estimator.class: {path!r} is not an estimator class")
        return None
    accepted = _init_params(cls)
    unknown = [] if accepted is None else [k for k in config.params if k not in accepted]
    for key in unknown:
        shown = ", ".join(sorted(accepted or ())[:12])
        problems.append(
            f"estimator.params: {cls_name} rejects {key!r}: not one of its parameters "
            f"({shown}{', ...' if len(accepted or ()) > 12 else ''})"
        )
    try:
        estimator = cls(**{k: v for k, v in config.params.items() if k not in unknown})
    except TypeError as exc:
        problems.append(f"estimator.params: {cls_name} rejects them: {exc}")
        return None
    for key in config.params:
        problem = _param_problem(estimator, key)
        if problem:
            problems.append(f"estimator.params.{key}: {problem}")
    return estimator  # with unknown params left out: the other checks can still use it


def _init_params(cls: type) -> set[str] | None:
    """The keyword parameters ``cls()`` takes, or None when it takes any (``**kwargs``)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _param_problem(estimator: Any, key: str) -> str | None:
    """scikit-learn's own check of one constructor parameter, without fitting."""
    constraints = getattr(estimator, "_parameter_constraints", None)
    if not isinstance(constraints, dict) or key not in constraints:
        return None
    try:
        validate_parameter_constraints(
            {key: constraints[key]},
            {key: estimator.get_params(deep=False)[key]},
            caller_name=type(estimator).__name__,
        )
    except InvalidParameterError as exc:
        return str(exc)
    return None


def _cols(columns: list[str]) -> str:
    shown = ", ".join(map(str, columns[:8]))
    return f"columns: {shown}{', ...' if len(columns) > 8 else ''}"
