"""SQL subscriber (incremental on a watermark) and SQL publisher (insert/upsert), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from conftest import connection_json

from scheduled_jobs.connectors.base import Batch, RejectedSource
from scheduled_jobs.connectors.sql import SqlPublisher, SqlPublisherSettings, SqlSubscriber, SqlSubscriberSettings
from scheduled_jobs.exceptions import DeliveryError
from scheduled_jobs.store import ClaimedTask, TaskStore
from scheduled_jobs.store.tasks import StoreState

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    """A source/destination database behind the Airflow connection `shop_db`."""
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        connection = json.dumps({"conn_type": "sqlite", "host": str(path)})
        engine = sa.create_engine(f"sqlite:///{path}")
    else:
        url = request.getfixturevalue("postgres_server_url")
        connection = connection_json(url)
        engine = sa.create_engine(url)
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", connection)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS orders"))
        conn.execute(sa.text("DROP TABLE IF EXISTS erp_orders"))
        conn.execute(
            sa.text("CREATE TABLE orders (id VARCHAR(20) PRIMARY KEY, total NUMERIC(10,2), updated_at TIMESTAMP)")
        )
        conn.execute(
            sa.text(
                "CREATE TABLE erp_orders (order_id VARCHAR(20) PRIMARY KEY, customer VARCHAR(100), total NUMERIC(10,2))"
            )
        )
    return engine


def add_orders(engine: sa.Engine, *rows: tuple[str, float, dt.datetime]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:id, :total, :at)"),
            [{"id": i, "total": t, "at": a} for i, t, a in rows],
        )


def test_sql_subscriber_reads_only_rows_past_the_watermark(database: sa.Engine, tmp_path: Path) -> None:
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    state = StoreState(store, "shop-db-orders")
    settings = SqlSubscriberSettings(
        type="sql",
        connection="shop_db",
        query="SELECT id, total, updated_at FROM orders",
        watermark_column="updated_at",
        batch_size=2,
    )
    day = dt.datetime(2026, 11, 24, 9, 0)
    add_orders(
        database,
        ("SO-1", 10, day),
        ("SO-2", 20.5, day + dt.timedelta(minutes=1)),
        ("SO-3", 30, day + dt.timedelta(minutes=2)),
    )

    def run() -> list[list[str]]:
        found = []
        for batch in SqlSubscriber(settings, state).batches():
            assert isinstance(batch, Batch)
            found.append([r["id"] for r in batch.records])
            batch.acknowledge()
        return found

    assert run() == [["SO-1", "SO-2"], ["SO-3"]]
    # Kept with its type where the driver gives one (a timestamp on PostgreSQL; text on SQLite).
    assert str(store.load_watermark("shop-db-orders")) == "2026-11-24 09:02:00"
    assert run() == []
    add_orders(database, ("SO-4", 40, day + dt.timedelta(minutes=3)))
    assert run() == [["SO-4"]]


def test_sql_subscriber_reports_a_failing_query(database: sa.Engine) -> None:
    settings = SqlSubscriberSettings(type="sql", connection="shop_db", query="SELECT nope FROM orders")
    (rejected,) = SqlSubscriber(settings).batches()
    assert isinstance(rejected, RejectedSource)
    assert rejected.reason.startswith("the query failed: ")
    assert "nope" in rejected.reason


def task(n: int, payload: dict[str, object]) -> ClaimedTask:
    return ClaimedTask(n, "r", str(payload.get("id")), payload, 1, "token")


def test_sql_publisher_inserts_and_upserts(database: sa.Engine) -> None:
    columns = {"order_id": "id", "customer": "customer.name", "total": "total"}
    insert = SqlPublisher(SqlPublisherSettings(type="sql", connection="shop_db", table="erp_orders", columns=columns))
    insert.publish(task(1, {"id": "SO-1", "customer": {"name": "Jansen"}, "total": 10}))
    with pytest.raises(DeliveryError, match=r"erp_orders: .*(UNIQUE|unique|duplicate)"):
        insert.publish(task(2, {"id": "SO-1", "customer": {"name": "Jansen B.V."}, "total": 12}))
    upsert = SqlPublisher(
        SqlPublisherSettings(
            type="sql",
            connection="shop_db",
            table="erp_orders",
            columns=columns,
            mode="upsert",
            key_columns=["order_id"],
        )
    )
    upsert.publish(task(2, {"id": "SO-1", "customer": {"name": "Jansen B.V."}, "total": 12}))
    upsert.publish(task(3, {"id": "SO-2", "customer": {"name": "Robert'); DROP TABLE erp_orders;--"}, "total": 1}))
    with database.connect() as conn:
        rows = conn.execute(sa.text("SELECT order_id, customer, total FROM erp_orders ORDER BY order_id")).all()
    assert [(r[0], r[1], float(r[2])) for r in rows] == [
        ("SO-1", "Jansen B.V.", 12.0),
        ("SO-2", "Robert'); DROP TABLE erp_orders;--", 1.0),  # a bound parameter, not SQL
    ]
    insert.close()
    upsert.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"table": "erp orders"}, "String should match pattern"),
        ({"columns": {"order id": "id"}}, "column names must be letters, digits and '_': 'order id'"),
        ({"mode": "upsert"}, "mode: upsert needs key_columns"),
    ],
)
def test_sql_publisher_names_are_validated(settings: dict[str, object], message: str) -> None:
    from pydantic import ValidationError

    base = {"type": "sql", "connection": "shop_db", "table": "erp_orders", "columns": {"order_id": "id"}}
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SqlPublisherSettings.model_validate({**base, **settings})
