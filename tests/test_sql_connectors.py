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
from scheduled_jobs.ingesting import IngestSummary, ingest
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


# -- the watermark never skips a row ------------------------------------------------------------------

DAY = dt.datetime(2026, 11, 24, 9, 0)


def minute(n: int) -> dt.datetime:
    return DAY + dt.timedelta(minutes=n)


FEED_COLUMNS = "id VARCHAR(700), amount NUMERIC, updated_at TIMESTAMP"


def create_feed(engine: sa.Engine, columns: str = FEED_COLUMNS) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS feed"))
        conn.execute(sa.text(f"CREATE TABLE feed ({columns})"))


@pytest.fixture
def feed(database: sa.Engine) -> sa.Engine:
    """A source table whose id may be NULL (a careless producer), on the database of `shop_db`."""
    create_feed(database)
    return database


def add_feed(engine: sa.Engine, *rows: tuple[str | None, dt.datetime | None]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO feed (id, amount, updated_at) VALUES (:id, 1, :at)"),
            [{"id": i, "at": a} for i, a in rows],
        )


@pytest.fixture
def sql_store(database: sa.Engine, tmp_path: Path, request: pytest.FixtureRequest) -> TaskStore:
    """The task store on the same kind of database as the source."""
    if database.dialect.name == "sqlite":
        return TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    return emptied_postgres_store(request.getfixturevalue("postgres_server_url"))


