"""Alembic environment: runs on the connection handed over by ``scheduled_jobs.store.engine.migrate``."""

from __future__ import annotations

from alembic import context

from scheduled_jobs.store.schema import VERSION_TABLE, metadata


def run_migrations() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


# Only Alembic sets up `context.config`: anything else importing this file gets no side effects.
if hasattr(context, "config"):
    run_migrations()
