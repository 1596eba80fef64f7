"""Data-integrity checks: read the shop's datastores directly and compare with what customers saw.

The runner gives each check a datastore URL (the host addresses of carts-db, orders-db, user-db,
session-db, and later a payment ledger) and what the load generator observed before and during the
fault; each check returns an ``IntegrityCheck`` for the journal (``ok`` None = not applicable).
A store that cannot be read fails its check: data the shop cannot serve is lost to the customer.

Checks and the tables they read (schemas of ``sockdrill.shop.carts``, ``orders`` and ``user``):

- ``carts_survive``: every (customer, item) in a cart snapshot taken before the fault is still in the
  cart carts would serve (carts-cache's copy where it has one, else ``cart_items``) with at least that
  quantity, unless that session removed it;
- ``sessions_survive``: sessions that were alive before the fault still exist in session-db
  (``sess:<sid>``);
- ``orders_exactly_once``: every order the client saw succeed exists once in ``customer_orders``, in a
  visible status; among those customers' orders no idempotency key or shipment id is shared by two
  orders and no two orders carry the same cart lines (one cart submitted twice);
- ``charges_matched``: in the payment ledger (table/column names given), every authorised charge that
  was not voided matches exactly one placed order (by order id or idempotency key), with the same
  amount when an amount column is given; not applicable while there is no ledger;
- ``order_status_consistent``: each order's status in every API view equals the database's (a view
  that shows no status must at least list only orders in a visible status);
- ``profiles_persisted``: profile updates the client saw succeed are in ``customers``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from sockdrill.errors import OracleError, did_you_mean
from sockdrill.evaluate.journal import IntegrityCheck

CONNECT_TIMEOUT_S = 10.0
MAX_VIOLATIONS = 50  # kept per check; the detail line gives the full count
PROFILE_COLUMNS = {"firstName": "first_name", "lastName": "last_name", "email": "email", "username": "username"}
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CartExpectation(_Input):
    """A cart as the customer left it before the fault: item id → quantity."""

    customer_id: str
    items: dict[str, int]
    removed: list[str] = Field(default_factory=list)  # items this session deleted itself since


class SeenOrder(_Input):
    """An order the client saw succeed (201 with this id)."""

    order_id: str
    customer_id: str | None = None
    idempotency_key: str | None = None


class ProfileExpectation(_Input):
    customer_id: str
    fields: dict[str, str]  # API names: firstName, lastName, email, username


class LedgerSpec(_Input):
    """Where the payment ledger lives and how it names things."""

    url: str | None = None
    table: str = "charges"
    key_column: str = "idempotency_key"    # the key orders sends: its Idempotency-Key, or the order id
    status_column: str | None = "status"   # None: every row is an authorised charge
    authorised_values: list[str] = Field(default_factory=lambda: ["authorised", "captured"])
    voided_values: list[str] = Field(default_factory=lambda: ["voided", "refunded"])
    amount_column: str | None = None
    amount_tolerance: float = 0.01


class IntegrityInputs(_Input):
    """Everything the runner observed, for ``run_checks``."""

    carts: list[CartExpectation] = Field(default_factory=list)
    sessions: list[str] = Field(default_factory=list)
    orders: list[SeenOrder] = Field(default_factory=list)
    order_views: dict[str, dict[str, str | None]] = Field(default_factory=dict)
    profiles: list[ProfileExpectation] = Field(default_factory=list)
    ledger: LedgerSpec | None = None


def _result(name: str, violations: list[dict[str, Any]], checked: int, what: str) -> IntegrityCheck:
    if violations:
        detail = f"{len(violations)} violation(s) in {checked} {what}"
    else:
        detail = f"{checked} {what} checked, all intact"
    return IntegrityCheck(name=name, ok=not violations, detail=detail, violations=violations[:MAX_VIOLATIONS])


def _unreadable(name: str, store: str, exc: BaseException) -> IntegrityCheck:
    return IntegrityCheck(name=name, ok=False, detail=f"cannot read {store}: {type(exc).__name__}: {exc}")


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)


def _quote(ident: str) -> str:
    if not IDENT.match(ident):
        raise OracleError(f"ledger identifier {ident!r} is not a plain SQL name like 'charges' or 'payment.charges'")
    return ".".join(f'"{part}"' for part in ident.split("."))


# ---- carts -------------------------------------------------------------------------------------------

async def _cached_carts(cache_url: str, customer_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The carts the write-behind cache holds (newer than carts-db's copy until written back)."""
    import json

    import redis.asyncio as aioredis

    from sockdrill.shop.carts_cache import key

    client = aioredis.from_url(cache_url, socket_timeout=CONNECT_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S,
                               decode_responses=True)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for cid in customer_ids:
                pipe.hget(key(cid), "lines")
            raw = await pipe.execute()
    finally:
        await client.aclose()
    return {cid: json.loads(r) for cid, r in zip(customer_ids, raw, strict=True) if r is not None}


