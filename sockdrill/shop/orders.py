"""orders: checkout and order history on PostgreSQL (``orders-db``), with upstream's routes and shapes.

POST /orders (upstream's checkout): the four hrefs from the front-end are fetched from ``user`` and
``carts`` at once, the total is computed like upstream (float32, 4.99 shipping), payment authorises
it, shipping gets a shipment, the order is saved and returned as plain JSON. A decline is a 406 and
leaves nothing behind; timeouts and other upstream failures are 500s. An href that names a customer,
address, card or cart its owner does not have (a 4xx from user or carts) is a 406 invalid order, where
upstream's Spring answers 500: the client sent a bad order, nothing failed.

Hrefs name hosts as the front-end sees them (``http://user/customers/…``): the host, or failing that
the first path segment, picks the deployment, and the call goes through the mesh with the href's path.

Beyond upstream:
- an order status, kept out of every upstream shape: ``created`` (row written before payment; deleted
  again if payment does not authorise), ``paid`` (authorised, shipment not yet accepted by shipping),
  ``shipped`` (the state upstream would have saved), ``delivered`` (the warehouse handed it over: its status
  event applied, ``order_status.py``). Only ``shipped`` and later states are listed, and every view of an order
  carries ``status``, ``statusChangedAt`` and ``trackingId`` (its shipment, for shipping's tracking view): fields
  upstream's clients ignore;
- an optional ``Idempotency-Key`` header: a repeated key returns the first order; if that attempt
  stopped after payment, the repeat resumes at shipping instead of charging again. The key (or the
  order id) is passed to payment as ``Idempotency-Key`` too;
- an optional ``deliveryService`` in the body (``standard``, ``express``; seed scenario 10): the order's delivery is
  priced by shipping-rates for its address and items, instead of upstream's flat 4.99, and the order keeps
  ``delivery: {service, price, zone, tariff}``. shipping-rates down or the service not offered is a 500 or a 406;
- knobs for the upstream timeouts and for payment retries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import struct
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web
from prometheus_client import Counter

from sockdrill.shop.carts import object_id
from sockdrill.shop.common import Knob, Service, json_response, read_json, run_service
from sockdrill.shop.common.db import DB_KNOBS, Database
from sockdrill.shop.common.http import UpstreamError, UpstreamResponse
from sockdrill.shop.order_status import OrderStatusUpdater
from sockdrill.shop.spring import HAL_UTF8, JSON_UTF8, spring_error

KNOBS: list[Knob] = [
    *DB_KNOBS,
    Knob("fetch_timeout_s", 5.0, "timeout of each customer/address/card/items fetch (seconds)",
         minimum=0.001, maximum=300),
    Knob("payment_timeout_s", 5.0, "timeout of one payment authorisation call (seconds)",
         minimum=0.001, maximum=300),
    Knob("payment_retries", 0, "retries of a payment call that timed out or failed without an answer "
         "(or got 502/503/504)", minimum=0, maximum=10),
    Knob("payment_retry_backoff_s", 0.1, "first back-off between payment retries; doubles each time",
         minimum=0, maximum=30),
    Knob("delivery_quote_timeout_s", 3.0, "timeout of the call to shipping-rates pricing an order's delivery "
         "(seconds)", minimum=0.001, maximum=300),
    Knob("shipping_timeout_s", 5.0, "timeout of the call to shipping (seconds)", minimum=0.001, maximum=300),
    Knob("status_apply_interval_s", 0.0, "apply the warehouse's status events in batches this often (seconds; 0: as "
         "they come)", minimum=0, maximum=600),
    Knob("status_retry_s", 1.0, "wait before trying again a status event that could not be applied (seconds)",
         minimum=0.05, maximum=300),
    Knob("status_read_timeout_s", 5.0, "how long a read of the status events may wait for the queue store's answer "
         "before the connection is given up and made again (seconds; 0: wait as long as it takes). A change applies "
         "from the next read", minimum=0, maximum=300),
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS customer_orders (
    id              TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'created',
    idempotency_key TEXT UNIQUE,
    shipment_id     TEXT NOT NULL,
    total           DOUBLE PRECISION NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    doc             JSON NOT NULL,
    seq             BIGSERIAL
);
CREATE INDEX IF NOT EXISTS customer_orders_by_customer ON customer_orders (customer_id, created_at);
CREATE INDEX IF NOT EXISTS customer_orders_by_shipment ON customer_orders (shipment_id);
"""

