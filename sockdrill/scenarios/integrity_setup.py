"""The runner's own shoppers (sentinels) and the data-integrity checks run at the end of a run.

Sentinels are generated users the load never logs in as; each fills a cart before the fault and nobody
touches it afterwards, so any item missing at the end was lost by the shop. Orders and charges are
checked in the databases and in the payment gateway's ledger.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp

from sockdrill.cluster.client import RuntimeClient
from sockdrill.evaluate.journal import IntegrityCheck
from sockdrill.shop.data.generate import credentials

SENTINELS = 2
CART = {"3395a43e-2d88-40de-b95f-e00e1502085b": 2, "a0a4f044-b040-410d-8ead-4de0446aec7e": 1}


async def _fill_cart(url: str, username: str, password: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=15)) as s:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        async with s.get(f"{url}/login", headers={"Authorization": f"Basic {token}"}) as r:
            if r.status != 200:
                raise RuntimeError(f"sentinel {username} cannot log in: {r.status}")
        async with s.get(f"{url}/customers/me") as r:
            customer = json.loads(await r.text())
        async with s.delete(f"{url}/cart") as r:
            pass
        for item, qty in CART.items():
            async with s.post(f"{url}/cart", json={"id": item}) as r:
                if r.status != 201:
                    raise RuntimeError(f"sentinel cart add failed: {r.status}")
            if qty > 1:
                async with s.post(f"{url}/cart/update", json={"id": item, "quantity": qty}) as r:
                    pass
        return {"customer_id": customer["id"], "items": dict(CART)}


def prepare_sentinels(client: RuntimeClient, users_total: int) -> list[dict[str, Any]]:
    """Fill the carts of the last generated users (the load never logs in as them)."""
    url = client.record["front_end_url"]

    async def go() -> list[dict[str, Any]]:
        out = []
        for k in range(SENTINELS):
            username, password = credentials(users_total - 1 - k, 1)
            out.append(await _fill_cart(url, username, password))
        return out

    try:
        return asyncio.run(go())
    except (RuntimeError, aiohttp.ClientError, TimeoutError, KeyError, ValueError):
        return []


def _reference_time(ref: object) -> int | None:
    """When an order reference was made, from its ObjectId layout (seconds first); None for another format."""
    if isinstance(ref, str) and len(ref) == 24:
        try:
            return int(ref[:8], 16)
        except ValueError:
            return None
    return None


# A checkout the check meets half-way (charged, its order not yet placed) is given this long to be placed before
# its charge counts as one without an order: measured, a fresh-clone suite counted 5 charges of orders still in
# flight when the check read orders-db (all shipped a moment later), against an oracle that had fixed the fault.
IN_FLIGHT_S = 10.0


async def _charges_matched(gateway: str | list[str], orders_db: str, since: float,
                           in_flight_s: float = IN_FLIGHT_S) -> IntegrityCheck:
    """Every authorised, unvoided charge of this run in the gateway's ledger matches exactly one placed order.

    A charge is this run's when it was created since ``since`` and for an order this run began: measured, a
    previous run's payments, queued behind a slow fraud screen, were still charging seconds into the next run,
    whose check then counted that run's abandoned orders against an agent that had done nothing. ``gateway``: a
    ledger's URL, or several (each payment provider keeps its own). A charge whose order is not placed yet is given
    ``in_flight_s`` to be placed (the load still runs while the check reads)."""
    charges: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
            for url in [gateway] if isinstance(gateway, str) else gateway:
                charges.extend(await _ledger_since(s, url, since))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return IntegrityCheck(name="charges_matched", ok=False, detail=f"payment ledger unreadable: {exc}")
    return await _match_charges(charges, orders_db, since, in_flight_s)


async def _ledger_since(s: aiohttp.ClientSession, gateway: str, since: float) -> list[dict[str, Any]]:
    """A ledger's authorised charges created since ``since``."""
    charges: list[dict[str, Any]] = []
    params = {"limit": "1000", "status": "authorised"}
    while True:  # the ledger pages newest first
        async with s.get(f"{gateway}/v1/charges", params=params) as r:
            body = await r.json(content_type=None)
        if r.status != 200 or not isinstance(body, dict):
            raise ValueError(f"ledger answered {r.status}: {str(body)[:200]}")
        page = body.get("data", [])
        charges.extend(c for c in page if float(c.get("created") or 0) >= since)
        # Newest first: once a page reaches back before the run, the rest is older still.
        if not body.get("has_more") or not page or float(page[-1].get("created") or 0) < since:
            break
        params["starting_after"] = body["data"][-1]["id"]
    return charges