async def check_carts(carts_url: str, expected: list[CartExpectation], cache_url: str | None = None) -> IntegrityCheck:
    """What carts would serve: the cached cart where carts-cache has one, else carts-db's."""
    from redis.exceptions import RedisError

    name = "carts_survive"
    if not expected:
        return IntegrityCheck(name=name, ok=None, detail="not applicable: no cart snapshots")
    ids = [c.customer_id for c in expected]
    cached: dict[str, list[dict[str, Any]]] = {}
    if cache_url:
        try:
            cached = await _cached_carts(cache_url, ids)
        except (RedisError, OSError, ValueError) as exc:
            return _unreadable(name, "carts-cache", exc)
    try:
        conn = await _connect(carts_url)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return _unreadable(name, "carts-db", exc)
    try:
        rows = await conn.fetch("SELECT customer_id, item_id, sum(quantity) AS quantity FROM cart_items "
                                "WHERE customer_id = ANY($1::text[]) GROUP BY customer_id, item_id",
                                [i for i in ids if i not in cached])
    except (OSError, asyncpg.PostgresError) as exc:
        return _unreadable(name, "carts-db", exc)
    finally:
        await conn.close()
    found = {(r["customer_id"], r["item_id"]): int(r["quantity"]) for r in rows}
    for cid, lines in cached.items():
        for line in lines:
            found[(cid, line["itemId"])] = found.get((cid, line["itemId"]), 0) + int(line["quantity"])
    violations, checked = [], 0
    for cart in expected:
        for item_id, quantity in cart.items.items():
            if item_id in cart.removed:
                continue
            checked += 1
            have = found.get((cart.customer_id, item_id), 0)
            if have < quantity:
                violations.append({"kind": "cart_item_lost", "customer_id": cart.customer_id, "item_id": item_id,
                                   "expected": quantity, "found": have})
    return _result(name, violations, checked, "cart items")


