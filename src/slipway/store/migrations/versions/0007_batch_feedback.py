"""Batch feedback: true labels of batch-scored rows, by model, key and run.

Revision ID: 0007_batch_feedback
Revises: 0003_features
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _bytewise(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


revision = "0007_batch_feedback"
down_revision = "0003_features"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_feedback",
        sa.Column("model_name", _bytewise(200), nullable=False),
        sa.Column("key", _bytewise(200), nullable=False),
        sa.Column("run_id", _bytewise(64), nullable=False),
        sa.Column("label", JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "key", "run_id", name=op.f("pk_batch_feedback")),
    )


def downgrade() -> None:
    op.drop_table("batch_feedback")
