"""Indexes the console's searches need at production size (bench/store_scale.py, 1,000,000 tasks).

- (entity_key, id), with ``varchar_pattern_ops`` on PostgreSQL: an entity-key search without a route,
  exact or by prefix (``LIKE 'SO-00123%'``). The (route, entity_key, id) index serves neither: its
  first column is the route, and under any collation but "C" a default b-tree cannot serve ``LIKE``.
- (created_at, id) and (updated_at, id): a time-range filter, which otherwise reads the table from
  its newest row back to the range (the id also lets a list ordered by the time be paged by keyset).
- (route, status, created_at) of the tasks that are not finished (a partial index): the Tasks
  overview's counts, oldest new task per route, without reading the finished ones (nearly all).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_scheduled_jobs_task_entity_key_id",
        "scheduled_jobs_task",
        ["entity_key", "id"],
        postgresql_ops={"entity_key": "varchar_pattern_ops"},
    )
    op.create_index("ix_scheduled_jobs_task_created_at_id", "scheduled_jobs_task", ["created_at", "id"])
    op.create_index("ix_scheduled_jobs_task_updated_at_id", "scheduled_jobs_task", ["updated_at", "id"])
    unfinished = sa.text("status <> 'finished'")
    op.create_index(
        "ix_scheduled_jobs_task_unfinished",
        "scheduled_jobs_task",
        ["route", "status", "created_at"],
        postgresql_where=unfinished,
        sqlite_where=unfinished,
    )


def downgrade() -> None:
    op.drop_index("ix_scheduled_jobs_task_unfinished", "scheduled_jobs_task")
    op.drop_index("ix_scheduled_jobs_task_updated_at_id", "scheduled_jobs_task")
    op.drop_index("ix_scheduled_jobs_task_created_at_id", "scheduled_jobs_task")
    op.drop_index("ix_scheduled_jobs_task_entity_key_id", "scheduled_jobs_task")
