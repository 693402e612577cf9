"""Response shapes, declared for the OpenAPI document only.

Handlers build plain dicts and serialize them with orjson; these pydantic models exist so
``/docs`` describes every response (errors included) and schemathesis can check each response
against its description. Request bodies are described per model in :mod:`openapi`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ProblemOut(BaseModel):
    """One problem with one value of a request."""

    row: int | None = Field(description="Row index in the request; null for the whole request.")
    field: str | None
    code: str = Field(description="missing_field, unknown_field, wrong_type, out_of_range, ...")
    value: Any = None
    expected: str
    message: str


class ErrorOut(BaseModel):
    """Every error: a message naming the problem (V2 routes send only ``error``)."""

    error: str
    code: str | None = None
    request_id: str | None = None
    problems: list[ProblemOut] | None = Field(None, description="Every problem found (422 only).")


class PredictionOut(BaseModel):
    """One row's prediction: label and probabilities (classifiers) or value (regressors)."""

    prediction_id: str = Field(
        description="UUIDv7: unique and time-sortable; send it back "
        "with the true label to /v1/feedback."
    )
    label: Any = None
    probabilities: dict[str, float] | None = None
    value: float | None = None
    warnings: list[ProblemOut] | None = Field(None, description="Why the row was flagged.")


class PredictOut(BaseModel):
    """The answer to a predict request: the one version that answered, one item per row."""

    model: str
    version: int
    arm: str | None = Field(
        None, description="In an experiment: the arm that answered (control or treatment)."
    )
    experiment: str | None = Field(None, description="In an experiment: its id.")
    predictions: list[PredictionOut]


class ModelSummaryOut(BaseModel):
    """A served model."""

    name: str
    version: int
    task: str
    loaded_at: str


class ModelsOut(BaseModel):
    """Every model this server serves."""

    models: list[ModelSummaryOut]


class ModelOut(BaseModel):
    """A served model version: metrics, and its input contract as JSON Schema."""

    name: str
    version: int
    ref: str
    task: str
    classes: list[Any] | None = None
    metrics: dict[str, float | None]
    sha256: str
    format: str
    description: str
    created_at: str
    loaded_at: str
    backend: str = Field(description="What answers predictions: onnx or sklearn.")
    backend_check: dict[str, Any] | None = Field(
        None, description="The ONNX conversion verdict recorded at registration."
    )
    input_schema: dict[str, Any] = Field(description="JSON Schema of one input row.")
    example: dict[str, Any] = Field(description="A plausible input row.")


class ReloadOut(BaseModel):
    """The outcome of a reload on the worker that took the request."""

    model: str
    version: int
    previous: int | None
    changed: bool


class UnmatchedLabel(BaseModel):
    """A label stored as sent that is not one of the predicting version's classes; the item
    is named as it was sent: ``prediction_id``, or ``batch_key`` and the ``run_id`` found."""

    prediction_id: str | None = None
    batch_key: str | None = None
    run_id: str | None = None
    label: Any
    model: str
    expected: Any = Field(description="The version's classes, or 'a number' for a regressor.")


class UnknownKey(BaseModel):
    """A batch key no batch run of the model stored in the database, and why."""

    model: str
    batch_key: str
    run_id: str | None
    reason: str


class FeedbackOut(BaseModel):
    """Feedback stored now, stored before, and for ids this server never logged; labels
    stored as the version's class (``1`` sent for a class ``1.0``), and labels that are not
    among its classes (stored as sent; the monitor reports them as ``unknown_labels``)."""

    accepted: int
    duplicates: int
    unknown: list[str]
    normalized: int
    unmatched: list[UnmatchedLabel]
    unknown_units: list[dict[str, str]] = Field(
        description="{model, unit_id} items with no logged prediction for that unit."
    )
    unknown_keys: list[UnknownKey] = Field(
        description="{model, batch_key, run_id} items no batch run stored, with the reason."
    )


class EventsOut(BaseModel):
    """Events received, stored now, and already stored before (same event id)."""

    source: str
    received: int
    inserted: int
    duplicates: int


class HealthOut(BaseModel):
    """Liveness."""

    status: str


class ModelReadinessOut(BaseModel):
    """One expected model: serving or not, which version, and why not (a short reason)."""

    ready: bool
    version: int | None
    reason: str | None = Field(None, description="Why not ready, or why a newer one is not.")


class ReadyOut(BaseModel):
    """Readiness: the served versions, each expected model, the database, warnings."""

    status: str = Field(description="ready or not_ready.")
    models: dict[str, int] = Field(description="Each model serving, with its version.")
    readiness: dict[str, ModelReadinessOut] = Field(
        description="Each model this worker serves or should serve (--model, or a production "
        "alias)."
    )
    database: str = Field(
        description="ok, or unreachable (predictions are still answered; the log buffers)."
    )
    warnings: list[str] = []


class NotReadyOut(ReadyOut):
    """Not ready: the reasons in one line, and the same details as when ready."""

    error: str
    code: str


class TensorMetadataOut(BaseModel):
    """An input or output tensor of the Open Inference Protocol."""

    name: str
    datatype: str
    shape: list[int]


class ServerMetadataOut(BaseModel):
    """Open Inference Protocol server metadata."""

    name: str
    version: str
    extensions: list[str]


class ModelMetadataOut(BaseModel):
    """Open Inference Protocol model metadata."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadataOut]
    outputs: list[TensorMetadataOut]


class ModelReadyOut(BaseModel):
    """Open Inference Protocol model readiness."""

    name: str
    ready: bool


class TensorOut(BaseModel):
    """An output tensor: ``data`` inline, or ``binary_data_size`` bytes after the JSON."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferOut(BaseModel):
    """Open Inference Protocol inference response."""

    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[TensorOut]


class LiveOut(BaseModel):
    """Open Inference Protocol liveness."""

    live: bool


class V2ReadyOut(BaseModel):
    """Open Inference Protocol server readiness."""

    ready: bool


class InvocationsOut(BaseModel):
    """MLflow scoring answer: labels (classifiers) or values (regressors), with their ids."""

    predictions: list[Any]
    prediction_ids: list[str]
    version: int | None = Field(None, description="In an experiment: the version that answered.")
    arm: str | None = Field(None, description="In an experiment: the arm that answered.")
    experiment: str | None = Field(None, description="In an experiment: its id.")
