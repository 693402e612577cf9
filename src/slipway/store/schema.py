"""The one SQLAlchemy Core schema, shared by SQLite and PostgreSQL.

Migrations under ``migrations/versions`` create exactly these tables; a test compares them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps no zone of its own)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given; Slipway stores UTC only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def bytewise(length: int) -> sa.types.TypeEngine[str]:
    """VARCHAR compared byte by byte on PostgreSQL (SQLite's default order already is)."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


# --- registry -----------------------------------------------------------------------------

models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # Versions are allocated by incrementing this counter under the row lock, so concurrent
    # registrations get distinct consecutive numbers and archived numbers are never reused.
    sa.Column("latest_version", sa.Integer(), nullable=False, server_default="0"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("model_name", sa.String(200), sa.ForeignKey("models.name"), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, server_default="active"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("description", sa.Text(), nullable=False, server_default=""),
    sa.Column("tags", JSON, nullable=False),
    sa.Column("meta", JSON, nullable=False),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("model_name", sa.String(200), sa.ForeignKey("models.name"), primary_key=True),
    sa.Column("alias", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Every value an alias has held, newest last; rollback pops the newest live entry.
alias_history = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("alias", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("set_at", UTCDateTime(), nullable=False),
    sa.Column("rolled_back", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Index(None, "model_name", "alias", "id"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("model_name", sa.String(200), nullable=True),
    sa.Column("version", sa.Integer(), nullable=True),
    sa.Column("alias", sa.String(100), nullable=True),
    sa.Column("from_version", sa.Integer(), nullable=True),
    sa.Column("to_version", sa.Integer(), nullable=True),
    sa.Column("detail", JSON, nullable=False),
    sa.Index(None, "model_name", "id"),
)

# --- serving ------------------------------------------------------------------------------

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
    # sha256 of the key; keys are 256-bit random tokens, so a fast hash is enough.
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)

# The prediction log: one row per served prediction. `variant`, `experiment` and the
# shadow columns leave room for A/B tests and shadow deployments.
#   inputs  = the row as validated, {field: value} in contract order
#   outputs = one item of Predictions.records(): {"label", "probabilities"} or {"value"},
#             plus "warnings": [Problem.to_dict(), ...] when the row was flagged
# feedback.label is the ground-truth label exactly as the client sent it (JSON).
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("prediction_id", sa.String(36), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("variant", sa.String(100), nullable=True),
    sa.Column("experiment", sa.String(200), nullable=True),
    sa.Column("unit_id", sa.String(200), nullable=True),
    sa.Column("inputs", JSON, nullable=False),
    sa.Column("outputs", JSON, nullable=False),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("shadow_version", sa.Integer(), nullable=True),
    sa.Column("shadow_outputs", JSON, nullable=True),
    sa.Index(None, "model_name", "created_at"),
    # Feedback by the caller's own key finds a unit's latest prediction (usability, 0015).
    sa.Index(None, "model_name", "unit_id", "created_at"),
)

# Requests refused for breaking the contract (HTTP 422): kept for data-quality monitoring.
validation_failures = sa.Table(
    "validation_failures",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("rows", sa.Integer(), nullable=False),
    sa.Column("problems", JSON, nullable=False),
    sa.Index(None, "model_name", "created_at"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.String(36), primary_key=True),
    sa.Column("label", JSON, nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
)

# --- batch --------------------------------------------------------------------------------

# One row per `slipway batch` run. `source` = {"kind": "parquet"|"csv"|"query", "paths" or
# "query", "key_column"}; `output` = {"kind": "db"} or {"kind": "parquet", "path", "layout":
# "file"|"directory", "rejects"}; `progress` = {"engine", "chunk_size", "chunks_total"}.
# `owner` ("host:pid:token") and `heartbeat_at` tell a live run from a dead one on resume.
batch_runs = sa.Table(
    "batch_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("source", JSON, nullable=False),
    sa.Column("input_fingerprint", sa.String(64), nullable=True),
    sa.Column("output", JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("rows_in", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("rows_scored", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("rows_rejected", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("progress", JSON, nullable=False),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
    sa.Index(None, "model_name", "started_at"),
)

# A chunk of a run is done exactly when its row is here. For database output the row is
# inserted in the same transaction as the chunk's predictions and rejects, so a run killed at
# any instant resumes with each chunk either wholly written or not at all.
batch_chunks = sa.Table(
    "batch_chunks",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("chunk", sa.Integer(), primary_key=True),
    sa.Column("first_row", sa.BigInteger(), nullable=False),
    sa.Column("rows_in", sa.Integer(), nullable=False),
    sa.Column("rows_scored", sa.Integer(), nullable=False),
    sa.Column("rows_rejected", sa.Integer(), nullable=False),
    sa.Column("done_at", UTCDateTime(), nullable=False),
)

# Batch results, looked up by (model_name, key) for precomputed serving: the primary key
# doubles as that index (a run has one model, so it is as unique as (run_id, key)), which
# keeps bulk loads to one b-tree. `label` is the class as JSON; `probabilities` is
# {str(class): p} exactly as in Predictions.records(); `value` is a regressor's output.
# Plain JSON, not JSONB, on PostgreSQL: COPY then stores the text as given instead of
# parsing millions of documents into a binary form that lookups by key never use. The key
# columns compare bytewise ("C" collation) on PostgreSQL: identifiers need no linguistic
# order, and memcmp keeps index maintenance on bulk loads about a third cheaper.
batch_predictions = sa.Table(
    "batch_predictions",
    metadata,
    sa.Column("model_name", bytewise(200), primary_key=True),
    sa.Column("key", bytewise(200), primary_key=True),
    sa.Column("run_id", bytewise(64), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("label", sa.JSON(), nullable=True),
    sa.Column("probabilities", sa.JSON(), nullable=True),
    sa.Column("value", sa.Float(), nullable=True),
    sa.Column("scored_at", UTCDateTime(), nullable=False),
)

# Rows that broke the input contract (or had no usable key): the row as read, and every
# problem as Problem.to_dict() with `row` being the input row number.
batch_rejects = sa.Table(
    "batch_rejects",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("row_number", sa.BigInteger(), primary_key=True),
    sa.Column("key", sa.String(200), nullable=True),
    sa.Column("row", JSON, nullable=False),
    sa.Column("reasons", JSON, nullable=False),
)

# --- monitoring ---------------------------------------------------------------------------

# One row per `slipway monitor` run. `summary` is the latest window without histograms (what
# history listings and "over time" plots read); `report` is the whole DriftReport.to_dict();
# `alerts` records each sink's delivery, filled in after the row is written.
monitoring_runs = sa.Table(
    "monitoring_runs",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("window_start", UTCDateTime(), nullable=True),
    sa.Column("window_end", UTCDateTime(), nullable=True),
    sa.Column("rows", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("summary", JSON, nullable=False),
    sa.Column("alerts", JSON, nullable=False),
    sa.Column("report", JSON, nullable=False),
    sa.Index(None, "model_name", "created_at"),
)

# --- experiments --------------------------------------------------------------------------

# One row per A/B test or shadow deployment of a model. `config` holds the analysis settings
# fixed at start (alpha, power, min_effect, tuning_n, min_outcomes, guardrails); `phases` is
# [{"split", "started_at"}, ...], a new phase per split change (the analysis reads the last).
# `decision` is how it ended: promoted, abandoned or guardrail; `report` the report at stop.
# At most one experiment per model is running: the partial unique index says so to both
# databases, so two concurrent starts cannot both succeed.
experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.String(250), primary_key=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("mode", sa.String(10), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("control_version", sa.Integer(), nullable=False),
    sa.Column("candidate_version", sa.Integer(), nullable=False),
    sa.Column("split", sa.Float(), nullable=False),
    sa.Column("metric", sa.String(50), nullable=False),
    sa.Column("outcome", sa.String(100), nullable=True),
    sa.Column("unit_field", sa.String(200), nullable=True),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("config", JSON, nullable=False),
    sa.Column("phases", JSON, nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("started_by", sa.String(200), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("stopped_at", UTCDateTime(), nullable=True),
    sa.Column("stopped_by", sa.String(200), nullable=True),
    sa.Column("decision", sa.String(20), nullable=True),
    sa.Column("stop_reason", sa.Text(), nullable=True),
    sa.Column("report", JSON, nullable=True),
    sa.Index(None, "model_name", "started_at"),
    sa.Index(
        "uq_experiments_running_model",
        "model_name",
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    ),
)

# Business outcomes of served predictions ({"prediction_id", "outcome": "converted",
# "value": 1.0} items of /v1/feedback): one value per outcome name per prediction, the first
# one sent wins (as for labels), so a retried request never counts twice.
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("prediction_id", sa.String(36), primary_key=True),
    sa.Column("outcome", sa.String(100), primary_key=True),
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
)

# --- lifecycle ----------------------------------------------------------------------------

# One row per `slipway check` run: the candidate version, the version it was compared with
# (None without a champion), the verdict, and the whole result (CheckResult.to_dict()).
check_results = sa.Table(
    "check_results",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("against_version", sa.Integer(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("passed", sa.Boolean(), nullable=False),
    sa.Column("summary", JSON, nullable=False),
    sa.Column("result", JSON, nullable=False),
    sa.Index(None, "model_name", "version", "id"),
)

# --- console ------------------------------------------------------------------------------

# Logins to the web console (/ui), shared by every worker and replica. A session is a random
# token held in the browser's cookie; only its sha256 is stored, so the table holds nothing
# that logs anyone in. `key_name` is the admin key that logged in (or "anonymous" with auth
# off): audit events of console actions name it.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("key_name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index(None, "expires_at"),
)

# --- perf-data ----------------------------------------------------------------------------

# The inputs of batch-scored rows, for runs that keep them (`slipway batch --keep-inputs`):
# one JSON object per row of its contract fields, keyed like batch_predictions and written in
# the same transaction. `slipway monitor --source batch` reads them with their predictions.
batch_inputs = sa.Table(
    "batch_inputs",
    metadata,
    sa.Column("model_name", bytewise(200), primary_key=True),
    sa.Column("key", bytewise(200), primary_key=True),
    sa.Column("run_id", bytewise(64), primary_key=True),
    sa.Column("inputs", sa.Text(), nullable=False),
)

# --- features -----------------------------------------------------------------------------

# Event sources known to the store: what their events look like, and where they are read
# from offline (`spec` is EventSource.to_record()). `materialized` records, for a Parquet or
# table source, how far `slipway features materialize` has copied it into feature_events.
feature_sources = sa.Table(
    "feature_sources",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("entity", sa.String(100), nullable=False),
    sa.Column("timestamp", sa.String(100), nullable=False),
    sa.Column("spec", JSON, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("materialized", JSON, nullable=False),
)

# Events, the store's copy of every source that serves features. The primary key is the
# online read's index: one range scan per entity, (source, entity, ts) in order, and on
# SQLite the rows live in that index (WITHOUT ROWID), so a scan reads no second b-tree.
# `ts` and `ingested_at` are microseconds since the Unix epoch (UTC): exact, and compared as
# integers on both databases. `payload` is the event's other columns as compact JSON text.
# Ingestion is idempotent by (source, event_id).
feature_events = sa.Table(
    "feature_events",
    metadata,
    sa.Column("source", bytewise(100), primary_key=True),
    sa.Column("entity", bytewise(200), primary_key=True),
    sa.Column("ts", sa.BigInteger(), primary_key=True),
    sa.Column("event_id", bytewise(200), primary_key=True),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("ingested_at", sa.BigInteger(), nullable=False),
    sa.UniqueConstraint("source", "event_id"),
    sqlite_with_rowid=False,
)

# --- batch feedback -----------------------------------------------------------------------

# True labels of batch-scored rows, sent to /v1/feedback by the row's key
# ({"model", "batch_key", "run_id"?, "label"}): one per row of batch_predictions (model, key,
# run), so a repeat is a duplicate. `slipway monitor --source batch` joins them to the rows.
batch_feedback = sa.Table(
    "batch_feedback",
    metadata,
    sa.Column("model_name", bytewise(200), primary_key=True),
    sa.Column("key", bytewise(200), primary_key=True),
    sa.Column("run_id", bytewise(64), primary_key=True),
    sa.Column("label", JSON, nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
)
