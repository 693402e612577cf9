"""Open Inference Protocol tensors: decoding inputs (JSON or binary), mapping them onto a
model's contract, and encoding outputs.

Binary tensors are little-endian, row-major; a ``BYTES`` element is a 4-byte little-endian
length followed by that many bytes. JSON ``data`` may be flat or nested, and its elements must
already have the tensor's type (``true`` is not a number, ``"1.5"`` is not a float; ``72.0``
is an integer, JSON having one number type).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slipway.contract import Contract, FieldSpec
from slipway.exceptions import MalformedRequest
from slipway.predict import Model
from slipway.problems import Problem, display, jsonable
from slipway.serving.answering import Answer
from slipway.serving.bodies import refuse, unknown_fields, wrong

NUMPY = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = (*NUMPY, "BYTES")
TENSOR_FIELDS = ("name", "shape", "datatype", "parameters", "data")


@dataclass
class Tensor:
    """A decoded tensor: ``values`` holds its elements flat (numpy, or a list of str for BYTES)."""

    name: str
    datatype: str
    shape: list[int]
    values: Any

    @property
    def data(self) -> list[Any]:
        """Elements as JSON values, flat."""
        return self.values if isinstance(self.values, list) else self.values.tolist()

    def to_bytes(self) -> bytes:
        """The binary tensor extension's encoding."""
        if self.datatype == "BYTES":
            parts = []
            for v in self.values:
                b = v if isinstance(v, bytes) else str(v).encode()
                parts.append(struct.pack("<I", len(b)) + b)
            return b"".join(parts)
        return np.ascontiguousarray(self.values, dtype=NUMPY[self.datatype]).tobytes()


def has_proba(model: Model) -> bool:
    """Whether a classifier answers probabilities."""
    return model.task == "classification" and hasattr(model.pipeline, "predict_proba")


def all_numeric(contract: Contract) -> bool:
    """Whether every field is a number or an integer (so one 2-D tensor can carry a row)."""
    return all(f.kind in ("number", "integer") for f in contract.fields)


def field_datatype(f: FieldSpec) -> str:
    """The tensor datatype a field is sent as."""
    if f.kind == "number":
        return "FP64"
    if f.kind == "integer":
        return "INT64"
    if f.kind == "boolean":
        return "BOOL"
    return label_datatype(list(f.categories or ["x"]))


def label_datatype(classes: Sequence[Any]) -> str:
    """The tensor datatype of a classifier's labels."""
    values = [jsonable(c) for c in classes]
    if values and all(isinstance(v, bool) for v in values):
        return "BOOL"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def decode_inputs(inputs: Any, blob: bytes) -> list[Tensor]:
    """Decode the request's ``inputs`` (binary ones from ``blob``, in order); 422 on problems."""
    if not isinstance(inputs, list) or not inputs:
        refuse([wrong("inputs", "a non-empty list of tensors", inputs)])
    problems: list[Problem] = []
    out: list[Tensor] = []
    offset = 0
    for i, t in enumerate(inputs):
        if not isinstance(t, dict):
            problems.append(wrong("inputs", "a tensor object", t, i))
            continue
        unknown_fields(t, TENSOR_FIELDS, problems)
        name, shape, datatype = t.get("name"), t.get("shape"), t.get("datatype")
        params = t.get("parameters") or {}
        bad = len(problems)
        if not isinstance(name, str) or not name:
            problems.append(wrong("name", "the input's name", name, i))
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            problems.append(wrong("shape", "a list of non-negative integers", shape, i))
        if datatype not in DATATYPES:
            problems.append(
                Problem(
                    "wrong_type",
                    f"one of {', '.join(DATATYPES)}",
                    i,
                    "datatype",
                    display(datatype),
                )
            )
        if not isinstance(params, dict):
            problems.append(wrong("parameters", "an object", params, i))
        if len(problems) > bad:
            continue
        assert isinstance(name, str) and isinstance(shape, list) and isinstance(datatype, str)
        count = math.prod(shape)
        size = params.get("binary_data_size")
        if size is not None:
            if not _is_int(size) or size < 0 or "data" in t:
                problems.append(wrong("binary_data_size", "a byte count, and no data", size, i))
                continue
            chunk = blob[offset : offset + size]
            offset += size
            values = _from_bytes(name, datatype, chunk, count)
        elif "data" in t:
            values = _from_json(name, datatype, t["data"], count, i, problems)
        else:
            problems.append(Problem("missing_field", "give data or binary_data_size", i, "data"))
            continue
        out.append(Tensor(name, datatype, shape, values))
    if offset != len(blob) and not problems:
        raise MalformedRequest(
            f"The binary part of the body has {len(blob)} bytes, but the inputs' "
            f"binary_data_size add up to {offset}."
        )
    refuse(problems)
    return out


