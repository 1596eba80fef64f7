"""Reconcile payments: void gateway charges that no order stands behind (scenario 2's clean-up).

A charge is an orphan when it is still ``authorised``, older than ``older_than_s`` (so checkouts in
flight are left alone) and its ``reference`` names no order that got its money's worth. Payment sends
the Idempotency-Key orders gave it as the reference: the client's key when the checkout had one,
else the order id; so a reference matches ``customer_orders.id`` or ``customer_orders.idempotency_key``.
Orders that were placed (``shipped`` or ``delivered``) keep their charge. ``created`` rows (abandoned
before payment answered), missing rows and ``paid`` rows older than the threshold do not: a ``paid`` row
is a checkout that failed after the money was taken (shipping refused it) and that the customer was
told had failed; nothing resumes it, so it is the seed's "order failed but payment processed".

    result = await reconcile_payments(gateway_url, orders_db_url, older_than_s=30, dry_run=True)
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import asyncpg

from sockdrill.errors import ShopError

# Order states in which the customer got (or will get) what the charge paid for.
PAID_STATUSES = ("shipped", "delivered")
PAGE = 500


async def _charges(session: aiohttp.ClientSession, gateway_url: str, created_before: float) -> list[dict[str, Any]]:
    """Every authorised charge created before ``created_before``, following the ledger's pages."""
    out: list[dict[str, Any]] = []
    params: dict[str, str] = {"status": "authorised", "limit": str(PAGE), "created_before": repr(created_before)}
    while True:
        async with session.get(f"{gateway_url}/v1/charges", params=params) as resp:
            if resp.status != 200:
                raise ShopError(f"payment-gateway answered {resp.status} listing charges: {await resp.text()}")
            page = await resp.json()
        data = page.get("data") or []
        out.extend(data)
        if not page.get("has_more") or not data:
            return out
        params["starting_after"] = data[-1]["id"]


async def _paid_references(orders_db_url: str, refs: list[str]) -> set[str]:
    conn = await asyncpg.connect(orders_db_url, timeout=10)
    try:
        if await conn.fetchval("SELECT to_regclass('customer_orders')") is None:
            # Refuse rather than treat every charge as an orphan when pointed at the wrong database.
            raise ShopError(f"{orders_db_url} has no customer_orders table: is it orders-db?")
        rows = await conn.fetch(
            "SELECT id, idempotency_key FROM customer_orders "
            "WHERE (id = ANY($1::text[]) OR idempotency_key = ANY($1::text[])) AND status = ANY($2::text[])",
            refs, list(PAID_STATUSES))
    finally:
        await conn.close()
    found: set[str] = set()
    for r in rows:
        found.add(r["id"])
        if r["idempotency_key"]:
            found.add(r["idempotency_key"])
    return found


async def reconcile_payments(gateway_url: str, orders_db_url: str, older_than_s: float = 30,
                             dry_run: bool = False) -> dict[str, Any]:
    """Void (unless ``dry_run``) authorised charges older than ``older_than_s`` without a paid order.

    Returns ``{checked, matched, orphaned, voided, failed, orphan_ids, voided_ids, failed_ids,
    orphans: [{id, reference, amount, created}], dry_run, older_than_s}``.
    """
    if older_than_s < 0:
        raise ShopError(f"older_than_s must be >= 0, got {older_than_s}")
    gateway_url = gateway_url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        charges = await _charges(session, gateway_url, time.time() - older_than_s)
        refs = sorted({c["reference"] for c in charges if c.get("reference")})
        paid = await _paid_references(orders_db_url, refs) if refs else set()
        orphans = [c for c in charges if c.get("reference") not in paid]
        voided: list[str] = []
        failed: list[dict[str, Any]] = []
        if not dry_run:
            for charge in orphans:
                async with session.post(f"{gateway_url}/v1/charges/{charge['id']}/void") as resp:
                    if resp.status == 200:
                        voided.append(charge["id"])
                    else:
                        failed.append({"id": charge["id"], "status": resp.status, "error": await resp.text()})
    return {
        "checked": len(charges),
        "matched": len(charges) - len(orphans),
        "orphaned": len(orphans),
        "voided": len(voided),
        "failed": len(failed),
        "orphan_ids": [c["id"] for c in orphans],
        "voided_ids": voided,
        "failed_ids": [f["id"] for f in failed],
        "failures": failed,
        "orphans": [{"id": c["id"], "reference": c.get("reference"), "amount": c.get("amount"),
                     "created": c.get("created")} for c in orphans],
        "dry_run": dry_run,
        "older_than_s": older_than_s,
    }
