"""Experiments (A/B tests and shadow deployments) and business outcomes.

Revision ID: 0002_experiments
Revises: 0006_perf
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

JSON = sa.JSON().with_variant(JSONB(), "postgresql")

revision = "0002_experiments"
# after main's head: 0001, 0005_console, 0004_lifecycle, 0006_perf, 0002_experiments
down_revision = "0015_usability_b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(length=250), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("control_version", sa.Integer(), nullable=False),
        sa.Column("candidate_version", sa.Integer(), nullable=False),
        sa.Column("split", sa.Float(), nullable=False),
        sa.Column("metric", sa.String(length=50), nullable=False),
        sa.Column("outcome", sa.String(length=100), nullable=True),
        sa.Column("unit_field", sa.String(length=200), nullable=True),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("phases", JSON, nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("stopped_by", sa.String(length=200), nullable=True),
        sa.Column("decision", sa.String(length=20), nullable=True),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("report", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
    )
    op.create_index(
        op.f("ix_experiments_model_name_started_at"),
        "experiments",
        ["model_name", "started_at"],
        unique=False,
    )
    op.create_index(
        "uq_experiments_running_model",
        "experiments",
        ["model_name"],
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "outcomes",
        sa.Column("prediction_id", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("prediction_id", "outcome", name=op.f("pk_outcomes")),
    )


def downgrade() -> None:
    op.drop_table("outcomes")
    op.drop_index("uq_experiments_running_model", table_name="experiments")
    op.drop_index(op.f("ix_experiments_model_name_started_at"), table_name="experiments")
    op.drop_table("experiments")
