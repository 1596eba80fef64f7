"""Mesh routes on the runtime, with the manifest's own catalogue and its previous release (catalogue-v1, which keeps
answers in memory for ten minutes): reads split by the route's weights, a route changed by an agent's tool and
rolled back, a mesh.route fault reverted exactly, and a reset back to the manifest's route with v1 asleep."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
import requests

from sockdrill.agents.tools import ToolContext, Tools
from sockdrill.cluster.client import RuntimeClient
from sockdrill.scenarios.reset import reset_deployments
from sockdrill.scenarios.schema import Setup
from tests.conftest import manifest_part, running_shop, wait_for

HOLY = "03fef6ac-1896-4ce8-bd69-b798f85c6e0b"
WANTED = {"catalogue-db", "queue", "catalogue", "catalogue-v1"}


@pytest.fixture(scope="module")
def routed_shop() -> Iterator[RuntimeClient]:
    with running_shop(manifest_part(WANTED), "sockdrill-routes-") as rc:
        yield rc


def _prices(rc: RuntimeClient, n: int) -> list[float]:
    url = rc.record["addresses"]["catalogue"].rstrip("/")
    with requests.Session() as s:  # one keep-alive connection: a routed destination is balanced per request
        return [float(s.get(f"{url}/catalogue/{HOLY}", timeout=10).json()["price"]) for _ in range(n)]


def _set_price(rc: RuntimeClient, price: float) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(rc.record["addresses"]["catalogue-db"], timeout=10)
        try:
            await conn.execute("UPDATE sock SET price = $1 WHERE sock_id = $2", price, HOLY)
        finally:
            await conn.close()

    asyncio.run(go())


def test_a_route_splits_reads_between_releases_and_comes_back(routed_shop: RuntimeClient) -> None:
    rc = routed_shop
    tools = Tools(ToolContext(data_dir=rc.data_dir, max_steps=50))
    route = tools.call("describe", service="catalogue")["result"]["route"]
    assert route["subsets"]["primary"]["weight"] == 100 and route["subsets"]["v1"]["weight"] == 0
    assert route["subsets"]["v1"]["ready"] == 0 and route["revision"] == 0
    done, _ = reset_deployments(rc, Setup(replicas={"catalogue-v1": 1}))
    assert done["scaled"] == {"catalogue-v1": 1}
    assert set(_prices(rc, 4)) == {99.99}
    changed = tools.call("set_route", service="catalogue", weights={"primary": 50, "v1": 50})
    assert changed["ok"] and changed["result"]["changed"], changed
    _prices(rc, 4)  # both releases answer, and v1 keeps what it answered
    _set_price(rc, 1.5)
    assert set(_prices(rc, 6)) == {1.5, 99.99}  # the primary reads the database, v1 its ten-minute memory
    metrics = requests.get(rc.record["metrics_url"], timeout=10, headers={
        "Authorization": f"Bearer {rc.record.get('telemetry_token')}"}).text
    assert 'mesh_route_weight{destination="catalogue",subset="v1"} 50.0' in metrics
    back = tools.call("rollback_route", service="catalogue")
    assert back["ok"] and back["result"]["weights"] == {"primary": 100, "v1": 0}, back
    assert set(_prices(rc, 4)) == {1.5}
    for bad, why in (({"primary": 101}, "from 0 to 100"), ({"v2": 10}, "has no subset 'v2'"),
                     ({"primary": 0, "v1": 0}, "at least one subset")):
        res = tools.call("set_route", service="catalogue", weights=bad)
        assert res["ok"] is False and why in res["error"], (bad, res)
    assert "no subsets to route" in tools.call("set_route", service="queue", weights={"a": 1})["error"]
    # A route pushed as a fault: every read to the old release; reverted to exactly the weights before.
    fault = rc.post("/v1/chaos/inject", {"kind": "mesh.route", "target": "catalogue", "duration": "1m",
                                         "params": {"weights": {"primary": 0, "v1": 100}}})
    assert set(_prices(rc, 4)) == {99.99}
    assert rc.get("/v1/describe/catalogue")["route"]["revision"] >= 3
    rc.post("/v1/chaos/clear", {"id": fault["id"]})
    assert rc.get("/v1/describe/catalogue")["route"]["subsets"]["v1"]["weight"] == 0
    assert set(_prices(rc, 4)) == {1.5}
    done, _ = reset_deployments(rc, Setup())
    assert done["scaled"] == {"catalogue-v1": 0}
    route = rc.get("/v1/describe/catalogue")["route"]
    assert route["revision"] == 0 and route["subsets"]["v1"]["weight"] == 0
    wait_for(lambda: rc.get("/v1/describe/catalogue-v1")["pods"] == [], timeout=20)
    _set_price(rc, 99.99)