async def _placed(orders_db: str, refs: list[str] | None = None) -> dict[str | None, int]:
    """How many placed (shipped or delivered) orders each order id or idempotency key names."""
    import asyncpg

    conn = await asyncpg.connect(orders_db, timeout=10)
    try:
        sql = "SELECT id, idempotency_key, status FROM customer_orders"
        rows = await (conn.fetch(sql) if refs is None else
                      conn.fetch(sql + " WHERE id = ANY($1::text[]) OR idempotency_key = ANY($1::text[])", refs))
    finally:
        await conn.close()
    placed: dict[str | None, int] = {}
    for row in rows:
        if row["status"] in ("shipped", "delivered"):
            for key in {row["id"], row["idempotency_key"]} - {None}:
                placed[key] = placed.get(key, 0) + 1
    return placed


async def _match_charges(charges: list[dict[str, Any]], orders_db: str, since: float,
                         in_flight_s: float = IN_FLIGHT_S) -> IntegrityCheck:
    import asyncio
    import time

    placed = await _placed(orders_db)
    begun = int(since) - 1  # an ObjectId keeps whole seconds
    authorised = [c for c in charges if c.get("status") == "authorised"
                  and (_reference_time(c.get("reference")) or begun) >= begun]

    def unmatched() -> list[dict[str, Any]]:
        return [c for c in authorised if placed.get(c.get("reference") or c.get("idempotency_key"), 0) != 1]

    waiting = unmatched()
    deadline = time.monotonic() + in_flight_s
    # Orders not placed yet may be in flight: only they are read again, until placed or the time is up (an order
    # placed twice cannot become right by waiting).
    while any(placed.get(c.get("reference") or c.get("idempotency_key"), 0) == 0 for c in waiting) \
            and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        refs = [str(c.get("reference") or c.get("idempotency_key")) for c in waiting]
        placed.update({r: 0 for r in refs})
        placed.update(await _placed(orders_db, refs))
        waiting = unmatched()
    violations = [{"charge": c.get("id"), "reference": c.get("reference") or c.get("idempotency_key"),
                   "amount": c.get("amount"), "orders": placed.get(c.get("reference") or c.get("idempotency_key"), 0)}
                  for c in waiting]
    detail = (f"{len(authorised)} authorised charges, {len(violations)} without exactly one placed order")
    return IntegrityCheck(name="charges_matched", ok=not violations, detail=detail, violations=violations[:50])


def queue_published(client: RuntimeClient) -> int | None:
    """Messages the shipping queue has accepted so far (its own counter); None when it is not our Redis."""
    import redis

    from sockdrill.shop.queue import queue_name

    url = client.record.get("addresses", {}).get("queue", "")
    if not str(url).startswith("redis"):
        return None
    try:
        r = redis.Redis.from_url(url, socket_timeout=5)
        return int(r.hget(f"{queue_name()}:stats", "published") or 0)
    except (redis.RedisError, OSError, ValueError):
        return None


async def _shipments_queued(orders_db: str, since: float, published_before: int,
                            read_published: Any) -> IntegrityCheck:
    """Every order this run shipped was really handed to the queue: a shipping service that answers 201
    while dropping the message (publisher confirms off) loses the customer's parcel silently."""
    import asyncpg

    conn = await asyncpg.connect(orders_db, timeout=10)
    try:
        shipped = int(await conn.fetchval(
            "SELECT count(*) FROM customer_orders WHERE status IN ('shipped', 'delivered') "
            "AND created_at >= to_timestamp($1)", since) or 0)
    finally:
        await conn.close()
    # Read after the count: every order counted was published (or dropped) before it was marked shipped.
    now = read_published()
    if now is None:
        return IntegrityCheck(name="shipments_queued", ok=None, detail="the queue's counter is unreadable")
    published = now - published_before
    missing = max(0, shipped - published)
    detail = f"{shipped} orders shipped, {published} shipments queued"
    return IntegrityCheck(name="shipments_queued", ok=missing == 0,
                          detail=detail + (f": {missing} shipments lost" if missing else ""),
                          violations=[{"shipped": shipped, "queued": published}] if missing else [])