def to_rows(tensors: list[Tensor], contract: Contract) -> tuple[Any, list[Any]]:
    """Rows for validation (a 2-D array or positional rows) and the same rows as JSON values."""
    names = contract.names
    width = len(names)
    if len(tensors) == 1 and len(tensors[0].shape) == 2 and tensors[0].shape[1] == width:
        t = tensors[0]
        n = t.shape[0]
        if isinstance(t.values, list):
            rows = [t.values[r * width : (r + 1) * width] for r in range(n)]
            return rows, rows
        matrix = t.values.reshape(n, width)
        return matrix, _json_rows(matrix)
    by_name = {t.name: t for t in tensors}
    problems: list[Problem] = []
    if len(by_name) != len(tensors):
        problems.append(Problem("wrong_shape", "each input tensor name once", None, "inputs"))
    missing = [n for n in names if n not in by_name]
    extra = [t.name for t in tensors if t.name not in set(names)]
    expected = (
        f"one tensor per field ({', '.join(names[:8])}{', ...' if width > 8 else ''}), "
        f"each of shape [N] or [N, 1], or one [N, {width}] tensor"
    )
    for name in missing:
        problems.append(
            Problem("missing_field", f"missing input tensor; send {expected}", None, name)
        )
    for name in extra:
        problems.append(Problem("unknown_field", f"no such input; send {expected}", None, name))
    refuse(problems)
    lengths = {t.shape[0] if t.shape else -1 for t in tensors}
    if len(lengths) != 1 or any(
        len(t.shape) not in (1, 2) or (len(t.shape) == 2 and t.shape[1] != 1) for t in tensors
    ):
        refuse([Problem("wrong_shape", f"tensors of one shape, [N] or [N, 1]; send {expected}")])
    columns = [_json_column(by_name[n].values) for n in names]
    rows = [list(r) for r in zip(*columns, strict=True)]
    return rows, rows


def requested_outputs(
    outputs: Any, params: dict[str, Any], available: list[dict[str, Any]]
) -> list[tuple[str, bool]]:
    """(name, binary) of every output to send."""
    default_binary = params.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        refuse([wrong("binary_data_output", "true or false", default_binary)])
    names = [o["name"] for o in available]
    if outputs is None:
        return [(n, default_binary) for n in names]
    if not isinstance(outputs, list):
        refuse([wrong("outputs", "a list of requested outputs", outputs)])
    problems: list[Problem] = []
    wanted: list[tuple[str, bool]] = []
    for i, o in enumerate(outputs):
        name = o.get("name") if isinstance(o, dict) else None
        p = (o.get("parameters") or {}) if isinstance(o, dict) else {}
        binary = p.get("binary_data", default_binary) if isinstance(p, dict) else None
        if not isinstance(name, str) or name not in names:
            problems.append(
                Problem(
                    "unknown_field",
                    f"one of the outputs {', '.join(names)}",
                    i,
                    "outputs",
                    display(name),
                )
            )
        elif not isinstance(binary, bool):
            problems.append(wrong("binary_data", "true or false", binary, i))
        else:
            wanted.append((name, binary))
    refuse(problems)
    return wanted


