"""Slipway: take a scikit-learn model from a notebook to production and keep it healthy there.

The functions here read :class:`Settings` from the environment once per call and act on the
registry it points at; build a :class:`Registry` yourself to choose the settings in code.
"""

from __future__ import annotations

from typing import Any as _Any
from typing import Literal as _Literal

from slipway.artifacts import Format
from slipway.config import Settings
from slipway.contract import Contract
from slipway.exceptions import (
    ArtifactCorrupted,
    ArtifactError,
    ArtifactMissing,
    ConfigError,
    ContractViolation,
    IncompatibleEnvironment,
    InvalidModel,
    InvalidReference,
    MissingDependency,
    ModelNotFound,
    NotFound,
    RegistryConflict,
    RunNotFound,
    SlipwayError,
    SlipwayWarning,
    UntrustedArtifact,
    VersionMismatchWarning,
)
from slipway.monitoring import DriftReport, monitor
from slipway.predict import Model, Predictions
from slipway.registry import ModelVersion, Registry
from slipway.validation import Problem

__version__ = "0.1.0"


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


__all__ = [
    "ArtifactCorrupted",
    "ArtifactError",
    "ArtifactMissing",
    "ConfigError",
    "Contract",
    "ContractViolation",
    "DriftReport",
    "Format",
    "IncompatibleEnvironment",
    "InvalidModel",
    "InvalidReference",
    "MissingDependency",
    "Model",
    "ModelNotFound",
    "ModelVersion",
    "NotFound",
    "Predictions",
    "Problem",
    "Registry",
    "RegistryConflict",
    "RunNotFound",
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
]
