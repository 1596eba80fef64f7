"""carts-db: the durable copy of every cart (PostgreSQL), read on a cache miss and written back by the cache.

``carts(customer_id, version)`` and ``cart_items(id, customer_id, item_id, quantity, unit_price, seq)``;
``seq`` keeps lines in insertion order. A cart is saved whole (its lines replaced) under a
transaction-scoped advisory lock on its id, and only if its version is newer than the stored one, so a
slow writer can never put an older cart over a newer one. An empty cart is a deleted row.
"""

from __future__ import annotations

import os
import time
from typing import Any

import asyncpg

Line = dict[str, Any]  # {"id", "itemId", "quantity", "unitPrice"}, as the API shows it

SCHEMA = """
CREATE TABLE IF NOT EXISTS carts (
    customer_id TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE carts ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;
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


async def lock(conn: asyncpg.Connection, customer_id: str) -> None:
    """Serialise every write of one cart (held until the transaction ends)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_SPACE, customer_id)


async def load(conn: asyncpg.Connection, customer_id: str) -> tuple[list[Line], int]:
    """The stored lines of a cart, in order, and its version (0 when there is no cart)."""
    version = await conn.fetchval("SELECT version FROM carts WHERE customer_id = $1", customer_id)
    rows = await conn.fetch("SELECT id, item_id, quantity, unit_price FROM cart_items WHERE customer_id = $1 "
                            "ORDER BY seq", customer_id)
    lines = [{"id": r["id"], "itemId": r["item_id"], "quantity": r["quantity"], "unitPrice": r["unit_price"]}
             for r in rows]
    return lines, int(version or 0)


async def save(conn: asyncpg.Connection, customer_id: str, lines: list[Line], version: int) -> bool:
    """Store a whole cart at ``version`` (inside the caller's transaction, under its lock). False, and nothing
    written, when the stored cart is as new or newer."""
    stored = await conn.fetchval("SELECT version FROM carts WHERE customer_id = $1", customer_id)
    if stored is not None and int(stored) >= version:
        return False
    if not lines:
        await conn.execute("DELETE FROM carts WHERE customer_id = $1", customer_id)
        return True
    await conn.execute("INSERT INTO carts (customer_id, version) VALUES ($1, $2) ON CONFLICT (customer_id) "
                       "DO UPDATE SET version = EXCLUDED.version", customer_id, version)
    await conn.execute("DELETE FROM cart_items WHERE customer_id = $1", customer_id)
    # A merge moves lines (ids kept, as upstream) from a session cart that may be written after this one.
    await conn.executemany(
        "INSERT INTO cart_items (id, customer_id, item_id, quantity, unit_price) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, item_id = EXCLUDED.item_id, "
        "quantity = EXCLUDED.quantity, unit_price = EXCLUDED.unit_price, seq = EXCLUDED.seq",
        [(ln["id"], customer_id, ln["itemId"], ln["quantity"], ln["unitPrice"]) for ln in lines])
    return True
