"""The operator's console: who made and claimed a task, task events, the entity lookup, job run history.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("scheduled_jobs_task") as batch:
        batch.add_column(sa.Column("created_by", sa.Text, nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.Text, nullable=True))
    op.create_index("ix_scheduled_jobs_task_route_entity_key_id", "scheduled_jobs_task", ["route", "entity_key", "id"])
    op.create_table(
        "scheduled_jobs_task_event",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("task_id", _ID, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("actor", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_scheduled_jobs_task_event_task_id_id", "scheduled_jobs_task_event", ["task_id", "id"])
    op.create_table(
        "scheduled_jobs_job_run",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("configuration", sa.String(250), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("figures", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_scheduled_jobs_job_run_configuration_id", "scheduled_jobs_job_run", ["configuration", "id"])


def downgrade() -> None:
    op.drop_index("ix_scheduled_jobs_job_run_configuration_id", "scheduled_jobs_job_run")
    op.drop_table("scheduled_jobs_job_run")
    op.drop_index("ix_scheduled_jobs_task_event_task_id_id", "scheduled_jobs_task_event")
    op.drop_table("scheduled_jobs_task_event")
    op.drop_index("ix_scheduled_jobs_task_route_entity_key_id", "scheduled_jobs_task")
    with op.batch_alter_table("scheduled_jobs_task") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("created_by")