# Orders still being placed (or stopped half-way) are not part of any upstream view.
HIDDEN = ("created", "paid")
INVALID_ORDER = "Invalid order request. Order requires customer, address, card and items."
TIMEOUT = "Unable to create order due to timeout from one of the services."
IO_ERROR = "Unable to create order due to unspecified IO error."
NOT_READABLE = "org.springframework.http.converter.HttpMessageNotReadableException"
SHIPPING_COST = 4.99
HREFS = ("customer", "address", "card", "items")
# Hosts the front-end writes into hrefs, and the first path segments that identify the owner otherwise.
HOST_DEST = {"user": "user", "carts": "carts"}
PATH_DEST = {"customers": "user", "addresses": "user", "cards": "user", "carts": "carts"}
SORTABLE = {"date": "created_at", "total": "total", "customerId": "customer_id", "id": "id"}
MAX_PAGE_SIZE = 2000  # Spring Data's default cap


async def init_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(SCHEMA)


# ---- float32 arithmetic like upstream's Java floats ------------------------------------------------
def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def f32_short(x: float) -> float:
    """The float32 value as the shortest decimal that reads back to it (how Java prints a float)."""
    v = f32(x)
    for digits in range(1, 10):
        candidate = float(f"{v:.{digits}g}")
        if f32(candidate) == v:
            return candidate
    return v


def order_total(items: list[dict[str, Any]], shipping: float = SHIPPING_COST) -> float:
    # Each line is an int × float product in float32; lines add up in double; the sum is stored into a
    # float, then shipping is added in float32.
    lines = sum(f32(int(i["quantity"]) * f32(float(i["unitPrice"]))) for i in items)
    return f32_short(f32(f32(lines) + f32(shipping)))


