"""Slipway: take a scikit-learn model from a notebook to production and keep it healthy there.

The functions here read :class:`Settings` from the environment once per call and act on the
registry it points at; build a :class:`Registry` yourself to choose the settings in code.
"""

from __future__ import annotations

from collections.abc import Callable as _Callable
from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from collections.abc import Sequence as _Sequence
from pathlib import Path as _Path
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any
from typing import Literal as _Literal

from slipway import _lazy
from slipway._version import __version__
from slipway.artifacts import Format
from slipway.config import Settings
from slipway.exceptions import (
    ArtifactCorrupted,
    ArtifactError,
    ArtifactMissing,
    BatchFailed,
    BatchInputError,
    ConfigError,
    ContractViolation,
    ExperimentConflict,
    ExperimentNotFound,
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
    UnloadableArtifact,
    UntrustedArtifact,
    VersionMismatchWarning,
)

if _TYPE_CHECKING:
    from slipway.batch import BatchRun, Scores
    from slipway.contract import Contract
    from slipway.monitoring import DriftReport, monitor
    from slipway.predict import Model, Predictions
    from slipway.problems import Problem
    from slipway.registry import ModelVersion, Registry

# Imported on first use, so that ``import slipway.<module>`` (a serving worker's imports, for
# one) does not load monitoring (scipy), batch (pyarrow) and registration (scikit-learn).
__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "BatchRun": "slipway.batch",
        "Contract": "slipway.contract",
        "DriftReport": "slipway.monitoring",
        "Model": "slipway.predict",
        "ModelVersion": "slipway.registry",
        "Predictions": "slipway.predict",
        "Problem": "slipway.problems",
        "Registry": "slipway.registry",
        "Scores": "slipway.batch",
        "monitor": "slipway.monitoring",
    },
)


def register(
    pipeline: _Any,
    name: str,
    X_train: _Any,
    y_train: _Any = None,
    *,
    X_val: _Any = None,
    y_val: _Any = None,
    description: str = "",
    tags: _Mapping[str, str] | None = None,
    format: Format = "joblib",
    cv: int | None = None,
    unseen: _Literal["reject", "flag"] | _Mapping[str, _Literal["reject", "flag"]] | None = None,
    band: float = 10.0,
    abs_limit: float = 1e12,
    bounds: _Mapping[str, tuple[float | None, float | None]] | None = None,
    nullable: _Iterable[str] | _Mapping[str, bool] = (),
    ranges: _Mapping[str, tuple[float | None, float | None]] | None = None,
    alias: str | None = None,
    seed: int = 0,
    onnx: bool = True,
    features: _Sequence[_Any] | None = None,
    at: str | None = None,
    record_events: bool | str = False,
    trusted: _Sequence[str] = (),
) -> ModelVersion:
    """Save a fitted pipeline as the next version of ``name`` and return that version.

    The whole fitted pipeline becomes one immutable artifact named by its sha256, with what a
    reviewer asks about it: validation metrics, steps and parameters, the input contract, a
    reference profile for drift checks, the training-data fingerprint, library versions, the
    git commit and who registered it. See docs/registry.md and docs/contract.md.

    Parameters
    ----------
    pipeline
        A fitted scikit-learn classifier or regressor, usually a ``Pipeline``. Classes and
        functions of your own must live in an importable module (not in the notebook): a
        pipeline that would not load in a fresh Python process is refused, saying why.
    name
        The model's name: letters, digits, ``.``, ``_`` or ``-``.
    X_train, y_train
        The training data (a DataFrame, or a 2-D array whose columns become ``feature_0``,
        ...). The input contract, the profile and the fingerprint are learned from them.
    X_val, y_val
        Validation data: scored for the version's metrics and reference predictions.
    description, tags
        Free text, and string key/value labels, shown on the model card.
    format
        ``"joblib"`` (default) or ``"skops"`` (loads only trusted types).
    cv
        Also run k-fold cross-validation on the training data (mean and std per metric).
    unseen
        What a category never seen in training gets: ``"reject"`` (an error) or ``"flag"``
        (a warning) for every category field, or ``{"field": "flag"}`` for chosen ones. By
        default fields whose encoder ignores unknown categories (``OneHotEncoder(
        handle_unknown="ignore")``) flag them and the others reject them.
    band, abs_limit
        A numeric value is refused outside its training range widened by ``band`` times the
        range's width on each side, or when its magnitude exceeds ``abs_limit``.
    bounds, ranges
        Explicit ``{"field": (low, high)}`` limits instead of the band (None leaves a side
        open); ``ranges`` is the newer name of ``bounds``.
    nullable
        Fields that accept nulls although training had none, e.g. ``["amount"]``, or
        ``{"amount": False}`` to refuse nulls the pipeline would handle. By default fields a
        ``SimpleImputer`` handles take nulls.
    alias
        Promote the new version to this alias straight away (e.g. ``"production"``).
    seed
        Seed of the reference sample and of cross-validation's splits.
    onnx
        Try converting the pipeline to ONNX for faster serving (kept only when it matches
        scikit-learn on the reference sample).
    features
        Feature sets and row features of :mod:`slipway.features` the pipeline was trained on
        (``training_frame``'s output as ``X_train``): the definitions and their code hash are
        recorded, and loading the version computes them for every input, which then carries
        raw fields, entity keys and the time. See docs/features.md.
    at
        The request's time field of a version with features (default: the sources' time
        column).
    record_events
        Record served requests as events of their source (``True`` for the only source, or
        its name).
    trusted
        With ``format="skops"``: the types beyond skops' defaults that the artifact may load,
        by name (also read from ``SLIPWAY_TRUSTED_TYPES``), e.g.
        ``["sklearn.tree._tree.Tree"]`` for tree ensembles. A type the artifact needs that is
        not listed is refused (UntrustedArtifact naming it) and nothing is registered; the
        list is recorded with the version and used to load it. Not for joblib.

    Returns
    -------
    ModelVersion
        ``.name``, ``.version``, ``.sha256``, ``.metrics``, ``.contract``, ``.meta``.
    """
    from slipway.registry import Registry

    return Registry(Settings.from_env()).register(
        pipeline,
        name,
        X_train,
        y_train,
        X_val=X_val,
        y_val=y_val,
        description=description,
        tags=tags,
        format=format,
        cv=cv,
        unseen=unseen,
        band=band,
        abs_limit=abs_limit,
        bounds=bounds,
        nullable=nullable,
        ranges=ranges,
        alias=alias,
        seed=seed,
        onnx=onnx,
        features=features,
        at=at,
        record_events=record_events,
        trusted=trusted,
    )


