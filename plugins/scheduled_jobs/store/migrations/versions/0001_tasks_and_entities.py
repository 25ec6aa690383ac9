"""Tasks and the last content seen per entity.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "scheduled_jobs_task",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("entity_key", sa.String(500), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("claimed_at", sa.DateTime, nullable=True),
        sa.Column("claim_token", sa.String(36), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_scheduled_jobs_task_route_status_id", "scheduled_jobs_task", ["route", "status", "id"])
    op.create_index("ix_scheduled_jobs_task_status_claimed_at", "scheduled_jobs_task", ["status", "claimed_at"])
    op.create_table(
        "scheduled_jobs_entity",
        sa.Column("route", sa.String(200), primary_key=True),
        sa.Column("entity_key", sa.String(500), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduled_jobs_entity")
    op.drop_index("ix_scheduled_jobs_task_status_claimed_at", table_name="scheduled_jobs_task")
    op.drop_index("ix_scheduled_jobs_task_route_status_id", table_name="scheduled_jobs_task")
    op.drop_table("scheduled_jobs_task")
