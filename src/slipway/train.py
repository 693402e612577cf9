"""`slipway train config.toml`: train a standard pipeline from a config file and register it.

The config names the data, the target, the estimator (a dotted class path with params) and how
to validate. Preprocessing is built from the data: numeric columns are median-imputed and
standardized, the others most-frequent-imputed and one-hot encoded. Every problem in a config
is reported at once, one line each.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from slipway.exceptions import ConfigError
from slipway.registry import Registry
from slipway.versions import ModelVersion


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DataConfig(_Strict):
    """Where the training data is and which columns matter."""

    path: str
    target: str
    features: list[str] | None = None
    categorical: list[str] | None = None
    time_column: str | None = None
    since: str | None = None  # e.g. "90d": train on the rows of the last 90 days only


class EstimatorConfig(_Strict):
    """The estimator, by dotted class path, with constructor params."""

    class_: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)


class ValidationConfig(_Strict):
    """Hold-out share (time-ordered when ``data.time_column`` is set) and optional k-fold CV."""

    fraction: float = Field(0.2, gt=0, lt=1)
    cv: int | None = Field(None, ge=2)
    seed: int = 0


class ContractConfig(_Strict):
    """How strictly serving inputs are checked."""

    unseen: Literal["reject", "flag"] = "reject"
    band: float = Field(10.0, gt=0)


class TrainConfig(_Strict):
    """A whole `slipway train` configuration file."""

    name: str
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    alias: str | None = None
    format: Literal["joblib", "skops"] = "joblib"
    trusted: list[str] = Field(default_factory=list)
    data: DataConfig
    estimator: EstimatorConfig
    validation: ValidationConfig = Field(default_factory=lambda: ValidationConfig())
    contract: ContractConfig = Field(default_factory=lambda: ContractConfig())


def load_config(path: Path) -> TrainConfig:
    """Parse and check a TOML config; raise ConfigError listing every problem."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(f"Config file {path} has {len(problems)} problem(s):", problems) from None


@dataclass
class Trained:
    """A pipeline fitted from a config, with the split it was trained and validated on."""

    config: TrainConfig
    pipeline: Pipeline
    X_train: pd.DataFrame
    y_train: pd.Series
    X_val: pd.DataFrame
    y_val: pd.Series
    data: dict[str, Any]


def fit(
    path: Path,
    *,
    data: Path | None = None,
    since: timedelta | None = None,
    now: datetime | None = None,
) -> Trained:
    """Fit the configured pipeline without registering it.

    ``data`` replaces the config's ``data.path``; ``since`` (or the config's ``data.since``)
    keeps the rows whose ``time_column`` lies within that long before ``now``.
    """
    config = load_config(path)
    base = Path(path).resolve().parent
    problems: list[str] = []
    source = Path(data) if data is not None else base / config.data.path
    frame = _read_data(source, problems)
    estimator = _build_estimator(config.estimator, problems)
    features: list[str] = []
    if frame is not None:
        features = _check_columns(config.data, frame, problems)
    window = since
    if window is None and config.data.since is not None:
        window = _duration(config.data.since, problems)
    if window is not None and not config.data.time_column:
        problems.append("data.since: a data window needs data.time_column")
    if problems or frame is None or estimator is None:
        raise ConfigError(f"Config file {path} has {len(problems)} problem(s):", problems)

    info: dict[str, Any] = {"path": str(source), "rows_read": len(frame)}
    if window is not None and config.data.time_column:
        stamps = pd.to_datetime(frame[config.data.time_column], utc=True, format="ISO8601")
        start = (now or datetime.now(UTC)) - window
        frame = frame.loc[(stamps >= start).to_numpy()]
        info.update(since=str(window), start=start.isoformat())
        if len(frame) < 10:
            raise ConfigError(
                f"Only {len(frame)} rows of {source} are newer than {start:%Y-%m-%d %H:%M} "
                f"(the last {window}); widen the window or refresh the data."
            )
    info["rows"] = len(frame)
    if config.data.time_column:
        frame = frame.sort_values(config.data.time_column, kind="stable")
    X, y = frame[features], frame[config.data.target]
    classify = is_classifier(estimator)
    if config.data.time_column:
        cut = int(len(frame) * (1 - config.validation.fraction))
        X_train, X_val, y_train, y_val = X.iloc[:cut], X.iloc[cut:], y.iloc[:cut], y.iloc[cut:]
    else:
        X_train, X_val, y_train, y_val = train_test_split(
            X,
            y,
            test_size=config.validation.fraction,
            random_state=config.validation.seed,
            stratify=y if classify else None,
        )
    categorical = config.data.categorical
    if categorical is None:
        categorical = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    nullable = [c for c in features if frame[c].isna().any()]
    pipeline = build_pipeline(features, categorical, estimator, nullable)
    try:
        pipeline.fit(X_train, y_train)
    except InvalidParameterError as exc:
        raise ConfigError(f"Config file {path}: estimator.params: {exc}") from None
    return Trained(config, pipeline, X_train, y_train, X_val, y_val, info)


