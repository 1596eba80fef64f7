"""The payment gateway inside the whole shop (the shared ``shop`` fixture): a real checkout through the
front-end charges the gateway exactly once, under the order's reference."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import asyncpg

from sockdrill.shop.journey import run_journey
from sockdrill.shop.manifest import shop_deployments
from tests.conftest import Shop


def gateway_charges(shop: Shop, reference: str) -> list[dict[str, Any]]:
    url = f"{shop.addresses['payment-gateway']}/v1/charges?reference={reference}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return list(json.loads(resp.read())["data"])


async def order_row(shop: Shop, order_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(shop.addresses["orders-db"])
    try:
        return await conn.fetchrow("SELECT id, status, idempotency_key, total FROM customer_orders WHERE id = $1",
                                   order_id)
    finally:
        await conn.close()


def test_manifest_wires_payment_to_the_gateway() -> None:
    specs = {s.name: s for s in shop_deployments()}
    assert specs["payment-gateway"].role == "third-party payment processor"
    assert "payment-gateway" in specs["payment"].calls


def test_checkout_charges_the_gateway_once(shop: Shop) -> None:
    result = asyncio.run(run_journey(shop.url))
    assert result.ok, [s for s in result.steps if not s.ok]
    order = result.order
    assert order is not None
    row = asyncio.run(order_row(shop, order["id"]))
    assert row is not None and row["status"] not in ("created",)
    # Orders sends its Idempotency-Key (the client's, else the order id) as the charge's reference.
    reference = row["idempotency_key"] or order["id"]
    made = gateway_charges(shop, reference)
    assert len(made) == 1, made
    assert made[0]["status"] == "authorised"
    assert abs(made[0]["amount"] - order["total"]) < 0.01
