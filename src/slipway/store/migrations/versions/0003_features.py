"""Features: event sources and their events.

Revision ID: 0003_features
Revises: 0002_experiments (chained after the head of main when it was merged)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _bytewise(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


revision = "0003_features"
down_revision = "0002_experiments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_sources",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("entity", sa.String(length=100), nullable=False),
        sa.Column("timestamp", sa.String(length=100), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("materialized", JSON, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_feature_sources")),
    )
    op.create_table(
        "feature_events",
        sa.Column("source", _bytewise(100), nullable=False),
        sa.Column("entity", _bytewise(200), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("event_id", _bytewise(200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("ingested_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "source", "entity", "ts", "event_id", name=op.f("pk_feature_events")
        ),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_feature_events_source_event_id")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("feature_events")
    op.drop_table("feature_sources")
