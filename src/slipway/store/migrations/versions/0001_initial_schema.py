"""Initial schema: registry, serving, batch and monitoring tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _bytewise(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.Column("rolled_back", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias_history")),
    )
    op.create_index(
        op.f("ix_alias_history_model_name_alias_id"),
        "alias_history",
        ["model_name", "alias", "id"],
        unique=False,
    )

    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("alias", sa.String(length=100), nullable=True),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(
        op.f("ix_audit_events_model_name_id"), "audit_events", ["model_name", "id"], unique=False
    )

    op.create_table(
        "batch_chunks",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("first_row", sa.BigInteger(), nullable=False),
        sa.Column("rows_in", sa.Integer(), nullable=False),
        sa.Column("rows_scored", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "chunk", name=op.f("pk_batch_chunks")),
    )
    op.create_table(
        "batch_predictions",
        sa.Column("model_name", _bytewise(200), nullable=False),
        sa.Column("key", _bytewise(200), nullable=False),
        sa.Column("run_id", _bytewise(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("scored_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "key", "run_id", name=op.f("pk_batch_predictions")),
    )
    op.create_table(
        "batch_rejects",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("row_number", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=True),
        sa.Column("row", JSON, nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "row_number", name=op.f("pk_batch_rejects")),
    )
    op.create_table(
        "batch_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source", JSON, nullable=False),
        sa.Column("input_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("output", JSON, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("rows_in", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_scored", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_rejected", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("progress", JSON, nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_batch_runs")),
    )
    op.create_index(
        op.f("ix_batch_runs_model_name_started_at"),
        "batch_runs",
        ["model_name", "started_at"],
        unique=False,
    )
    op.create_table(
        "feedback",
        sa.Column("prediction_id", sa.String(length=36), nullable=False),
        sa.Column("label", JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("prediction_id", name=op.f("pk_feedback")),
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("latest_version", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_models")),
    )
    op.create_table(
        "monitoring_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=True),
        sa.Column("window_end", sa.DateTime(), nullable=True),
        sa.Column("rows", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.Column("alerts", JSON, nullable=False),
        sa.Column("report", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_runs")),
    )
    op.create_index(
        op.f("ix_monitoring_runs_model_name_created_at"),
        "monitoring_runs",
        ["model_name", "created_at"],
        unique=False,
    )

    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=100), nullable=True),
        sa.Column("experiment", sa.String(length=200), nullable=True),
        sa.Column("unit_id", sa.String(length=200), nullable=True),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("outputs", JSON, nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("shadow_version", sa.Integer(), nullable=True),
        sa.Column("shadow_outputs", JSON, nullable=True),
        sa.PrimaryKeyConstraint("prediction_id", name=op.f("pk_predictions")),
    )
    op.create_index(
        op.f("ix_predictions_model_name_created_at"),
        "predictions",
        ["model_name", "created_at"],
        unique=False,
    )

    op.create_table(
        "aliases",
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"], ["models.name"], name=op.f("fk_aliases_model_name_models")
        ),
        sa.PrimaryKeyConstraint("model_name", "alias", name=op.f("pk_aliases")),
    )
    op.create_table(
        "model_versions",
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("meta", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"], ["models.name"], name=op.f("fk_model_versions_model_name_models")
        ),
        sa.PrimaryKeyConstraint("model_name", "version", name=op.f("pk_model_versions")),
    )
    op.create_table(
        "validation_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("problems", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_failures")),
    )
    op.create_index(
        op.f("ix_validation_failures_model_name_created_at"),
        "validation_failures",
        ["model_name", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_validation_failures_model_name_created_at"), table_name="validation_failures"
    )
    op.drop_table("validation_failures")
    op.drop_table("model_versions")
    op.drop_table("aliases")
    op.drop_index(op.f("ix_predictions_model_name_created_at"), table_name="predictions")

    op.drop_table("predictions")
    op.drop_index(op.f("ix_monitoring_runs_model_name_created_at"), table_name="monitoring_runs")

    op.drop_table("monitoring_runs")
    op.drop_table("models")
    op.drop_table("feedback")
    op.drop_index(op.f("ix_batch_runs_model_name_started_at"), table_name="batch_runs")
    op.drop_table("batch_runs")
    op.drop_table("batch_rejects")
    op.drop_table("batch_predictions")
    op.drop_table("batch_chunks")
    op.drop_index(op.f("ix_audit_events_model_name_id"), table_name="audit_events")

    op.drop_table("audit_events")
    op.drop_table("api_keys")
    op.drop_index(op.f("ix_alias_history_model_name_alias_id"), table_name="alias_history")

    op.drop_table("alias_history")
