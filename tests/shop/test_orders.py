"""orders against upstream's contract: a real orders process on a scratch PostgreSQL database, with
fake user/carts/payment/shipping upstreams (aiohttp servers in a background thread) it reaches through
SOCKDRILL_URL_*; the hrefs it is given name upstream's hosts (``http://user/...``)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from aiohttp import web
from servicekit import ServiceProcess, database_url, db_run, scratch_database

HAL_UTF8 = "application/hal+json;charset=UTF-8"
JSON_UTF8 = "application/json;charset=UTF-8"
INVALID = "Invalid order request. Order requires customer, address, card and items."
CUSTOMER = "57a98d98e4b00679b4a830af"


def psql(sql: str, db: str) -> str:
    """The rows of ``sql`` on database ``db`` as ``psql -At`` prints them (the tests compare that text)."""
    rows = db_run(database_url(db), sql)
    return "\n".join("|".join("" if v is None else str(v) for v in row.values()) for row in rows)


# ---- fake upstreams ---------------------------------------------------------------------------------
class Fakes:
    """user, carts, payment and shipping, each on its own port, with switchable behaviour."""

    def __init__(self) -> None:
        self.reset()
        self.ports: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[web.AppRunner] = []

    def reset(self) -> None:
        self.items: list[dict[str, Any]] = [
            {"id": "5a0000000000000000000001", "itemId": "sock-1", "quantity": 2, "unitPrice": 18.0},
            {"id": "5a0000000000000000000002", "itemId": "sock-2", "quantity": 1, "unitPrice": 7.99},
        ]
        self.payment_mode = "ok"  # ok | decline | slow | flaky (503 once) | garbage
        self.shipping_mode = "ok"  # ok | fail
        self.payments: list[dict[str, Any]] = []
        self.payment_headers: list[dict[str, str]] = []
        self.shipments: list[dict[str, Any]] = []
        self.fetch_accept: dict[str, str] = {}

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _start(self) -> None:
        apps = {"user": self._user_app(), "carts": self._carts_app(), "payment": self._payment_app(),
                "shipping": self._shipping_app()}
        for name, app in apps.items():
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.ports[name] = runner.addresses[0][1]
            self.runners.append(runner)

    async def _stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    @staticmethod
    def _hal(data: dict[str, Any]) -> web.Response:
        return web.json_response(data, content_type="application/hal+json")

    def _user_app(self) -> web.Application:
        async def customer(request: web.Request) -> web.Response:
            self.fetch_accept["customer"] = request.headers.get("Accept", "")
            cid = request.match_info["id"]
            links = {"self": {"href": f"http://user/customers/{cid}"}}
            return self._hal({"firstName": "Eve", "lastName": "Berger", "username": "Eve_Berger", "id": cid,
                              "_links": links})

        async def address(request: web.Request) -> web.Response:
            return self._hal({"street": "Whitelees Road", "number": "246", "country": "United Kingdom",
                              "city": "Glasgow", "postcode": "G67 3DL", "id": request.match_info["id"]})

        async def card(request: web.Request) -> web.Response:
            return self._hal({"longNum": "5953580604169678", "expires": "08/19", "ccv": "678",
                              "id": request.match_info["id"]})

        app = web.Application()
        app.router.add_get("/customers/{id}", customer)
        app.router.add_get("/addresses/{id}", address)
        app.router.add_get("/cards/{id}", card)
        return app

    def _carts_app(self) -> web.Application:
        async def items(request: web.Request) -> web.Response:
            self.fetch_accept["items"] = request.headers.get("Accept", "")
            return web.json_response(self.items)

        app = web.Application()
        app.router.add_get("/carts/{id}/items", items)
        return app

    def _payment_app(self) -> web.Application:
        async def auth(request: web.Request) -> web.Response:
            body = await request.json()
            self.payments.append(body)
            self.payment_headers.append(dict(request.headers))
            mode = self.payment_mode
            if mode == "slow":
                await asyncio.sleep(2)
            if mode == "flaky":
                self.payment_mode = "ok"
                return web.json_response({"error": "busy"}, status=503)
            if mode == "garbage":
                return web.Response(text="nope")
            if mode == "decline":
                return web.json_response({"authorised": False,
                                          "message": "Payment declined: amount exceeds 100.00"})
            return web.json_response({"authorised": True, "message": "Payment authorised"})

        app = web.Application()
        app.router.add_post("/paymentAuth", auth)
        return app

    def _shipping_app(self) -> web.Application:
        async def ship(request: web.Request) -> web.Response:
            body = await request.json()
            if self.shipping_mode == "fail":
                return web.json_response({"error": "down"}, status=500)
            self.shipments.append(body)
            return web.json_response(body, status=201)

        app = web.Application()
        app.router.add_post("/shipping", ship)
        return app


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    f = Fakes()
    f.start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def db_name() -> Iterator[str]:
    with scratch_database("orders") as url:
        yield url.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def orders(fakes: Fakes, db_name: str) -> Iterator[str]:
    env = {"SOCKDRILL_URL_ORDERS_DB": database_url(db_name)}
    for name, port in fakes.ports.items():
        env[f"SOCKDRILL_URL_{name.upper()}"] = f"http://127.0.0.1:{port}"
    with ServiceProcess("orders", env) as svc:
        yield svc.url


@pytest.fixture(autouse=True)
def fresh(fakes: Fakes) -> None:
    fakes.reset()


def order_body(customer: str = CUSTOMER) -> dict[str, Any]:
    return {"customer": f"http://user/customers/{customer}",
            "address": "http://user/addresses/57a98d98e4b00679b4a830ad",
            "card": "http://user/cards/57a98d98e4b00679b4a830ae",
            "items": f"http://carts/carts/{customer}/items"}


def place(orders: str, body: dict[str, Any] | None = None, **headers: str) -> requests.Response:
    return requests.post(f"{orders}/orders", json=order_body() if body is None else body,
                         headers={"Accept": "application/json", **headers}, timeout=10)


def set_knobs(orders: str, **knobs: Any) -> None:
    r = requests.put(f"{orders}/admin/config", json=knobs, timeout=5)
    assert r.status_code == 200, r.text


def count_rows(db_name: str) -> int:
    return int(psql("SELECT count(*) FROM customer_orders", db_name))


# ---- tests ----------------------------------------------------------------------------------------
def test_health_with_date(orders: str) -> None:
    items = requests.get(f"{orders}/health", timeout=5).json()["health"]
    assert [(i["service"], i["status"]) for i in items] == [("orders", "OK"), ("orders-db", "OK")]
    assert all("date" in i for i in items)


def test_place_order_success_shape_and_calls(orders: str, fakes: Fakes, db_name: str) -> None:
    r = place(orders)
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"] == JSON_UTF8
    order = r.json()
    assert list(order) == ["id", "customerId", "customer", "address", "card", "items", "shipment", "date",
                           "total"]
    assert re.fullmatch(r"[0-9a-f]{24}", order["id"])
    assert order["customerId"] == CUSTOMER
    assert order["customer"] == {"id": None, "firstName": "Eve", "lastName": "Berger",
                                 "username": "Eve_Berger", "addresses": [], "cards": []}
    assert list(order["address"]) == ["id", "number", "street", "city", "postcode", "country"]
    assert order["address"]["id"] is None and order["address"]["city"] == "Glasgow"
    assert order["card"] == {"id": None, "longNum": "5953580604169678", "expires": "08/19", "ccv": "678"}
    assert order["items"] == fakes.items
    assert list(order["shipment"]) == ["id", "name"] and order["shipment"]["name"] == CUSTOMER
    uuid.UUID(order["shipment"]["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", order["date"])
    # 2×18 + 7.99 + 4.99 done in Java floats: the double sum is narrowed to float, then 4.99f added.
    assert '"total":48.979996' in r.text
    # Payment got the amount and the entities; shipping got {id, name}; fetches used upstream's Accepts.
    assert len(fakes.payments) == 1
    assert list(fakes.payments[0]) == ["address", "card", "customer", "amount"]
    assert fakes.payments[0]["amount"] == 48.979996
    assert fakes.payment_headers[0].get("Idempotency-Key")
    assert fakes.shipments == [order["shipment"]]
    assert fakes.fetch_accept == {"customer": "application/hal+json", "items": "application/json"}
    assert psql(f"SELECT status FROM customer_orders WHERE id = '{order['id']}'", db_name) == "shipped"


def test_float32_total_like_upstream(orders: str, fakes: Fakes) -> None:
    fakes.items = [{"id": "x", "itemId": "holy", "quantity": 1, "unitPrice": 99.99}]
    r = place(orders)
    assert r.status_code == 201
    # Upstream's Java float arithmetic: 99.99f + 4.99f is the float printed as 104.979996.
    assert '"total":104.979996' in r.text


def test_decline_is_406_nothing_saved_no_shipping(orders: str, fakes: Fakes, db_name: str) -> None:
    before = count_rows(db_name)
    fakes.payment_mode = "decline"
    r = place(orders)
    assert r.status_code == 406
    body = r.json()
    assert body["status"] == 406 and body["message"] == "Payment declined: amount exceeds 100.00"
    assert body["path"] == "/orders" and "timestamp" in body
    assert len(fakes.payments) == 1 and fakes.shipments == []
    assert count_rows(db_name) == before


def test_unreadable_payment_answer_is_406(orders: str, fakes: Fakes, db_name: str) -> None:
    before = count_rows(db_name)
    fakes.payment_mode = "garbage"
    r = place(orders)
    assert r.status_code == 406 and r.json()["message"] == "Unable to parse authorisation packet"
    assert fakes.shipments == [] and count_rows(db_name) == before


@pytest.mark.parametrize("missing", ["customer", "address", "card", "items"])
def test_missing_or_null_href_is_406(orders: str, fakes: Fakes, missing: str) -> None:
    body = order_body()
    del body[missing]
    r = place(orders, body)
    assert r.status_code == 406 and r.json()["message"] == INVALID
    body = {**order_body(), missing: None}
    r = place(orders, body)
    assert r.status_code == 406 and r.json()["message"] == INVALID
    assert fakes.payments == []


@pytest.mark.parametrize("raw", ["not json", "[]",
                                 '{"customer": 5, "address": "a", "card": "c", "items": "i"}',
                                 '{"customer": "ftp://x", "address": "http://user/a", "card": "http://user/c",'
                                 ' "items": "http://carts/i"}'])
def test_bad_post_bodies_are_400(orders: str, raw: str) -> None:
    r = requests.post(f"{orders}/orders", data=raw, headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400 and r.json()


def test_payment_timeout_is_500_and_nothing_saved(orders: str, fakes: Fakes, db_name: str) -> None:
    before = count_rows(db_name)
    set_knobs(orders, payment_timeout_s=0.3)
    try:
        fakes.payment_mode = "slow"
        started = time.monotonic()
        r = place(orders)
        assert time.monotonic() - started < 1.8
    finally:
        set_knobs(orders, payment_timeout_s=5.0)
    assert r.status_code == 500
    assert r.json()["message"].startswith("Unable to create order due to timeout")
    assert fakes.shipments == [] and count_rows(db_name) == before


def test_payment_retry_on_503(orders: str, fakes: Fakes) -> None:
    fakes.payment_mode = "flaky"
    r = place(orders)
    assert r.status_code == 500  # no retries by default: the 503 is an upstream error
    assert fakes.shipments == []
    fakes.payment_mode = "flaky"
    fakes.payments.clear()
    fakes.payment_headers.clear()
    set_knobs(orders, payment_retries=2)
    try:
        r = place(orders)
    finally:
        set_knobs(orders, payment_retries=0)
    assert r.status_code == 201 and len(fakes.payments) == 2
    assert fakes.payment_headers[0]["Idempotency-Key"] == fakes.payment_headers[1]["Idempotency-Key"]


def test_idempotency_key_returns_first_order(orders: str, fakes: Fakes, db_name: str) -> None:
    key = uuid.uuid4().hex
    first = place(orders, **{"Idempotency-Key": key})
    assert first.status_code == 201
    second = place(orders, **{"Idempotency-Key": key})
    assert second.status_code == 201 and second.json() == first.json()
    assert len(fakes.payments) == 1 and len(fakes.shipments) == 1
    assert psql(f"SELECT count(*) FROM customer_orders WHERE idempotency_key = '{key}'", db_name) == "1"
    assert fakes.payment_headers[0]["Idempotency-Key"] == key
    other = place(orders, **{"Idempotency-Key": uuid.uuid4().hex})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


def test_shipping_failure_then_same_key_resumes_without_charging_again(orders: str, fakes: Fakes,
                                                                        db_name: str) -> None:
    key = uuid.uuid4().hex
    fakes.shipping_mode = "fail"
    r = place(orders, **{"Idempotency-Key": key})
    assert r.status_code == 500
    assert psql(f"SELECT status FROM customer_orders WHERE idempotency_key = '{key}'", db_name) == "paid"
    order_id = psql(f"SELECT id FROM customer_orders WHERE idempotency_key = '{key}'", db_name)
    # Not an order in upstream's sense yet: invisible to the reads.
    assert requests.get(f"{orders}/orders/{order_id}", timeout=5).status_code == 404
    fakes.shipping_mode = "ok"
    r = place(orders, **{"Idempotency-Key": key})
    assert r.status_code == 201 and r.json()["id"] == order_id
    assert len(fakes.payments) == 1 and len(fakes.shipments) == 1
    assert psql(f"SELECT status FROM customer_orders WHERE id = '{order_id}'", db_name) == "shipped"


def test_get_order_hal_without_ids(orders: str) -> None:
    order = place(orders).json()
    r = requests.get(f"{orders}/orders/{order['id']}", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == HAL_UTF8
    hal = r.json()

    def ids(value: Any) -> bool:
        if isinstance(value, dict):
            return "id" in value or any(ids(v) for v in value.values())
        return isinstance(value, list) and any(ids(v) for v in value)

    assert not ids(hal)
    # Upstream's fields, then ours (its status and shipment for tracking: upstream's clients ignore them).
    assert list(hal) == ["customerId", "customer", "address", "card", "items", "shipment", "date", "total",
                         "status", "trackingId", "statusChangedAt", "_links"]
    assert hal["status"] == "shipped" and hal["trackingId"] == order["shipment"]["id"]
    assert hal["shipment"] == {"name": CUSTOMER}
    host = f"127.0.0.1:{orders.rsplit(':', 1)[1]}"
    href = f"http://{host}/orders/{order['id']}"
    assert hal["_links"] == {"self": {"href": href}, "order": {"href": href}}
    # Link host is the request's Host header (``orders`` behind the front-end).
    r = requests.get(f"{orders}/orders/{order['id']}",
                     headers={"Host": "orders", "Accept": "application/json"}, timeout=5)
    assert r.headers["Content-Type"] == JSON_UTF8
    assert r.json()["_links"]["self"]["href"] == f"http://orders/orders/{order['id']}"
    missing = requests.get(f"{orders}/orders/{'0' * 24}", timeout=5)
    assert missing.status_code == 404 and missing.json()["status"] == 404


def test_list_orders_hal_page(orders: str) -> None:
    place(orders)
    r = requests.get(f"{orders}/orders", headers={"Host": "orders"}, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == HAL_UTF8
    page = r.json()
    assert list(page) == ["_embedded", "_links", "page"]
    n = page["page"]["totalElements"]
    assert n >= 1
    assert page["page"] == {"size": 20, "totalElements": n, "totalPages": (n + 19) // 20, "number": 0}
    assert page["_links"]["self"] == {"href": "http://orders/orders{?page,size,sort}", "templated": True}
    assert page["_links"]["profile"] == {"href": "http://orders/profile/orders"}
    assert page["_links"]["search"] == {"href": "http://orders/orders/search"}
    assert all("id" not in o and "_links" in o for o in page["_embedded"]["customerOrders"])
    small = requests.get(f"{orders}/orders", params={"size": 1, "page": 0}, timeout=5).json()
    assert len(small["_embedded"]["customerOrders"]) == 1 and small["page"]["totalPages"] == n
    assert requests.get(f"{orders}/orders", params={"page": "x"}, timeout=5).status_code == 400


def test_search_by_customer(orders: str) -> None:
    cust = f"c{uuid.uuid4().hex[:12]}"
    first = place(orders, order_body(cust)).json()
    second = place(orders, order_body(cust)).json()
    r = requests.get(f"{orders}/orders/search/customerId", params={"custId": cust, "sort": "date"},
                     headers={"Host": "orders"}, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == HAL_UTF8
    body = r.json()
    assert list(body) == ["_embedded", "_links"]
    found = body["_embedded"]["customerOrders"]
    assert [o["date"] for o in found] == [first["date"], second["date"]]
    assert all(o["customerId"] == cust for o in found)
    assert body["_links"]["self"]["href"].startswith("http://orders/orders/search/customerId?custId=")
    none = requests.get(f"{orders}/orders/search/customerId", params={"custId": "nobody"}, timeout=5).json()
    assert none["_embedded"]["customerOrders"] == []


def test_post_content_type_follows_accept(orders: str) -> None:
    r = requests.post(f"{orders}/orders", json=order_body(), headers={"Accept": "*/*"}, timeout=10)
    assert r.status_code == 201 and r.headers["Content-Type"] == HAL_UTF8
    assert "id" in r.json() and "_links" not in r.json()  # plain JSON body either way
