"""The one prediction core: rows -> validated input -> pipeline -> one result per row.

The Python API, batch scoring and the HTTP service all predict through :class:`Model`, so the
same row gets the same answer everywhere. What computes the outputs is the model's
:class:`~slipway.backends.Backend` (scikit-learn, or ONNX Runtime where it was accepted);
classifiers are asked for probabilities once and the label is derived from them, rows whose two
highest probabilities tie are re-asked with ``predict``, so labels always equal
``pipeline.predict`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from slipway.backends import Backend, SklearnBackend
from slipway.contract import Contract
from slipway.problems import Problem, jsonable
from slipway.validation import Validated

if TYPE_CHECKING:
    from slipway.versions import ModelVersion

# Outputs as columns (batch outputs, reference predictions, monitoring): "label" and one
# "proba:<class>" per class, or "value"; see Predictions.proba_column.
PROBA_PREFIX = "proba:"


class Enricher(Protocol):
    """The one enrichment step between validation and the pipeline (``slipway.features``).

    ``contract`` is what requests carry (raw fields, entity keys, time); :meth:`enrich` turns
    rows validated against it into the pipeline's input, computing ``names``. The Python API,
    batch scoring and every serving protocol reach it through :meth:`Model.infer`.
    """

    contract: Contract
    names: Sequence[str]

    def enrich(self, checked: Validated) -> Enriched:
        """The pipeline's input for validated request rows (rows with errors get defaults)."""
        ...

    def refuse_unstorable(self, checked: Validated) -> None:
        """Add the errors of request rows whose keys the event store cannot hold (a NUL
        character in an entity key), so they are refused like any contract error."""
        ...


@dataclass
class Enriched:
    """What enrichment made of validated request rows: the pipeline's input and the computed
    feature values (one array per feature, every row)."""

    checked: Validated
    features: dict[str, np.ndarray]


@dataclass
class Predictions:
    """Results for the scored rows of one call, in input order.

    ``rows`` holds the input positions that were scored; with ``on_error="split"`` the others
    are in ``rejected`` with their problems.
    """

    model: str
    version: int
    task: str
    rows: np.ndarray
    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    classes: list[Any] | None = None
    values: np.ndarray | None = None
    warnings: list[Problem] = field(default_factory=list)
    rejected: dict[int, list[Problem]] = field(default_factory=dict)
    # Computed feature values of the scored rows (models with features; else empty).
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    @staticmethod
    def proba_column(cls: Any) -> str:
        """The column holding class ``cls``'s probability: ``proba:<class>``, the class as
        JSON text (the key it has in :meth:`records`)."""
        return f"{PROBA_PREFIX}{jsonable(cls)}"

    @staticmethod
    def proba_class(column: str) -> str | None:
        """The class key of a :meth:`proba_column` name, or None for any other column."""
        return column[len(PROBA_PREFIX) :] if column.startswith(PROBA_PREFIX) else None

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready mapping per scored row: label and probabilities, or value."""
        if self.task == "regression":
            assert self.values is not None
            return [{"value": v} for v in self.values.tolist()]
        assert self.labels is not None
        labels = [jsonable(v) for v in self.labels.tolist()]
        if self.probabilities is None:
            return [{"label": lab} for lab in labels]
        keys = [str(jsonable(c)) for c in self.classes or []]
        return [
            {"label": lab, "probabilities": dict(zip(keys, p, strict=True))}
            for lab, p in zip(labels, self.probabilities.tolist(), strict=True)
        ]


class Model:
    """A loaded model version whose artifact was verified, ready to predict.

    ``predict`` and ``predict_proba`` behave like the pipeline's own, after validating the
    input against the version's contract. ``engine`` computes the outputs: scikit-learn by
    default; with the ONNX backend (accepted at registration, loaded with
    ``Registry.load(ref, backend="auto")``) probabilities come from ONNX Runtime within 1e-5 of
    scikit-learn's, and labels stay identical. A version registered with features has an
    ``enricher``: input then carries raw fields, entity keys and a time (``contract``), and the
    features are computed before the engine sees the rows.
    """

    def __init__(
        self,
        pipeline: Any,
        version: ModelVersion,
        engine: Backend | None = None,
        enricher: Enricher | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.version = version
        self.engine: Backend = engine or SklearnBackend.of(pipeline, version)
        self.enricher = enricher
        # What input must carry; the pipeline's own input is version.contract.
        self.contract: Contract = version.contract if enricher is None else enricher.contract
        self.task: str = version.task
        self.classes = list(getattr(pipeline, "classes_", [])) or None
        self._has_proba = self.task == "classification" and hasattr(pipeline, "predict_proba")

    @property
    def name(self) -> str:
        """The model's registered name."""
        return self.version.name

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.version.name}:{self.version.version}"

    @property
    def backend(self) -> str:
        """The name of what answers predictions: ``"sklearn"`` or ``"onnx"``."""
        return self.engine.name

    def __repr__(self) -> str:
        return f"<Model {self.ref} {self.task} ({self.backend})>"

    def validate(self, X: Any) -> Validated:
        """Check input against the contract without predicting."""
        checked = self.contract.validate(X)
        if self.enricher is not None:
            self.enricher.refuse_unstorable(checked)
        return checked

    def predict(self, X: Any) -> np.ndarray:
        """Labels (classifiers) or values (regressors), equal to ``pipeline.predict(X)``."""
        result = self.score(X)
        out = result.values if self.task == "regression" else result.labels
        assert out is not None
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, equal to ``pipeline.predict_proba(X)``."""
        if not self._has_proba:
            raise AttributeError(f"{self.ref} is a {self.task} model without predict_proba")
        result = self.score(X)
        assert result.probabilities is not None
        return result.probabilities

    def score(self, X: Any, *, on_error: Literal["raise", "split"] = "raise") -> Predictions:
        """Validate and predict. ``on_error="split"`` scores the valid rows and reports the rest."""
        checked = self.validate(X)
        if on_error == "raise":
            checked.raise_for_errors(self.ref)
            return self.infer(checked)
        return self.infer(checked, rows=np.flatnonzero(~checked.bad_rows))

    def infer(self, checked: Validated, rows: np.ndarray | None = None) -> Predictions:
        """Predict already-validated input (all rows, or the given positions)."""
        subset = rows
        if rows is None:
            rows = np.arange(checked.n_rows)
        rejected: dict[int, list[Problem]] = {}
        if checked.errors and len(rows) < checked.n_rows:
            for p in checked.errors:
                rejected.setdefault(-1 if p.row is None else p.row, []).append(p)
        out = Predictions(
            self.name,
            self.version.version,
            self.task,
            rows,
            warnings=list(checked.warnings),
            rejected=rejected,
        )
        if self.enricher is not None and len(rows):
            enriched = self.enricher.enrich(checked)
            checked = enriched.checked
            out.features = {k: v[rows] for k, v in enriched.features.items()}
        if len(rows) == 0:
            return self._empty(out)
        result = self.engine.outputs(checked, subset)
        if self.task == "regression":
            out.values = result.values
            return out
        out.classes = self.classes
        out.labels, out.probabilities = result.labels, result.probabilities
        return out

    def _empty(self, out: Predictions) -> Predictions:
        if self.task == "regression":
            out.values = np.empty(0)
        else:
            out.classes = self.classes
            out.labels = np.asarray(self.classes or [])[:0]
            if self._has_proba:
                out.probabilities = np.empty((0, len(self.classes or [])))
        return out
