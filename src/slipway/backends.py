"""The optional fast inference backend: the same pipeline converted to ONNX.

At registration, :func:`convert` turns the fitted pipeline into an ONNX graph (skl2onnx) and
:func:`check` runs it on the reference rows: it is accepted only when its probabilities (or
values) match scikit-learn's within ``TOLERANCE`` and its labels are identical. Accepted graphs
are stored as an artifact of the version and used by the HTTP service, where one row costs about
10 microseconds instead of about a millisecond. Scikit-learn stays loaded beside it: rows whose
top two probabilities are closer than twice the tolerance, and rows carrying warnings (an unseen
category passed through), are answered by scikit-learn, so labels never differ.

Needs the ``onnx`` extra: ``pip install 'slipway[onnx]'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from slipway.exceptions import MissingDependency
from slipway.predict import ONNX_TOLERANCE as TOLERANCE
from slipway.predict import derive_labels

if TYPE_CHECKING:
    from slipway.contract import Contract
    from slipway.validation import Validated


@dataclass(frozen=True)
class Verdict:
    """Whether the ONNX graph may serve a version, and the evidence."""

    accepted: bool
    reason: str
    max_abs_diff: float | None = None
    rows: int = 0

    def to_meta(self) -> dict[str, Any]:
        """The record kept in the version's metadata."""
        return {
            "accepted": self.accepted,
            "reason": self.reason,
            "max_abs_diff": self.max_abs_diff,
            "rows_checked": self.rows,
            "tolerance": TOLERANCE,
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


def convert(pipeline: Any, contract: Contract, task: str) -> bytes:
    """The pipeline as a serialized ONNX graph taking the contract's fields as inputs."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    if contract.input_kind == "array":
        types: list[tuple[str, Any]] = [("X", FloatTensorType([None, len(contract.fields)]))]
    else:
        types = []
        for f in contract.fields:
            if f.kind == "number":
                types.append((f.name, FloatTensorType([None, 1])))
            elif f.kind == "integer":
                types.append((f.name, Int64TensorType([None, 1])))
            elif f.kind == "category" and (
                f.categories is not None and all(isinstance(c, str) for c in f.categories)
            ):
                types.append((f.name, StringTensorType([None, 1])))
            else:
                raise ValueError(f"field {f.name!r} of kind {f.kind} has no ONNX input type")
    final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    options = {id(final): {"zipmap": False}} if task == "classification" else None
    graph = to_onnx(pipeline, initial_types=types, options=options)
    data: bytes = graph.SerializeToString()
    return data


class OnnxBackend:
    """An onnxruntime session fed from validated columns."""

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
        self._int_fields = {f.name for f in contract.fields if f.kind == "integer"}
        self._str_fields = {f.name for f in contract.fields if f.kind == "category"}

    def feed(self, checked: Validated, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """ONNX inputs for the validated rows."""
        if self.contract.input_kind == "array":
            return {"X": np.asarray(checked.model_input(rows), dtype=np.float32)}
        out = {}
        for name, col in checked.columns.items():
            values = col if rows is None else col[rows]
            if name in self._str_fields:
                arr = values.astype(object)
            elif name in self._int_fields:
                arr = values.astype(np.int64)
            else:
                arr = values.astype(np.float32)
            out[name] = arr.reshape(-1, 1)
        return out

    def run(self, checked: Validated, rows: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities (classifiers) or values (regressors), as float64."""
        result = self.session.run(None, self.feed(checked, rows))
        # Classifiers answer (label, probabilities); regressors answer (variable,).
        return np.asarray(result[-1], dtype=np.float64)


def assess(pipeline: Any, contract: Contract, rows: Any, task: str) -> tuple[bytes | None, Verdict]:
    """Convert the pipeline and check it on ``rows`` (the reference sample).

    Returns the ONNX bytes when accepted. Never raises for a pipeline ONNX cannot express:
    that pipeline is simply served by scikit-learn, and the verdict says why.
    """
    if not available():
        return None, Verdict(
            False, "skl2onnx/onnxruntime not installed: pip install 'slipway[onnx]'"
        )
    checked = contract.validate(rows)
    if not checked.ok or checked.n_rows == 0:
        return None, Verdict(False, "no clean reference rows to check the conversion on")
    # skl2onnx and onnxruntime raise a wide range of types (NotImplementedError, RuntimeError,
    # their own) for pipelines they cannot express; any of them means "serve with sklearn".
    try:
        data = convert(pipeline, contract, task)
        backend = OnnxBackend(data, contract)
        got = backend.run(checked)
    except Exception as exc:
        return None, Verdict(False, f"conversion failed: {type(exc).__name__}: {exc}"[:500])
    x = checked.model_input()
    if task == "regression":
        expected = np.asarray(pipeline.predict(x), dtype=np.float64)
        verdict = _compare(got, expected, lambda _: True)
    else:
        expected = np.asarray(pipeline.predict_proba(x), dtype=np.float64)
        truth = np.asarray(pipeline.predict(x))

        def labels_ok(proba: np.ndarray) -> bool:
            derived = derive_labels(pipeline.classes_, proba, 2 * TOLERANCE, lambda t: truth[t])
            return bool(np.array_equal(derived, truth))

        verdict = _compare(got, expected, labels_ok)
    return (data if verdict.accepted else None), verdict


def _compare(got: np.ndarray, expected: np.ndarray, labels_ok: Any) -> Verdict:
    expected = expected.reshape(got.shape)
    scale = np.maximum(1.0, np.abs(expected))
    diff = float(np.max(np.abs(got - expected) / scale)) if got.size else 0.0
    n = len(got)
    if not np.isfinite(diff) or diff > TOLERANCE:
        return Verdict(False, f"differs from scikit-learn by {diff:.3g} > {TOLERANCE}", diff, n)
    if not labels_ok(got):
        return Verdict(False, "labels differ from scikit-learn's on the reference rows", diff, n)
    return Verdict(True, f"matches scikit-learn within {TOLERANCE} on {n} rows", diff, n)