def emptied_postgres_store(url: str) -> TaskStore:
    """The task store on this session's PostgreSQL database, without what an earlier test left."""
    store = TaskStore.from_url(url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity, scheduled_jobs_watermark"))
    return store


def postgres_feed(
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[dict[str, object]],
    columns: str = FEED_COLUMNS,
    values: str = "(:id, CAST(:amount AS NUMERIC), :at)",
) -> tuple[sa.Engine, TaskStore]:
    """On PostgreSQL, behind `shop_db`: the table feed (``columns``) holding ``rows`` (``INSERT ... VALUES
    values``); with it the emptied task store on the same database.
    """
    engine = sa.create_engine(url)
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", connection_json(url))
    create_feed(engine, columns)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO feed VALUES {values}"), rows)
    return engine, emptied_postgres_store(url)


def run_feed(store: TaskStore, **settings: object) -> IngestSummary:
    """One run of the real ingest loop over the feed table."""
    subscriber = SqlSubscriber(
        SqlSubscriberSettings.model_validate(
            {
                "type": "sql",
                "connection": "shop_db",
                "query": "SELECT id, updated_at FROM feed",
                "watermark_column": "updated_at",
                **settings,
            }
        ),
        StoreState(store, "feed"),
    )
    return ingest(store, subscriber, ["r"], "id")


def task_keys(store: TaskStore) -> list[str]:
    return sorted(task["entity_key"] for task in store.list_tasks("r"))


def test_a_row_without_an_entity_key_is_rejected_alone_and_read_once_it_is_fixed(
    feed: sa.Engine, sql_store: TaskStore
) -> None:
    # batch_size 2: [A, B] [C, no id] [D, E]. Today the second batch is rejected whole, the third is
    # acknowledged, and the watermark jumps past C and the bad row for good.
    add_feed(feed, ("A", minute(1)), ("B", minute(2)), ("C", minute(3)), (None, minute(4)), ("D", minute(5)))
    add_feed(feed, ("E", minute(6)))
    first = run_feed(sql_store, batch_size=2)
    assert [r["source"] for r in first.rejected] == ["shop_db: query, row 4 (updated_at 2026-11-24 09:04:00)"]
    assert "entity key 'id'" in first.rejected[0]["reason"]
    assert task_keys(sql_store) == ["A", "B", "C", "D", "E"]  # its good neighbours are stored
    # Held strictly below the bad row: the rows after it are read again (and change nothing).
    assert str(sql_store.load_watermark("feed")) == "2026-11-24 09:03:00"
    again = run_feed(sql_store, batch_size=2)
    assert len(again.rejected) == 1
    assert (again.tasks_created, again.unchanged) == (0, 2)
    with feed.begin() as conn:  # the producer fixes the row, without touching its updated_at
        conn.execute(sa.text("UPDATE feed SET id = 'F' WHERE id IS NULL"))
    fixed = run_feed(sql_store, batch_size=2)
    assert fixed.rejected == []
    assert task_keys(sql_store) == ["A", "B", "C", "D", "E", "F"]  # every row with a key is a task, once
    assert str(sql_store.load_watermark("feed")) == "2026-11-24 09:06:00"


def test_rows_sharing_the_watermark_value_at_the_max_records_cut_are_all_read(
    feed: sa.Engine, sql_store: TaskStore
) -> None:
    # max_records 3 cuts through B, C, D (one updated_at). Today D is never read: the next run starts past it.
    add_feed(feed, ("A", minute(1)), ("B", minute(2)), ("C", minute(2)), ("D", minute(2)), ("E", minute(3)))
    first = run_feed(sql_store, batch_size=2, max_records=3)
    assert (first.entities, first.tasks_created, first.unchanged) == (4, 4, 0)  # the tie group read once
    run_feed(sql_store, batch_size=2, max_records=3)
    assert task_keys(sql_store) == ["A", "B", "C", "D", "E"]
    assert str(sql_store.load_watermark("feed")) == "2026-11-24 09:03:00"


def test_a_run_whose_rows_all_share_one_watermark_value_still_moves_on(feed: sa.Engine, sql_store: TaskStore) -> None:
    # Every row within max_records has one value: holding the watermark below it would never move on.
    add_feed(feed, *[(f"P{n}", minute(1)) for n in range(5)], ("Q", minute(2)))
    first = run_feed(sql_store, batch_size=2, max_records=2)
    assert (first.entities, first.tasks_created) == (5, 5)  # the whole tie group, past the limit, once each
    assert str(sql_store.load_watermark("feed")) == "2026-11-24 09:01:00"
    second = run_feed(sql_store, batch_size=2, max_records=2)
    assert (second.entities, second.tasks_created) == (1, 1)
    assert task_keys(sql_store) == ["P0", "P1", "P2", "P3", "P4", "Q"]


def test_rows_without_a_watermark_value_are_reported_and_read_once_they_have_one(
    feed: sa.Engine, sql_store: TaskStore
) -> None:
    add_feed(feed, ("A", minute(1)))
    assert run_feed(sql_store).rejected == []
    add_feed(feed, ("N", None), ("B", minute(2)))
    second = run_feed(sql_store)  # today N is silently never read
    assert second.rejected == [
        {
            "source": "shop_db: query",
            "reason": "1 row has no updated_at (NULL), so it is never read: give every row an updated_at, "
            "or select one that is never NULL, e.g. COALESCE(updated_at, <another column>) AS updated_at",
        }
    ]
    assert task_keys(sql_store) == ["A", "B"]
    with feed.begin() as conn:
        conn.execute(sa.text("UPDATE feed SET updated_at = :at WHERE id = 'N'"), {"at": minute(3)})
    assert run_feed(sql_store).rejected == []
    assert task_keys(sql_store) == ["A", "B", "N"]


def test_a_run_that_fails_between_rows_sharing_a_value_reads_them_again(feed: sa.Engine, sql_store: TaskStore) -> None:
    # [A, B] [C, D] with B and C sharing updated_at: the first batch is committed, the store then fails.
    # Today the watermark moves to B's value after the first batch, and C is never read.
    add_feed(feed, ("A", minute(1)), ("B", minute(2)), ("C", minute(2)), ("D", minute(3)))
    real = sql_store.add_entities
    calls = {"n": 0}

    def failing_second(routes: list[str], records: list[tuple[str, object]], **options: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise sa.exc.OperationalError("INSERT", {}, Exception("the store went away"))
        return real(routes, records, **options)  # type: ignore[arg-type]

    sql_store.add_entities = failing_second  # type: ignore[method-assign,assignment]
    with pytest.raises(sa.exc.OperationalError):
        run_feed(sql_store, batch_size=2)
    assert task_keys(sql_store) == ["A", "B"]
    sql_store.add_entities = real  # type: ignore[method-assign]
    run_feed(sql_store, batch_size=2)
    assert task_keys(sql_store) == ["A", "B", "C", "D"]


@pytest.mark.postgres
def test_a_row_the_store_refuses_is_rejected_alone(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A key longer than the store's column, and a number Python will not print: each refused by the store
    # (PostgreSQL), each only its own row's rejection; the rows around them are stored.
    engine, store = postgres_feed(
        postgres_server_url,
        monkeypatch,
        [
            {"id": "A", "amount": "1", "at": minute(1)},
            {"id": "x" * 600, "amount": "2", "at": minute(2)},
            {"id": "B", "amount": "3", "at": minute(3)},
            {"id": "HUGE", "amount": "9" * 5000, "at": minute(4)},
            {"id": "C", "amount": "5", "at": minute(5)},
        ],
    )
    summary = run_feed(store, query="SELECT id, amount, updated_at FROM feed", batch_size=5)
    assert task_keys(store) == ["A", "B", "C"]
    assert [r["source"] for r in summary.rejected] == [
        "shop_db: query, row 2 (updated_at 2026-11-24 09:02:00)",
        "shop_db: query, row 4 (updated_at 2026-11-24 09:04:00)",
    ]
    for rejected in summary.rejected:  # short, and without the statement or the row's data
        assert len(rejected["reason"]) < 200
        assert "x" * 60 not in rejected["reason"] and "99999999" not in rejected["reason"]  # a key's start may show
        assert "INSERT" not in rejected["reason"]
    assert str(store.load_watermark("feed")) == "2026-11-24 09:01:00"
    engine.dispose()


def test_a_query_naming_one_column_twice_is_refused_before_a_record_loses_a_value(
    feed: sa.Engine, sql_store: TaskStore
) -> None:
    # A join's two "id" columns: PostgreSQL returns both, a row mapping keeps the last, and every order
    # would become its customer's entity (SQLite renames the second "id:1").
    add_feed(feed, ("A", minute(1)), ("B", minute(2)))
    for watermark in ("updated_at", None):
        summary = run_feed(
            sql_store, query="SELECT id, updated_at, 'customer-1' AS id FROM feed", watermark_column=watermark
        )
        if feed.dialect.name == "sqlite":
            assert summary.rejected == []
            continue
        assert summary.rejected == [
            {
                "source": "shop_db: query",
                "reason": "the query names the column 'id' twice, so a record would keep only one of its values: "
                "name each column once (e.g. customers.id AS customer_id)",
            }
        ]
        assert (summary.entities, task_keys(sql_store), sql_store.load_watermark("feed")) == (0, [], None)
    if feed.dialect.name == "sqlite":
        assert task_keys(sql_store) == ["A", "B"]


@pytest.mark.postgres
def test_a_row_holding_an_infinite_number_is_rejected_alone(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NUMERIC holds 'Infinity' and 'NaN' (PostgreSQL 14+); JSON holds neither. Today 'Infinity' crashes the
    # run at int(Decimal('Infinity')), every run, and no row after it is ever read.
    _, store = postgres_feed(
        postgres_server_url,
        monkeypatch,
        [
            {"id": "A", "amount": "1.5", "at": minute(1)},
            {"id": "INF", "amount": "Infinity", "at": minute(2)},
            {"id": "NAN", "amount": "NaN", "at": minute(3)},
            {"id": "B", "amount": "-Infinity", "at": minute(4)},
            {"id": "C", "amount": "12", "at": minute(5)},
        ],
    )
    summary = run_feed(store, query="SELECT id, amount, updated_at FROM feed", batch_size=5)
    assert [r["source"] for r in summary.rejected] == [
        "shop_db: query, row 2 (updated_at 2026-11-24 09:02:00)",
        "shop_db: query, row 3 (updated_at 2026-11-24 09:03:00)",
        "shop_db: query, row 4 (updated_at 2026-11-24 09:04:00)",
    ]
    assert [r["reason"] for r in summary.rejected] == [
        f"the task store refused it: entity {key!r}: a number is NaN or infinite, which JSON cannot hold"
        for key in ("INF", "NAN", "B")
    ]
    assert task_keys(store) == ["A", "C"]
    assert [json.loads(task["payload"])["amount"] for task in store.list_tasks("r")] == [1.5, 12]


@pytest.mark.postgres
def test_a_date_python_cannot_hold_is_read_as_its_text_and_the_rows_after_it_are_read(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL holds years up to 294276 and before Christ; Python's datetime only 1 to 9999. Today
    # psycopg refuses such a value: the query fails at that row, on every run, and no row after it
    # is ever read (here: a date at the very start).
    engine, store = postgres_feed(
        postgres_server_url,
        monkeypatch,
        [
            {"id": "BC", "due": "0044-03-15 BC", "expires": "2026-01-01 00:00+00", "at": minute(1)},
            {"id": "A", "due": "2026-11-24", "expires": "10000-01-01 00:00+00", "at": minute(2)},
            {"id": "B", "due": "2026-11-25", "expires": "2027-01-01 00:00+00", "at": minute(3)},
        ],
        columns="id VARCHAR(700), due DATE, expires TIMESTAMPTZ, updated_at TIMESTAMP",
        values="(:id, CAST(:due AS DATE), CAST(:expires AS TIMESTAMPTZ), :at)",
    )
    summary = run_feed(store, query="SELECT id, due, expires, updated_at FROM feed", batch_size=1)
    assert summary.rejected == []
    payloads = {task["entity_key"]: json.loads(task["payload"]) for task in store.list_tasks("r")}
    assert sorted(payloads) == ["A", "B", "BC"]
    assert payloads["BC"]["due"] == "0044-03-15 BC"
    with engine.connect() as conn:  # as PostgreSQL shows it, in the session's time zone
        shown = conn.execute(sa.text("SELECT CAST(expires AS TEXT) FROM feed WHERE id = 'A'")).scalar()
    assert payloads["A"]["expires"] == shown and shown.startswith("10000-01-01")
    assert dt.datetime.fromisoformat(payloads["B"].pop("expires")) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert payloads["B"] == {
        "id": "B",
        "due": "2026-11-25",
        "updated_at": "2026-11-24T09:03:00",
    }
    assert str(store.load_watermark("feed")) == "2026-11-24 09:03:00"