def order_date(when: dt.datetime) -> str:
    when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def strip_ids(value: Any) -> Any:
    """The HAL view of an order has no ``id`` at any level."""
    if isinstance(value, dict):
        return {k: strip_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [strip_ids(v) for v in value]
    return value


def negotiate(request: web.Request) -> str:
    """Spring Data REST's choice: JSON when the client prefers it, HAL for */*, hal+json or no Accept."""
    ranges: list[tuple[float, int, str]] = []
    for n, part in enumerate(request.headers.get("Accept", "").split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        if not media:
            continue
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        ranges.append((-q, n, media.lower()))
    for _q, _n, media in sorted(ranges):
        if media in ("application/hal+json", "*/*", "application/*"):
            return HAL_UTF8
        if media == "application/json":
            return JSON_UTF8
    return HAL_UTF8


class CheckoutFailed(Exception):
    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome


class Orders:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.db = Database(svc, "orders-db", init=init_schema)
        self.checkouts = Counter("orders_checkout_total", "POST /orders by outcome.", ["service", "outcome"],
                                 registry=svc.metrics.registry)
        self.status_changes = Counter("orders_status_total", "Orders reaching a status.",
                                      ["service", "status"], registry=svc.metrics.registry)
        self.updater = OrderStatusUpdater(svc, self.db, self.status_changes)

    # ---- upstream calls --------------------------------------------------------------------------
    @staticmethod
    def _route(name: str, href: str) -> tuple[str, str]:
        parts = urlsplit(href)
        if parts.scheme not in ("http", "https") or not parts.path:
            raise ValueError(f"'{name}' must be an http URL, got {href!r}")
        host = (parts.hostname or "").split(".")[0]
        segment = parts.path.lstrip("/").split("/")[0]
        dest = HOST_DEST.get(host) or PATH_DEST.get(segment)
        if dest is None:
            raise ValueError(f"'{name}' does not point at user or carts: {href!r}")
        return dest, parts.path + (f"?{parts.query}" if parts.query else "")

    async def _fetch(self, dest: str, path: str, accept: str) -> Any:
        resp = await self.svc.http.request(dest, "GET", path, headers={"Accept": accept},
                                           timeout=self.svc.knobs["fetch_timeout_s"])
        self._check(resp, dest, path)
        data = resp.json()
        if data is None:
            raise CheckoutFailed(500, IO_ERROR, "error")
        return data

    def _check(self, resp: UpstreamResponse, dest: str, path: str) -> None:
        if resp.status >= 400:
            self.svc.log.warning("%s %s answered %d", dest, path, resp.status,
                                 extra={"fields": {"destination": dest, "status": resp.status}})
            if resp.status < 500:  # the order names a customer, address, card or cart that is not there
                raise CheckoutFailed(406, INVALID_ORDER, "invalid")
            raise CheckoutFailed(500, IO_ERROR, "error")

    async def _authorise(self, payload: dict[str, Any], key: str) -> None:
        knobs = self.svc.knobs
        attempts = 1 + knobs["payment_retries"]
        resp: UpstreamResponse | None = None
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                resp = await self.svc.http.request("payment", "POST", "/paymentAuth", json_body=payload,
                                                   headers={"Idempotency-Key": key},
                                                   timeout=knobs["payment_timeout_s"])
            except UpstreamError:
                if last:
                    raise
                resp = None
            if resp is not None and (resp.status not in (502, 503, 504) or last):
                break
            self.svc.metrics.client_retries.labels(self.svc.name, "payment").inc()
            await asyncio.sleep(knobs["payment_retry_backoff_s"] * 2**attempt)
        assert resp is not None
        self._check(resp, "payment", "/paymentAuth")
        answer = resp.json()
        if not isinstance(answer, dict) or not isinstance(answer.get("authorised"), bool):
            raise CheckoutFailed(406, "Unable to parse authorisation packet", "declined")
        if not answer["authorised"]:
            message = answer.get("message")
            raise CheckoutFailed(406, message if isinstance(message, str) else "Payment declined", "declined")

    async def _ship(self, shipment: dict[str, Any]) -> None:
        resp = await self.svc.http.request("shipping", "POST", "/shipping", json_body=shipment,
                                           timeout=self.svc.knobs["shipping_timeout_s"])
        self._check(resp, "shipping", "/shipping")

    # ---- persistence -------------------------------------------------------------------------------
    async def _set_status(self, order_id: str, status: str, came_from: str) -> None:
        """Forward only: a delivery the warehouse reported first (order_status.py) is not undone."""
        done = await self.db.execute("UPDATE customer_orders SET status = $1, updated_at = now() "
                                     "WHERE id = $2 AND status = $3", status, order_id, came_from)
        if done.endswith(" 1"):
            self.status_changes.labels(self.svc.name, status).inc()

    def _stale_after(self) -> float:
        k = self.svc.knobs
        return k["fetch_timeout_s"] + k["payment_timeout_s"] * (k["payment_retries"] + 1) + 10.0

    # ---- routes ---------------------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        if request.content_type not in ("application/json", "application/hal+json"):
            shown = request.headers.get("Content-Type", "")
            raise spring_error(415, f"Content type '{shown}' not supported", request.path,
                               "org.springframework.web.HttpMediaTypeNotSupportedException")
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= 255:
            raise spring_error(400, "Idempotency-Key must be 1 to 255 characters", request.path,
                               "java.lang.IllegalArgumentException")
        body = await read_json(request)
        hrefs: dict[str, str] = {}
        for name in HREFS:
            value = body.get(name)
            if value is None:
                self.checkouts.labels(self.svc.name, "invalid").inc()
                raise spring_error(406, INVALID_ORDER, request.path,
                                   "sockdrill.orders.InvalidOrderException")
            if not isinstance(value, str):
                raise spring_error(400, f"'{name}' must be a URL string", request.path, NOT_READABLE)
            hrefs[name] = value
        try:
            routes = {name: self._route(name, href) for name, href in hrefs.items()}
        except ValueError as exc:
            raise spring_error(400, str(exc), request.path, NOT_READABLE) from None
        service = body.get("deliveryService")
        if service is not None and (not isinstance(service, str) or not 0 < len(service) <= 40):
            raise spring_error(400, "'deliveryService' must be a delivery service name such as 'standard'",
                               request.path, NOT_READABLE)
        try:
            doc, status = await self._checkout(routes, hrefs, key, service)
        except CheckoutFailed as exc:
            self.checkouts.labels(self.svc.name, exc.outcome).inc()
            raise spring_error(exc.status, exc.message, request.path,
                               {"declined": "sockdrill.orders.PaymentDeclinedException",
                                "invalid": "sockdrill.orders.InvalidOrderException"}.get(
                                   exc.outcome, "java.lang.IllegalStateException")) from None
        self.checkouts.labels(self.svc.name, status).inc()
        return json_response(doc, status=201, content_type=negotiate(request))

    async def _existing(self, key: str) -> tuple[dict[str, Any], str] | None:
        """What a repeated Idempotency-Key gets: the first order, a resumed one, or None to start over."""
        row = await self.db.fetchrow(
            "SELECT id, status, doc, extract(epoch FROM now() - updated_at) AS age FROM customer_orders "
            "WHERE idempotency_key = $1", key)
        if row is None:
            return None
        doc = json.loads(row["doc"])
        if row["status"] not in HIDDEN:
            return doc, "replayed"
        if row["status"] == "paid":  # charged before, shipping never accepted it: finish, do not charge again
            await self._ship_and_finish(row["id"], doc)
            return doc, "resumed"
        if float(row["age"]) < self._stale_after():
            raise CheckoutFailed(409, "An order with this Idempotency-Key is being placed", "conflict")
        # An attempt that died before payment answered: forget it and start again.
        await self.db.execute("DELETE FROM customer_orders WHERE id = $1 AND status = 'created'", row["id"])
        return None

    async def _ship_and_finish(self, order_id: str, doc: dict[str, Any]) -> None:
        try:
            await self._ship(doc["shipment"])
        except UpstreamError as exc:
            self.svc.log.error("order %s is paid but shipping failed: %s", order_id, exc,
                               extra={"fields": {"order_id": order_id, "status": "paid"}})
            raise CheckoutFailed(500, TIMEOUT if exc.kind == "timeout" else IO_ERROR,
                                 "timeout" if exc.kind == "timeout" else "error") from None
        except CheckoutFailed:
            self.svc.log.error("order %s is paid but shipping refused it", order_id,
                               extra={"fields": {"order_id": order_id, "status": "paid"}})
            raise
        await self._set_status(order_id, "shipped", "paid")

    async def _delivery(self, address: dict[str, Any], lines: list[dict[str, Any]], service: str) -> dict[str, Any]:
        """The delivery of an order by ``service``, priced by shipping-rates for its address and items."""
        body = {"address": {"country": address.get("country"), "postcode": address.get("postcode")},
                "items": [{"quantity": i["quantity"]} for i in lines if i["quantity"] > 0]}
        try:
            resp = await self.svc.http.request("shipping-rates", "POST", "/quotes", json_body=body,
                                               timeout=self.svc.knobs["delivery_quote_timeout_s"])
        except UpstreamError as exc:
            raise CheckoutFailed(500, TIMEOUT if exc.kind == "timeout" else IO_ERROR,
                                 "timeout" if exc.kind == "timeout" else "error") from None
        quote = resp.json()
        if resp.status >= 500 or not isinstance(quote, dict):
            raise CheckoutFailed(500, IO_ERROR, "error")
        options = {o.get("service"): o for o in quote.get("options") or [] if isinstance(o, dict)}
        chosen = options.get(service)
        if resp.status >= 400 or chosen is None or not isinstance(chosen.get("price"), int | float):
            raise CheckoutFailed(406, f"Delivery by {service!r} is not available to this address", "invalid")
        zone = (quote.get("destination") or {}).get("zone")
        return {"service": service, "price": float(chosen["price"]), "zone": zone, "tariff": quote.get("tariff")}

    async def _checkout(self, routes: dict[str, tuple[str, str]], hrefs: dict[str, str], key: str | None,
                        service: str | None = None) -> tuple[dict[str, Any], str]:
        if key is not None:
            found = await self._existing(key)
            if found is not None:
                return found
        try:
            customer, address, card, items = await asyncio.gather(
                self._fetch(*routes["customer"], "application/hal+json"),
                self._fetch(*routes["address"], "application/hal+json"),
                self._fetch(*routes["card"], "application/hal+json"),
                self._fetch(*routes["items"], "application/json"),
            )
        except UpstreamError as exc:
            raise CheckoutFailed(500, TIMEOUT if exc.kind == "timeout" else IO_ERROR,
                                 "timeout" if exc.kind == "timeout" else "error") from None
        if not all(isinstance(x, dict) for x in (customer, address, card)) or not isinstance(items, list) \
                or not all(isinstance(i, dict) for i in items):
            raise CheckoutFailed(500, IO_ERROR, "error")
        try:
            lines = [{"id": i.get("id"), "itemId": i.get("itemId"), "quantity": int(i.get("quantity") or 0),
                      "unitPrice": float(i.get("unitPrice") or 0.0)} for i in items]
        except (TypeError, ValueError):
            raise CheckoutFailed(500, IO_ERROR, "error") from None
        self_href = ((customer.get("_links") or {}).get("self") or {}).get("href") or hrefs["customer"]
        match = re.search(r"[\w-]+$", str(self_href))
        customer_id = match.group(0) if match else ""
        now = dt.datetime.now(dt.UTC)
        order_id = object_id()
        delivery = await self._delivery(address, lines, service) if service is not None else None
        total = order_total(lines, delivery["price"]) if delivery else order_total(lines)
        doc: dict[str, Any] = {
            "id": order_id,
            "customerId": customer_id,
            "customer": {"id": None, "firstName": customer.get("firstName"),
                         "lastName": customer.get("lastName"), "username": customer.get("username"),
                         "addresses": [], "cards": []},
            "address": {"id": None, "number": address.get("number"), "street": address.get("street"),
                        "city": address.get("city"), "postcode": address.get("postcode"),
                        "country": address.get("country")},
            "card": {"id": None, "longNum": card.get("longNum"), "expires": card.get("expires"),
                     "ccv": card.get("ccv")},
            "items": lines,
            "shipment": {"id": str(uuid.uuid4()), "name": customer_id},
            "date": order_date(now),
            "total": total,
        }
        if delivery is not None:
            doc["delivery"] = delivery
        inserted = await self.db.fetchval(
            "INSERT INTO customer_orders (id, customer_id, status, idempotency_key, shipment_id, total, "
            "created_at, doc) VALUES ($1, $2, 'created', $3, $4, $5, $6, $7) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            order_id, customer_id, key, doc["shipment"]["id"], total, now, json.dumps(doc))
        if inserted is None:  # a concurrent request with the same key got there first
            assert key is not None
            found = await self._existing(key)
            if found is None:
                raise CheckoutFailed(409, "An order with this Idempotency-Key is being placed", "conflict")
            return found
        self.status_changes.labels(self.svc.name, "created").inc()
        payment = {"address": doc["address"], "card": doc["card"], "customer": doc["customer"],
                   "amount": total}
        try:
            await self._authorise(payment, key or order_id)
        except UpstreamError as exc:
            await self.db.execute("DELETE FROM customer_orders WHERE id = $1", order_id)
            raise CheckoutFailed(500, TIMEOUT if exc.kind == "timeout" else IO_ERROR,
                                 "timeout" if exc.kind == "timeout" else "error") from None
        except BaseException:
            # Declined or unreadable: like upstream, nothing is saved (shielded so a cancelled request
            # does not leave a half-placed order behind).
            await asyncio.shield(self.db.execute("DELETE FROM customer_orders WHERE id = $1", order_id))
            raise
        await self._set_status(order_id, "paid", "created")
        await self._ship_and_finish(order_id, doc)
        self.svc.log.info("order %s placed", order_id, extra={"fields": {
            "order_id": order_id, "customer_id": customer_id, "shipment_id": doc["shipment"]["id"],
            "total": total, "status": "shipped"}})
        return doc, "created"

    # ---- reads (Spring Data REST shapes) -----------------------------------------------------------
    @staticmethod
    def _base(request: web.Request) -> str:
        return f"http://{request.host}"

    def _hal_order(self, request: web.Request, row: Any) -> dict[str, Any]:
        """An order row (``doc``, ``status``, ``updated_at``) as Spring Data REST shows it, with its status."""
        doc = json.loads(row["doc"])
        out = strip_ids(doc)
        out["status"] = row["status"]
        out["trackingId"] = (doc.get("shipment") or {}).get("id")  # the HAL view hides ids; tracking needs this one
        out["statusChangedAt"] = row["updated_at"].astimezone(dt.UTC).isoformat(timespec="milliseconds")
        href = f"{self._base(request)}/orders/{doc['id']}"
        out["_links"] = {"self": {"href": href}, "order": {"href": href}}
        return out

    @staticmethod
    def _order_by(request: web.Request) -> str:
        terms = []
        for raw in request.query.getall("sort", []):
            prop, _, direction = raw.partition(",")
            column = SORTABLE.get(prop.strip())
            if column is None:  # Spring Data sorts by a missing property as if it were not there
                continue
            terms.append(f"{column} {'DESC' if direction.strip().lower() == 'desc' else 'ASC'}")
        return ", ".join([*terms, "seq ASC"])

    @staticmethod
    def _int_param(request: web.Request, name: str, default: int) -> int:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise spring_error(400, f"'{name}' must be an integer, got {raw!r}", request.path,
                               "java.lang.NumberFormatException") from None

    async def list_orders(self, request: web.Request) -> web.Response:
        page = max(0, self._int_param(request, "page", 0))
        size = self._int_param(request, "size", 20)
        size = 20 if size < 1 else min(size, MAX_PAGE_SIZE)
        total = await self.db.fetchval("SELECT count(*) FROM customer_orders WHERE status <> ALL($1::text[])",
                                       list(HIDDEN))
        rows = await self.db.fetch(
            f"SELECT doc, status, updated_at FROM customer_orders WHERE status <> ALL($1::text[]) "
            f"ORDER BY {self._order_by(request)} LIMIT $2 OFFSET $3", list(HIDDEN), size, page * size)
        pages = (total + size - 1) // size
        base = self._base(request)
        links: dict[str, Any] = {}

        def page_link(n: int) -> dict[str, str]:
            return {"href": f"{base}/orders?page={n}&size={size}"}

        if pages > 1:
            links["first"] = page_link(0)
            if page > 0:
                links["prev"] = page_link(page - 1)
        links["self"] = {"href": f"{base}/orders{{?page,size,sort}}", "templated": True}
        if pages > 1:
            if page + 1 < pages:
                links["next"] = page_link(page + 1)
            links["last"] = page_link(pages - 1)
        links["profile"] = {"href": f"{base}/profile/orders"}
        links["search"] = {"href": f"{base}/orders/search"}
        body = {
            "_embedded": {"customerOrders": [self._hal_order(request, r) for r in rows]},
            "_links": links,
            "page": {"size": size, "totalElements": total, "totalPages": pages, "number": page},
        }
        return json_response(body, content_type=negotiate(request))

    async def get_order(self, request: web.Request) -> web.Response:
        order_id = request.match_info["id"]
        row = await self.db.fetchrow(
            "SELECT doc, status, updated_at FROM customer_orders WHERE id = $1 AND status <> ALL($2::text[])",
            order_id, list(HIDDEN))
        if row is None:
            raise spring_error(404, f"no order with id '{order_id}'", request.path,
                               "org.springframework.data.rest.webmvc.ResourceNotFoundException")
        return json_response(self._hal_order(request, row), content_type=negotiate(request))

    async def search(self, request: web.Request) -> web.Response:
        base = self._base(request)
        body = {"_links": {"customerId": {"href": f"{base}/orders/search/customerId{{?custId,sort}}",
                                          "templated": True},
                           "self": {"href": f"{base}/orders/search"}}}
        return json_response(body, content_type=negotiate(request))

    async def search_customer(self, request: web.Request) -> web.Response:
        cust_id = request.query.get("custId")
        if cust_id is None:
            raise spring_error(400, "query parameter 'custId' is required", request.path,
                               "java.lang.IllegalArgumentException")
        rows = await self.db.fetch(
            f"SELECT doc, status, updated_at FROM customer_orders WHERE customer_id = $1 "
            f"AND status <> ALL($2::text[]) ORDER BY {self._order_by(request)}", cust_id, list(HIDDEN))
        orders = [self._hal_order(request, r) for r in rows]
        body = {"_embedded": {"customerOrders": orders},
                "_links": {"self": {"href": f"{self._base(request)}{request.path_qs}"}}}
        return json_response(body, content_type=negotiate(request))


def build(svc: Service) -> None:
    svc.health_time_field = "date"
    orders = Orders(svc)
    r = svc.app.router
    r.add_post("/orders", orders.create)
    r.add_get("/orders", orders.list_orders)
    r.add_get("/orders/search", orders.search)
    r.add_get("/orders/search/customerId", orders.search_customer)
    r.add_get("/orders/{id}", orders.get_order)


def main() -> None:
    run_service("orders", build, KNOBS)


if __name__ == "__main__":
    main()