# What customers themselves saw go missing: the steps of the load's journeys that check data they were told
# was kept (scenario 3's returning shopper, scenario 9's two devices). A failure of one of them is data lost
# to that customer, whatever the stores say.
CUSTOMER_CHECKS = {
    "carts_kept_between_visits": ("cart items a returning shopper had left", ("return-visit:kept",
                                                                              "return-visit:merged")),
    "profile_changes_kept": ("profile changes a customer was told were saved", ("profile-edit:verify",
                                                                                "profile-edit:verify-other")),
    "order_views_agreed": ("order views a customer compared", ("order-status:consistent",)),
    "quotes_correct": ("delivery quotes a customer was shown", ("shipping-quote:correct",)),
}


def customers_saw(records: list[dict[str, Any]], since: float,
                  handed_back: float | None = None) -> list[IntegrityCheck]:
    """One check per journey above that ran (from the load's per-second records since ``since``).

    Losses while the fault runs are the incident itself (the symptom, scored as failed requests and time to
    mitigate): no agent can undo what customers lost before it was paged. What the agent answers for is what
    customers still lose once it has handed the incident back, so only checks of data entrusted to the shop
    from ``handed_back`` on decide ``ok``. A check the load dated by when its data was left (a returning
    shopper's cart, the record's ``left``) is judged by that date, however late the shopper came back;
    any other by when it was made. The detail gives both counts."""
    out = []
    for name, (what, steps) in CUSTOMER_CHECKS.items():
        count = failures = late_count = late_failures = 0
        for rec in records:
            at = float(rec.get("time", 0))
            for step in steps:
                dated = (rec.get("left") or {}).get(step)
                if dated is not None:
                    cells = [(float(left), int(n), int(f)) for left, (n, f) in dated.items()]
                else:
                    window = rec.get("steps", {}).get(step) or {}
                    cells = [(at, int(window.get("count", 0)), int(window.get("failures", 0)))]
                for when, n, f in cells:
                    if at < since or when < since - 1:  # (dated by whole seconds)
                        continue
                    count += n
                    failures += f
                    if handed_back is None or when >= handed_back:
                        late_count += n
                        late_failures += f
        if count == 0:
            continue
        detail = f"{count} checks of {what}" + (f": {failures} found data missing" if failures else ", all kept")
        if handed_back is not None:
            detail += (f"; of data left after the hand-back {late_count} checks" +
                       (f", {late_failures} found it missing" if late_failures else ", all kept"))
        ok = late_failures == 0 if late_count else (None if handed_back is not None else failures == 0)
        out.append(IntegrityCheck(
            name=name, ok=ok, detail=detail,
            violations=[{"kind": "seen_missing", "checks": late_count, "failed": late_failures}] if late_failures
            else []))
    return out


