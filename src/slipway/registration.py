"""What gets recorded about a pipeline when it is registered.

:func:`describe` inspects a fitted pipeline and its data and returns the version's metadata
(task, steps, params, contract, metrics, provenance) together with the frames that become
the version's artifacts: the reference sample and the reference predictions, and the
performance estimator fitted on the validation data (a calibration for classifiers, a loss
model for regressors; see ``slipway.estimation``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from slipway import backends, estimation
from slipway.backends import labels_match
from slipway.contract import Contract, Unseen
from slipway.evaluation import classification_metrics, cross_validation, regression_metrics
from slipway.exceptions import InvalidModel
from slipway.predict import Predictions
from slipway.problems import display, jsonable
from slipway.profile import as_frame, build_profile, sample_rows
from slipway.provenance import fingerprint, git_commit, library_versions
from slipway.tolerance import tolerated


@dataclass
class Description:
    """A version's metadata and the data its reference artifacts are made from."""

    meta: dict[str, Any]
    profile: dict[str, Any]
    sample: pd.DataFrame
    reference: pd.DataFrame
    onnx: bytes | None = None
    estimator: estimation.Calibration | estimation.LossModel | None = None


def describe(
    pipeline: Any,
    X_train: Any,
    y_train: Any = None,
    *,
    X_val: Any = None,
    y_val: Any = None,
    cv: int | None = None,
    unseen: Unseen | Mapping[str, Unseen] | None = None,
    band: float = 10.0,
    abs_limit: float = 1e12,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    nullable: Iterable[str] | Mapping[str, bool] = (),
    ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
    sample_size: int = 10_000,
    seed: int = 0,
    onnx: bool = True,
    features: Sequence[Any] | None = None,
    at: str | None = None,
    record_events: bool | str = False,
) -> Description:
    """Learn the contract and profile, score the validation data, record provenance.

    The contract lets through what the fitted pipeline handles (:mod:`slipway.tolerance`)
    unless ``nullable``, ``unseen`` or ``ranges`` say otherwise.
    With ``features`` the pipeline's input is X_train's columns the pipeline was fitted on;
    the request contract (raw fields, entity keys, time) is recorded with the definitions.
    """
    task = _task_of(pipeline)
    _check_lengths(X_train, y_train, "X_train", "y_train")
    if (X_val is None) != (y_val is None):
        raise InvalidModel("Give both X_val and y_val, or neither.")
    if X_val is not None:
        _check_lengths(X_val, y_val, "X_val", "y_val")
    feature_meta = None
    if features is not None:
        from slipway.features.versions import describe as describe_features

        options = {
            "unseen": unseen,
            "band": band,
            "abs_limit": abs_limit,
            "bounds": bounds,
            "nullable": nullable,
            "ranges": ranges,
        }
        inputs, feature_meta = describe_features(
            features, pipeline, X_train, at=at, record_events=record_events,
            contract_options=options,
        )  # fmt: skip
        X_train = X_train[inputs]
        if X_val is not None and hasattr(X_val, "columns"):
            X_val = X_val[inputs]

    names = _input_names(X_train)
    try:
        contract = Contract.learn(
            X_train,
            unseen=unseen,
            band=band,
            abs_limit=abs_limit,
            bounds=bounds,
            nullable=nullable,
            ranges=ranges,
            tolerated=tolerated(pipeline, names),
        )
    except ValueError as exc:
        if isinstance(exc, InvalidModel):
            raise
        raise InvalidModel(str(exc)) from None
    frame = as_frame(X_train, contract)
    sample = sample_rows(frame, sample_size, seed)
    classes = list(pipeline.classes_) if task == "classification" else None
    meta: dict[str, Any] = {
        "task": task,
        "classes": None if classes is None else [jsonable(c) for c in classes],
        "steps": _steps(pipeline),
        "params": _params(pipeline),
        "feature_names": contract.names,
        "contract": contract.to_dict(),
        "training": {"rows": len(frame), "fingerprint": fingerprint(X_train, y_train)},
        "git": git_commit(),
        "env": library_versions(),
    }
    if feature_meta is not None:
        meta["features"] = feature_meta
    check_x = X_val if X_val is not None else _model_input(sample, contract)
    if task == "classification":
        meta["label_from_proba"] = labels_match(pipeline, check_x)
    reference = _reference_predictions(pipeline, check_x, task, classes)
    meta["reference_predictions"] = {
        "source": "validation" if X_val is not None else "training sample",
        "rows": len(reference),
    }
    meta["metrics"] = {}
    estimator = None
    if X_val is not None:
        meta["validation"] = {"rows": len(y_val)}
        meta["metrics"] = _metrics(task, y_val, reference, classes)
        estimator, meta["estimation"] = _estimator(task, X_val, y_val, reference, contract, seed)
    if cv:
        if y_train is None:
            raise InvalidModel("cv needs y_train.")
        meta["cv"] = cross_validation(pipeline, X_train, y_train, folds=cv, task=task, seed=seed)
    graph = None
    if onnx:
        graph, verdict = backends.assess(pipeline, contract, _model_input(sample, contract), task)
        meta["onnx"] = verdict.to_meta()
    meta["backend"] = "onnx" if graph is not None else "sklearn"
    return Description(meta, build_profile(frame, contract), sample, reference, graph, estimator)


