"""Data-integrity checks against a scratch PostgreSQL database with the shop's real schemas.

Every check must pass on consistent data and fail on data with the defect it exists to catch.
Needs this machine's PostgreSQL (127.0.0.1:5432, user postgres); the sessions check needs Redis
(127.0.0.1:6379). Each test module run creates and drops its own database and uses unique keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from sockdrill.errors import OracleError
from sockdrill.evaluate.integrity import (
    CartExpectation,
    IntegrityInputs,
    LedgerSpec,
    ProfileExpectation,
    SeenOrder,
    check_carts,
    check_order_views,
    check_orders,
    check_payments,
    check_profiles,
    check_sessions,
    run_checks,
)
from sockdrill.shop import carts_db, orders, user

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
DEAD = "postgresql://postgres@127.0.0.1:1/nothing"


async def _pg_up() -> bool:
    try:
        conn = await asyncpg.connect(ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="module")
async def db() -> AsyncIterator[str]:
    if not await _pg_up():
        pytest.skip(f"PostgreSQL not reachable at {ADMIN}")
    name = f"sockdrill_integrity_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        conn = await asyncpg.connect(url)
        try:
            # The services' own schema code, so the checks read the tables the shop really writes.
            await carts_db.init_schema(conn)
            await orders.init_schema(conn)
            await conn.execute(user.SCHEMA)
            await seed(conn)
        finally:
            await conn.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def order_doc(order_id: str, customer: str, lines: list[tuple[str, str, int]], total: float) -> str:
    return json.dumps({"id": order_id, "customerId": customer, "total": total,
                       "items": [{"id": lid, "itemId": item, "quantity": q, "unitPrice": 1.0}
                                 for lid, item, q in lines]})


async def seed(conn: asyncpg.Connection) -> None:
    # Carts: alice has 2 × sock-a and 1 × sock-b (in two lines of sock-a), bob has 1 × sock-c.
    await conn.execute("INSERT INTO carts (customer_id) VALUES ('alice'), ('bob')")
    await conn.executemany(
        "INSERT INTO cart_items (id, customer_id, item_id, quantity, unit_price) VALUES ($1, $2, $3, $4, 1.0)",
        [("l1", "alice", "sock-a", 1), ("l2", "alice", "sock-a", 1), ("l3", "alice", "sock-b", 1),
         ("l4", "bob", "sock-c", 1)])
    rows = [
        # id, customer, status, key, shipment, total, lines
        ("o1", "alice", "shipped", "k1", "s1", 10.0, [("c1", "sock-a", 1)]),
        ("o2", "alice", "shipped", None, "s2", 12.0, [("c2", "sock-b", 2)]),
        ("o3", "bob", "paid", "k3", "s3", 7.0, [("c3", "sock-c", 1)]),          # charged, never shipped
        ("o4", "carol", "shipped", None, "s4", 5.0, [("c4", "sock-d", 1)]),
        ("o5", "carol", "shipped", None, "s5", 5.0, [("c4", "sock-d", 1)]),     # same cart placed twice
        ("o6", "dave", "shipped", None, "s6", 3.0, [("c6", "sock-e", 1)]),
        ("o7", "dave", "shipped", None, "s6", 3.0, [("c7", "sock-e", 1)]),      # same shipment as o6
        ("o8", "erin", "created", "k8", "s8", 9.0, [("c8", "sock-f", 1)]),      # payment never answered
    ]
    await conn.executemany(
        "INSERT INTO customer_orders (id, customer_id, status, idempotency_key, shipment_id, total, created_at, doc) "
        "VALUES ($1, $2, $3, $4, $5, $6, now(), $7)",
        [(i, c, st, k, sh, t, order_doc(i, c, lines, t)) for i, c, st, k, sh, t, lines in rows])
    await conn.executemany(
        "INSERT INTO customers (id, first_name, last_name, email, username) VALUES ($1, $2, $3, $4, $5)",
        [("a" * 24, "Alice", "Liddell", "alice@example.com", "alice"),
         ("b" * 24, "Bob", "Builder", "bob@example.com", "bob")])
    # A payment ledger in the same database (the runner may point at a payment-db instead).
    await conn.execute("CREATE TABLE charges (id serial PRIMARY KEY, idempotency_key text, status text, "
                       "amount double precision)")
    await conn.executemany("INSERT INTO charges (idempotency_key, status, amount) VALUES ($1, $2, $3)", [
        ("k1", "authorised", 10.0),        # matches o1 by key
        ("o2", "captured", 12.0),          # matches o2 by order id
        ("k3", "authorised", 7.0),         # o3 is paid: a placed order
        ("k8", "authorised", 9.0),         # o8 only 'created': charged but no order
        ("k8", "voided", 9.0),             # ...but voided afterwards
    ])
    await conn.execute("CREATE TABLE bad_charges (LIKE charges INCLUDING ALL)")
    await conn.executemany("INSERT INTO bad_charges (idempotency_key, status, amount) VALUES ($1, $2, $3)", [
        ("k1", "authorised", 10.0), ("k1", "authorised", 10.0),    # double charge
        ("gone", "authorised", 4.0),                                 # no order at all
        ("o2", "authorised", 99.0),                                  # wrong amount
        ("k8", "authorised", 9.0),                                   # order never placed, not voided
    ])


# ---- carts -------------------------------------------------------------------------------------------

async def test_carts_survive(db: str) -> None:
    good = [CartExpectation(customer_id="alice", items={"sock-a": 2, "sock-b": 1}),
            CartExpectation(customer_id="bob", items={"sock-c": 1})]
    r = await check_carts(db, good)
    assert r.ok is True and r.name == "carts_survive" and "3 cart items" in r.detail


async def test_lost_cart_items_fail(db: str) -> None:
    bad = [CartExpectation(customer_id="alice", items={"sock-a": 3, "sock-b": 1}),   # one sock-a gone
           CartExpectation(customer_id="zoe", items={"sock-z": 1})]                  # whole cart gone
    r = await check_carts(db, bad)
    assert r.ok is False
    assert {(v["customer_id"], v["item_id"], v["found"]) for v in r.violations} == {("alice", "sock-a", 2),
                                                                                   ("zoe", "sock-z", 0)}
    removed = [CartExpectation(customer_id="zoe", items={"sock-z": 1}, removed=["sock-z"])]
    assert (await check_carts(db, removed)).ok is True       # the customer deleted it: not a loss


async def test_unreadable_store_fails_and_empty_input_is_not_applicable(db: str) -> None:
    r = await check_carts(DEAD, [CartExpectation(customer_id="alice", items={"sock-a": 1})])
    assert r.ok is False and "cannot read carts-db" in r.detail
    assert (await check_carts(db, [])).ok is None


# ---- orders ------------------------------------------------------------------------------------------

async def test_orders_exactly_once(db: str) -> None:
    r = await check_orders(db, [SeenOrder(order_id="o1", idempotency_key="k1"), SeenOrder(order_id="o2")])
    assert r.ok is True, r.violations


async def test_lost_hidden_and_duplicated_orders_fail(db: str) -> None:
    r = await check_orders(db, [SeenOrder(order_id="o1"), SeenOrder(order_id="missing"),
                                SeenOrder(order_id="o3"), SeenOrder(order_id="o4"), SeenOrder(order_id="o6")])
    kinds = {(v["kind"], v.get("order_id") or tuple(v.get("orders", []))) for v in r.violations}
    assert r.ok is False
    assert ("order_lost", "missing") in kinds
    assert ("order_not_visible", "o3") in kinds                 # client saw success, order stuck in 'paid'
    assert ("duplicate_order", ("o4", "o5")) in kinds           # one cart submitted twice
    assert ("duplicate_shipment", ("o6", "o7")) in kinds
    r = await check_orders(db, [SeenOrder(order_id="o1", idempotency_key="other")])
    assert [v["kind"] for v in r.violations] == ["idempotency_key_mismatch"]


async def test_order_views(db: str) -> None:
    good = {"orders-api": {"o1": None, "o2": None}, "order-status-page": {"o1": "shipped", "o3": "paid"}}
    assert (await check_order_views(db, good)).ok is True
    bad = {"orders-api": {"o3": None, "nope": None}, "order-status-page": {"o1": "delivered"}}
    r = await check_order_views(db, bad)
    assert r.ok is False
    assert sorted(v["kind"] for v in r.violations) == ["order_missing_in_db", "status_mismatch",
                                                       "view_lists_hidden_order"]
    assert (await check_order_views(db, {})).ok is None


# ---- payments ----------------------------------------------------------------------------------------

async def test_charges_matched(db: str) -> None:
    ledger = LedgerSpec(url=db, table="charges", amount_column="amount")
    r = await check_payments(db, ledger)
    assert r.ok is True, r.violations
    assert "3 authorised charges" in r.detail


async def test_unmatched_duplicate_and_wrong_charges_fail(db: str) -> None:
    ledger = LedgerSpec(url=db, table="bad_charges", amount_column="amount")
    r = await check_payments(db, ledger)
    assert r.ok is False
    assert sorted((v["kind"], v["key"]) for v in r.violations) == [
        ("amount_mismatch", "o2"), ("charge_without_order", "gone"), ("charge_without_order", "k8"),
        ("duplicate_charge", "k1")]


async def test_payment_check_not_applicable_without_a_ledger(db: str) -> None:
    assert (await check_payments(db, None)).ok is None
    r = await check_payments(db, LedgerSpec(url=db, table="payment_ledger"))
    assert r.ok is None and "no table" in r.detail
    with pytest.raises(OracleError, match="plain SQL name"):
        await check_payments(db, LedgerSpec(url=db, table="charges; DROP TABLE charges"))


# ---- profiles ----------------------------------------------------------------------------------------

async def test_profiles_persisted(db: str) -> None:
    good = [ProfileExpectation(customer_id="a" * 24, fields={"firstName": "Alice", "email": "alice@example.com"})]
    assert (await check_profiles(db, good)).ok is True
    bad = [ProfileExpectation(customer_id="b" * 24, fields={"lastName": "Marley"}),
           ProfileExpectation(customer_id="c" * 24, fields={"firstName": "Carol"})]
    r = await check_profiles(db, bad)
    assert r.ok is False and sorted(v["kind"] for v in r.violations) == ["customer_lost", "profile_change_lost"]
    with pytest.raises(OracleError, match="did you mean 'lastName'"):
        await check_profiles(db, [ProfileExpectation(customer_id="x", fields={"lastname": "y"})])


# ---- sessions ----------------------------------------------------------------------------------------

async def test_sessions_survive() -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(REDIS)
    sid = f"integrity-test-{uuid.uuid4().hex}"
    try:
        await client.set(f"sess:{sid}", "{}", ex=60)
    except (RedisError, OSError):
        pytest.skip(f"Redis not reachable at {REDIS}")
    try:
        assert (await check_sessions(REDIS, [sid])).ok is True
        r = await check_sessions(REDIS, [sid, sid + "-gone"])
        assert r.ok is False and r.violations == [{"kind": "session_lost", "session_id": sid + "-gone"}]
        assert (await check_sessions(REDIS, [])).ok is None
        assert (await check_sessions("redis://127.0.0.1:1/0", [sid])).ok is False
    finally:
        await client.delete(f"sess:{sid}")
        await client.aclose()


# ---- all together ------------------------------------------------------------------------------------

async def test_run_checks(db: str) -> None:
    inputs = IntegrityInputs(carts=[CartExpectation(customer_id="bob", items={"sock-c": 1})],
                             orders=[SeenOrder(order_id="o1")],
                             ledger=LedgerSpec(url=db, table="charges"))
    results = await run_checks({"carts-db": db, "orders-db": db, "user-db": db}, inputs)
    by_name = {r.name: r.ok for r in results}
    assert by_name == {"carts_survive": True, "sessions_survive": None, "orders_exactly_once": True,
                       "charges_matched": True, "order_status_consistent": None, "profiles_persisted": None}
    assert asyncio.get_running_loop() is not None


async def test_a_runs_charge_check_leaves_out_orders_an_earlier_run_began(db: str) -> None:
    """The runner's ledger check counts the charges of orders this run began: a previous run's payment that was
    still queued charged seconds into this run (measured), for an order this run never placed."""
    import time

    from sockdrill.scenarios.integrity_setup import _charges_matched

    since = time.time()

    def oid(at: float) -> str:
        return int(at).to_bytes(4, "big").hex() + "0" * 16

    earlier, ours = oid(since - 30), oid(since + 5)
    ledger = [{"id": "ch_1", "status": "authorised", "reference": "k1", "amount": 10.0, "created": since + 1},
              {"id": "ch_2", "status": "authorised", "reference": earlier, "amount": 5.0, "created": since + 2},
              {"id": "ch_3", "status": "authorised", "reference": ours, "amount": 6.0, "created": since + 6},
              {"id": "ch_4", "status": "authorised", "reference": "k8", "amount": 9.0, "created": since - 60}]

    # Each payment provider keeps its own ledger: the second one here charged one order of this run, unplaced.
    second = [{"id": "ch_5", "status": "authorised", "reference": oid(since + 7), "amount": 3.0,
               "created": since + 8}]
    async with _ledgers(ledger, second) as urls:
        r = await _charges_matched(urls[0], db, since, in_flight_s=0)
        both = await _charges_matched(urls, db, since, in_flight_s=0)
    # k1 is a placed order; the earlier run's order and the charge from before the run are not this run's.
    assert r.ok is False and [v["charge"] for v in r.violations] == ["ch_3"], r.violations
    assert [v["charge"] for v in both.violations] == ["ch_3", "ch_5"], both.violations
    assert "2 authorised charges" in r.detail


@contextlib.asynccontextmanager
async def _ledgers(*ledgers: list[dict[str, Any]]) -> AsyncIterator[list[str]]:
    """A payment provider's charge listing per ledger (GET /v1/charges, one page); their URLs."""
    from aiohttp import web

    runners, urls = [], []
    try:
        for charges in ledgers:
            app = web.Application()

            async def listing(_request: web.Request, charges: list[dict[str, Any]] = charges) -> web.Response:
                return web.json_response({"data": charges, "has_more": False})

            app.router.add_get("/v1/charges", listing)
            runner = web.AppRunner(app)
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            urls.append(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]
        yield urls
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_a_checkout_in_flight_when_the_check_reads_gets_time_to_be_placed(db: str) -> None:
    """The load still runs while the check reads: a charge whose order is placed a moment later is no charge
    without an order; one whose order is never placed is, once the wait is over."""
    import asyncio
    import time

    from sockdrill.scenarios.integrity_setup import _charges_matched

    since = time.time()
    order = int(since).to_bytes(4, "big").hex() + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(
            "INSERT INTO customer_orders (id, customer_id, status, shipment_id, total, created_at, doc) "
            "VALUES ($1, 'frank', 'paid', $2, 4.0, now(), $3)", order, "s-" + order, order_doc(order, "frank", [], 4.0))
        ledger = [{"id": "ch_in_flight", "status": "authorised", "reference": order, "amount": 4.0,
                   "created": since + 0.1}]
        async with _ledgers(ledger) as urls:
            t0 = time.monotonic()
            never = await _charges_matched(urls[0], db, since, in_flight_s=1.5)
            assert never.ok is False and [v["charge"] for v in never.violations] == ["ch_in_flight"]
            assert time.monotonic() - t0 >= 1.0

            async def ship_later() -> None:
                await asyncio.sleep(1.5)
                await conn.execute("UPDATE customer_orders SET status = 'shipped' WHERE id = $1", order)

            shipping = asyncio.ensure_future(ship_later())
            placed = await _charges_matched(urls[0], db, since, in_flight_s=20)
            await shipping
            assert placed.ok is True, placed.violations
    finally:
        await conn.execute("DELETE FROM customer_orders WHERE id = $1", order)
        await conn.close()
