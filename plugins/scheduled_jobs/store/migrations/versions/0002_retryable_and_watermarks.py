"""Whether a failed task may be retried on a later run; the subscribers' watermarks.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduled_jobs_task") as batch:
        batch.add_column(sa.Column("retryable", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "scheduled_jobs_watermark",
        sa.Column("incoming_configuration", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduled_jobs_watermark")
    with op.batch_alter_table("scheduled_jobs_task") as batch:
        batch.drop_column("retryable")