def _input_names(X: Any) -> list[str]:
    """The input columns as the contract names them (``feature_i`` for arrays)."""
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    shape = np.shape(X)
    return [f"feature_{i}" for i in range(shape[1])] if len(shape) == 2 else []


def _task_of(pipeline: Any) -> str:
    if not (hasattr(pipeline, "fit") and hasattr(pipeline, "predict")):
        raise InvalidModel(
            f"Expected a fitted scikit-learn estimator or Pipeline, got {type(pipeline).__name__}."
        )
    try:
        check_is_fitted(pipeline)
    except NotFittedError:
        raise InvalidModel(
            f"{type(pipeline).__name__} is not fitted; call fit(X_train, y_train) before "
            "registering it."
        ) from None
    if is_classifier(pipeline):
        return "classification"
    if is_regressor(pipeline):
        return "regression"
    raise InvalidModel(
        f"{type(pipeline).__name__} is neither a classifier nor a regressor; Slipway registers "
        "models that predict."
    )


def _check_lengths(X: Any, y: Any, xname: str, yname: str) -> None:
    if y is not None and len(X) != len(y):
        raise InvalidModel(f"{xname} has {len(X)} rows but {yname} has {len(y)}.")


def _steps(pipeline: Any) -> list[dict[str, str]]:
    steps = getattr(pipeline, "steps", None) or [(type(pipeline).__name__.lower(), pipeline)]
    return [{"name": n, "class": f"{type(s).__module__}.{type(s).__qualname__}"} for n, s in steps]


def _params(pipeline: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pipeline.get_params(deep=True).items():
        if key in ("steps", "memory", "verbose"):
            continue
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = display(value)
        elif isinstance(value, list | tuple) and all(
            isinstance(v, bool | int | float | str) for v in value
        ):
            out[key] = [display(v) for v in value]
        else:
            out[key] = f"{type(value).__module__}.{type(value).__qualname__}"
    return out


def _model_input(sample: pd.DataFrame, contract: Contract) -> Any:
    if contract.input_kind == "array":
        return sample.to_numpy()
    return sample


def _reference_predictions(
    pipeline: Any, X: Any, task: str, classes: list[Any] | None
) -> pd.DataFrame:
    if task == "regression":
        return pd.DataFrame({"value": np.asarray(pipeline.predict(X), dtype=float)})
    out = pd.DataFrame({"label": np.asarray(pipeline.predict(X))})
    if hasattr(pipeline, "predict_proba"):
        proba = np.asarray(pipeline.predict_proba(X))
        for i, c in enumerate(classes or []):
            out[Predictions.proba_column(c)] = proba[:, i]
    return out


def _estimator(
    task: str, X_val: Any, y_val: Any, reference: pd.DataFrame, contract: Contract, seed: int
) -> tuple[estimation.Calibration | estimation.LossModel | None, dict[str, Any]]:
    """Fit the estimator of performance without labels, and what CBPE/DLE says on the
    validation data itself (the reference that monitoring compares windows with)."""
    if task == "regression":
        kinds = {f.name: f.kind for f in contract.fields}
        X = as_frame(X_val, contract)
        values = reference["value"].to_numpy()
        loss = estimation.fit_loss_model(X, y_val, values, kinds, seed)
        estimates = estimation.estimate_regression(loss, X, values)
        return loss, {**loss.describe(), "reference": {k: e.value for k, e in estimates.items()}}
    proba_cols = [c for c in reference.columns if c.startswith("proba:")]
    if not proba_cols:
        return None, {"method": None, "reason": "the classifier has no predict_proba"}
    proba = reference[proba_cols].to_numpy(dtype=float)
    keys = [c.removeprefix("proba:") for c in proba_cols]
    calibration = estimation.fit_calibration(np.asarray(y_val).astype(str), proba, keys)
    predicted = np.argmax(proba, axis=1)
    ref = estimation.expected_metrics(calibration.apply(proba), predicted, proba)
    return calibration, {"method": "cbpe", "rows": calibration.rows, "reference": ref}


def _metrics(
    task: str, y_val: Any, reference: pd.DataFrame, classes: list[Any] | None
) -> dict[str, float]:
    if task == "regression":
        return regression_metrics(y_val, reference["value"].to_numpy())
    proba_cols = [c for c in reference.columns if Predictions.proba_class(c) is not None]
    proba = reference[proba_cols].to_numpy() if proba_cols else None
    return classification_metrics(y_val, reference["label"].to_numpy(), proba, np.asarray(classes))
