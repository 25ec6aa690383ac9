"""Ingest's writes: each entity's last content, and a "new" task for each entity that is new or changed.

One batch is one call, in the caller's transaction. The entity-key rule lives in the database's unique key
on (route, entity key): an upsert that changes nothing for unchanged content returns only the keys that
are new or changed, and only those make tasks.

PostgreSQL gets the whole batch in one statement, one round trip: the records travel as three arrays,
and two data-modifying CTEs upsert the entities and insert the tasks. SQLite keeps the two statements
(it has no data-modifying CTEs); it runs in the same process, so a round trip costs it nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import DateTime, Text

from scheduled_jobs.store.schema import entities, tasks

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection

Latest = dict[str, tuple[str, str]]
"""Entity key -> (canonical JSON payload, its SHA-256), in source order: what one batch holds per entity."""

BYTES_PER_STATEMENT = 64 * 1024 * 1024
"""Payload characters one PostgreSQL statement carries at most: a bigger batch (a whole inbox file is one)
is written in several, in the same transaction; PostgreSQL refuses any message over 1 GiB."""
_SQLITE_CHUNK = 1000
"""Rows per upsert: 4,000 parameters, below SQLite's 32,766."""

# Source order and lock order, both kept by ORDER BY. The entities are upserted in (route, key) order, so
# two writers sharing entities lock them in the same order, never in a cycle. The tasks are inserted in
# (route, source) order: ids (and "oldest first") follow the source. ``input`` is read twice, so
# PostgreSQL evaluates it once. An unchanged entity's upsert updates nothing and returns nothing.
_POSTGRESQL = text(
    f"""
    WITH input AS (
        SELECT r.route, r.route_order, i.entity_key, i.content_hash, i.payload, i.source_order
        FROM unnest(:routes) WITH ORDINALITY AS r(route, route_order)
        CROSS JOIN unnest(:keys, :hashes, :payloads) WITH ORDINALITY
            AS i(entity_key, content_hash, payload, source_order)
    ),
    changed AS (
        INSERT INTO {entities.name} AS e (route, entity_key, content_hash, updated_at)
        SELECT route, entity_key, content_hash, :now FROM input ORDER BY route, entity_key
        ON CONFLICT (route, entity_key) DO UPDATE
            SET content_hash = excluded.content_hash, updated_at = excluded.updated_at
            WHERE e.content_hash <> excluded.content_hash
        RETURNING e.route, e.entity_key
    )
    INSERT INTO {tasks.name}
        (route, entity_key, content_hash, payload, status, attempts, created_at, updated_at, created_by)
    SELECT i.route, i.entity_key, i.content_hash, i.payload, 'new', 0, :now, :now, :created_by
    FROM input AS i JOIN changed AS c ON c.route = i.route AND c.entity_key = i.entity_key
    ORDER BY i.route_order, i.source_order
    RETURNING id
    """
).bindparams(
    bindparam("routes", type_=ARRAY(Text)),
    bindparam("keys", type_=ARRAY(Text)),
    bindparam("hashes", type_=ARRAY(Text)),
    bindparam("payloads", type_=ARRAY(Text)),
    bindparam("now", type_=DateTime),
    bindparam("created_by", type_=Text),
)


# A batch too big for one statement: first the entities (keys and hashes only, in one statement, so locks
# are still taken in (route, key) order), then the tasks of the changed ones in source-order pieces.
_POSTGRESQL_ENTITIES = text(
    f"""
    INSERT INTO {entities.name} AS e (route, entity_key, content_hash, updated_at)
    SELECT r.route, i.entity_key, i.content_hash, :now
    FROM unnest(:routes) AS r(route) CROSS JOIN unnest(:keys, :hashes) AS i(entity_key, content_hash)
    ORDER BY r.route, i.entity_key
    ON CONFLICT (route, entity_key) DO UPDATE
        SET content_hash = excluded.content_hash, updated_at = excluded.updated_at
        WHERE e.content_hash <> excluded.content_hash
    RETURNING e.route, e.entity_key
    """
).bindparams(
    bindparam("routes", type_=ARRAY(Text)),
    bindparam("keys", type_=ARRAY(Text)),
    bindparam("hashes", type_=ARRAY(Text)),
    bindparam("now", type_=DateTime),
)
_POSTGRESQL_TASKS = text(
    f"""
    INSERT INTO {tasks.name}
        (route, entity_key, content_hash, payload, status, attempts, created_at, updated_at, created_by)
    SELECT :route, i.entity_key, i.content_hash, i.payload, 'new', 0, :now, :now, :created_by
    FROM unnest(:keys, :hashes, :payloads) WITH ORDINALITY AS i(entity_key, content_hash, payload, source_order)
    ORDER BY i.source_order
    RETURNING id
    """
).bindparams(
    bindparam("route", type_=Text),
    bindparam("keys", type_=ARRAY(Text)),
    bindparam("hashes", type_=ARRAY(Text)),
    bindparam("payloads", type_=ARRAY(Text)),
    bindparam("now", type_=DateTime),
    bindparam("created_by", type_=Text),
)


