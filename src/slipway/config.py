"""Settings, read once from ``SLIPWAY_*`` environment variables and passed in from there.

Nothing below this module reads ``os.environ``: the CLI, the server and the top-level
functions build one :class:`Settings` and hand it to the objects they create.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from slipway.exceptions import ConfigError


class Settings(BaseSettings):
    """Where Slipway keeps its state and how strict it is.

    Every field can be set by an environment variable named ``SLIPWAY_`` + the field name in
    capitals, e.g. ``SLIPWAY_HOME=/srv/slipway``.
    """

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_", extra="ignore", frozen=True)

    home: Path = Field(Path(".slipway"), description="Holds slipway.db and artifacts/.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata store; default sqlite:///<home>/slipway.db. "
        "Use postgresql+psycopg://user:pass@host/db for several processes or hosts.",
    )
    on_version_mismatch: Literal["warn", "refuse"] = Field(
        "warn", description="Loading a model saved under another scikit-learn minor version."
    )
    trusted_types: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Extra type names skops artifacts may contain, comma separated."
    )
    user: str | None = Field(None, description="Name recorded in audit events; default: OS user.")
    profile_sample_rows: int = Field(10_000, ge=0, description="Rows kept as drift reference.")
    alert_webhook_url: str | None = Field(
        None, description="Monitoring runs POST their verdict as JSON here (see alert_min_status)."
    )
    alert_min_status: Literal["OK", "WARN", "ALERT"] = Field(
        "ALERT", description="The least serious monitoring status sent to the webhook."
    )
    alert_webhook_attempts: int = Field(3, ge=1, le=10, description="Tries per webhook alert.")
    alert_webhook_backoff: float = Field(
        1.0,
        ge=0,
        le=300,
        allow_inf_nan=False,
        description="Seconds before the second try; doubled before each later one.",
    )
    alert_webhook_timeout: float = Field(
        5.0,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="Seconds one webhook request may take in all (connect, send, answer).",
    )
    promote_unchecked: Literal["warn", "refuse"] = Field(
        "warn",
        description="Promoting a version to production over another one when the new version "
        "has no passing `slipway check`: warn (the CLI prints it, the audit records it) or "
        "refuse.",
    )

    feature_skew: Literal["refuse", "warn"] = Field(
        "refuse",
        description="Loading a version whose importable feature code differs from the code "
        "it was registered with: refuse, or serve it with a warning.",
    )

    # -- `slipway serve` -------------------------------------------------------------------
    serve_models: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Serve only these models (comma separated); default: every model "
        "with a production alias.",
    )
    serve_auth: bool = Field(True, description="Require an API key on every route but health.")
    serve_backend: Literal["auto", "sklearn"] = Field(
        "auto",
        description="auto: answer with the version's ONNX graph when one was accepted at "
        "registration; sklearn: always scikit-learn.",
    )
    serve_public_docs: bool = Field(False, description="Serve /docs and /openapi.json unauthed.")
    serve_workers: int = Field(1, ge=1, description="Worker processes sharing the rate limit.")
    serve_max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body.")
    serve_max_rows: int = Field(1000, ge=1, description="Most rows in one request.")
    serve_max_json_depth: int = Field(32, ge=4, description="Deepest JSON nesting accepted.")
    serve_rate_limit: float = Field(
        100.0,
        ge=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="Requests per second per API key (0: unlimited).",
    )
    serve_rate_burst: int = Field(200, ge=1, description="Requests a key may send at once.")
    serve_max_concurrency: int = Field(
        64, ge=1, description="Requests in flight per worker before excess is shed with 503."
    )
    serve_log_queue_rows: int = Field(
        200_000, ge=1, description="Prediction-log rows buffered before new ones are dropped."
    )
    serve_log_batch_rows: int = Field(2000, ge=1, description="Rows per prediction-log write.")
    serve_log_flush_seconds: float = Field(
        0.2,
        gt=0,
        le=60,
        allow_inf_nan=False,
        description="Longest a logged prediction waits before it is written.",
    )
    serve_fast_path: bool = Field(
        True,
        description="Answer POST /v1/models/{name}/predict before FastAPI's routing (same "
        "checks and answers, a fraction of the cost).",
    )
    serve_batch_rows: int = Field(
        256,
        ge=1,
        description="Most rows one merged predict call gathers from concurrent requests "
        "(1: no micro-batching).",
    )
    serve_batch_wait_ms: float = Field(
        0.0,
        ge=0,
        le=100,
        allow_inf_nan=False,
        description="Longest a prediction waits for concurrent ones to share its model call "
        "(0: only those already in flight).",
    )
    serve_shadow_queue_rows: int = Field(
        10_000,
        ge=1,
        description="Rows waiting for a shadow version before new shadow work is dropped "
        "(counted in slipway_shadow_dropped_total).",
    )
    serve_shadow_wait_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Longest a logged prediction waits for its shadow answer before it is "
        "written without it.",
    )
    serve_inference_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=0,
        description="Threads per worker that run long model calls off the event loop (0: "
        "every model call on the event loop).",
    )
    serve_offload_rows: int = Field(
        64,
        ge=1,
        description="ONNX-served model calls of at least this many rows run in the inference "
        "threads (scikit-learn-served calls always do).",
    )
    serve_feature_loop_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        allow_inf_nan=False,
        description="Calls of at most SERVE_FEATURE_LOOP_ROWS rows to an ONNX-served version "
        "with features answer on the event loop while that version's calls cost at most this "
        "many milliseconds of CPU (measured, a running average) and its events are in a SQLite "
        "file; PostgreSQL reads and recorded requests always run in the inference threads (0: "
        "every call with features does).",
    )
    serve_feature_loop_rows: int = Field(
        32,
        ge=0,
        description="Most rows of a call to a version with features that may answer on the "
        "event loop (see SERVE_FEATURE_LOOP_MS; larger, merged calls run in the inference "
        "threads, which keeps the loop free; 0: none).",
    )
    serve_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="How often workers re-read API keys and production aliases.",
    )
    serve_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="Longest a client may take to send a request's headers (from connecting, "
        "or from the request's first byte); then 408 and the connection is closed.",
    )
    serve_body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Longest a request may take to send its body after its headers; then 408 "
        "and the connection is closed.",
    )
    serve_max_connections_per_peer: int = Field(
        256,
        ge=0,
        description="Open connections one client address may hold per worker; more are "
        "refused with 503 (0: no limit).",
    )
    serve_require_all: bool = Field(
        False,
        description="Ready only when every model to serve is loaded (default: when at least "
        "one is; the others are listed as not ready).",
    )
    serve_console: bool = Field(True, description="Serve the web console at /ui.")
    serve_console_session_hours: float = Field(
        8.0, gt=0, le=24 * 30, description="How long a console login lasts before a new one."
    )

    @field_validator("trusted_types", "serve_models", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read the environment, turning a bad value into a ConfigError that names the variable."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = [
                f"SLIPWAY_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            ]
            raise ConfigError("Invalid Slipway settings:", problems) from None

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the SQLite file under ``home``."""
        return self.database_url or f"sqlite:///{(self.home / 'slipway.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        """Directory of content-addressed artifact files."""
        return self.home / "artifacts"
