"""perf-data: the inputs of batch-scored rows, for runs that keep them (batch_inputs).

Revision ID: 0006_perf
Revises: 0004_lifecycle (the head of main when this branch merged it)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_perf"
down_revision = "0004_lifecycle"
branch_labels = None
depends_on = None


def _bytewise(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "batch_inputs",
        sa.Column("model_name", _bytewise(200), nullable=False),
        sa.Column("key", _bytewise(200), nullable=False),
        sa.Column("run_id", _bytewise(64), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "key", "run_id", name=op.f("pk_batch_inputs")),
    )


def downgrade() -> None:
    op.drop_table("batch_inputs")
