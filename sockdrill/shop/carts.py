"""carts: shopping carts on PostgreSQL (``carts-db``), with upstream's routes and quirks.

Upstream behaviour kept on purpose: POSTing an itemId already in the cart adds 1 whatever the body
says; merging appends the session cart's lines (duplicates possible) and deletes the session cart;
GET/PATCH/DELETE of a line that is not in the cart is a 500 with a Spring-style error body.

Deliberate difference: a body that is not JSON, or has a missing ``itemId`` or wrongly typed fields,
is a 400 with a JSON error (upstream's Jackson coerced some values, e.g. ``"3"`` for a quantity, and
stored lines without an itemId).

Storage: ``carts(customer_id)`` and ``cart_items(id, customer_id, item_id, quantity, unit_price, seq)``;
``seq`` keeps lines in insertion order, like the list of references in upstream's cart document.
Writes to one cart are serialised with a transaction-scoped advisory lock on the customer id.
"""

from __future__ import annotations

import os
import time
from typing import Any

import asyncpg
from aiohttp import web

from sockdrill.shop.common import Knob, Service, json_response, read_json, run_service
from sockdrill.shop.common.db import DB_KNOBS, Database
from sockdrill.shop.spring import JSON_UTF8, spring_error

KNOBS: list[Knob] = [*DB_KNOBS]

SCHEMA = """
CREATE TABLE IF NOT EXISTS carts (
    customer_id TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS cart_items (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES carts (customer_id) ON DELETE CASCADE,
    item_id     TEXT NOT NULL,
    quantity    INTEGER NOT NULL,
    unit_price  DOUBLE PRECISION NOT NULL,
    seq         BIGSERIAL
);
CREATE INDEX IF NOT EXISTS cart_items_by_cart ON cart_items (customer_id, seq);
"""

COLUMNS = "id, item_id, quantity, unit_price"
LOCK_SPACE = 7201  # first key of the two-int advisory locks taken per cart

_oid_counter = int.from_bytes(os.urandom(3), "big")
_oid_random = os.urandom(5)


def object_id() -> str:
    """A 24-hex id laid out like a Mongo ObjectId (seconds, per-process random, counter)."""
    global _oid_counter
    _oid_counter = (_oid_counter + 1) % 0xFFFFFF
    return (int(time.time()).to_bytes(4, "big") + _oid_random + _oid_counter.to_bytes(3, "big")).hex()


async def init_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(SCHEMA)


def _item(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "itemId": row["item_id"], "quantity": row["quantity"],
            "unitPrice": row["unit_price"]}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Carts:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.db = Database(svc, "carts-db", init=init_schema)

    # ---- helpers ---------------------------------------------------------------------------------
    async def _ensure_cart(self, conn: asyncpg.Connection, customer_id: str) -> None:
        # DO UPDATE (not DO NOTHING) locks the cart row until the transaction ends, so a concurrent
        # DELETE /carts/{id} cannot remove it between here and an insert of one of its lines.
        await conn.execute("INSERT INTO carts (customer_id) VALUES ($1) "
                           "ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id", customer_id)

    async def _lock(self, conn: asyncpg.Connection, customer_id: str) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_SPACE, customer_id)

    async def _first_line(self, conn: asyncpg.Connection, customer_id: str, item_id: str
                          ) -> asyncpg.Record | None:
        return await conn.fetchrow(
            f"SELECT {COLUMNS} FROM cart_items WHERE customer_id = $1 AND item_id = $2 ORDER BY seq LIMIT 1",
            customer_id, item_id)

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
        async with self.db.acquire() as conn:
            await self._ensure_cart(conn, customer_id)
        return json_response({"customerId": customer_id}, content_type=JSON_UTF8)

    async def delete_cart(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        # Serialised with every write to this customer's cart (add, update, remove, merge).
        async with self.db.acquire() as conn, conn.transaction():
            await self._lock(conn, customer_id)
            await conn.execute("DELETE FROM carts WHERE customer_id = $1", customer_id)
        return web.Response(status=202)

    async def merge(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        session_id = request.query.get("sessionId")
        if session_id is None:
            raise spring_error(400, "Required String parameter 'sessionId' is not present", request.path,
                               "org.springframework.web.bind.MissingServletRequestParameterException")
        async with self.db.acquire() as conn, conn.transaction():
            # Lock both carts in a fixed order so that two opposite merges cannot deadlock.
            for key in sorted({customer_id, session_id}):
                await self._lock(conn, key)
            await self._ensure_cart(conn, customer_id)
            if session_id != customer_id:
                lines = await conn.fetch("SELECT id FROM cart_items WHERE customer_id = $1 ORDER BY seq",
                                         session_id)
                for line in lines:  # one by one so the appended lines keep their order
                    await conn.execute(
                        "UPDATE cart_items SET customer_id = $1, seq = nextval(pg_get_serial_sequence("
                        "'cart_items', 'seq')) WHERE id = $2", customer_id, line["id"])
            # Upstream deletes the session cart after appending, even when it is the customer's own.
            await conn.execute("DELETE FROM carts WHERE customer_id = $1", session_id)
        return web.Response(status=202)

    async def list_items(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        async with self.db.acquire() as conn:
            await self._ensure_cart(conn, customer_id)
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM cart_items WHERE customer_id = $1 ORDER BY seq", customer_id)
        return json_response([_item(r) for r in rows], content_type=JSON_UTF8)

    async def get_item(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        async with self.db.acquire() as conn:
            await self._ensure_cart(conn, customer_id)
            row = await self._first_line(conn, customer_id, request.match_info["itemId"])
        if row is None:
            raise self._missing_line(request)
        return json_response(_item(row), content_type=JSON_UTF8)

    async def add_item(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        item_id, quantity, price = await self._body_item(request, need_quantity=False)
        async with self.db.acquire() as conn, conn.transaction():
            await self._lock(conn, customer_id)
            await self._ensure_cart(conn, customer_id)
            line = await self._first_line(conn, customer_id, item_id)
            if line is not None:
                # Upstream: adding an item already in the cart adds one, whatever quantity was sent.
                row = await conn.fetchrow(
                    "UPDATE cart_items SET quantity = quantity + 1 WHERE id = $1 "
                    "RETURNING id, item_id, quantity, unit_price", line["id"])
            else:
                row = await conn.fetchrow(
                    "INSERT INTO cart_items (id, customer_id, item_id, quantity, unit_price) "
                    "VALUES ($1, $2, $3, $4, $5) RETURNING id, item_id, quantity, unit_price",
                    object_id(), customer_id, item_id, 1 if quantity is None else quantity, price)
        assert row is not None
        return json_response(_item(row), status=201, content_type=JSON_UTF8)

    async def update_item(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        item_id, quantity, _price = await self._body_item(request, need_quantity=True)
        async with self.db.acquire() as conn, conn.transaction():
            await self._lock(conn, customer_id)
            await self._ensure_cart(conn, customer_id)
            line = await self._first_line(conn, customer_id, item_id)
            if line is None:
                raise self._missing_line(request)
            await conn.execute("UPDATE cart_items SET quantity = $1 WHERE id = $2", quantity, line["id"])
        return web.Response(status=202)

    async def delete_item(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customerId"]
        async with self.db.acquire() as conn, conn.transaction():
            await self._lock(conn, customer_id)
            await self._ensure_cart(conn, customer_id)
            line = await self._first_line(conn, customer_id, request.match_info["itemId"])
            if line is None:
                raise self._missing_line(request)
            await conn.execute("DELETE FROM cart_items WHERE id = $1", line["id"])
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
