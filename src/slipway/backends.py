"""The engines behind the prediction core: scikit-learn, and the same pipeline as ONNX.

:class:`Backend` is the seam: ``outputs(checked, rows)`` turns validated rows into labels,
probabilities or values. :class:`SklearnBackend` asks the pipeline itself (every model has it);
:class:`OnnxBackend` asks an onnxruntime session. Another engine is another class with a
``name`` and that one method; :class:`~slipway.predict.Model` holds one and never asks which.

Labels follow one rule everywhere: the class of highest probability, and where the top two
probabilities are within the engine's tolerance, the pipeline's own ``predict`` decides
(:func:`derive_labels`), so labels always equal ``pipeline.predict`` exactly.

At registration, :func:`convert` turns the fitted pipeline into an ONNX graph (skl2onnx) and
:func:`check` runs it on the reference rows: it is accepted only when its probabilities (or
values) match scikit-learn's within ``TOLERANCE`` and its labels are identical. Accepted graphs
are stored as an artifact of the version and used by the HTTP service, where one row costs about
10 microseconds instead of about a millisecond. Scikit-learn stays loaded beside it: rows whose
top two probabilities are closer than twice the tolerance, and rows carrying warnings (an unseen
category passed through), are answered by scikit-learn, so labels never differ.

ONNX needs the ``onnx`` extra: ``pip install 'slipway[onnx]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from slipway import conversion
from slipway.exceptions import MissingDependency

if TYPE_CHECKING:
    from slipway.contract import Contract
    from slipway.validation import Validated
    from slipway.versions import ModelVersion

# Two probabilities closer than this count as a tie; the pipeline's own predict decides those.
TIE_TOLERANCE = 1e-9
# ONNX probabilities are accepted within this distance of scikit-learn's.
TOLERANCE = 1e-5


@dataclass
class Outputs:
    """What an engine computed for some rows: labels and probabilities, or values."""

    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None


class Backend(Protocol):
    """An engine answering a model's predictions (``name`` is what ``Model.backend`` says)."""

    name: str

    def outputs(self, checked: Validated, rows: np.ndarray | None) -> Outputs:
        """Outputs for the validated rows (all of them, or the positions ``rows``)."""
        ...


class SklearnBackend:
    """The fitted pipeline itself: one ``predict_proba`` call, labels derived from it."""

    name = "sklearn"

    def __init__(self, pipeline: Any, task: str, *, label_from_proba: bool = True) -> None:
        self.pipeline = pipeline
        self.task = task
        classes = list(getattr(pipeline, "classes_", []))
        self.classes = np.asarray(classes) if classes else None
        self.has_proba = task == "classification" and hasattr(pipeline, "predict_proba")
        # False when predict_proba's argmax disagreed with predict at registration (e.g. SVC).
        self.label_from_proba = label_from_proba

    @classmethod
    def of(cls, pipeline: Any, version: ModelVersion) -> SklearnBackend:
        """The backend for a registered version's pipeline."""
        label_from_proba = bool(version.meta.get("label_from_proba", True))
        return cls(pipeline, version.task, label_from_proba=label_from_proba)

    def outputs(self, checked: Validated, rows: np.ndarray | None) -> Outputs:
        """Ask the pipeline (``predict_proba`` once, ``predict`` only for ties)."""
        x = checked.model_input(rows)
        if self.task == "regression":
            return Outputs(values=np.asarray(self.pipeline.predict(x)))
        if not self.has_proba:
            return Outputs(labels=np.asarray(self.pipeline.predict(x)))
        proba = np.asarray(self.pipeline.predict_proba(x))
        if self.label_from_proba:
            labels = derive_labels(self.classes, proba, TIE_TOLERANCE, _rows_of(self.pipeline, x))
        else:
            labels = np.asarray(self.pipeline.predict(x))
        return Outputs(labels, proba)

    def predict_rows(self, checked: Validated, rows: np.ndarray) -> np.ndarray:
        """The pipeline's own labels for the rows at positions ``rows``."""
        return np.asarray(self.pipeline.predict(checked.model_input(rows)))


