"""The process ledger: which run executes and which waits, per configuration; runs skipped as duplicates.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_jobs_process",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("configuration", sa.String(250), nullable=False),
        sa.Column("slot", sa.String(10), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("lease_expires_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("configuration", "slot", name="uq_scheduled_jobs_process_configuration_slot"),
    )
    op.create_table(
        "scheduled_jobs_skipped_run",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("configuration", sa.String(250), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("duplicate_of_dag_id", sa.String(250), nullable=False),
        sa.Column("duplicate_of_run_id", sa.String(250), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("skipped_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduled_jobs_skipped_run")
    op.drop_table("scheduled_jobs_process")
