"""`slipway train config.toml`: train a standard pipeline from a config file and register it.

The config names the data, the target, the estimator (a dotted class path with params) and how
to validate. Preprocessing is built from the data: numeric columns are median-imputed and
standardized, the others most-frequent-imputed and one-hot encoded. Everything that can be
checked before training is (:func:`check`), and every problem is reported at once, one line
each. With ``features`` omitted, the defaults are checked too: dates are left out with a note,
identifier-like, high-cardinality and target-matching columns get a warning, and a one-hot
encoding beyond the memory budget is refused naming the column.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from slipway.exceptions import ConfigError, SlipwayWarning
from slipway.registry import Registry
from slipway.train.checks import Plan, check
from slipway.train.config import (
    ContractConfig,
    DataConfig,
    EstimatorConfig,
    TrainConfig,
    ValidationConfig,
    load_config,
)
from slipway.versions import ModelVersion

__all__ = [
    "ContractConfig",
    "DataConfig",
    "EstimatorConfig",
    "Plan",
    "TrainConfig",
    "Trained",
    "ValidationConfig",
    "build_pipeline",
    "check",
    "fit",
    "load_config",
    "register_trained",
    "train",
]

Progress = Callable[[str], None]


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


def train(path: Path, registry: Registry, *, progress: Progress | None = None) -> ModelVersion:
    """Train the configured pipeline, register it, and promote it when ``alias`` is set.

    Every config problem is found before training starts (:func:`check`); the notes about
    the data (identifier-like or high-cardinality columns, dates left out) are emitted as
    :class:`~slipway.exceptions.SlipwayWarning`. ``progress`` is called with the name of each
    step as it starts.
    """
    trained = fit(path, progress=progress)
    return register_trained(trained, registry, alias=trained.config.alias, progress=progress)


def fit(
    path: Path,
    *,
    data: Path | None = None,
    since: timedelta | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> Trained:
    """Fit the configured pipeline without registering it.

    ``data`` replaces the config's ``data.path``; ``since`` (or the config's ``data.since``)
    keeps the rows whose ``time_column`` lies within that long before ``now``. Config problems
    are all found first (:func:`check`) and notes are emitted as warnings, as in :func:`train`.
    """
    step = progress or (lambda _: None)
    step("checking the config and the data")
    plan = check(path, data=data, since=since, now=now)
    for note in plan.notes:
        warnings.warn(note, SlipwayWarning, stacklevel=3)
    config, frame, features = plan.config, plan.frame, plan.features
    if config.data.time_column:
        frame = frame.sort_values(config.data.time_column, kind="stable")
    X, y = frame[features], frame[config.data.target]
    classify = is_classifier(plan.estimator)
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
    nullable = [c for c in features if frame[c].isna().any()]
    pipeline = build_pipeline(features, plan.categorical, plan.estimator, nullable)
    step(f"fitting {type(plan.estimator).__name__} on {len(X_train):,} rows")
    try:
        pipeline.fit(X_train, y_train)
    except InvalidParameterError as exc:  # a constraint only fit checks
        raise ConfigError(f"Config file {path}: estimator.params: {exc}") from None
    return Trained(config, pipeline, X_train, y_train, X_val, y_val, plan.data)


def register_trained(
    trained: Trained,
    registry: Registry,
    *,
    alias: str | None = None,
    progress: Progress | None = None,
) -> ModelVersion:
    """Register a fitted config's pipeline with its validation split (promoted to ``alias``)."""
    config = trained.config
    what = f"{config.validation.cv}-fold cross-validation, " if config.validation.cv else ""
    if progress is not None:
        progress(f"registering {config.name}: validation metrics, {what}contract, profile")
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