class OnnxBackend:
    """An ONNX Runtime session, with scikit-learn for what the graph was not checked on."""

    name = "onnx"

    def __init__(self, session: OnnxSession, sklearn: SklearnBackend) -> None:
        self.session = session
        self.sklearn = sklearn

    def outputs(self, checked: Validated, rows: np.ndarray | None) -> Outputs:
        """Ask the graph; flagged rows (an unseen category let through, never part of the
        check) and models whose labels do not follow their probabilities ask scikit-learn."""
        if checked.warnings or not self.sklearn.label_from_proba:
            return self.sklearn.outputs(checked, rows)
        result = self.session.run(checked, rows)
        if self.sklearn.task == "regression":
            values = result.reshape(len(result), -1)[:, 0] if result.ndim > 1 else result
            return Outputs(values=values)

        def exact(tied: np.ndarray) -> np.ndarray:
            return self.sklearn.predict_rows(checked, tied if rows is None else rows[tied])

        labels = derive_labels(self.sklearn.classes, result, 2 * TOLERANCE, exact)
        return Outputs(labels, result)


def derive_labels(
    classes: Any, proba: np.ndarray, tolerance: float, predict_rows: Callable[[np.ndarray], Any]
) -> np.ndarray:
    """Labels as the class of highest probability; rows whose top two probabilities are within
    ``tolerance`` are decided by ``predict_rows(positions)`` (the pipeline's own predict)."""
    labels = np.asarray(classes)[np.argmax(proba, axis=1)]
    if proba.shape[1] > 1:
        top2 = np.partition(proba, -2, axis=1)[:, -2:]
        ties = np.flatnonzero(top2[:, 1] - top2[:, 0] <= tolerance)
        if ties.size:
            labels[ties] = predict_rows(ties)
    return labels


def _rows_of(pipeline: Any, x: Any) -> Callable[[np.ndarray], np.ndarray]:
    def predict(positions: np.ndarray) -> np.ndarray:
        sub = x.iloc[positions] if hasattr(x, "iloc") else x[positions]
        return np.asarray(pipeline.predict(sub))

    return predict


def labels_match(pipeline: Any, X: Any) -> bool:
    """Whether labels derived from ``predict_proba`` (ties re-asked) equal ``predict`` on X.

    Checked at registration; a model for which they differ (e.g. an SVC whose Platt-scaled
    probabilities disagree with its decision function) always gets ``predict`` called.
    """
    if not hasattr(pipeline, "predict_proba") or len(X) == 0:
        return True
    proba = np.asarray(pipeline.predict_proba(X))
    expected = np.asarray(pipeline.predict(X))
    derived = derive_labels(pipeline.classes_, proba, TIE_TOLERANCE, lambda ties: expected[ties])
    return bool(np.array_equal(derived, expected))


@dataclass(frozen=True)
class Verdict:
    """Whether the ONNX graph may serve a version, and the evidence."""

    accepted: bool
    reason: str
    max_abs_diff: float | None = None
    rows: int = 0
    precision: str | None = None  # the graph's number type: "double" or "float"

    def to_meta(self) -> dict[str, Any]:
        """The record kept in the version's metadata."""
        return {
            "accepted": self.accepted,
            "reason": self.reason,
            "max_abs_diff": self.max_abs_diff,
            "rows_checked": self.rows,
            "tolerance": TOLERANCE,
            "precision": self.precision,
        }


def available() -> bool:
    """True when skl2onnx and onnxruntime can be imported."""
    try:
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError:
        return False
    return True


def runtime_available() -> bool:
    """True when onnxruntime can be imported: enough to serve a graph accepted at registration
    (skl2onnx, needed only to convert, costs about 30 MB and 0.2 s to import)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxSession:
    """An onnxruntime session fed from validated columns.

    The graph's inputs are the contract's fields in order (ONNX may have renamed them, e.g. a
    ``/`` in a column name), each fed as the type the graph declares: float64 (numbers,
    integers, booleans as 0/1, nulls as NaN), float32 or int64 (graphs converted in float32),
    or strings.
    """

    def __init__(self, data: bytes, contract: Contract) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependency("onnxruntime", "onnx", "The ONNX backend") from None
        options = ort.SessionOptions()
        # One thread per session: the service runs one worker per core and batches requests.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.contract = contract
        self.outputs = [o.name for o in self.session.get_outputs()]
        inputs = self.session.get_inputs()
        # One [N, F] input: an array-trained model, or a frame read as one matrix.
        self.matrix = len(inputs) == 1 and (
            contract.input_kind == "array" or inputs[0].shape[1] != 1
        )
        fields = ["X"] if self.matrix else contract.names
        if len(inputs) != len(fields):
            raise ValueError(
                f"the ONNX graph takes {len(inputs)} inputs but the contract has {len(fields)} "
                "fields"
            )
        self._feeds = [
            (i.name, f, _ONNX_TYPES.get(i.type, object))
            for i, f in zip(inputs, fields, strict=True)
        ]

    def feed(self, checked: Validated, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """ONNX inputs for the validated rows."""
        if self.matrix:
            name, _, dtype = self._feeds[0]
            if self.contract.input_kind == "array":
                return {name: np.asarray(checked.model_input(rows), dtype=dtype)}
            cols = [checked.columns[f] for f in self.contract.names]
            stacked = np.column_stack([c if c.dtype.kind != "O" else _numbers(c) for c in cols])
            return {name: (stacked if rows is None else stacked[rows]).astype(dtype, copy=False)}
        out = {}
        columns = checked.columns
        for name, field, dtype in self._feeds:
            col = columns[field]
            values = col if rows is None else col[rows]
            if values.dtype.kind == "O" and dtype is not object:
                values = _numbers(values)
            out[name] = values.astype(dtype, copy=False).reshape(-1, 1)
        return out

    def run(self, checked: Validated, rows: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities (classifiers) or values (regressors), as float64."""
        result = self.session.run(self.outputs[-1:], self.feed(checked, rows))
        # Classifiers answer (label, probabilities); regressors answer (variable,).
        return np.asarray(result[-1], dtype=np.float64)


