"""Slipway: take a scikit-learn model from a notebook to production and keep it healthy there.

The functions here read :class:`Settings` from the environment once per call and act on the
registry it points at; build a :class:`Registry` yourself to choose the settings in code.
"""

from __future__ import annotations

from pathlib import Path as _Path
from typing import Any as _Any
from typing import Literal as _Literal

from slipway._version import __version__
from slipway.artifacts import Format
from slipway.batch import BatchRun, Scores
from slipway.config import Settings
from slipway.contract import Contract
from slipway.exceptions import (
    ArtifactCorrupted,
    ArtifactError,
    ArtifactMissing,
    BatchFailed,
    BatchInputError,
    ConfigError,
    ContractViolation,
    FeatureDefinitionError,
    FeatureSkew,
    FeaturesUnavailable,
    IncompatibleEnvironment,
    InvalidModel,
    InvalidReference,
    MissingDependency,
    ModelNotFound,
    NotFound,
    PredictionNotFound,
    RegistryConflict,
    RunConflict,
    RunNotFound,
    SlipwayError,
    SlipwayWarning,
    UntrustedArtifact,
    VersionMismatchWarning,
)
from slipway.monitoring import DriftReport, monitor
from slipway.predict import Model, Predictions
from slipway.problems import Problem
from slipway.registry import ModelVersion, Registry


def register(
    pipeline: _Any, name: str, X_train: _Any, y_train: _Any = None, **options: _Any
) -> ModelVersion:
    """Save a fitted pipeline as the next version of ``name``; see :meth:`Registry.register`."""
    return Registry(Settings.from_env()).register(pipeline, name, X_train, y_train, **options)


def load(ref: str, *, backend: _Literal["sklearn", "auto"] = "sklearn") -> Model:
    """Load ``name``, ``name:3`` or ``name@alias``, verified; see :meth:`Registry.load`."""
    return Registry(Settings.from_env()).load(ref, backend=backend)


def promote(name: str, version: int, *, alias: str = "production") -> ModelVersion:
    """Point ``alias`` at ``version``; see :meth:`Registry.promote`."""
    return Registry(Settings.from_env()).promote(name, version, alias=alias)


def rollback(name: str, *, alias: str = "production") -> ModelVersion:
    """Move ``alias`` back to its previous version; see :meth:`Registry.rollback`."""
    return Registry(Settings.from_env()).rollback(name, alias=alias)


def unalias(name: str, alias: str) -> int:
    """Remove ``alias`` from ``name``; the version it pointed at. See :meth:`Registry.unalias`."""
    return Registry(Settings.from_env()).unalias(name, alias)


def score(model: Model | str, frame: _Any, *, key_column: str | None = None) -> Scores:
    """Score a DataFrame in memory as a batch run would; see :func:`slipway.batch.score`.

    ``model`` is a loaded :class:`Model` or a reference (``fraud@production``).
    """
    from slipway.batch import score as _score

    return _score(load(model) if isinstance(model, str) else model, frame, key_column=key_column)


def score_file(model: Model | str, input: str | _Path | None = None, **options: _Any) -> BatchRun:
    """Score files or a query in chunks into the database or Parquet, as a recorded run.

    See :func:`slipway.batch.score_file` for the options (``output``, ``key_column``,
    ``chunk_size``, ``engine``, ``run_id``, ``query``, ...).
    """
    from slipway.batch import score_file as _score_file

    registry = options.pop("registry", None) or Registry(Settings.from_env())
    return _score_file(model, input, registry=registry, **options)


__all__ = [
    "ArtifactCorrupted",
    "ArtifactError",
    "ArtifactMissing",
    "BatchFailed",
    "BatchInputError",
    "BatchRun",
    "ConfigError",
    "Contract",
    "ContractViolation",
    "DriftReport",
    "FeatureDefinitionError",
    "FeatureSkew",
    "FeaturesUnavailable",
    "Format",
    "IncompatibleEnvironment",
    "InvalidModel",
    "InvalidReference",
    "MissingDependency",
    "Model",
    "ModelNotFound",
    "ModelVersion",
    "NotFound",
    "PredictionNotFound",
    "Predictions",
    "Problem",
    "Registry",
    "RegistryConflict",
    "RunConflict",
    "RunNotFound",
    "Scores",
    "Settings",
    "SlipwayError",
    "SlipwayWarning",
    "UntrustedArtifact",
    "VersionMismatchWarning",
    "__version__",
    "load",
    "monitor",
    "promote",
    "register",
    "rollback",
    "score",
    "score_file",
    "unalias",
]