async def check_sessions(session_url: str, session_ids: list[str]) -> IntegrityCheck:
    name = "sessions_survive"
    if not session_ids:
        return IntegrityCheck(name=name, ok=None, detail="not applicable: no sessions recorded")
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from sockdrill.shop.frontend.session import PREFIX

    client = aioredis.from_url(session_url, socket_timeout=CONNECT_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.exists(PREFIX + sid)
            present = await pipe.execute()
    except (RedisError, OSError) as exc:
        return _unreadable(name, "session-db", exc)
    finally:
        await client.aclose()
    violations = [{"kind": "session_lost", "session_id": sid}
                  for sid, there in zip(session_ids, present, strict=True) if not there]
    return _result(name, violations, len(session_ids), "sessions")


# ---- orders ------------------------------------------------------------------------------------------

async def check_orders(orders_url: str, seen: list[SeenOrder]) -> IntegrityCheck:
    name = "orders_exactly_once"
    if not seen:
        return IntegrityCheck(name=name, ok=None, detail="not applicable: no successful orders recorded")
    from sockdrill.shop.orders import HIDDEN

    try:
        conn = await _connect(orders_url)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return _unreadable(name, "orders-db", exc)
    try:
        ids = [o.order_id for o in seen]
        rows = await conn.fetch("SELECT id, customer_id, status, idempotency_key FROM customer_orders "
                                "WHERE id = ANY($1::text[])", ids)
        customers = sorted({r["customer_id"] for r in rows} | {o.customer_id for o in seen if o.customer_id})
        # Duplicates are looked for among the orders of the customers the client saw, so that a shared,
        # long-lived shop does not fail a run for what an earlier run left behind.
        dup_keys = await conn.fetch(
            "SELECT idempotency_key, array_agg(id ORDER BY id) AS ids FROM customer_orders "
            "WHERE idempotency_key IS NOT NULL AND customer_id = ANY($1::text[]) "
            "GROUP BY idempotency_key HAVING count(*) > 1", customers)
        dup_shipments = await conn.fetch(
            "SELECT shipment_id, array_agg(id ORDER BY id) AS ids FROM customer_orders "
            "WHERE customer_id = ANY($1::text[]) GROUP BY shipment_id HAVING count(*) > 1", customers)
        # Cart lines carry unique ids and a cart is emptied after checkout, so two placed orders with the
        # same lines are one cart submitted twice.
        dup_carts = await conn.fetch(
            "SELECT a.customer_id, a.id AS first, b.id AS second FROM customer_orders a "
            "JOIN customer_orders b ON a.customer_id = b.customer_id AND a.id < b.id "
            "AND (a.doc->'items')::text = (b.doc->'items')::text "
            "WHERE a.customer_id = ANY($1::text[]) AND a.status <> 'created' AND b.status <> 'created' "
            "AND json_array_length(a.doc->'items') > 0", customers)
    except (OSError, asyncpg.PostgresError) as exc:
        return _unreadable(name, "orders-db", exc)
    finally:
        await conn.close()
    by_id = {r["id"]: r for r in rows}
    violations: list[dict[str, Any]] = []
    for order in seen:
        row = by_id.get(order.order_id)
        if row is None:
            violations.append({"kind": "order_lost", "order_id": order.order_id})
        elif row["status"] in HIDDEN:
            violations.append({"kind": "order_not_visible", "order_id": order.order_id, "status": row["status"]})
        elif order.idempotency_key is not None and row["idempotency_key"] != order.idempotency_key:
            violations.append({"kind": "idempotency_key_mismatch", "order_id": order.order_id,
                               "expected": order.idempotency_key, "found": row["idempotency_key"]})
    for r in dup_keys:
        violations.append({"kind": "duplicate_idempotency_key", "key": r["idempotency_key"], "orders": list(r["ids"])})
    for r in dup_shipments:
        violations.append({"kind": "duplicate_shipment", "shipment_id": r["shipment_id"], "orders": list(r["ids"])})
    for r in dup_carts:
        violations.append({"kind": "duplicate_order", "customer_id": r["customer_id"],
                           "orders": [r["first"], r["second"]]})
    return _result(name, violations, len(seen), "orders")


async def check_order_views(orders_url: str, views: dict[str, dict[str, str | None]]) -> IntegrityCheck:
    """``views``: view name → {order id: status shown, or None when the view shows no status}."""
    name = "order_status_consistent"
    ids = sorted({oid for shown in views.values() for oid in shown})
    if not ids:
        return IntegrityCheck(name=name, ok=None, detail="not applicable: no order views recorded")
    from sockdrill.shop.orders import HIDDEN

    try:
        conn = await _connect(orders_url)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return _unreadable(name, "orders-db", exc)
    try:
        rows = await conn.fetch("SELECT id, status FROM customer_orders WHERE id = ANY($1::text[])", ids)
    except (OSError, asyncpg.PostgresError) as exc:
        return _unreadable(name, "orders-db", exc)
    finally:
        await conn.close()
    db = {r["id"]: r["status"] for r in rows}
    violations: list[dict[str, Any]] = []
    checked = 0
    for view, shown in sorted(views.items()):
        for oid, status in sorted(shown.items()):
            checked += 1
            actual = db.get(oid)
            if actual is None:
                violations.append({"kind": "order_missing_in_db", "view": view, "order_id": oid, "shown": status})
            elif status is None and actual in HIDDEN:
                violations.append({"kind": "view_lists_hidden_order", "view": view, "order_id": oid, "db": actual})
            elif status is not None and status != actual:
                violations.append({"kind": "status_mismatch", "view": view, "order_id": oid, "shown": status,
                                   "db": actual})
    return _result(name, violations, checked, "order views")


# ---- payments ----------------------------------------------------------------------------------------

async def check_payments(orders_url: str, ledger: LedgerSpec | None) -> IntegrityCheck:
    name = "charges_matched"
    if ledger is None or not ledger.url:
        return IntegrityCheck(name=name, ok=None, detail="not applicable: no payment ledger configured")
    table = _quote(ledger.table)
    key_col = _quote(ledger.key_column)
    status_sql = _quote(ledger.status_column) if ledger.status_column else "NULL"
    amount_sql = _quote(ledger.amount_column) if ledger.amount_column else "NULL"
    try:
        conn = await _connect(ledger.url)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return _unreadable(name, "the payment ledger", exc)
    try:
        if await conn.fetchval("SELECT to_regclass($1)", ledger.table) is None:
            return IntegrityCheck(name=name, ok=None, detail=f"not applicable: no table {ledger.table!r} in the ledger")
        charges = await conn.fetch(
            f"SELECT {key_col}::text AS key, {status_sql}::text AS status, {amount_sql}::float8 AS amount "
            f"FROM {table}")
    except (OSError, asyncpg.PostgresError) as exc:
        return _unreadable(name, "the payment ledger", exc)
    finally:
        await conn.close()
    # Per key: authorised rows minus voiding rows (a void may be its own row or the charge's new status).
    authorised: dict[str | None, list[asyncpg.Record]] = {}
    voids: Counter[str | None] = Counter()
    for r in charges:
        if ledger.status_column is not None and r["status"] in ledger.voided_values:
            voids[r["key"]] += 1
        elif ledger.status_column is None or r["status"] in ledger.authorised_values:
            authorised.setdefault(r["key"], []).append(r)
    live = {k: rows for k, rows in authorised.items() if len(rows) - voids[k] > 0}
    keys = sorted(k for k in live if k is not None)
    orders: list[asyncpg.Record] = []
    if keys:
        try:
            conn = await _connect(orders_url)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            return _unreadable(name, "orders-db", exc)
        try:
            orders = await conn.fetch(
                "SELECT id, idempotency_key, status, total FROM customer_orders "
                "WHERE (id = ANY($1::text[]) OR idempotency_key = ANY($1::text[])) AND status <> 'created'", keys)
        except (OSError, asyncpg.PostgresError) as exc:
            return _unreadable(name, "orders-db", exc)
        finally:
            await conn.close()
    matches: dict[str, list[asyncpg.Record]] = {}
    for o in orders:
        for k in {o["id"], o["idempotency_key"]} - {None}:
            matches.setdefault(k, []).append(o)
    violations: list[dict[str, Any]] = []
    for key, rows in sorted(live.items(), key=lambda kv: str(kv[0])):
        net = len(rows) - voids[key]
        amount = rows[0]["amount"]
        found = matches.get(key, []) if key is not None else []
        if net > 1:
            violations.append({"kind": "duplicate_charge", "key": key, "charges": net})
        if not found:
            violations.append({"kind": "charge_without_order", "key": key, "amount": amount})
        elif len(found) > 1:
            violations.append({"kind": "charge_matches_several_orders", "key": key,
                               "orders": sorted(o["id"] for o in found)})
        elif amount is not None and abs(float(found[0]["total"]) - amount) > ledger.amount_tolerance:
            violations.append({"kind": "amount_mismatch", "key": key, "charged": amount,
                               "order_total": float(found[0]["total"])})
    return _result(name, violations, len(live), "authorised charges")


# ---- profiles ----------------------------------------------------------------------------------------

async def check_profiles(user_url: str, expected: list[ProfileExpectation]) -> IntegrityCheck:
    name = "profiles_persisted"
    if not expected:
        return IntegrityCheck(name=name, ok=None, detail="not applicable: no profile updates recorded")
    for p in expected:
        for field in p.fields:
            if field not in PROFILE_COLUMNS:
                raise OracleError(f"profile expectation for {p.customer_id}: unknown field {field!r}"
                                  f"{did_you_mean(field, PROFILE_COLUMNS)}")
    try:
        conn = await _connect(user_url)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return _unreadable(name, "user-db", exc)
    try:
        rows = await conn.fetch("SELECT id, first_name, last_name, email, username FROM customers "
                                "WHERE id = ANY($1::text[])", [p.customer_id for p in expected])
    except (OSError, asyncpg.PostgresError) as exc:
        return _unreadable(name, "user-db", exc)
    finally:
        await conn.close()
    by_id = {r["id"]: r for r in rows}
    violations: list[dict[str, Any]] = []
    checked = 0
    for p in expected:
        row = by_id.get(p.customer_id)
        if row is None:
            violations.append({"kind": "customer_lost", "customer_id": p.customer_id})
            continue
        for field, want in p.fields.items():
            checked += 1
            have = row[PROFILE_COLUMNS[field]]
            if have != want:
                violations.append({"kind": "profile_change_lost", "customer_id": p.customer_id, "field": field,
                                   "expected": want, "found": have})
    return _result(name, violations, checked, "profile fields")


# ---- all at once -------------------------------------------------------------------------------------

async def run_checks(addresses: dict[str, str], inputs: IntegrityInputs) -> list[IntegrityCheck]:
    """Every check, with the store URLs by deployment name (``carts-db``, ``orders-db``, ``user-db``,
    ``session-db``); a check whose store has no address is reported as not applicable."""
    plan: list[tuple[str, str | None, Callable[[str], Awaitable[IntegrityCheck]]]] = [
        ("carts_survive", addresses.get("carts-db"),
         lambda u: check_carts(u, inputs.carts, addresses.get("carts-cache"))),
        ("sessions_survive", addresses.get("session-db"), lambda u: check_sessions(u, inputs.sessions)),
        ("orders_exactly_once", addresses.get("orders-db"), lambda u: check_orders(u, inputs.orders)),
        ("charges_matched", addresses.get("orders-db"), lambda u: check_payments(u, inputs.ledger)),
        ("order_status_consistent", addresses.get("orders-db"), lambda u: check_order_views(u, inputs.order_views)),
        ("profiles_persisted", addresses.get("user-db"), lambda u: check_profiles(u, inputs.profiles)),
    ]
    out = []
    for name, url, run in plan:
        if url is None:
            out.append(IntegrityCheck(name=name, ok=None, detail="not applicable: store address not given"))
        else:
            out.append(await run(url))
    return out


__all__ = ["CartExpectation", "IntegrityInputs", "LedgerSpec", "ProfileExpectation", "SeenOrder",
           "check_carts", "check_order_views", "check_orders", "check_payments", "check_profiles",
           "check_sessions", "run_checks"]