_ONNX_TYPES = {
    "tensor(double)": np.float64,
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(string)": object,
}


def _numbers(values: np.ndarray) -> np.ndarray:
    """Nullable booleans or numbers held as objects, as float64 with NaN for nulls."""
    return np.array([np.nan if v is None else float(v) for v in values.tolist()])


def assess(pipeline: Any, contract: Contract, rows: Any, task: str) -> tuple[bytes | None, Verdict]:
    """Convert the pipeline and check it on ``rows`` (the reference sample).

    The graph is built in float64 first (:mod:`slipway.conversion`), then, if that cannot be
    built or does not match, as skl2onnx's float32 graph. Returns the ONNX bytes of the first
    accepted. Never raises for a pipeline ONNX cannot express: that pipeline is simply served
    by scikit-learn, and the verdict says why.
    """
    if not available():
        return None, Verdict(
            False, "skl2onnx/onnxruntime not installed: pip install 'slipway[onnx]'"
        )
    if task != "regression" and not hasattr(pipeline, "predict_proba"):
        return None, Verdict(False, "the classifier has no predict_proba: only its predict")
    checked = contract.validate(rows)
    if not checked.ok or checked.n_rows == 0:
        return None, Verdict(False, "no clean reference rows to check the conversion on")
    x = checked.model_input()
    if task == "regression":
        expected = np.asarray(pipeline.predict(x), dtype=np.float64)
        labels_ok: Callable[[np.ndarray], bool] = lambda _: True  # noqa: E731
    else:
        expected = np.asarray(pipeline.predict_proba(x), dtype=np.float64)
        truth = np.asarray(pipeline.predict(x))

        def labels_ok(proba: np.ndarray) -> bool:
            derived = derive_labels(pipeline.classes_, proba, 2 * TOLERANCE, lambda t: truth[t])
            return bool(np.array_equal(derived, truth))

    verdicts = []
    for precision in conversion.PRECISIONS:
        # skl2onnx and onnxruntime raise a wide range of types (NotImplementedError,
        # RuntimeError, their own) for pipelines they cannot express; any of them means "try
        # the next precision, else serve with sklearn".
        try:
            data = conversion.convert(pipeline, contract, task, precision)
            got = OnnxSession(data, contract).run(checked)
        except Exception as exc:
            reason = f"conversion failed: {type(exc).__name__}: {exc}"[:500]
            verdicts.append(Verdict(False, reason, precision=precision))
            continue
        verdict = _compare(got, expected, labels_ok, precision)
        if verdict.accepted:
            return data, verdict
        verdicts.append(verdict)
    return None, verdicts[0]


def _compare(
    got: np.ndarray, expected: np.ndarray, labels_ok: Any, precision: str = "double"
) -> Verdict:
    expected = expected.reshape(got.shape)
    scale = np.maximum(1.0, np.abs(expected))
    diff = float(np.max(np.abs(got - expected) / scale)) if got.size else 0.0
    n = len(got)
    if not np.isfinite(diff) or diff > TOLERANCE:
        reason = f"differs from scikit-learn by {diff:.3g} > {TOLERANCE}"
        return Verdict(False, reason, diff, n, precision)
    if not labels_ok(got):
        reason = "labels differ from scikit-learn's on the reference rows"
        return Verdict(False, reason, diff, n, precision)
    reason = f"matches scikit-learn within {TOLERANCE} on {n} rows ({_WIDTH[precision]})"
    return Verdict(True, reason, diff, n, precision)


_WIDTH = {"double": "float64", "float": "float32"}