def _add_postgresql_in_pieces(
    conn: Connection, routes: Sequence[str], latest: Latest, now: dt.datetime, created_by: str | None
) -> list[int]:
    keys = list(latest)
    changed = {
        (row.route, row.entity_key)
        for row in conn.execute(
            _POSTGRESQL_ENTITIES,
            {"routes": list(routes), "keys": keys, "hashes": [latest[key][1] for key in keys], "now": now},
        )
    }
    ids: list[int] = []
    for route in routes:
        piece: list[str] = []
        size = 0
        for key in [*(key for key in keys if (route, key) in changed), None]:
            if piece and (key is None or size + len(latest[key][0]) > BYTES_PER_STATEMENT):
                found = conn.execute(
                    _POSTGRESQL_TASKS,
                    {
                        "route": route,
                        "keys": piece,
                        "hashes": [latest[k][1] for k in piece],
                        "payloads": [latest[k][0] for k in piece],
                        "now": now,
                        "created_by": created_by,
                    },
                )
                ids.extend(int(task_id) for task_id in found.scalars())
                piece, size = [], 0
            if key is not None:
                piece.append(key)
                size += len(latest[key][0])
    return sorted(ids)


def add_tasks(
    conn: Connection,
    routes: Sequence[str],
    latest: Latest,
    now: dt.datetime,
    created_by: str | None,
    *,
    return_ids: bool = False,
) -> tuple[int, list[int]]:
    """Record each entity's content on every route and make a task where it is new or changed.

    The number of tasks made, and with ``return_ids`` their ids in ascending order (the order of
    ``routes``, then of ``latest``).
    """
    if not latest or not routes:
        return 0, []
    postgresql = conn.dialect.name == "postgresql"
    if postgresql and sum(len(document) for document, _ in latest.values()) > BYTES_PER_STATEMENT:
        ids = _add_postgresql_in_pieces(conn, routes, latest, now, created_by)
        return len(ids), ids if return_ids else []
    if postgresql:
        keys = list(latest)
        found = conn.execute(
            _POSTGRESQL,
            {
                "routes": list(routes),
                "keys": keys,
                "hashes": [latest[key][1] for key in keys],
                "payloads": [latest[key][0] for key in keys],
                "now": now,
                "created_by": created_by,
            },
        )
        ids = sorted(int(task_id) for task_id in found.scalars())
        return len(ids), ids if return_ids else []
    if return_ids:  # a webhook's few records: SQLAlchemy's own insert, which returns the ids in order
        created = list[int]()
        for route in routes:
            rows: list[dict[str, Any]] = [
                {"route": route, "entity_key": key, "content_hash": latest[key][1], "payload": latest[key][0]}
                | {"status": "new", "attempts": 0, "created_at": now, "updated_at": now, "created_by": created_by}
                for key in _remember_sqlite(conn, route, latest, now)
            ]
            if rows:
                inserted = conn.execute(tasks.insert().returning(tasks.c.id, sort_by_parameter_order=True), rows)
                created.extend(int(task_id) for task_id in inserted.scalars())
        return len(created), created
    # sqlite3's own executemany: SQLAlchemy's processing of each row's parameters cost more than SQLite's insert.
    stamp = _sqlite_time(conn, now)
    count = 0
    for route in routes:
        values = [
            (route, key, latest[key][1], latest[key][0], "new", 0, stamp, stamp, created_by)
            for key in _remember_sqlite(conn, route, latest, now)
        ]
        if values:
            conn.exec_driver_sql(_SQLITE_TASKS, values)
        count += len(values)
    return count, []


def _sqlite_time(conn: Connection, now: dt.datetime) -> str:
    """A timestamp as the text SQLAlchemy stores in SQLite (and reads back as a datetime)."""
    processor = DateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)
    assert processor is not None  # SQLite's DATETIME always has one
    return str(processor(now))


def _remember_sqlite(conn: Connection, route: str, latest: Latest, now: dt.datetime) -> list[str]:
    """Record each entity's content; the keys that were new or changed, in source order (one upsert per
    chunk, no read)."""
    stamp = _sqlite_time(conn, now)
    keys = list(latest)
    changed: set[str] = set()
    for start in range(0, len(keys), _SQLITE_CHUNK):
        chunk = keys[start : start + _SQLITE_CHUNK]
        values = [value for key in chunk for value in (route, key, latest[key][1], stamp)]
        statement = _SQLITE_ENTITIES.format(values=",".join(["(?,?,?,?)"] * len(chunk)))
        changed.update(conn.exec_driver_sql(statement, tuple(values)).scalars())
    return [key for key in keys if key in changed]


_SQLITE_ENTITIES = (
    f"INSERT INTO {entities.name} (route, entity_key, content_hash, updated_at) VALUES {{values}} "
    "ON CONFLICT (route, entity_key) DO UPDATE SET content_hash = excluded.content_hash, updated_at = "
    f"excluded.updated_at WHERE {entities.name}.content_hash <> excluded.content_hash RETURNING entity_key"
)
_SQLITE_TASKS = (
    f"INSERT INTO {tasks.name} (route, entity_key, content_hash, payload, status, attempts, created_at, updated_at, "
    "created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
