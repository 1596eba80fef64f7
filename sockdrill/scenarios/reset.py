"""Putting a running shop back to a known state between runs, then applying a variant's set-up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sockdrill.cluster.client import RuntimeClient
from sockdrill.errors import ScenarioError, SockdrillError
from sockdrill.scenarios.schema import Setup

MIN_USERS = 2000


def _wait_ready(client: RuntimeClient, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/v1/status")["ready"]:
            return
        time.sleep(0.2)
    raise ScenarioError(f"the shop was not ready again within {timeout:.0f}s after the reset")


async def _lift_role_limits(urls: dict[str, str]) -> dict[str, list[str]]:
    """An agent's ``limit_db_role`` does not outlive its run: every login role may connect again."""
    import asyncpg

    lifted: dict[str, list[str]] = {}
    for name, url in urls.items():
        conn = await asyncpg.connect(url, timeout=10)
        try:
            roles = [r["rolname"] for r in await conn.fetch(
                "SELECT rolname FROM pg_roles WHERE rolconnlimit <> -1 AND NOT rolsuper AND NOT rolreplication "
                "AND rolname NOT LIKE 'pg\\_%'")]
            for role in roles:
                await conn.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
        finally:
            await conn.close()
        if roles:
            lifted[name] = roles
    return lifted


# Deletes a cached cart only if it has no change waiting to be written back (atomic: a write racing it sees
# its WATCH fail and reads the cart again from carts-db, where the clean copy is).
_DROP_CLEAN = """
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
return redis.call('UNLINK', KEYS[1])
"""


def _close_payment_breaker(client: RuntimeClient) -> bool:
    """Close payment's circuit breaker: one a previous run's fault opened lives in payment's memory, through a
    config reset (measured: a breaker left open failed every checkout of the next run's warm-up). Turning it off
    closes it and forgets its failures; then it is set back as configured, outside the config history."""
    enabled = client.get("/v1/config/payment").get("config", {}).get("breaker_enabled", True)
    for value in (False, bool(enabled)):
        client.post("/v1/config", {"deployment": "payment", "knobs": {"breaker_enabled": value}, "record": False})
    return True


def _cool_carts_cache(url: str) -> int:
    """Every run starts with a cold carts-cache: a reused shop otherwise holds every earlier run's carts, so its
    hit ratio and memory (what an agent reads, what a memory fault acts on) depended on how many runs came
    before. Carts with changes not yet written back stay; the rest go: customers' carts (in carts-db) and
    the previous run's guests' baskets (in the cache only: their shoppers do not come back in this run)."""
    import redis

    from sockdrill.shop.carts_cache import DIRTY

    r = redis.Redis.from_url(url, socket_timeout=10, decode_responses=True)
    dropped = 0
    try:
        drop = r.register_script(_DROP_CLEAN)
        for key in r.scan_iter(match="cart:*", count=500):
            dropped += int(drop(keys=[key, DIRTY], args=[key.removeprefix("cart:")]) or 0)
    finally:
        r.close()
    return dropped


def _empty_rates_cache(url: str) -> int:
    """Every run starts with no carrier rates cached: an hour-long entry priced under a tariff a previous run's
    fault published would otherwise be quoted in the next run."""
    import redis

    r = redis.Redis.from_url(url, socket_timeout=10)
    try:
        keys = int(r.dbsize())
        r.flushdb()
    finally:
        r.close()
    return keys