def output_tensors(
    answer: Answer, wanted: list[tuple[str, bool]]
) -> list[tuple[str, bool, Tensor]]:
    """The requested output tensors of an answered request."""
    p = answer.predictions
    n = len(answer.ids)
    out = []
    for name, binary in wanted:
        if name == "prediction_id":
            t = Tensor(name, "BYTES", [n], list(answer.ids))
        elif name == "value":
            assert p.values is not None
            t = Tensor(name, "FP64", [n], np.asarray(p.values, dtype=np.float64))
        elif name == "probabilities":
            assert p.probabilities is not None
            t = Tensor(
                name,
                "FP64",
                list(p.probabilities.shape),
                np.asarray(p.probabilities, dtype=np.float64).ravel(),
            )
        else:
            assert p.labels is not None
            datatype = label_datatype(p.classes or [])
            labels = [jsonable(v) for v in p.labels.tolist()]
            values: Any = labels if datatype == "BYTES" else np.asarray(labels, NUMPY[datatype])
            if datatype == "BYTES":
                values = [str(v) for v in labels]
            t = Tensor(name, datatype, [n], values)
        out.append((name, binary, t))
    return out


# -- helpers -------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _from_bytes(name: str, datatype: str, chunk: bytes, count: int) -> Any:
    if datatype == "BYTES":
        values, pos = [], 0
        while pos < len(chunk):
            if pos + 4 > len(chunk):
                break
            (size,) = struct.unpack_from("<I", chunk, pos)
            piece = chunk[pos + 4 : pos + 4 + size]
            if len(piece) != size:
                break
            try:
                values.append(piece.decode())
            except UnicodeDecodeError:
                raise MalformedRequest(f"Input {name!r}: a BYTES element is not UTF-8.") from None
            pos += 4 + size
        if pos != len(chunk) or len(values) != count:
            raise MalformedRequest(
                f"Input {name!r}: the BYTES data does not hold {count} length-prefixed elements."
            )
        return values
    dtype = np.dtype(NUMPY[datatype])
    if len(chunk) != count * dtype.itemsize:
        raise MalformedRequest(
            f"Input {name!r}: {count} {datatype} elements need {count * dtype.itemsize} bytes, "
            f"got {len(chunk)}."
        )
    return np.frombuffer(chunk, dtype=dtype)


def _from_json(
    name: str, datatype: str, data: Any, count: int, i: int, problems: list[Problem]
) -> Any:
    flat = data if isinstance(data, list) else [data]
    while any(isinstance(v, list) for v in flat):
        flat = [x for v in flat for x in (v if isinstance(v, list) else [v])]
    if datatype == "BYTES":
        ok = all(isinstance(v, str) for v in flat)
    elif datatype == "BOOL":
        ok = all(isinstance(v, bool) for v in flat)
    elif datatype.startswith("FP"):
        ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat)
    else:
        # JSON has one number type: 72.0 is the integer 72 here, as it is in a JSON row.
        ok = all(_is_int(v) or (isinstance(v, float) and v.is_integer()) for v in flat)
        if ok:
            flat = [int(v) if isinstance(v, float) else v for v in flat]
    if not ok:
        problems.append(
            Problem("wrong_type", f"{datatype} elements only (no coercion)", i, name, "mixed")
        )
        return []
    if len(flat) != count:
        problems.append(
            Problem("wrong_shape", f"{count} elements for the shape given", i, name, len(flat))
        )
        return []
    if datatype == "BYTES":
        return flat
    try:
        return np.asarray(flat, dtype=NUMPY[datatype])
    except OverflowError:
        problems.append(Problem("out_of_range", f"values that fit {datatype}", i, name, "overflow"))
        return []


def _json_column(values: Any) -> list[Any]:
    if isinstance(values, list):
        return values
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return [None if math.isnan(v) else v for v in values.tolist()]
    return list(values.tolist())


def _json_rows(matrix: np.ndarray) -> list[Any]:
    if matrix.dtype.kind == "f" and not np.isfinite(matrix).all():
        return [[None if math.isnan(v) else v for v in row] for row in matrix.tolist()]
    return list(matrix.tolist())
