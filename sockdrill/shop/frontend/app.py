"""front-end: the shop's web pages and the API gateway in front of catalogue, carts, orders and user.

Routes, statuses, bodies and cookies follow upstream Sock Shop's Node front-end (reference §2, §4):
``md.sid`` session cookie, ``logged_in`` cookie = session id (Max-Age 3600), ``GET /login`` with HTTP
Basic, ``GET /orders`` → 201, GET proxies of ``/catalogue*``, ``/customers*``, ``/addresses``, ``/cards*``
always 200 with the backend body verbatim, cart merge on login/register, the checkout chain of §4.2,
trailing-slash 301. Sessions live in Redis (``session-db``), see ``session.py``.

Deliberate choices (where we differ from upstream, or pick one of its behaviours):
- Bad input gets a 4xx JSON error instead of upstream's 500: a body that is not JSON / not an object
  (400), a missing or non-string ``id`` on ``POST /cart`` and ``/cart/update`` (400), a ``quantity``
  that is not a whole number >= 0 (400), ``POST /register`` without ``username``/``password`` strings
  (400), an unknown catalogue id on ``POST /cart`` and ``/cart/update`` (404).
- Routes that need a logged-in customer answer 401 JSON ``"User not logged in."`` where upstream threw
  a 500: ``GET /orders``, ``POST /orders``, ``POST /addresses``, ``POST /cards``. "Logged in" means the
  ``logged_in`` cookie is present AND the session holds a customer id; a stale ``logged_in`` cookie whose
  session expired falls back to the anonymous cart (upstream would call ``/carts/undefined``).
- ``GET /customers/{id}`` without a customer in the session answers 200 with an error-shaped body
  (``status_code`` 401) without calling user (upstream asked user for ``/customers/undefined``).
  ``GET /card`` and ``GET /address`` likewise answer ``{"status_code":500}`` at once.
- Error bodies are ``{"message","error","status_code","status_text"}``: upstream's ``message`` plus
  the project's common error fields.
- Proxied JSON bodies that upstream wrote without a Content-Type are sent as
  ``text/plain; charset=utf-8`` (what upstream showed behind its edge router): never JSON-typed.
- ``GET /login``: any answer from user other than 200 (wrong password 401, unknown user 500) → 401, as
  upstream. But when user cannot be reached at all (timeout, refused) the answer is a 504/502 JSON,
  not 401, so an outage is not disguised as bad credentials. The same holds for every route: a
  backend timeout → 504, unreachable → 502, session-db failure → 500, each with a JSON body.
- ``POST /login`` (JSON or form body ``{"username","password"}``) is ours: same effect as ``GET /login``;
  a body without both strings → 400. ``POST /logout`` is ours: drops the customer from the session and
  expires ``logged_in``.
- Cart merge failures on login/register are logged and ignored (upstream ignored them on login).
  ``POST /register``: user's 4xx answers are passed on; other failures → 500 with a JSON message
  (upstream: 500 with an empty body).
- ``POST /customers``, ``/addresses``, ``/cards`` pass a backend's non-2xx status and body through
  instead of always answering 200.
- ``/admin/*`` is ours: the staff admin panel (``admin.py``, page ``admin.html``).
- ``GET /search`` is ours: product search, passed to the search service (asleep unless a scenario wakes it:
  then a 502) with its status and body. The page is ``search.html`` (a partial answer shows a banner).
- ``POST /shipping-options`` is ours (seed scenario 10): the delivery options and prices for the basket, to the
  body's ``address`` (``{country, postcode}``) or else the customer's first saved one, from shipping-rates
  (asleep unless a scenario wakes it: then a 502). Its 4xx answers are passed on; its 5xx become a 503 naming it.
- ``GET /profile``, ``PUT``/``PATCH /profile`` are ours (no upstream route): the logged-in customer's profile
  (user's ``/customers/{id}/profile``), its version in the body or ``If-Match``; user's 400/409/500 answers
  are passed on with their bodies. The page is ``profile.html``.
- ``GET /orders`` rewrites each order's ``_links`` hrefs ``http://<host>/orders/...`` → ``/orders/...``.
- ``POST /orders`` may carry ``{"deliveryService": "standard"|"express"}`` (ours): orders prices the delivery with
  shipping-rates instead of the flat 4.99. Without a body it is upstream's checkout.
- ``POST /orders`` waits up to ``checkout_timeout_s`` for orders (which itself makes several calls);
  upstream had no timeout.
- Path ids are URL-encoded before they are put in backend URLs. An HTML page starts the session (sets
  ``md.sid``) as upstream's express-session did for every route: were only the API calls to start it, a
  new visitor's parallel first calls would each start one, and a late answer's cookie could replace the
  one the login was saved in (the page then says "Logged in" with no name, and the basket is anonymous).
  If session-db fails the page is still served, without a cookie. Other static files, /health and
  /metrics never create sessions.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from prometheus_client import Counter

from sockdrill.errors import ShopError
from sockdrill.shop.common.env import optional_upstream_url
from sockdrill.shop.common.http import UpstreamError, UpstreamResponse
from sockdrill.shop.common.knobs import Knob
from sockdrill.shop.common.service import Service, json_response, run_service
from sockdrill.shop.frontend.order_history import OrderHistoryCache
from sockdrill.shop.frontend.session import (
    COOKIE,
    LOGGED_IN,
    LOGGED_IN_MAX_AGE,
    Session,
    SessionStore,
    SessionStoreError,
    cookie_value,
)

KNOBS = [
    Knob("session_ttl_s", 86400, "session lifetime in session-db, refreshed on every request (seconds)",
         minimum=1, maximum=30 * 86400),
    Knob("session_db_timeout_s", 2.0, "timeout of session-db (Redis) calls (seconds)",
         minimum=0.01, maximum=60),
    Knob("checkout_timeout_s", 15.0, "how long POST /orders waits for the orders service (seconds)",
         minimum=0.01, maximum=300),
    # Login must not hang on the cart: the merge gets its own, shorter budget (and failing, is only logged).
    Knob("cart_merge_timeout_s", 2.0, "how long login waits for carts to merge the anonymous cart (seconds)",
         minimum=0.001, maximum=60),
    Knob("orders_cache_ttl_s", 1.0, "how long a customer's order history is kept after reading it from orders "
         "(seconds; 0: not cached)", minimum=0, maximum=86400),
    Knob("orders_cache_invalidation", True, "drop a customer's cached order history when they place an order"),
]

STATIC = Path(__file__).parent / "static"
UNTYPED = "text/plain; charset=utf-8"  # upstream wrote these bodies without a Content-Type
JSON_TYPE = "application/json; charset=utf-8"  # what Express' res.json sends
SHIPPING_ITEMS = "http://carts/carts/{cid}/items"  # the items URL orders is given (upstream's form)
GUEST_CART = ("X-Cart-Owner", "guest")  # carts keeps an anonymous shopper's cart in carts-cache only (carts.py)
ORDERS_LINK = re.compile(r"^https?://[^/]+(/orders(?:/.*)?)$")
NOT_LOGGED_IN = "User not logged in."
EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"

Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A failure the client gets as ``status`` + JSON ``{"message", "error", ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> web.Response:
    reason = web.Response(status=status).reason
    return json_response({"message": message, "error": message, "status_code": status, "status_text": reason},
                         status=status, content_type=JSON_TYPE)


def untyped(body: bytes, status: int = 200) -> web.Response:
    resp = web.Response(body=body, status=status)
    if body:
        resp.headers["Content-Type"] = UNTYPED
    return resp


def empty(status: int) -> web.Response:
    return web.Response(status=status)


def seg(value: str) -> str:
    """One URL path segment, encoded so an id can never change the backend path."""
    return quote(value, safe="")


def sub_path(tail: str) -> str:
    """A client's path below a resource (``size``, an id, an image file), re-encoded segment by segment:
    ``..``, ``.`` and empty segments are refused (they would climb to another resource on the backend, e.g.
    ``/orders/../orders`` lists every customer's orders), and nothing in a segment can add another."""
    parts = tail.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ApiError(400, "invalid path")
    return "/".join(seg(p) for p in parts)


def with_query(request: web.Request, path: str) -> str:
    return path + (f"?{request.query_string}" if request.query_string else "")


def href_path(href: str) -> str:
    """``http://user/customers/1/cards`` → ``/customers/1/cards``: call it through our own edge."""
    parts = urlsplit(href)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


class FrontEnd:
    def __init__(self, svc: Service, session_url: str) -> None:
        self.svc = svc
        self.http = svc.http
        self.store = SessionStore(session_url, svc.knobs["session_ttl_s"], svc.knobs["session_db_timeout_s"])
        self.history = OrderHistoryCache(svc)
        reg = svc.metrics.registry
        self.sessions_created = Counter("sessions_created_total", "Sessions the front-end started.", ["service"],
                                        registry=reg).labels(svc.name)
        # The seed's "session expiration events": a returning shopper whose session is gone (and with it an
        # anonymous cart and the login).
        self.sessions_expired = Counter("sessions_expired_total", "Requests that came back with a session of "
                                        "ours that had expired or was lost.", ["service"],
                                        registry=reg).labels(svc.name)

    # ---- plumbing -------------------------------------------------------------------------------
    def api(self, fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap an API handler: load/create the session, set ``md.sid`` on new ones, map errors."""

        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                session = await self.session(request)
            except SessionStoreError as exc:
                self.svc.log.warning("session store failed: %s", exc)
                return error_response(500, f"session store unavailable: {exc}")
            try:
                resp: web.StreamResponse = await fn(request, session)
            except ApiError as exc:
                resp = error_response(exc.status, exc.message)
            except SessionStoreError as exc:
                self.svc.log.warning("session store failed: %s", exc)
                resp = error_response(500, f"session store unavailable: {exc}")
            except UpstreamError as exc:
                self.svc.log.warning("upstream call failed: %s", exc,
                                     extra={"fields": {"destination": exc.destination, "kind": exc.kind}})
                resp = error_response(504 if exc.kind == "timeout" else 502, str(exc))
            except web.HTTPException as exc:
                self.set_session_cookie(exc, session)
                raise
            self.set_session_cookie(resp, session)
            return resp

        handler.__name__ = fn.__name__
        return handler

    async def session(self, request: web.Request) -> Session:
        """The request's session, a new one (counted; an expired one counted too) when it has none."""
        session = await self.store.load(request.cookies.get(COOKIE))
        if session.is_new:
            self.sessions_created.inc()
            if session.replaced is not None:
                self.sessions_expired.inc()
                self.svc.log.info("session expired; a new one was started",
                                  extra={"fields": {"kind": "session_expired"}})
        return session

    @staticmethod
    def set_session_cookie(resp: web.StreamResponse, session: Session) -> None:
        if session.is_new:
            resp.headers.add("Set-Cookie", f"{COOKIE}={cookie_value(session.sid)}; Path=/; HttpOnly")

    @staticmethod
    def customer_id(request: web.Request, session: Session) -> str:
        """Upstream's getCustomerId: the logged-in customer, else the session id (anonymous cart)."""
        if LOGGED_IN in request.cookies and session.customer_id:
            return session.customer_id
        return session.sid

    @staticmethod
    def cart_headers(request: web.Request, session: Session) -> dict[str, str]:
        """Tells carts when a change is to an anonymous shopper's cart (kept in carts-cache until login)."""
        return {GUEST_CART[0]: GUEST_CART[1]} if FrontEnd.customer_id(request, session) == session.sid else {}

    @staticmethod
    def logged_in(request: web.Request, session: Session) -> str:
        if LOGGED_IN in request.cookies and session.customer_id:
            return session.customer_id
        raise ApiError(401, NOT_LOGGED_IN)

    @staticmethod
    async def body_object(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            raise ApiError(400, "request body is empty; expected a JSON object")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object")
        return data

    @staticmethod
    def string_field(body: dict[str, Any], name: str, what: str) -> str:
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ApiError(400, f'body needs "{name}": {what} (a non-empty string), got {value!r}')
        return value

    async def catalogue_item(self, item_id: str) -> dict[str, Any]:
        up = await self.http.request("catalogue", "GET", f"/catalogue/{seg(item_id)}")
        if up.status == 404:
            raise ApiError(404, f"no catalogue item with id {item_id!r}")
        sock = up.json()
        if up.status != 200 or not isinstance(sock, dict) or "id" not in sock or "price" not in sock:
            raise ApiError(500, f"Unable to get item from catalogue. Status code: {up.status}")
        return sock

    async def merge_cart(self, customer: str, sid: str) -> None:
        """Move the anonymous cart into the customer's (failures only logged, like upstream's login)."""
        try:
            up = await self.http.request("carts", "GET", f"/carts/{seg(customer)}/merge",
                                         params={"sessionId": sid}, timeout=self.svc.knobs["cart_merge_timeout_s"])
            if up.status >= 300:
                self.svc.log.warning("cart merge answered %d", up.status)
        except UpstreamError as exc:
            self.svc.log.warning("cart merge failed: %s", exc,
                                 extra={"fields": {"kind": "cart_merge_failed", "error": exc.kind}})

    @staticmethod
    def set_logged_in(resp: web.StreamResponse, sid: str) -> None:
        resp.headers.add("Set-Cookie", f"{LOGGED_IN}={sid}; Max-Age={LOGGED_IN_MAX_AGE}; Path=/; "
                                       f"Expires={http_date(LOGGED_IN_MAX_AGE)}")

    # ---- catalogue ------------------------------------------------------------------------------
    async def catalogue_image(self, request: web.Request, _s: Session) -> web.StreamResponse:
        path = "/catalogue/images/" + sub_path(request.match_info["file"])
        up = await self.http.request("catalogue", "GET", with_query(request, path))
        resp = web.Response(body=up.body, status=up.status)
        for name in ("Content-Type", "Cache-Control", "ETag", "Last-Modified"):
            if name in up.headers:
                resp.headers[name] = up.headers[name]
        return resp

    async def catalogue(self, request: web.Request, _s: Session) -> web.StreamResponse:
        tail = request.match_info.get("tail")
        path = "/catalogue" + (f"/{sub_path(tail)}" if tail else "")
        up = await self.http.request("catalogue", "GET", with_query(request, path))
        return untyped(up.body, 200)  # upstream: always 200, whatever catalogue said

    async def search(self, request: web.Request, _s: Session) -> web.StreamResponse:
        """Ours: product search (the search service), its answer and status passed on as they came (a partial
        answer says so in its body; a search that is down is a 502 from the gateway)."""
        up = await self.http.request("search", "GET", with_query(request, "/search"))
        return web.Response(body=up.body, status=up.status, content_type="application/json", charset="utf-8")

    async def tags(self, request: web.Request, _s: Session) -> web.StreamResponse:
        up = await self.http.request("catalogue", "GET", "/tags")
        return untyped(up.body, 200)

    # ---- cart -----------------------------------------------------------------------------------
    async def get_cart(self, request: web.Request, session: Session) -> web.StreamResponse:
        cid = self.customer_id(request, session)
        up = await self.http.request("carts", "GET", f"/carts/{seg(cid)}/items")
        return untyped(up.body, up.status)

    async def delete_cart(self, request: web.Request, session: Session) -> web.StreamResponse:
        cid = self.customer_id(request, session)
        up = await self.http.request("carts", "DELETE", f"/carts/{seg(cid)}",
                                     headers=self.cart_headers(request, session))
        return empty(up.status)

    async def delete_cart_item(self, request: web.Request, session: Session) -> web.StreamResponse:
        cid = self.customer_id(request, session)
        item = request.match_info["id"]
        up = await self.http.request("carts", "DELETE", f"/carts/{seg(cid)}/items/{seg(item)}",
                                     headers=self.cart_headers(request, session))
        return empty(up.status)

    async def add_to_cart(self, request: web.Request, session: Session) -> web.StreamResponse:
        body = await self.body_object(request)
        item_id = self.string_field(body, "id", "the catalogue id of the item")
        cid = self.customer_id(request, session)
        sock = await self.catalogue_item(item_id)
        up = await self.http.request("carts", "POST", f"/carts/{seg(cid)}/items",
                                     json_body={"itemId": sock["id"], "unitPrice": sock["price"]},
                                     headers=self.cart_headers(request, session))
        if up.status == 201:
            return empty(201)
        raise ApiError(500, f"Unable to add to cart. Status code: {up.status}")

    async def update_cart(self, request: web.Request, session: Session) -> web.StreamResponse:
        body = await self.body_object(request)
        item_id = self.string_field(body, "id", "the catalogue id of the item")
        raw = body.get("quantity")
        quantity: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            quantity = raw
        elif isinstance(raw, float) and raw.is_integer():
            quantity = int(raw)
        elif isinstance(raw, str) and raw.strip().isdigit():
            quantity = int(raw.strip())
        if quantity is None or quantity < 0:
            raise ApiError(400, f'body needs "quantity": a whole number >= 0, got {raw!r}')
        cid = self.customer_id(request, session)
        sock = await self.catalogue_item(item_id)
        up = await self.http.request("carts", "PATCH", f"/carts/{seg(cid)}/items",
                                     json_body={"itemId": sock["id"], "quantity": quantity,
                                                "unitPrice": sock["price"]},
                                     headers=self.cart_headers(request, session))
        if up.status == 202:
            return empty(202)
        raise ApiError(500, f"Unable to update cart. Status code: {up.status}")

    # ---- orders ---------------------------------------------------------------------------------
    async def list_orders(self, request: web.Request, session: Session) -> web.StreamResponse:
        cid = self.logged_in(request, session)
        cached = self.history.get(cid)
        if cached is not None:
            return untyped(json.dumps(cached).encode(), 201)
        up = await self.http.request("orders", "GET", "/orders/search/customerId",
                                     params={"sort": "date", "custId": cid})
        if up.status == 404:
            return untyped(b"[]", 201)
        data = up.json()
        if up.status != 200 or not isinstance(data, dict):
            raise ApiError(500, f"Unable to get orders. Status code: {up.status}")
        orders = (data.get("_embedded") or {}).get("customerOrders") or []
        if not isinstance(orders, list):
            raise ApiError(500, "Unable to get orders: unexpected answer from orders")
        for order in orders:
            links = order.get("_links") if isinstance(order, dict) else None
            if isinstance(links, dict):
                for link in links.values():
                    if isinstance(link, dict) and isinstance(link.get("href"), str):
                        link["href"] = ORDERS_LINK.sub(r"\1", link["href"])
        self.history.put(cid, orders)
        return untyped(json.dumps(orders).encode(), 201)  # sic: upstream answers 201

    async def tracking(self, request: web.Request, session: Session) -> web.StreamResponse:
        """Where a shipment is, as the warehouse knows it (shipping's tracking view; the order detail names the
        shipment)."""
        self.logged_in(request, session)
        up = await self.http.request("shipping", "GET", f"/shipping/{seg(request.match_info['id'])}/status")
        data = up.json()
        if up.status != 200 or not isinstance(data, dict):
            raise ApiError(502 if up.status >= 500 else up.status, f"Unable to track the shipment. Status code: "
                           f"{up.status}")
        return web.json_response(data)

    async def get_order(self, request: web.Request, _s: Session) -> web.StreamResponse:
        path = "/orders/" + sub_path(request.match_info["tail"])
        up = await self.http.request("orders", "GET", with_query(request, path))
        resp = web.Response(body=up.body, status=up.status)
        if up.body and "Content-Type" in up.headers:
            resp.headers["Content-Type"] = up.headers["Content-Type"]
        return resp

    async def create_order(self, request: web.Request, session: Session) -> web.StreamResponse:
        cid = self.logged_in(request, session)
        service = await self.delivery_choice(request)
        up = await self.http.request("user", "GET", f"/customers/{seg(cid)}")
        customer = up.json()
        try:
            links = customer["_links"]
            customer_href = links["customer"]["href"]
            addresses_href = links["addresses"]["href"]
            cards_href = links["cards"]["href"]
        except (KeyError, TypeError):
            raise ApiError(500, f"Unable to get customer {cid}. Status code: {up.status}") from None

        async def first_link(href: str, rel: str) -> str | None:
            listing = await self.http.request("user", "GET", href_path(href))
            try:
                return listing.json()["_embedded"][rel][0]["_links"]["self"]["href"]  # type: ignore[no-any-return]
            except (KeyError, IndexError, TypeError):
                return None  # upstream sends null and lets orders reject the order (406)

        address, card = await asyncio.gather(first_link(addresses_href, "address"),
                                             first_link(cards_href, "card"))
        order = {"customer": customer_href, "address": address, "card": card,
                 "items": SHIPPING_ITEMS.format(cid=cid)}
        if service is not None:
            order["deliveryService"] = service
        placed = await self.http.request("orders", "POST", "/orders", json_body=order,
                                         headers={"Accept": "application/json"},
                                         timeout=self.svc.knobs["checkout_timeout_s"])
        if self.svc.knobs["orders_cache_invalidation"]:
            self.history.invalidate(cid)  # this customer's history has a new order (or may have, on a timeout)
        return untyped(placed.body, placed.status)

    @staticmethod
    async def delivery_choice(request: web.Request) -> str | None:
        """Ours: the delivery chosen on the checkout page, ``{"deliveryService": ...}``. Upstream's clients send no
        body, or one it ignored: anything that is not such an object is ignored too."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            return None
        service = body.get("deliveryService") if isinstance(body, dict) else None
        if service is None:
            return None
        if not isinstance(service, str) or not 0 < len(service) <= 40:
            raise ApiError(400, '"deliveryService" must be a delivery service such as "standard"')
        return service

    async def shipping_options(self, request: web.Request, session: Session) -> web.StreamResponse:
        """Ours: what delivering the basket would cost, per service (shipping-rates prices it)."""
        body = await self.body_object(request) if (await request.read()).strip() else {}
        address = body.get("address")
        cid = self.customer_id(request, session)
        if address is None:
            if cid == session.sid:
                raise ApiError(400, 'give "address" ({country, postcode}) or log in to use your saved address')
            up = await self.http.request("user", "GET", f"/customers/{seg(cid)}/addresses")
            try:
                saved = up.json()["_embedded"]["address"][0]
            except (KeyError, IndexError, TypeError):
                raise ApiError(400, "you have no saved address: give one as \"address\"") from None
            address = {"country": saved.get("country"), "postcode": saved.get("postcode")}
        if not isinstance(address, dict):
            raise ApiError(400, '"address" must be an object with country and postcode')
        cart = await self.http.request("carts", "GET", f"/carts/{seg(cid)}/items")
        lines = cart.json()
        if cart.status != 200 or not isinstance(lines, list):
            raise ApiError(502, f"Unable to read the basket. Status code: {cart.status}")
        items = [{"quantity": int(x["quantity"])} for x in lines
                 if isinstance(x, dict) and isinstance(x.get("quantity"), int) and x["quantity"] > 0]
        if not items:
            raise ApiError(400, "the basket is empty: nothing to deliver")
        up = await self.http.request("shipping-rates", "POST", "/quotes",
                                     json_body={"address": {"country": address.get("country"),
                                                            "postcode": address.get("postcode")}, "items": items})
        data = up.json()
        if up.status >= 500 or not isinstance(data, dict):
            message = data.get("error") if isinstance(data, dict) else None
            raise ApiError(503, f"shipping-rates answered {up.status}: {message or 'no delivery options'}")
        return web.json_response(data, status=up.status)

    # ---- customers, addresses, cards ------------------------------------------------------------
    async def get_customer(self, request: web.Request, session: Session) -> web.StreamResponse:
        cid = session.customer_id  # upstream ignores the id in the path
        if cid is None:
            body = {"error": NOT_LOGGED_IN, "status_code": 401, "status_text": "Unauthorized"}
            return untyped(json.dumps(body).encode(), 200)
        up = await self.http.request("user", "GET", f"/customers/{seg(cid)}")
        return untyped(up.body, 200)

    async def user_get(self, request: web.Request, session: Session) -> web.StreamResponse:
        """``GET /customers``, ``/addresses``, ``/cards`` and ``/cards/{id}``: the logged-in customer's own
        (upstream lists every customer's, cards included, to anyone; we do not hand that out)."""
        cid = self.logged_in(request, session)
        kind = request.path.split("/")[1]
        if kind == "customers":
            up = await self.http.request("user", "GET", f"/customers/{seg(cid)}")
            own = up.json() if up.status == 200 else None
            return untyped(json.dumps({"_embedded": {"customer": [own] if own else []}}).encode(), 200)
        up = await self.http.request("user", "GET", f"/customers/{seg(cid)}/{kind}")
        card_id = request.match_info.get("id")
        if card_id is None:
            return untyped(up.body, 200)
        try:
            cards = up.json()["_embedded"]["card"]
        except (KeyError, TypeError, ValueError):
            cards = []
        mine = next((c for c in cards if isinstance(c, dict) and str(c.get("id")) == card_id), None)
        if mine is None:
            raise ApiError(404, "card not found")
        return untyped(json.dumps(mine).encode(), 200)

    async def user_delete(self, request: web.Request, _s: Session) -> web.StreamResponse:
        kind = request.path.split("/")[1]
        up = await self.http.request("user", "DELETE", f"/{kind}/{seg(request.match_info['id'])}")
        # upstream res.json()'d the raw body string, so clients get a JSON string literal
        return json_response(up.text, 200, content_type=JSON_TYPE)

    def _created(self, up: UpstreamResponse) -> web.Response:
        if up.status < 300:
            data = up.json()
            return json_response(data if data is not None else {}, 200, content_type=JSON_TYPE)
        resp = web.Response(body=up.body, status=up.status)
        if up.body:
            resp.headers["Content-Type"] = up.headers.get("Content-Type", UNTYPED)
        return resp

    async def post_customer(self, request: web.Request, _s: Session) -> web.StreamResponse:
        body = await self.body_object(request)
        return self._created(await self.http.request("user", "POST", "/customers", json_body=body))

    async def post_owned(self, request: web.Request, session: Session) -> web.StreamResponse:
        """POST /addresses or /cards: the body plus the customer as ``userID``."""
        cid = self.logged_in(request, session)
        body = await self.body_object(request)
        body["userID"] = cid
        kind = request.path.split("/")[1]
        return self._created(await self.http.request("user", "POST", f"/{kind}", json_body=body))

    async def get_profile(self, request: web.Request, session: Session) -> web.StreamResponse:
        """GET /profile (ours): the logged-in customer's profile, with its version (also as the ETag)."""
        cid = self.logged_in(request, session)
        return self._relay(await self.http.request("user", "GET", f"/customers/{seg(cid)}/profile"))

    async def save_profile(self, request: web.Request, session: Session) -> web.StreamResponse:
        """PUT/PATCH /profile (ours): save it. The version it was based on comes in the body or as If-Match;
        user's answer (400 naming the fields, 409 on a newer version, 500) is passed on as it is."""
        cid = self.logged_in(request, session)
        body = await self.body_object(request)
        match = request.headers.get("If-Match", "").strip().strip('"')
        if "version" not in body and match.isdigit():
            body["version"] = int(match)
        return self._relay(await self.http.request("user", request.method, f"/customers/{seg(cid)}",
                                                   json_body=body))

    @staticmethod
    def _relay(up: UpstreamResponse) -> web.Response:
        data = up.json()
        if data is None:
            return error_response(502, f"user answered {up.status} without a JSON body")
        headers = {"ETag": up.headers["ETag"]} if up.status == 200 and "ETag" in up.headers else None
        return json_response(data, up.status, content_type=JSON_TYPE, headers=headers)

    async def first_card(self, request: web.Request, session: Session) -> web.StreamResponse:
        cid = self.customer_id(request, session)
        if cid == session.sid:
            return json_response({"status_code": 500}, content_type=JSON_TYPE)
        up = await self.http.request("user", "GET", f"/customers/{seg(cid)}/cards")
        try:
            number = str(up.json()["_embedded"]["card"][0]["longNum"])
        except (KeyError, IndexError, TypeError):
            return json_response({"status_code": 500}, content_type=JSON_TYPE)
        return json_response({"number": number[-4:]}, content_type=JSON_TYPE)

    async def first_address(self, request: web.Request, session: Session) -> web.StreamResponse:
        cid = self.customer_id(request, session)
        if cid == session.sid:
            return json_response({"status_code": 500}, content_type=JSON_TYPE)
        up = await self.http.request("user", "GET", f"/customers/{seg(cid)}/addresses")
        try:
            address = up.json()["_embedded"]["address"][0]
        except (KeyError, IndexError, TypeError):
            return json_response({"status_code": 500}, content_type=JSON_TYPE)
        return json_response(address, content_type=JSON_TYPE)

    # ---- accounts -------------------------------------------------------------------------------
    async def register(self, request: web.Request, session: Session) -> web.StreamResponse:
        body = await self.body_object(request)
        self.string_field(body, "username", "the new user's name")
        self.string_field(body, "password", "the new user's password")
        for name in ("email", "firstName", "lastName"):
            if name in body and not isinstance(body[name], str):
                raise ApiError(400, f'"{name}" must be a string, got {body[name]!r}')
        up = await self.http.request("user", "POST", "/register", json_body=body)
        data = up.json()
        if up.status != 200 or not isinstance(data, dict) or not isinstance(data.get("id"), str):
            detail = data.get("error") if isinstance(data, dict) else None
            status = up.status if 400 <= up.status < 500 else 500
            raise ApiError(status, f"Unable to register: {detail or f'user answered {up.status}'}")
        customer = data["id"]
        session.customer_id = customer
        await self.store.save(session)
        await self.merge_cart(customer, session.sid)
        resp = json_response({"id": customer}, 200, content_type=JSON_TYPE)
        self.set_logged_in(resp, session.sid)
        return resp

    async def _login(self, session: Session, authorization: str) -> web.StreamResponse:
        up = await self.http.request("user", "GET", "/login", headers={"Authorization": authorization})
        data = up.json()
        customer = None
        if up.status == 200 and isinstance(data, dict) and isinstance(data.get("user"), dict):
            customer = data["user"].get("id")
        if not isinstance(customer, str) or not customer:
            raise ApiError(401, "Unauthorized: wrong username or password")
        session.customer_id = customer
        await self.store.save(session)
        await self.merge_cart(customer, session.sid)
        resp = web.Response(text="Cookie is set", content_type="text/html", charset="utf-8")
        self.set_logged_in(resp, session.sid)
        return resp

    async def login_get(self, request: web.Request, session: Session) -> web.StreamResponse:
        authorization = request.headers.get("Authorization", "")
        if not authorization:
            raise ApiError(401, "Unauthorized: send HTTP Basic credentials")
        return await self._login(session, authorization)

    async def login_post(self, request: web.Request, session: Session) -> web.StreamResponse:
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            body: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        else:
            body = await self.body_object(request)
        username = self.string_field(body, "username", "the user name")
        password = body.get("password")
        if not isinstance(password, str):
            raise ApiError(400, f'body needs "password" (a string), got {password!r}')
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        return await self._login(session, f"Basic {token}")

    async def logout(self, request: web.Request, session: Session) -> web.StreamResponse:
        if session.customer_id is not None:
            session.customer_id = None
            await self.store.save(session)
        resp = json_response({"status": True}, content_type=JSON_TYPE)
        resp.headers.add("Set-Cookie", f"{LOGGED_IN}=; Max-Age=0; Path=/; Expires={EPOCH}")
        return resp


# ---- no session: trailing slashes and static pages -----------------------------------------------
@web.middleware
async def trailing_slash(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
    path = request.raw_path.split("?", 1)[0]
    if len(path) > 1 and path.endswith("/"):
        target = path[:-1]
        if "//" in target:
            return error_response(400, "invalid URL to redirect to")
        query = request.raw_path[len(path):]
        raise web.HTTPMovedPermanently(target + query)
    return await handler(request)


async def static_file(request: web.Request) -> web.StreamResponse:
    rel = request.match_info.get("path", "") or "index.html"
    root = STATIC.resolve()
    target = (root / rel).resolve()
    if root not in target.parents or not target.is_file():
        return error_response(404, f"no such page: /{rel}")
    resp = web.FileResponse(target, headers={"Cache-Control": "no-cache"})
    if target.suffix == ".html":  # the page starts the session its scripts then share (module docstring)
        fe: FrontEnd = request.app["frontend"]
        try:
            fe.set_session_cookie(resp, await fe.session(request))
        except SessionStoreError as exc:
            fe.svc.log.warning("session store failed; page served without a session: %s", exc)
    return resp


def build(svc: Service) -> None:
    url = optional_upstream_url("session-db")
    if url is None:
        raise ShopError("front-end needs session-db: SOCKDRILL_URL_SESSION_DB is not set")
    fe = FrontEnd(svc, url)
    svc.app["frontend"] = fe
    svc.app.middlewares.append(trailing_slash)
    svc.add_health("session-db", fe.store.ping)

    pending: set[asyncio.Future[None]] = set()  # keep reconnect tasks referenced until done

    def on_knobs(changes: dict[str, Any]) -> None:
        if "session_ttl_s" in changes:
            fe.store.ttl_s = changes["session_ttl_s"]
        if "orders_cache_ttl_s" in changes or "orders_cache_invalidation" in changes:
            fe.history.clear()
        if "session_db_timeout_s" in changes:
            task = asyncio.ensure_future(fe.store.reconnect(changes["session_db_timeout_s"]))
            pending.add(task)
            task.add_done_callback(pending.discard)

    svc.knobs.on_change(on_knobs)

    async def close_store(_app: web.Application) -> None:
        await fe.store.close()

    svc.on_cleanup(close_store)

    r = svc.app.router
    api = fe.api
    r.add_get("/catalogue/images/{file:.+}", api(fe.catalogue_image))
    r.add_get("/catalogue", api(fe.catalogue))
    r.add_get("/catalogue/{tail:.+}", api(fe.catalogue))
    r.add_get("/tags", api(fe.tags))
    r.add_get("/search", api(fe.search))
    r.add_get("/cart", api(fe.get_cart))
    r.add_post("/cart", api(fe.add_to_cart))
    r.add_delete("/cart", api(fe.delete_cart))
    r.add_post("/cart/update", api(fe.update_cart))
    r.add_delete("/cart/{id}", api(fe.delete_cart_item))
    r.add_get("/orders", api(fe.list_orders))
    r.add_post("/orders", api(fe.create_order))
    r.add_get("/orders/{tail:.+}", api(fe.get_order))
    r.add_get("/tracking/{id}", api(fe.tracking))
    r.add_post("/shipping-options", api(fe.shipping_options))
    r.add_get("/customers", api(fe.user_get))
    r.add_post("/customers", api(fe.post_customer))
    r.add_get("/customers/{id}", api(fe.get_customer))
    r.add_delete("/customers/{id}", api(fe.user_delete))
    r.add_get("/addresses", api(fe.user_get))
    r.add_post("/addresses", api(fe.post_owned))
    r.add_delete("/addresses/{id}", api(fe.user_delete))
    r.add_get("/cards", api(fe.user_get))
    r.add_get("/cards/{id}", api(fe.user_get))
    r.add_post("/cards", api(fe.post_owned))
    r.add_delete("/cards/{id}", api(fe.user_delete))
    r.add_get("/card", api(fe.first_card))
    r.add_get("/address", api(fe.first_address))
    r.add_post("/register", api(fe.register))
    r.add_get("/login", api(fe.login_get))
    r.add_post("/login", api(fe.login_post))
    r.add_post("/logout", api(fe.logout))
    from sockdrill.shop.frontend.admin import AdminPanel  # it builds on this module's helpers

    AdminPanel(fe).routes(r, api)
    r.add_get("/profile", api(fe.get_profile))
    r.add_put("/profile", api(fe.save_profile))
    r.add_patch("/profile", api(fe.save_profile))
    r.add_get("/", static_file)
    r.add_get("/{path:.+}", static_file)  # last: anything no API route claimed


def main() -> None:
    run_service("front-end", build, KNOBS)


if __name__ == "__main__":
    main()