def reset_deployments(client: RuntimeClient, setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
    """Faults and toxics cleared; every deployment back to its manifest (size, config, balancing, limits) unless
    the set-up says otherwise; then ready. Returns what was done and the status read before."""
    done: dict[str, Any] = {}
    client.post("/v1/chaos/clear", {})
    client.post("/v1/toxics/reset", {})
    status = client.get("/v1/status")
    for dep in status["deployments"]:
        name = dep["name"]
        if dep["external"]:
            continue
        if dep["kind"] == "service":
            # Config first, so pods the scaling adds start with the manifest's config and not the last run's.
            # Always: a run's config history (revisions) must not show in the next run.
            client.post("/v1/config/reset", {"deployment": name})
            if dep["knobs"] != dep.get("default_knobs", {}):
                done.setdefault("knobs_reset", []).append(name)
            client.post("/v1/balancing", {"deployment": name, "policy": setup.balancing.get(name, "connection")})
            if "route" in dep:  # the manifest's weights, its route history cleared; then the set-up's, unrecorded
                client.post("/v1/route/reset", {"deployment": name})
                if name in setup.routes:
                    client.post("/v1/route", {"deployment": name, "weights": setup.routes[name], "record": False})
            # The manifest's size, not 1: a shop started with --replicas keeps it from run to run.
            want = setup.replicas.get(name, dep.get("default_replicas", 1))
            if dep["replicas"] != want:
                client.post("/v1/scale", {"deployment": name, "replicas": want})
                done.setdefault("scaled", {})[name] = want
        elif dep.get("optional"):  # an optional datastore sleeps unless the set-up wakes it; its data stays
            want = setup.replicas.get(name, dep.get("default_replicas", 0))
            if dep["replicas"] != want:
                client.post("/v1/scale", {"deployment": name, "replicas": want})
                done.setdefault("scaled", {})[name] = want
        if dep["limits"] != dep.get("default_limits", dep["limits"]) and name not in setup.limits:
            try:
                client.post("/v1/limits", {"deployment": name, "clear": True})
            except SockdrillError:
                pass
            done.setdefault("limits_cleared", []).append(name)
    _wait_ready(client)
    return done, status


def reset_shop(client: RuntimeClient, setup: Setup) -> dict[str, Any]:
    done, _ = reset_deployments(client, setup)
    # The stores as they are now: an optional one asleep has nobody to ask, one just woken kept its data.
    status = client.get("/v1/status")
    awake = [d for d in status["deployments"] if d["replicas"] > 0 or d["external"]]
    # A read replica has its primary's roles (and refuses writes): lifting them on the primary lifts them there.
    pg = [d["name"] for d in awake if d["kind"] == "postgres" and not d["external"] and not d.get("replica_of")]
    lifted = asyncio.run(_lift_role_limits({n: client.record["addresses"][n] for n in pg}))
    if lifted:
        done["role_limits_lifted"] = lifted
    # Each embedded Redis as deployed: the manifest's memory limit and policy (a resize_cache or a memory fault
    # does not outlive its run), or the set-up's, which its pods also restart with.
    for name in (d["name"] for d in awake if d.get("start_settings")):
        want = setup.caches.get(name)
        out = client.post("/v1/cache", {"deployment": name, "reset": True,
                                        **({"maxmemory": want.maxmemory} if want and want.maxmemory else {}),
                                        **({"policy": want.policy} if want and want.policy else {})})
        if out["changed"]:
            done.setdefault("redis_settings_restored", []).append(name)
        if want is not None:
            done.setdefault("caches_set", {})[name] = out["settings"]
    if "carts-cache" in client.record["addresses"]:
        done["carts_cache_cooled"] = _cool_carts_cache(client.record["addresses"]["carts-cache"])
    if any(d["name"] == "rates-cache" for d in awake):
        done["rates_cache_emptied"] = _empty_rates_cache(client.record["addresses"]["rates-cache"])
    for name, lim in setup.limits.items():
        client.post("/v1/limits", {"deployment": name, "cpu": lim.get("cpu"), "memory": lim.get("memory"),
                                   "clear": True})
    if any(d["name"] == "payment" and d["replicas"] > 0 for d in awake):
        done["payment_breaker_closed"] = _close_payment_breaker(client)
    # The set-up's knobs are how this shop is deployed, not a change in the run's history: recorded, a blind
    # rollback_config undid them (measured: the baseline "fixed" payment-timeout/pool-exhaustion by rolling
    # back the set-up's two-connection pool, which is the weakness the variant plants, not its incident).
    for name, knobs in setup.knobs.items():
        client.post("/v1/config", {"deployment": name, "knobs": knobs, "record": False})
    from sockdrill.shop.user import ensure_generated_users, generated_user_count

    url = client.record["addresses"]["user-db"]
    # Simulated shoppers log in as generated users: every run needs at least the base population.
    added = asyncio.run(ensure_generated_users(url, max(setup.users, MIN_USERS)))
    if added:
        done["users_added"] = added
    done["users"] = asyncio.run(generated_user_count(url))
    if setup.products and "catalogue-db" in client.record["addresses"]:
        from sockdrill.shop.catalogue import ensure_generated_products

        # At least what the set-up asks for (a search over 10,000 socks); a shop never shrinks between runs.
        grown = asyncio.run(ensure_generated_products(client.record["addresses"]["catalogue-db"], setup.products))
        if grown:
            done["products_added"] = grown
    # A search that is awake indexes every product before the run (generated ones reach it no other way); an
    # index that already holds them all is kept (a rebuild of 50,000 products takes seconds).
    if any(d["name"] == "search" and d["replicas"] > 0 for d in awake):
        done["search_documents"] = client.post("/v1/reindex", {"deployment": "search", "if_stale": True})["documents"]
    return done
