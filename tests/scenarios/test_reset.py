"""A reset between runs puts a shop back to its manifest (not to "one pod with the service's defaults") and
then applies the variant's set-up, data included: on a small shop of its own, whose manifest runs payment on
two pods with a setting of its own, and whose catalogue starts with the nine socks only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import psutil
import pytest

from sockdrill.cluster.client import RuntimeClient
from sockdrill.cluster.spec import DeploymentSpec
from sockdrill.errors import SockdrillError
from sockdrill.scenarios.reset import reset_deployments, reset_shop
from sockdrill.scenarios.schema import CacheSetting, Setup
from sockdrill.shop.data.generate import generate_products
from tests.conftest import running_shop, wait_for

MANIFEST_KNOBS = {"decline_over": 50.0}


@pytest.fixture(scope="module")
def small_shop() -> Iterator[RuntimeClient]:
    specs = [
        DeploymentSpec(name="catalogue-db", kind="postgres"),
        DeploymentSpec(name="user-db", kind="postgres"),
        DeploymentSpec(name="catalogue", kind="service", module="catalogue", calls=["catalogue-db"]),
        DeploymentSpec(name="user", kind="service", module="user", calls=["user-db"]),
        DeploymentSpec(name="payment", kind="service", module="payment", replicas=2, knobs=dict(MANIFEST_KNOBS)),
        DeploymentSpec(name="carts-cache", kind="redis", maxmemory="64mb"),
    ]
    with running_shop(specs, "sockdrill-reset-") as rc:
        yield rc


def _pod_knobs(rc: RuntimeClient) -> list[dict[str, object]]:
    """What every payment pod runs with, asked of each pod (not of the runtime's memory of it) with the admin
    token the runtime gave the pod (root reads it from the pod's environment, as only root can)."""
    import requests

    from sockdrill.cluster.admin import ADMIN_HEADER, ADMIN_TOKEN_ENV

    out = []
    for pod in rc.get("/v1/describe/payment")["pods"]:
        token = psutil.Process(pod["pid"]).environ()[ADMIN_TOKEN_ENV]
        body = requests.get(f"http://127.0.0.1:{pod['port']}/admin/config", timeout=5,
                         headers={ADMIN_HEADER: token}).json()
        out.append({k: v["value"] for k, v in body["knobs"].items() if k in ("decline_over", "gateway_retries")})
    return out


def test_a_reset_returns_size_and_config_to_the_manifest(small_shop: RuntimeClient) -> None:
    rc = small_shop
    described = rc.get("/v1/describe/payment")
    assert described["default_replicas"] == 2 and described["default_knobs"] == MANIFEST_KNOBS
    # A run changes both: a knob of the manifest, another knob, and the size (down, so the reset must add a pod).
    rc.post("/v1/config", {"deployment": "payment", "knobs": {"decline_over": 10.0, "gateway_retries": 0}})
    rc.post("/v1/scale", {"deployment": "payment", "replicas": 1})
    done, _ = reset_deployments(rc, Setup())
    assert done["scaled"] == {"payment": 2} and done["knobs_reset"] == ["payment"], done
    after = rc.get("/v1/describe/payment")
    assert after["replicas"] == 2 and after["ready_replicas"] == 2 and after["knobs"] == MANIFEST_KNOBS
    # Both pods, the one that lived through the run and the one the reset added, run the manifest's config.
    assert _pod_knobs(rc) == [{"decline_over": 50.0, "gateway_retries": 2}] * 2
    assert rc.get("/v1/config/payment")["revision"] == 0
    # A variant's set-up still decides for its own run.
    done, _ = reset_deployments(rc, Setup(replicas={"payment": 1}))
    assert done["scaled"] == {"payment": 1} and "knobs_reset" not in done, done
    done, _ = reset_deployments(rc, Setup())
    assert done["scaled"] == {"payment": 2}, done


def test_a_reset_grows_the_catalogue_to_the_set_up_s_products(small_shop: RuntimeClient) -> None:
    rc = small_shop
    url = rc.record["addresses"]["catalogue-db"]

    async def ids() -> set[str]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return {r["sock_id"] for r in await conn.fetch("SELECT sock_id FROM sock")}
        finally:
            await conn.close()

    before = asyncio.run(ids())
    assert len(before) == 9  # the manifest loads no generated products
    done = reset_shop(rc, Setup(products=120))
    assert done["products_added"] == 120 and done["users"] >= 2000, done
    # payment's circuit breaker is closed for the run (one a fault opened lives in payment's memory), outside
    # the config history: the run's agent sees no change it did not make.
    assert done["payment_breaker_closed"] is True
    payment = rc.get("/v1/config/payment")
    assert payment["revision"] == 0 and payment["config"]["breaker_enabled"] is True, payment
    # A set-up's knobs are how the shop is deployed for the run, not a change an agent can roll back.
    reset_shop(rc, Setup(products=120, knobs={"payment": {"gateway_retries": 1}}))
    payment = rc.get("/v1/config/payment")
    assert payment["revision"] == 0 and payment["config"]["gateway_retries"] == 1, payment
    with pytest.raises(SockdrillError, match="no earlier config"):
        rc.post("/v1/config/rollback", {"deployment": "payment"})
    reset_shop(rc, Setup(products=120))
    grown = asyncio.run(ids())
    # The generator's first 120 socks, whatever the total: the next run asking for more adds to them.
    assert grown - before == {s.id for s in generate_products(120, 1)}
    assert "products_added" not in reset_shop(rc, Setup(products=100))
    done = reset_shop(rc, Setup(products=150))
    assert done["products_added"] == 30
    assert asyncio.run(ids()) - before == {s.id for s in generate_products(150, 1)}
    # The catalogue serves them: one of the added socks by id, through the service.
    import requests

    sock = next(iter({s.id for s in generate_products(150, 1)}))
    got = wait_for(lambda: (r := requests.get(f"{rc.record['addresses']['catalogue']}/catalogue/{sock}", timeout=5))
                   .status_code == 200 and r.json())
    assert got["id"] == sock


def test_optional_components_sleep_unless_a_set_up_wakes_them_and_keep_their_data() -> None:
    """A dormant store and a dormant service: 0 pods and no series while asleep (a ready shop all the same),
    woken by a set-up, back to sleep at the next reset, and the store's data is still there when it wakes."""
    from sockdrill.cluster.admin import telemetry_headers
    from sockdrill.errors import ClusterError

    specs = [DeploymentSpec(name="mini-db", kind="postgres", optional=True, replicas=0),
             DeploymentSpec(name="payment", kind="service", module="payment", optional=True, replicas=0),
             DeploymentSpec(name="always-db", kind="redis")]
    with running_shop(specs, "sockdrill-dormant-") as rc:
        status = rc.get("/v1/status")
        assert status["ready"] and {d["name"]: len(d["pods"]) for d in status["deployments"]} == {
            "mini-db": 0, "payment": 0, "always-db": 1}

        def store_series() -> str:
            import requests

            text = requests.get(rc.record["metrics_url"], headers=telemetry_headers(rc.record.get("telemetry_token")),
                                timeout=15).text
            return "\n".join(line for line in text.splitlines() if line.startswith(("pg_up", "redis_up")))

        def up(store: str) -> float | None:
            """The store's pg_up/redis_up as the runtime exports it; None: no such series."""
            return next((float(line.rsplit(" ", 1)[1]) for line in store_series().splitlines()
                         if line.startswith(("pg_up{", "redis_up{")) and f'service="{store}"' in line), None)

        assert up("mini-db") is None and up("always-db") == 1.0
        with pytest.raises(ClusterError, match="runs exactly one pod"):
            rc.post("/v1/scale", {"deployment": "always-db", "replicas": 0})
        with pytest.raises(ClusterError, match="runs 0 pods \\(asleep\\) or 1"):
            rc.post("/v1/scale", {"deployment": "mini-db", "replicas": 2})

        done, _ = reset_deployments(rc, Setup(replicas={"mini-db": 1, "payment": 1}))
        assert done["scaled"] == {"mini-db": 1, "payment": 1}, done
        url = rc.record["addresses"]["mini-db"]

        async def sql(query: str) -> object:
            conn = await asyncpg.connect(url, timeout=10)
            try:
                return await conn.fetchval(query)
            finally:
                await conn.close()

        asyncio.run(sql("CREATE TABLE kept (v text)"))
        asyncio.run(sql("INSERT INTO kept VALUES ('still here')"))
        wait_for(lambda: up("mini-db") == 1.0, timeout=20)
        done, _ = reset_deployments(rc, Setup())  # the next run: asleep again
        assert done["scaled"] == {"mini-db": 0, "payment": 0}, done
        assert all(not d["pods"] for d in rc.get("/v1/status")["deployments"] if d["name"] != "always-db")
        wait_for(lambda: up("mini-db") is None, timeout=20)
        reset_deployments(rc, Setup(replicas={"mini-db": 1}))
        assert rc.get("/v1/describe/mini-db")["pods"][0]["name"] == "mini-db-0"
        assert asyncio.run(sql("SELECT v FROM kept")) == "still here"


def test_a_set_up_s_cache_settings_are_deployed_and_a_reset_puts_the_manifest_s_back(small_shop: RuntimeClient) -> None:
    """A set-up's evicting carts-cache is how the store is deployed: its pod restarts with it (a restart is no
    way back to the manifest's safe settings), and the next reset puts the manifest's back, as it does after a
    live resize_cache."""
    import redis

    rc = small_shop
    r = redis.Redis.from_url(rc.record["addresses"]["carts-cache"], decode_responses=True, socket_timeout=5)

    def live() -> tuple[str, str]:
        return r.config_get("maxmemory")["maxmemory"], r.config_get("maxmemory-policy")["maxmemory-policy"]

    evicting = Setup(caches={"carts-cache": CacheSetting(maxmemory="16mb", policy="allkeys-lru")})
    done = reset_shop(rc, evicting)
    assert done["caches_set"] == {"carts-cache": {"maxmemory": "16mb", "maxmemory-policy": "allkeys-lru"}}, done
    assert live() == (str(16 << 20), "allkeys-lru")
    pid = rc.get("/v1/describe/carts-cache")["pods"][0]["pid"]
    rc.post("/v1/restart", {"deployment": "carts-cache"})
    wait_for(lambda: (p := rc.get("/v1/describe/carts-cache")["pods"]) and p[0]["ready"] and p[0]["pid"] != pid,
             timeout=60)
    r = redis.Redis.from_url(rc.record["addresses"]["carts-cache"], decode_responses=True, socket_timeout=5)
    assert live() == (str(16 << 20), "allkeys-lru")
    r.config_set("maxmemory", "0")  # what an agent's resize_cache does: live only
    done = reset_shop(rc, Setup())
    assert done["redis_settings_restored"] == ["carts-cache"] and "caches_set" not in done, done
    assert live() == (str(64 << 20), "noeviction")
    assert reset_shop(rc, Setup()).get("redis_settings_restored") is None
    with pytest.raises(SockdrillError, match="maxmemory 'lots'"):
        rc.post("/v1/cache", {"deployment": "carts-cache", "maxmemory": "lots"})
    with pytest.raises(SockdrillError, match="maxmemory_policy 'evict-all'"):
        rc.post("/v1/cache", {"deployment": "carts-cache", "policy": "evict-all"})
    with pytest.raises(SockdrillError, match="not an embedded Redis"):
        rc.post("/v1/cache", {"deployment": "user-db", "maxmemory": "1mb"})
    assert live() == (str(64 << 20), "noeviction")