def register_trained(
    trained: Trained, registry: Registry, *, alias: str | None = None
) -> ModelVersion:
    """Register a fitted config's pipeline with its validation split."""
    config = trained.config
    return registry.register(
        trained.pipeline,
        config.name,
        trained.X_train,
        trained.y_train,
        X_val=trained.X_val,
        y_val=trained.y_val,
        description=config.description,
        tags=config.tags,
        format=config.format,
        trusted=config.trusted,
        cv=config.validation.cv,
        unseen=config.contract.unseen,
        band=config.contract.band,
        alias=alias,
        seed=config.validation.seed,
    )


def train(path: Path, registry: Registry) -> ModelVersion:
    """Train the configured pipeline, register it, and promote it when ``alias`` is set."""
    trained = fit(path)
    return register_trained(trained, registry, alias=trained.config.alias)


def _duration(text: str, problems: list[str]) -> timedelta | None:
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(h|d|w)\s*$", text)
    if not m or float(m[1]) <= 0:
        problems.append(f"data.since: {text!r} is not a duration like 90d, 12w or 36h")
        return None
    unit = {"h": "hours", "d": "days", "w": "weeks"}[m[2]]
    return timedelta(**{unit: float(m[1])})


def build_pipeline(
    features: list[str],
    categorical: list[str],
    estimator: Any,
    nullable: Collection[str] = (),
) -> Pipeline:
    """Standard preprocessing for the given columns, followed by ``estimator``.

    Numeric columns are median-imputed and standardized; categorical columns are one-hot
    encoded, ignoring unknown categories, after most-frequent imputation when any of them is in
    ``nullable`` (an imputer on strings would keep the pipeline from converting to ONNX).
    """
    numeric = [c for c in features if c not in set(categorical)]
    steps: list[tuple[str, Any, list[str]]] = []
    if numeric:
        num = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        steps.append(("numeric", num, numeric))
    if categorical:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        cat: Any = encoder
        if set(categorical) & set(nullable):
            cat = make_pipeline(SimpleImputer(strategy="most_frequent"), encoder)
        steps.append(("categorical", cat, categorical))
    return Pipeline(
        [("preprocess", ColumnTransformer(steps, remainder="drop")), ("model", estimator)]
    )


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


def _check_columns(data: DataConfig, frame: pd.DataFrame, problems: list[str]) -> list[str]:
    columns = list(frame.columns)
    have = set(columns)

    def missing(key: str, names: list[str]) -> None:
        for n in names:
            if n not in have:
                problems.append(f"data.{key}: column {n!r} is not in the data ({_cols(columns)})")

    missing("target", [data.target])
    if data.time_column:
        missing("time_column", [data.time_column])
    excluded = {data.target, data.time_column}
    features = data.features or [c for c in columns if c not in excluded]
    if data.features:
        missing("features", data.features)
        if data.target in data.features:
            problems.append(f"data.features: the target {data.target!r} cannot be a feature")
    if data.categorical:
        missing("categorical", data.categorical)
        outside = [c for c in data.categorical if c in have and c not in features]
        if outside:
            problems.append(f"data.categorical: {outside} are not among the features")
    if not features:
        problems.append("data.features: no feature columns left")
    return [c for c in features if c in have]


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
    try:
        return cls(**config.params)
    except TypeError as exc:
        problems.append(f"estimator.params: {cls_name} rejects them: {exc}")
        return None


def _cols(columns: list[str]) -> str:
    shown = ", ".join(map(str, columns[:8]))
    return f"columns: {shown}{', ...' if len(columns) > 8 else ''}"
