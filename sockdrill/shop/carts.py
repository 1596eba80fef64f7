"""carts: shopping carts, with upstream's routes and quirks, kept in carts-db behind a carts-cache.

Upstream behaviour kept on purpose: POSTing an itemId already in the cart adds 1 whatever the body
says; merging appends the session cart's lines (duplicates possible) and empties the session cart;
GET/PATCH/DELETE of a line that is not in the cart is a 500 with a Spring-style error body.

Deliberate difference: a body that is not JSON, or has a missing ``itemId`` or wrongly typed fields,
is a 400 with a JSON error (upstream's Jackson coerced some values, e.g. ``"3"`` for a quantity, and
stored lines without an itemId).

Deliberate extension: ``X-Cart-Owner: guest`` on a change says the cart is an anonymous shopper's (our
front-end sends it; upstream's did not). Behind carts-cache such a cart stays in the cache only until a login
merges it (``guest_carts_in_db`` off, the default; see ``carts_cache.py``); without the header every cart is
stored, as upstream.

Degraded mode (``empty_cart_on_db_error``, on): a cache miss that carts-db cannot answer (no session to be had:
refused, full, unreachable) serves the cart as empty instead of an error, and a change made then starts from an
empty cart. The page loads; the shopper's saved items are not shown, and what they add is kept in the cache only
until carts-db takes it back (a write-back it cannot take is tried again; a cart that leaves the cache first is
lost). Upstream's carts failed such requests.

Storage: carts-db holds every cart (``carts_db.py``); when the pod has a ``carts-cache`` address, reads and
writes go through that write-behind cache (``carts_cache.py``) and carts-db is written back in the
background. A write the cache cannot take (down, or full under ``noeviction``) goes to carts-db directly,
under the cart's lock, starting from the cached cart if that one is newer: slower, nothing lost. Each
cart's writes are serialised (the cache's WATCH/MULTI, or the database's advisory lock), so concurrent
requests on one cart never fail or lose one another's change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sockdrill.shop import carts_db
from sockdrill.shop.carts_cache import CacheUnavailable, CartCache
from sockdrill.shop.carts_db import Line, object_id
from sockdrill.shop.common import Knob, Service, json_response, read_json, run_service
from sockdrill.shop.common.db import DB_KNOBS, Database
from sockdrill.shop.common.env import optional_upstream_url
from sockdrill.shop.common.http import caller_deadline
from sockdrill.shop.spring import JSON_UTF8, spring_error

KNOBS: list[Knob] = [
    *DB_KNOBS,
    Knob("cache_ttl_s", 3600, "how long carts-cache keeps a cart after its last use (seconds)", minimum=1,
         maximum=7 * 86400),
    Knob("cache_flush_interval_s", 1.0, "how often changed carts are written back to carts-db (seconds)",
         minimum=0.05, maximum=3600),
    Knob("guest_carts_in_db", False, "write guests' carts back to carts-db too (off: they live in carts-cache "
         "until a login merges them)"),
    Knob("empty_cart_on_db_error", True, "on a cache miss carts-db cannot answer (refused, full, unreachable), "
         "serve the cart as empty rather than fail the request: the page loads, and a change starts from an empty "
         "cart (degraded mode)"),
    Knob("cache_timeout_s", 1.0, "timeout of carts-cache (Redis) calls (seconds)", minimum=0.001, maximum=60),
]

Change = Callable[[list[list[Line]]], tuple[list[list[Line]], Any]]
GUEST_HEADER = "X-Cart-Owner"  # "guest": the cart is an anonymous shopper's (see the module's docstring)


class _Refused(Exception):
    """A change that must not be applied; what was taken over from the cache is kept."""


class _MissingLine(_Refused):
    """The cart has no line for that item (upstream: a 500)."""


class _Abandoned(_Refused):
    """The caller's deadline passed before the change was made: nobody waits for it any more."""


