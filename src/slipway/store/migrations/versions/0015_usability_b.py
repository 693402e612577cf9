"""Usability: an index for feedback by the caller's own key (the latest prediction of a unit).

Revision ID: 0015_usability_b
Revises: 0006_perf
"""

from __future__ import annotations

from alembic import op

revision = "0015_usability_b"
down_revision = "0006_perf"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_predictions_model_name_unit_id_created_at"),
        "predictions",
        ["model_name", "unit_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_predictions_model_name_unit_id_created_at"), table_name="predictions")