async def _orders_match_warehouse(orders_db: str, queue_url: str | None, since: float,
                                  in_flight_s: float = IN_FLIGHT_S) -> IntegrityCheck:
    """Scenario 8's end state: every order this run placed tells the warehouse's story. An order whose parcel the
    warehouse handed over (its tracking record on the queue store) is ``delivered`` once the status event had
    ``in_flight_s`` to arrive (one handed over just before the check is given that long), and no order is
    ``delivered`` without such a record: orders stuck or contradictory at the end."""
    import time

    import asyncpg
    import redis.asyncio as aioredis

    from sockdrill.shop import order_events

    name = "order_status_consistent"
    if not queue_url or not queue_url.startswith("redis"):
        return IntegrityCheck(name=name, ok=None, detail="not applicable: the queue is not Redis (no tracking)")

    async def statuses(ids: list[str] | None = None) -> dict[str, tuple[str, str]]:
        conn = await asyncpg.connect(orders_db, timeout=10)
        try:
            if ids is None:
                rows = await conn.fetch("SELECT id, status, shipment_id FROM customer_orders WHERE status IN "
                                        "('shipped', 'delivered') AND created_at >= to_timestamp($1)", since)
            else:
                rows = await conn.fetch("SELECT id, status, shipment_id FROM customer_orders WHERE id = ANY($1)",
                                        ids)
        finally:
            await conn.close()
        return {r["id"]: (r["status"], r["shipment_id"]) for r in rows}

    orders = await statuses()
    if not orders:
        return IntegrityCheck(name=name, ok=None, detail="not applicable: no orders placed")
    r = aioredis.Redis.from_url(queue_url, socket_timeout=10)
    try:
        async with r.pipeline(transaction=False) as pipe:
            for _status, shipment in orders.values():
                pipe.hgetall(order_events.tracking_key(shipment))
            records = await pipe.execute()
    finally:
        await r.aclose()
    now = time.time()
    handed: dict[str, float] = {}
    for oid, rec in zip(orders, records, strict=True):
        fields = {order_events.decode(k): order_events.decode(v) for k, v in (rec or {}).items()}
        if fields.get("status") == "delivered":
            try:
                handed[oid] = float(fields.get("at", "0"))
            except ValueError:
                handed[oid] = 0.0
    late = [oid for oid, at in handed.items() if orders[oid][0] != "delivered" and at > now - in_flight_s]
    if late:  # handed over a moment ago: their events get the time they are allowed, then are read again
        await asyncio.sleep(max(0.0, max(handed[o] for o in late) + in_flight_s - time.time()))
        orders.update(await statuses(late))
    violations: list[dict[str, Any]] = []
    for oid, (status, shipment) in sorted(orders.items()):
        if oid in handed and status != "delivered":
            violations.append({"kind": "delivery_not_applied", "order_id": oid, "shipment_id": shipment,
                               "status": status, "delivered_s_ago": round(now - handed[oid], 1)})
        elif oid not in handed and status == "delivered":
            violations.append({"kind": "delivered_without_handover", "order_id": oid, "shipment_id": shipment})
    delivered = sum(1 for oid in orders if oid in handed)
    detail = f"{len(orders)} orders placed, {delivered} handed over by the warehouse"
    if violations:
        detail += f": {len(violations)} orders whose status contradicts the warehouse's"
    return IntegrityCheck(name=name, ok=not violations, detail=detail, violations=violations[:50])


def run_integrity(client: RuntimeClient, sentinels: list[dict[str, Any]], since: float,
                  published_before: int | None = None) -> list[IntegrityCheck]:
    from sockdrill.evaluate.integrity import CartExpectation, check_carts, check_orders

    addr = client.record["addresses"]
    # Every payment provider that runs keeps a ledger (the secondary one where a scenario woke it).
    running = client.running()
    ledgers = [addr[n] for n in ("payment-gateway", "payment-gateway-b") if n in addr and n in running]

    async def go() -> list[IntegrityCheck]:
        out = []
        if sentinels:
            out.append(await check_carts(addr["carts-db"], [CartExpectation(**s) for s in sentinels],
                                         addr.get("carts-cache")))
        out.append(await check_orders(addr["orders-db"], []))
        if ledgers:
            out.append(await _charges_matched(ledgers, addr["orders-db"], since))
        else:
            out.append(IntegrityCheck(name="charges_matched", ok=None, detail="no payment ledger in this shop"))
        if published_before is not None:
            out.append(await _shipments_queued(addr["orders-db"], since, published_before,
                                               lambda: queue_published(client)))
        try:
            out.append(await _orders_match_warehouse(addr["orders-db"], addr.get("queue"), since))
        except Exception as exc:  # a check that cannot run is reported, not raised
            out.append(IntegrityCheck(name="order_status_consistent", ok=None, detail=f"unreadable: {exc}"))
        return out

    return asyncio.run(go())
