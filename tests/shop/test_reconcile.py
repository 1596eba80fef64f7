"""reconcile_payments against a real payment-gateway process and a scratch orders database on this
machine's PostgreSQL, with orders' own schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from servicekit import ServiceProcess, request, require_postgres, scratch_database

from sockdrill.errors import ShopError
from sockdrill.shop import reconcile
from sockdrill.shop.orders import SCHEMA
from sockdrill.shop.reconcile import reconcile_payments

require_postgres()


@pytest.fixture()
def gw() -> Iterator[ServiceProcess]:
    path = tempfile.mkdtemp(prefix="sockdrill-gw-")
    env = {"SOCKDRILL_POD_DIR": path, "SOCKDRILL_KNOBS": json.dumps({"latency_ms": 1, "latency_jitter_ms": 0})}
    try:
        with ServiceProcess("payment-gateway", env) as svc:
            yield svc
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def orders_db() -> Iterator[str]:
    with scratch_database("reconcile") as url:
        asyncio.run(_execute(url, SCHEMA))
        yield url


async def _execute(url: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def add_order(url: str, order_id: str, status: str, key: str | None = None) -> None:
    asyncio.run(_execute(
        url, "INSERT INTO customer_orders (id, customer_id, status, idempotency_key, shipment_id, total, "
        "created_at, doc) VALUES ($1, 'c1', $2, $3, $4, 10.0, $5, '{}')",
        order_id, status, key, str(uuid.uuid4()), dt.datetime.now(dt.UTC)))


def charge(gw: ServiceProcess, reference: str, amount: float = 10.0) -> str:
    # Payment uses the reference as the idempotency key too.
    resp = request("POST", gw.url + "/v1/charges", json_body={"amount": amount, "reference": reference},
                   headers={"Idempotency-Key": reference})
    assert resp.status == 201, resp.body
    return str(resp.json()["id"])


def status_of(gw: ServiceProcess, charge_id: str) -> str:
    return str(request("GET", f"{gw.url}/v1/charges/{charge_id}").json()["status"])


def test_orphans_are_voided_and_placed_orders_keep_their_charge(gw: ServiceProcess, orders_db: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tag = uuid.uuid4().hex[:8]
    shipped, paid, delivered = f"shipped-{tag}", f"paid-{tag}", f"delivered-{tag}"
    add_order(orders_db, shipped, "shipped")
    add_order(orders_db, f"order-of-{paid}", "paid", key=paid)  # charged, then shipping refused it
    add_order(orders_db, delivered, "delivered")
    add_order(orders_db, f"created-{tag}", "created")  # abandoned before payment answered
    kept = {charge(gw, ref) for ref in (shipped, delivered)}
    orphans = {charge(gw, f"gone-{tag}"), charge(gw, f"created-{tag}"), charge(gw, paid)}
    time.sleep(0.3)
    young = charge(gw, f"young-{tag}")  # a checkout that may still be in flight

    monkeypatch.setattr(reconcile, "PAGE", 2)  # follow the ledger's pages
    dry = asyncio.run(reconcile_payments(gw.url, orders_db, older_than_s=0.2, dry_run=True))
    assert set(dry["orphan_ids"]) == orphans and dry["voided"] == 0 and dry["dry_run"] is True
    assert young not in dry["orphan_ids"] and dry["checked"] == 5 and dry["matched"] == 2
    assert all(status_of(gw, c) == "authorised" for c in orphans | kept)

    done = asyncio.run(reconcile_payments(gw.url, orders_db, older_than_s=0.2))
    assert set(done["voided_ids"]) == orphans and done["voided"] == 3 and done["failed"] == 0
    assert {o["reference"] for o in done["orphans"]} == {f"gone-{tag}", f"created-{tag}", paid}
    assert all(status_of(gw, c) == "voided" for c in orphans)
    assert all(status_of(gw, c) == "authorised" for c in kept)
    assert status_of(gw, young) == "authorised"

    again = asyncio.run(reconcile_payments(gw.url, orders_db, older_than_s=0.2))
    assert again["orphaned"] == 0 and again["checked"] == 2 and again["matched"] == 2
    # Older than everything: nothing to look at.
    assert asyncio.run(reconcile_payments(gw.url, orders_db, older_than_s=3600))["checked"] == 0


def test_refuses_a_database_without_orders(gw: ServiceProcess) -> None:
    charge(gw, f"stray-{uuid.uuid4().hex[:8]}")
    with scratch_database("reconcile_empty") as url, pytest.raises(ShopError, match="customer_orders"):
        asyncio.run(reconcile_payments(gw.url, url, older_than_s=0))
    with pytest.raises(ShopError):
        asyncio.run(reconcile_payments(gw.url, "postgresql://unused", older_than_s=-1))