def _first(lines: list[Line], item_id: str) -> Line | None:
    return next((ln for ln in lines if ln["itemId"] == item_id), None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Carts:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.db = Database(svc, "carts-db", init=carts_db.init_schema)
        url = optional_upstream_url("carts-cache")
        self.cache = CartCache(svc, url, self.db) if url else None

    # ---- storage ---------------------------------------------------------------------------------
    async def read(self, customer_id: str) -> list[Line]:
        if self.cache is not None:
            try:
                return await self.cache.read(customer_id)
            except CacheUnavailable:
                pass
        async with self.db.acquire() as conn:
            return (await carts_db.load(conn, customer_id))[0]

    async def write(self, ids: list[str], change: Change, guests: frozenset[str] = frozenset()) -> Any:
        """Apply ``change`` to the carts ``ids`` (see ``CartCache.write``), in the cache or else in carts-db.
        ``guests``: the ids that are anonymous shoppers' carts (kept in the cache only, unless configured)."""
        if self.cache is not None:
            cache_only = frozenset() if self.svc.knobs["guest_carts_in_db"] else guests
            try:
                return await self.cache.write(ids, change, cache_only)
            except CacheUnavailable as exc:
                self.svc.log.warning("carts-cache did not take a write, writing to carts-db: %s", exc)
        refused: _Refused | None = None
        async with self.db.acquire() as conn, conn.transaction():
            current: list[list[Line]] = []
            versions: list[int] = []
            taken: list[bool] = []
            for cid in sorted(ids):  # a fixed order: two opposite merges cannot deadlock
                await carts_db.lock(conn, cid)
            for cid in ids:
                lines, version = await carts_db.load(conn, cid)
                cached = None
                if self.cache is not None:
                    try:
                        cached = await self.cache.take_over(cid)
                    except CacheUnavailable:
                        pass  # unreachable: it cannot serve an older copy either, until it returns
                if cached is not None and cached[1] > version:
                    lines, version = cached
                current.append(lines)
                versions.append(version)
                taken.append(cached is not None and cached[1] >= version)
            try:
                new, result = change(current)
            except _Refused as exc:
                # Refused, but what was taken from the cache is kept (it is no longer there).
                refused = exc
                for cid, lines, version, took in zip(ids, current, versions, taken, strict=True):
                    if took:
                        await carts_db.save(conn, cid, lines, version)
            else:
                for cid, lines, version in zip(ids, new, versions, strict=True):
                    await carts_db.save(conn, cid, lines, version + 1)
        if refused is not None:
            raise refused
        return result

    # ---- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _guest(request: web.Request, customer_id: str) -> frozenset[str]:
        return frozenset({customer_id}) if request.headers.get(GUEST_HEADER, "").lower() == "guest" else frozenset()

    @staticmethod
    def _missing_line(request: web.Request) -> web.HTTPException:
        return spring_error(500, "Cannot find item in cart", request.path,
                            "java.lang.IllegalArgumentException")

    async def _body_item(self, request: web.Request, *, need_quantity: bool) -> tuple[str, int | None, float]:
        if request.content_type != "application/json":
            shown = request.headers.get("Content-Type", "")
            raise spring_error(415, f"Content type '{shown}' not supported", request.path,
                               "org.springframework.web.HttpMediaTypeNotSupportedException")
        body = await read_json(request)
        item_id = body.get("itemId")
        if not isinstance(item_id, str) or not item_id:
            raise spring_error(400, "itemId must be a non-empty string", request.path,
                               "org.springframework.http.converter.HttpMessageNotReadableException")
        quantity = body.get("quantity")
        if quantity is None and need_quantity:
            raise spring_error(400, "quantity is required", request.path,
                               "org.springframework.http.converter.HttpMessageNotReadableException")
        if quantity is not None and (not _is_int(quantity) or not -(2**31) <= quantity < 2**31):
            raise spring_error(400, "quantity must be a 32-bit integer", request.path,
                               "org.springframework.http.converter.HttpMessageNotReadableException")
        price = body.get("unitPrice", 0.0)
        if price is None:
            price = 0.0
        if not _is_number(price) or price != price or abs(price) == float("inf"):
            raise spring_error(400, "unitPrice must be a number", request.path,
                               "org.springframework.http.converter.HttpMessageNotReadableException")
        return item_id, quantity, float(price)

    # ---- routes ----------------------------------------------------------------------------------
    async def get_cart(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        await self.read(customer_id)  # upstream made the cart here; an empty cart needs nothing stored
        return json_response({"customerId": customer_id}, content_type=JSON_UTF8)

    async def delete_cart(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        await self.write([customer_id], lambda carts: ([[]], None), self._guest(request, customer_id))
        return web.Response(status=202)

    async def merge(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        session_id = request.query.get("sessionId")
        if session_id is None:
            raise spring_error(400, "Required String parameter 'sessionId' is not present", request.path,
                               "org.springframework.web.bind.MissingServletRequestParameterException")
        # A login whose caller gave up on the merge (front-end's cart_merge_timeout_s) goes on without it: the
        # merge is dropped rather than made behind its back, so both carts stay as they were (not upstream:
        # upstream had no deadlines; the shopper's anonymous items are then not in the customer's cart).
        deadline = caller_deadline(request.headers)

        def merged(carts: list[list[Line]]) -> tuple[list[list[Line]], None]:
            if deadline is not None and time.time() > deadline:
                raise _Abandoned
            if len(carts) == 1:  # upstream appends the cart to itself, then deletes it: the cart ends empty
                return [[]], None
            return [carts[0] + carts[1], []], None  # session lines appended (duplicates kept), session emptied
        ids = [customer_id] if session_id == customer_id else [customer_id, session_id]
        try:
            await self.write(ids, merged, frozenset({session_id}) - {customer_id})
        except _Abandoned:
            self.svc.log.warning("cart merge abandoned: its caller stopped waiting",
                                 extra={"fields": {"kind": "cart_merge_abandoned", "customer": customer_id}})
            raise spring_error(504, "Merge abandoned: the caller's deadline passed", request.path,
                               "org.springframework.web.context.request.async.AsyncRequestTimeoutException"
                               ) from None
        return web.Response(status=202)

    async def list_items(self, request: web.Request) -> web.Response:
        lines = await self.read(request.match_info["customerId"])
        return json_response(lines, content_type=JSON_UTF8)

    async def get_item(self, request: web.Request) -> web.Response:
        line = _first(await self.read(request.match_info["customerId"]), request.match_info["itemId"])
        if line is None:
            raise self._missing_line(request)
        return json_response(line, content_type=JSON_UTF8)

    async def add_item(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        item_id, quantity, price = await self._body_item(request, need_quantity=False)
        new_id = object_id()  # made once: the change may run again

        def change(carts: list[list[Line]]) -> tuple[list[list[Line]], Line]:
            lines = [dict(ln) for ln in carts[0]]
            line = _first(lines, item_id)
            if line is not None:
                line["quantity"] += 1  # upstream: adding an item already in the cart adds one, whatever was sent
            else:
                line = {"id": new_id, "itemId": item_id, "quantity": 1 if quantity is None else quantity,
                        "unitPrice": price}
                lines.append(line)
            return [lines], dict(line)

        line = await self.write([customer_id], change, self._guest(request, customer_id))
        return json_response(line, status=201, content_type=JSON_UTF8)

    async def update_item(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        item_id, quantity, _price = await self._body_item(request, need_quantity=True)

        def change(carts: list[list[Line]]) -> tuple[list[list[Line]], None]:
            lines = [dict(ln) for ln in carts[0]]
            line = _first(lines, item_id)
            if line is None:
                raise _MissingLine
            line["quantity"] = quantity
            return [lines], None

        try:
            await self.write([customer_id], change, self._guest(request, customer_id))
        except _MissingLine:
            raise self._missing_line(request) from None
        return web.Response(status=202)

    async def delete_item(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        item_id = request.match_info["itemId"]

        def change(carts: list[list[Line]]) -> tuple[list[list[Line]], None]:
            line = _first(carts[0], item_id)
            if line is None:
                raise _MissingLine
            return [[ln for ln in carts[0] if ln is not line]], None

        try:
            await self.write([customer_id], change, self._guest(request, customer_id))
        except _MissingLine:
            raise self._missing_line(request) from None
        return web.Response(status=202)


def build(svc: Service) -> None:
    svc.health_time_field = "date"
    carts = Carts(svc)
    r = svc.app.router
    r.add_get("/carts/{customerId}", carts.get_cart)
    r.add_delete("/carts/{customerId}", carts.delete_cart)
    r.add_get("/carts/{customerId}/merge", carts.merge)
    r.add_get("/carts/{customerId}/items", carts.list_items)
    r.add_post("/carts/{customerId}/items", carts.add_item)
    r.add_patch("/carts/{customerId}/items", carts.update_item)
    r.add_get("/carts/{customerId}/items/{itemId}", carts.get_item)
    r.add_delete("/carts/{customerId}/items/{itemId}", carts.delete_item)


def main() -> None:
    run_service("carts", build, KNOBS)


if __name__ == "__main__":
    main()
