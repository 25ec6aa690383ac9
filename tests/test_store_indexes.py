"""The store's migrations and ``schema.py`` describe the same tables, and the console's searches have their indexes.

Migration 0005 adds the indexes ``bench/store_scale.py`` showed the console needs at 1,000,000 tasks; the
Table definitions in ``schema.py`` mirror them. Compared on SQLite and on the PostgreSQL server.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers.databases import fresh_database

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.schema import VERSION_TABLE, metadata

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A store of its own: the session's PostgreSQL database also holds other tests' tables (a SQL
    connector's ``orders``), which are not the store's to describe."""
    if request.param == "sqlite":
        yield TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}").engine
        return
    with fresh_database(request.getfixturevalue("postgres_server_url"), "sj_indexes") as url:
        engine = TaskStore.from_url(url).engine
        try:
            yield engine
        finally:
            engine.dispose()


def _indexes(engine: sa.Engine) -> dict[str, tuple[str, ...]]:
    found = sa.inspect(engine).get_indexes("scheduled_jobs_task")
    return {str(index["name"]): tuple(str(c) for c in index["column_names"]) for index in found}


def test_migrations_build_what_schema_py_describes(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    differences = [d for d in differences if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]
    assert differences == []


def test_the_console_searches_have_their_indexes(engine: sa.Engine) -> None:
    indexes = _indexes(engine)
    assert indexes["ix_scheduled_jobs_task_entity_key_id"] == ("entity_key", "id")
    assert indexes["ix_scheduled_jobs_task_created_at_id"] == ("created_at", "id")
    assert indexes["ix_scheduled_jobs_task_updated_at_id"] == ("updated_at", "id")
    assert indexes["ix_scheduled_jobs_task_unfinished"] == ("route", "status", "created_at")
    declared = {
        index.name: tuple(c.name for c in index.columns) for index in metadata.tables["scheduled_jobs_task"].indexes
    }
    assert {name: declared[name] for name in indexes} == indexes


@pytest.mark.postgres
def test_an_entity_key_prefix_is_searched_through_the_index(postgres_server_url: str) -> None:
    """``LIKE 'prefix%'`` uses the (entity_key, id) index under any collation: it is varchar_pattern_ops.

    The server here is C.UTF-8, which PostgreSQL does not treat as "C": a default b-tree index could
    not serve the prefix, so this test fails without pattern_ops.
    """
    engine = TaskStore.from_url(postgres_server_url).engine
    prefix = f"P{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        definition = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_scheduled_jobs_task_entity_key_id'")
        ).scalar_one()
        assert "varchar_pattern_ops" in definition
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(
                sa.text(f"EXPLAIN SELECT id FROM scheduled_jobs_task WHERE entity_key LIKE '{prefix}%'")
            ).scalars()
        )
    assert "ix_scheduled_jobs_task_entity_key_id" in plan
    assert "Index Cond" in plan and "~>=~" in plan, plan
