"""What an Airflow connection is to SQLAlchemy: shared by the task store and the SQL connectors.

SQLite, for which no provider is installed, is named by its file (the connection's host); every other
type answers through its common-sql hook (``DbApiHook.sqlalchemy_url``). Asked for the URL, not for
``get_sqlalchemy_engine``: that falls back to the connection's URI, which is often not SQLAlchemy's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scheduled_jobs.exceptions import ConnectionUnusableError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def sqlalchemy_url(conn_id: str) -> URL:
    """The SQLAlchemy URL of an Airflow connection (``AirflowNotFoundException`` when it does not exist)."""
    from airflow.sdk import BaseHook
    from sqlalchemy.engine import URL

    connection = BaseHook.get_connection(conn_id)
    if connection.conn_type == "sqlite":
        if not connection.host:
            raise ConnectionUnusableError(
                f"connection {conn_id!r}: an sqlite connection needs the database file as its host"
            )
        return URL.create("sqlite", database=connection.host)
    hook = connection.get_hook()  # type: ignore[no-untyped-call]
    try:
        url: URL = hook.sqlalchemy_url
    except (NotImplementedError, AttributeError) as exc:
        raise ConnectionUnusableError(
            f"connection {conn_id!r}: type {connection.conn_type!r} has no SQLAlchemy URL; "
            "use a 'postgres' or 'sqlite' connection"
        ) from exc
    return url