def load(ref: str, *, backend: _Literal["sklearn", "auto"] = "sklearn") -> Model:
    """Load a registered version, verified, as a :class:`Model` that validates its input.

    Parameters
    ----------
    ref
        ``"name"`` (the production alias, else the latest version), ``"name:3"`` (version 3)
        or ``"name@alias"``.
    backend
        ``"sklearn"`` (default): answers are bit-identical to the pipeline's. ``"auto"``: use
        the version's ONNX graph when one was accepted at registration (what serving uses).

    Returns
    -------
    Model
        ``.predict(X)``, ``.predict_proba(X)`` and ``.score(X)``, each checking ``X`` against
        the input contract first (:class:`ContractViolation` lists every problem).

    The artifact is re-hashed before it is deserialized (:class:`ArtifactCorrupted` if it
    changed), and the modules it needs are checked (:class:`UnloadableArtifact` names them).
    """
    from slipway.registry import Registry

    return Registry(Settings.from_env()).load(ref, backend=backend)


def promote(name: str, version: int, *, alias: str = "production") -> ModelVersion:
    """Point ``alias`` (default ``"production"``) of model ``name`` at ``version``.

    The move is atomic and recorded in the audit trail; a running ``slipway serve`` picks it
    up within a second or two. Archived versions cannot be promoted.
    """
    from slipway.registry import Registry

    return Registry(Settings.from_env()).promote(name, version, alias=alias)


def rollback(name: str, *, alias: str = "production") -> ModelVersion:
    """Move ``alias`` of model ``name`` back to the version it held before its latest move.

    Repeated rollbacks walk further back through the alias's history; each is audited.
    Returns the version the alias now points at.
    """
    from slipway.registry import Registry

    return Registry(Settings.from_env()).rollback(name, alias=alias)


def unalias(name: str, alias: str) -> int:
    """Remove ``alias`` from ``name``; the version it pointed at. See :meth:`Registry.unalias`."""
    from slipway.registry import Registry

    return Registry(Settings.from_env()).unalias(name, alias)


def score(model: Model | str, frame: _Any, *, key_column: str | None = None) -> Scores:
    """Score a DataFrame in memory as a batch run would, rows that break the contract apart.

    Parameters
    ----------
    model
        A loaded :class:`Model` or a reference (``"fraud@production"``).
    frame
        The rows; columns the model does not take are ignored.
    key_column
        A column that names each row in the results (default: the row number).

    Returns
    -------
    Scores
        ``.predictions`` (a DataFrame: key, label and probabilities, or value) and
        ``.rejects`` (key and the reasons of each row that broke the contract).
    """
    from slipway.batch import score as _score

    return _score(load(model) if isinstance(model, str) else model, frame, key_column=key_column)


def score_file(
    model: Model | str,
    input: str | _Path | None = None,
    *,
    output: str | _Path = "db",
    key_column: str | None = None,
    chunk_size: int | None = None,
    engine: _Literal["local", "dask"] = "local",
    scheduler: str | None = None,
    run_id: str | None = None,
    query: str | None = None,
    overwrite: bool = False,
    progress: bool | _Callable[[int, int | None], None] = False,
    registry: Registry | None = None,
) -> BatchRun:
    """Score files or a query in chunks into the database or Parquet, as a recorded run.

    Parameters
    ----------
    model
        A loaded :class:`Model` or a reference (``"fraud@production"``).
    input
        A CSV or Parquet file, a directory of them, or a glob; or None with ``query``.
    output
        ``"db"`` (the store's ``batch_predictions`` table), a ``.parquet`` file, or a
        directory (a path ending in ``/``).
    key_column
        The column that keys each row (default: the row number).
    chunk_size
        Rows per chunk (default 100,000).
    engine, scheduler
        ``"local"``, or ``"dask"`` with a scheduler address (default: a local cluster).
    run_id
        Name the run; giving the id of a run that died resumes it.
    query
        A SQL query whose rows are scored instead of ``input`` (run read-only).
    overwrite
        Replace an existing Parquet output.
    progress
        True for a progress bar, or a callback ``(rows_done, rows_total_or_None)``.
    registry
        The registry to use (default: the one the environment points at).

    Returns
    -------
    BatchRun
        The recorded run: status, rows scored and rejected, timings. A run that fails raises
        :class:`BatchFailed` (resume it with its ``run_id``).
    """
    from slipway.batch import score_file as _score_file
    from slipway.registry import Registry

    return _score_file(
        model,
        input,
        output=output,
        key_column=key_column,
        chunk_size=chunk_size,
        engine=engine,
        scheduler=scheduler,
        run_id=run_id,
        query=query,
        overwrite=overwrite,
        progress=progress,
        registry=registry or Registry(Settings.from_env()),
    )


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
    "ExperimentConflict",
    "ExperimentNotFound",
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
    "UnloadableArtifact",
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
