"""Webhooks of an incoming configuration with a ``records_path``: its documents can be posted as they are.

Against Airflow's real API server (``server``/``client`` fixtures, loopback) and the project's task store.
shop-orders reads files shaped ``{"orders": [...]}`` (``records_path: orders``, entity key ``id``).
Accepted: that shape (a list, or one object, at the path), a list of entities, one entity; an object
with neither the path nor the entity key is refused with a 400 that names both. The caps of every
webhook body (bytes, records, nesting, UTF-8) hold for the new shape too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from conftest import ROOT
from helpers.live_api import store_of

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

JSON = {"Content-Type": "application/json"}
EXAMPLE = ROOT / "examples" / "inbox" / "shop-orders" / "orders-0001.json"
LACKS_PATH = (
    "the body has no 'orders' (the records_path of incoming configuration 'shop-orders') and no entity key 'id': "
    'send {"orders": [...]} as its documents hold, one entity, or a list of entities; nothing was stored'
)
CAP_OF_2 = (
    "too many records: more than 2 in one request ([scheduled_jobs] webhook_max_records); "
    "split them over several requests; nothing was stored"
)


def stored(project: Path, route: str = "orders-to-erp") -> dict[str, Any]:
    """Entity key -> payload of the route's tasks in the project's store."""
    return {task["entity_key"]: json.loads(task["payload"]) for task in store_of(project).list_tasks(route)}


def post(client: httpx.Client, body: bytes, incoming: str = "shop-orders") -> httpx.Response:
    return client.post(f"/webhooks/{incoming}", content=body, headers=JSON)


def test_a_file_of_the_inbox_is_posted_as_it_is(client: httpx.Client, project: Path) -> None:
    document = EXAMPLE.read_bytes()
    answer = post(client, document)
    assert answer.status_code == 202, answer.text
    receipt = answer.json()
    assert (receipt["entities"], receipt["tasks_created"]) == (3, 3)
    orders = json.loads(document)["orders"]
    assert stored(project) == {order["id"]: order for order in orders}, "the payloads are the records, whole"


@pytest.mark.parametrize(
    ("body", "keys"),
    [
        ({"orders": [{"id": "A"}, {"id": "B"}]}, {"A", "B"}),  # the configuration's documents
        ({"orders": {"id": "A"}}, {"A"}),  # one object at the path: one record, as in a file
        ({"orders": []}, set()),  # nothing to store
        ({"batch": "7", "orders": [{"id": "A"}]}, {"A"}),  # a document's other keys are not an entity
        ([{"id": "A"}, {"id": "B"}], {"A", "B"}),  # a list of entities, as without a records_path
        ({"id": "A", "total": 1}, {"A"}),  # one entity without the path, as without a records_path
    ],
)
def test_the_shapes_a_webhook_with_a_records_path_accepts(
    client: httpx.Client, project: Path, body: Any, keys: set[str]
) -> None:
    answer = client.post("/webhooks/shop-orders", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["entities"] == len(keys)
    assert set(stored(project)) == keys


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"order": [{"id": "A"}]}', LACKS_PATH),  # a typo in the path: neither the shape nor an entity
        (b"{}", LACKS_PATH),
        (b'{"orders": 5}', "'orders' (the records_path) is a JSON number; each entity must be a JSON object"),
        (b'{"orders": [{"id": "A"}, "B"]}', "item 1 of 'orders' (the records_path) is a JSON string; each entity"),
        (b'{"orders": [{"id": "A"}, {"number": 2}]}', "record 1: a record has no entity key 'id'; nothing was stored"),
        (b'{"orders": [{"id": null}]}', "record 0: a record's entity key 'id' is None (a null)"),
    ],
)
def test_a_body_that_lacks_the_path_or_holds_no_entities_there_is_a_400(
    client: httpx.Client, project: Path, body: bytes, detail: str
) -> None:
    answer = post(client, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith(detail), answer.json()
    assert answer.json()["detail"].endswith("nothing was stored")
    assert stored(project) == {}


def test_a_dotted_records_path_and_a_configuration_without_one(client: httpx.Client, project: Path) -> None:
    incoming = project / "configurations" / "incoming"
    (incoming / "api-orders.yaml").write_text(
        "name: API orders\nidentifier: api-orders\nentity_key: number\nsubscriber:\n  type: http\n"
        "  connection: shop_api\n  endpoint: /orders\n  records_path: data.orders\n",
        encoding="utf-8",
    )
    (project / "configurations" / "routes" / "api-orders-to-erp.yaml").write_text(
        "name: API orders to ERP\nincoming_configuration: api-orders\noutgoing_configuration: erp-orders-file\n",
        encoding="utf-8",
    )
    page = {"data": {"orders": [{"number": 1}, {"number": 2}]}, "next": None}
    answer = client.post("/webhooks/api-orders", json=page)
    assert answer.status_code == 202, answer.text
    assert set(stored(project, "api-orders-to-erp")) == {"1", "2"}
    lacking = client.post("/webhooks/api-orders", json={"data": {"items": []}})
    assert lacking.status_code == 400
    assert lacking.json()["detail"] == (
        "the body has no 'data.orders' (the records_path of incoming configuration 'api-orders') and no entity key "
        '\'number\': send {"data": {"orders": [...]}} as its documents hold, one entity, or a list of entities; '
        "nothing was stored"
    )
    # product-catalog reads CSV files (no records_path): an object is one entity, whatever keys it has.
    csv = client.post("/webhooks/product-catalog", json={"orders": [{"sku": "X"}]})
    assert csv.status_code == 400
    assert csv.json()["detail"] == "record 0: a record has no entity key 'sku'; nothing was stored"


# -- hostile: the caps of every webhook body hold for a document at the path too ---------------------------


def test_records_at_the_path_count_against_webhook_max_records(
    client: httpx.Client, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__WEBHOOK_MAX_RECORDS", "2")
    three = {"orders": [{"id": "A"}, {"id": "B"}, {"id": "C"}]}
    refused = client.post("/webhooks/shop-orders", json=three)
    assert (refused.status_code, refused.json()["detail"]) == (413, CAP_OF_2)
    assert stored(project) == {}
    assert client.post("/webhooks/shop-orders", json={"orders": three["orders"][:2]}).status_code == 202
    assert set(stored(project)) == {"A", "B"}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"orders": ' + b"[" * 100_000, "body refused: nested more than 100 levels deep"),
        (
            b'{"orders": [{"id": "A", "deep": ' + b"[" * 150 + b"]" * 150 + b"}]}",
            "body refused: nested more than 100 levels deep",
        ),
        (b'{"orders": [{"id": "A", "name": "\xff"}]}', "body refused: not UTF-8 text: invalid start byte at byte 33"),
        (b'{"orders": [{"id": "A", "total": NaN}]}', "body refused: NaN is not a JSON number"),
        (b'{"orders": [{"id": "A"}], "orders": []}', "body refused: an object names the key 'orders' twice"),
    ],
)
def test_a_hostile_document_at_the_path_is_refused_like_any_body(
    client: httpx.Client, project: Path, body: bytes, detail: str
) -> None:
    answer = post(client, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith(detail), answer.json()
    assert stored(project) == {}


def test_a_document_over_webhook_max_bytes_is_a_413(
    client: httpx.Client, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__WEBHOOK_MAX_BYTES", "1000")
    big = {"orders": [{"id": str(n), "filler": "x" * 100} for n in range(20)]}
    answer = client.post("/webhooks/shop-orders", json=big)
    assert answer.status_code == 413
    assert answer.json()["detail"].startswith("body too large: the limit is 1000 bytes")
    assert stored(project) == {}


def test_an_entity_with_its_key_and_an_empty_field_named_like_the_records_path_is_not_dropped_with_a_202(
    client: httpx.Client, project: Path
) -> None:
    """shop-orders: records_path ``orders``, entity key ``id``. One entity {"id": "C1", "orders": []} was
    stored as C1 before 4d88eb7; now it is read as a document with no records: 202, "entities": 0, and
    nothing stored, without a word. (With {"id": "C1", "orders": [{"id": "A"}]} A is stored and C1 is
    lost; with {"id": "C1", "orders": 3} it is a 400.) An object holding both the entity key and the
    path is ambiguous: store it as the entity, or refuse it naming both; never accept it as nothing."""
    answer = client.post("/webhooks/shop-orders", content=b'{"id": "C1", "orders": []}', headers=JSON)
    if answer.status_code == 202:
        assert answer.json()["entities"] == 1, answer.json()
        assert set(stored(project)) == {"C1"}
    else:
        assert answer.status_code == 400, answer.text
        assert "'orders'" in answer.json()["detail"] and "'id'" in answer.json()["detail"], answer.json()


@pytest.mark.parametrize(
    ("body", "json_type", "python_type"),
    [
        (b'{"orders": null}', "null", "NoneType"),
        (b'{"orders": "x"}', "string", "str"),
        (b'{"orders": [{"id": "A"}, 7]}', "number", "int"),
        (b'{"orders": [true]}', "boolean", "bool"),
        (b'{"orders": [[{"id": "A"}]]}', "array", "list"),
        (b"5", "number", "int"),
    ],
)
def test_a_refusal_names_the_json_type_not_pythons(
    client: httpx.Client, project: Path, body: bytes, json_type: str, python_type: str
) -> None:
    """On main: "'orders' (the records_path) is a JSON NoneType", "a JSON str", "a JSON list": Python's names
    (webhooks.py records_in and parse_entities: ``type(record).__name__``). A caller wrote JSON."""
    answer = client.post("/webhooks/shop-orders", content=body, headers=JSON)
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert f"a JSON {json_type}" in detail and f"JSON {python_type};" not in detail, detail
    assert stored(project) == {}
