"""The edge cache (shop/edge.py) as a real process in front of a fake origin that counts its calls, with the
region's purge stream on this machine's Redis: hits, misses and expiry with Age and X-Cache-Status; no cookie
ever cached; pages and writes passed through with every cookie; TTLs read when an object is read; concurrent
misses coalesced; purges by the admin API and by the stream, in order, a poison message holding the ones
behind it until it is dead-lettered; the origin down is a 502 while /health stays OK."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests
from aiohttp import web

from tests.conftest import wait_for
from tests.shop.servicekit import ServiceProcess, machine_redis

REDIS_URL = "redis://127.0.0.1:6379/13"  # a dedicated db of this machine's Redis, flushed around the tests
REGION = "test"
STREAM = f"cdn-purge.{REGION}"
ADMIN = "edge-test-admin-token"


class Origin:
    """A front-end stand-in on a free port, in its own thread: what it serves can change under the cache."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.products: dict[str, str] = {"a": "first A", "b": "first B"}
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    def count(self, request: web.Request) -> None:
        self.hits[request.path_qs] = self.hits.get(request.path_qs, 0) + 1

    async def listing(self, request: web.Request) -> web.Response:
        self.count(request)
        if request.query.get("slow"):
            await asyncio.sleep(0.5)
        resp = web.json_response([{"id": k, "description": v} for k, v in sorted(self.products.items())])
        resp.set_cookie("md.sid", "s%3Aanonymous-session")  # what the real front-end does on API calls
        return resp

    async def item(self, request: web.Request) -> web.Response:
        self.count(request)
        pid = request.match_info["id"]
        if pid not in self.products:
            return web.json_response({"error": "Not found", "status_code": 404}, status=404)
        return web.json_response({"id": pid, "description": self.products[pid]})

    async def login(self, request: web.Request) -> web.Response:
        self.count(request)
        resp = web.Response(text="Cookie is set")
        resp.set_cookie("md.sid", "s%3Alogged-in")
        resp.set_cookie("logged_in", "s%3Alogged-in")
        return resp

    async def cart(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.json_response({"cookie": request.headers.get("Cookie", "")})

    def start(self) -> None:
        ready = threading.Event()

        async def boot() -> None:
            app = web.Application()
            app.router.add_get("/catalogue", self.listing)
            app.router.add_get("/catalogue/{id}", self.item)
            app.router.add_post("/login", self.login)
            app.router.add_get("/cart", self.cart)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(boot())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True, name="fake-origin").start()
        assert ready.wait(10), "the fake origin did not start"

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def redis_db() -> Iterator[redis.Redis]:
    with machine_redis(REDIS_URL) as r:
        yield r


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    o = Origin()
    o.start()
    yield o
    o.stop()


@pytest.fixture(scope="module")
def edge(origin: Origin, redis_db: redis.Redis) -> Iterator[ServiceProcess]:
    env = {"SOCKDRILL_URL_FRONT_END": origin.url, "SOCKDRILL_URL_QUEUE": REDIS_URL, "SOCKDRILL_REGION": REGION,
           "SOCKDRILL_ADMIN_TOKEN": ADMIN, "SOCKDRILL_KNOBS": json.dumps({"list_ttl_s": 60, "purge_retry_s": 0.1})}
    with ServiceProcess("edge", env, ready_timeout=30) as proc:
        # The consumer group exists once the pod has read the stream: messages from then on are its own.
        wait_for(lambda: any(g["name"] == f"edge-{REGION}".encode() for g in _groups(redis_db)), timeout=15)
        yield proc


def _groups(r: redis.Redis, stream: str = STREAM) -> list[dict[str, Any]]:
    try:
        return list(r.xinfo_groups(stream))
    except redis.ResponseError:
        return []


def _config(edge: ServiceProcess, **knobs: Any) -> None:
    r = requests.put(f"{edge.url}/admin/config", json=knobs, headers={"X-Sockdrill-Admin": ADMIN}, timeout=5)
    assert r.status_code == 200, r.text


@pytest.fixture(autouse=True)
def clean(edge: ServiceProcess, origin: Origin) -> Iterator[None]:
    requests.post(f"{edge.url}/admin/purge", json={}, headers={"X-Sockdrill-Admin": ADMIN}, timeout=5)
    _config(edge, list_ttl_s=60.0, item_ttl_s=300.0, purge_max_attempts=0)
    origin.hits.clear()
    origin.products.update({"a": "first A", "b": "first B"})
    yield


def test_hit_miss_expiry_with_age_and_no_cookie_cached(edge: ServiceProcess, origin: Origin) -> None:
    first = requests.get(f"{edge.url}/catalogue?size=5&page=1", timeout=5)
    assert first.status_code == 200 and first.headers["X-Cache-Status"] == "MISS"
    assert "Set-Cookie" not in first.headers  # a cacheable answer never carries the origin's session cookie
    time.sleep(1.1)
    # The same query in another order is the same object.
    second = requests.get(f"{edge.url}/catalogue?page=1&size=5", timeout=5)
    assert second.headers["X-Cache-Status"] == "HIT" and int(second.headers["Age"]) >= 1
    assert second.json() == first.json() and "Set-Cookie" not in second.headers
    assert origin.hits == {"/catalogue?size=5&page=1": 1}
    # The TTL is read when the object is: lowering it expires what is already stored.
    _config(edge, list_ttl_s=0.5)
    third = requests.get(f"{edge.url}/catalogue?size=5&page=1", timeout=5)
    assert third.headers["X-Cache-Status"] == "EXPIRED" and third.headers["Age"] == "0"
    assert origin.hits["/catalogue?size=5&page=1"] == 2
    metrics = requests.get(f"{edge.url}/metrics", timeout=5).text
    assert f'edge_cache_requests_total{{kind="list",region="{REGION}",service="edge",status="hit"}} 1.0' in metrics
    assert 'edge_cache_age_seconds_count{kind="list",region="test",service="edge"} 1.0' in metrics


def test_pages_and_writes_pass_through_with_every_cookie(edge: ServiceProcess, origin: Origin) -> None:
    login = requests.post(f"{edge.url}/login", timeout=5)
    assert login.headers["X-Cache-Status"] == "BYPASS"
    assert sorted(c.name for c in login.cookies) == ["logged_in", "md.sid"]  # both Set-Cookie lines
    cart = requests.get(f"{edge.url}/cart", cookies={"md.sid": "mine"}, timeout=5)
    cart2 = requests.get(f"{edge.url}/cart", cookies={"md.sid": "yours"}, timeout=5)
    assert cart.json() == {"cookie": "md.sid=mine"} and cart2.json() == {"cookie": "md.sid=yours"}
    assert origin.hits["/cart"] == 2


def test_errors_are_not_cached_and_concurrent_misses_are_one_origin_call(edge: ServiceProcess,
                                                                          origin: Origin) -> None:
    for _ in range(2):
        assert requests.get(f"{edge.url}/catalogue/nope", timeout=5).status_code == 404
    assert origin.hits["/catalogue/nope"] == 2
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: requests.get(f"{edge.url}/catalogue?slow=1", timeout=10), range(6)))
    assert all(a.status_code == 200 for a in answers)
    assert origin.hits["/catalogue?slow=1"] == 1


def test_the_admin_purge_drops_a_product_s_objects_and_refuses_others(edge: ServiceProcess,
                                                                      origin: Origin) -> None:
    assert requests.get(f"{edge.url}/catalogue/a", timeout=5).json()["description"] == "first A"
    origin.products["a"] = "second A"
    assert requests.get(f"{edge.url}/catalogue/a", timeout=5).json()["description"] == "first A"  # stale, cached
    assert requests.post(f"{edge.url}/admin/purge", json={"keys": ["product:a"]}, timeout=5).status_code == 403
    bad = requests.post(f"{edge.url}/admin/purge", json={"keys": "product:a"}, headers={"X-Sockdrill-Admin": ADMIN},
                        timeout=5)
    assert bad.status_code == 400 and "list of non-empty strings" in bad.text
    done = requests.post(f"{edge.url}/admin/purge", json={"keys": ["product:a"]},
                         headers={"X-Sockdrill-Admin": ADMIN}, timeout=5)
    assert done.status_code == 200 and done.json()["removed"] == 1
    fresh = requests.get(f"{edge.url}/catalogue/a", timeout=5)
    assert fresh.headers["X-Cache-Status"] == "MISS" and fresh.json()["description"] == "second A"


def _publish(r: redis.Redis, body: str) -> bytes:
    return r.xadd(STREAM, {"body": body, "headers": "{}"})  # type: ignore[return-value]


def _purge_message(product: str) -> str:
    return json.dumps({"v": 1, "keys": [f"product:{product}"], "at": time.time()})


def _description(edge: ServiceProcess, product: str) -> str:
    return str(requests.get(f"{edge.url}/catalogue/{product}", timeout=5).json()["description"])


def test_stream_purges_apply_in_order_and_a_poison_message_holds_the_rest(edge: ServiceProcess, origin: Origin,
                                                                         redis_db: redis.Redis) -> None:
    for p in ("a", "b"):
        _description(edge, p)  # both cached
    origin.products.update({"a": "second A", "b": "second B"})
    _publish(redis_db, _purge_message("a"))
    wait_for(lambda: _description(edge, "a") == "second A", timeout=10)
    # A message in a format this edge does not read (a legacy tool's text) blocks every purge behind it.
    poison = _publish(redis_db, "PURGE /catalogue/b")
    _publish(redis_db, _purge_message("b"))
    time.sleep(1.5)
    assert _description(edge, "b") == "first B"  # its purge waits behind the poison message
    metrics = requests.get(f"{edge.url}/metrics", timeout=5).text
    assert 'edge_cache_purges_total{region="test",result="failed",service="edge"}' in metrics
    assert 'edge_cache_purge_queue_depth{region="test",service="edge"} 2.0' in metrics
    pending = redis_db.xpending(STREAM, f"edge-{REGION}")
    # The poison is the oldest message delivered and not acknowledged; B's purge is pending behind it too when
    # the edge read both in one batch (published back to back), else not yet read (failed once in a suite).
    assert pending["pending"] in (1, 2) and pending["min"] == poison
    # With a bound on tries it is moved aside, and what waited behind it is applied.
    _config(edge, purge_max_attempts=3)
    wait_for(lambda: _description(edge, "b") == "second B", timeout=10)
    dead = redis_db.xrange(STREAM + ".dlq")
    assert len(dead) == 1 and dead[0][1][b"body"] == b"PURGE /catalogue/b" and dead[0][1][b"source_id"] == poison
    assert redis_db.xlen(STREAM) == 0


def test_the_origin_down_is_a_502_and_the_edge_stays_healthy(origin: Origin, redis_db: redis.Redis) -> None:
    from tests.shop.servicekit import free_port

    env = {"SOCKDRILL_URL_FRONT_END": f"http://127.0.0.1:{free_port()}", "SOCKDRILL_REGION": "nowhere",
           "SOCKDRILL_KNOBS": json.dumps({"origin_timeout_s": 1.0})}
    with ServiceProcess("edge", env, ready_timeout=30) as lone:
        down = requests.get(f"{lone.url}/catalogue", timeout=5)
        assert down.status_code == 502 and "origin connect" in down.json()["error"]
        assert requests.get(f"{lone.url}/health", timeout=5).json()["health"][0]["status"] == "OK"


def test_a_staff_change_reaches_the_edge_through_the_catalogue_s_purge(redis_db: redis.Redis, tmp_path: Any) -> None:
    """The whole channel with the real catalogue as the origin: a product page cached for 300 s shows the change
    as soon as the catalogue's purge arrives; with no region configured the change stays invisible there; and a
    change whose purge cannot be published is still saved, the failure counted."""
    from tests.shop.servicekit import require_postgres, scratch_database

    require_postgres()
    holy = "03fef6ac-1896-4ce8-bd69-b798f85c6e0b"
    token = "edge-test-shop-token"
    headers = {"Authorization": f"Bearer {token}"}
    with scratch_database("edge") as db_url, ServiceProcess("catalogue", {
            "SOCKDRILL_URL_CATALOGUE_DB": db_url, "SOCKDRILL_CACHE_DIR": str(tmp_path), "SOCKDRILL_SHOP_TOKEN": token,
            "SOCKDRILL_URL_QUEUE": REDIS_URL, "SOCKDRILL_KNOBS": json.dumps({"cdn_regions": "e2e,other"})}) as cat, \
            ServiceProcess("edge", {"SOCKDRILL_URL_FRONT_END": cat.url, "SOCKDRILL_URL_QUEUE": REDIS_URL,
                                    "SOCKDRILL_REGION": "e2e"}, ready_timeout=30) as edge_pod:
        wait_for(lambda: any(g["name"] == b"edge-e2e" for g in _groups(redis_db, "cdn-purge.e2e")), timeout=15)

        def price() -> float:
            return float(requests.get(f"{edge_pod.url}/catalogue/{holy}", timeout=5).json()["price"])

        assert price() == 99.99 and price() == 99.99  # cached (item TTL 300 s)
        changed = requests.patch(f"{cat.url}/admin/products/{holy}", json={"price": 12.5}, headers=headers, timeout=5)
        assert changed.status_code == 200
        wait_for(lambda: price() == 12.5, timeout=10)
        # Every configured region got the purge, in the format the edges read.
        [(_, fields)] = redis_db.xrange("cdn-purge.other")
        from sockdrill.shop.product_events import parse_purge

        assert parse_purge(fields)[0] == [f"product:{holy}"]
        # Publishing switched off: the change is saved and the edge keeps serving the old price.
        requests.put(f"{cat.url}/admin/config", json={"cdn_regions": ""}, timeout=5).raise_for_status()
        requests.patch(f"{cat.url}/admin/products/{holy}", json={"price": 13.0}, headers=headers,
                       timeout=5).raise_for_status()
        time.sleep(1.0)
        assert price() == 12.5
    # The queue gone: the staff's change still succeeds, the lost purge is counted.
    with scratch_database("edge") as db_url, ServiceProcess("catalogue", {
            "SOCKDRILL_URL_CATALOGUE_DB": db_url, "SOCKDRILL_CACHE_DIR": str(tmp_path), "SOCKDRILL_SHOP_TOKEN": token,
            "SOCKDRILL_KNOBS": json.dumps({"cdn_regions": "e2e"})}) as cat:
        assert requests.patch(f"{cat.url}/admin/products/{holy}", json={"price": 1.5}, headers=headers,
                              timeout=5).status_code == 200
        metrics = requests.get(f"{cat.url}/metrics", timeout=5).text
        assert ('catalogue_invalidation_failures_total{reason="no_queue",region="e2e",service="catalogue"} 1.0'
                in metrics)



def test_woken_in_a_shop_an_edge_serves_a_region_and_hears_the_catalogue_s_purges() -> None:
    """The manifest's own deployments on the runtime: edge-us sleeps until a set-up wakes it (with the catalogue
    told to purge region us); a shopper through it gets cached product pages; staff change the product in the
    admin panel and the region sees it within a second, though the page's TTL is 300 s."""
    from sockdrill.scenarios.reset import reset_deployments
    from sockdrill.scenarios.schema import Setup
    from tests.conftest import manifest_part, running_shop
    from tests.shop.servicekit import free_port

    specs = manifest_part({"catalogue-db", "queue", "session-db", "user-db", "catalogue", "user", "front-end",
                           "edge-us"}, front_end_port=free_port())
    holy = "03fef6ac-1896-4ce8-bd69-b798f85c6e0b"
    with running_shop(specs, "sockdrill-edge-") as rc:
        assert rc.get("/v1/describe/edge-us")["pods"] == []
        done, _ = reset_deployments(rc, Setup(replicas={"edge-us": 1}))
        assert done["scaled"] == {"edge-us": 1}, done
        rc.post("/v1/config", {"deployment": "catalogue", "knobs": {"cdn_regions": "us"}})  # as a set-up's knobs
        edge_url = rc.record["addresses"]["edge-us"].rstrip("/")

        def page() -> requests.Response:
            return requests.get(f"{edge_url}/catalogue/{holy}", timeout=10)

        wait_for(lambda: page().status_code == 200, timeout=30)
        cached = page()
        assert cached.headers["X-Cache-Status"] == "HIT" and cached.json()["price"] == 99.99
        staff = requests.Session()
        front = rc.record["front_end_url"]
        assert staff.post(f"{front}/admin/login", json=rc.record["staff"], timeout=10).status_code == 200
        assert staff.patch(f"{front}/admin/products/{holy}", json={"price": 42.0}, timeout=10).status_code == 200
        fresh = wait_for(lambda: (r := page()).json()["price"] == 42.0 and r, timeout=10)
        assert fresh.headers["X-Cache-Status"] == "MISS"
        # An agent's purge of the region, through its tool: the runtime asks every edge pod with its token.
        from sockdrill.agents.tools import ToolContext, Tools

        tools = Tools(ToolContext(data_dir=rc.data_dir, max_steps=20))
        assert page().headers["X-Cache-Status"] == "HIT"
        purged = tools.call("purge_cache", service="edge-us", product=holy)
        assert purged["ok"] and purged["result"]["removed"] == 1 and purged["result"]["changed"], purged
        assert page().headers["X-Cache-Status"] == "MISS"
        refused = tools.call("purge_cache", service="catalogue")
        assert refused["ok"] is False and "not an edge cache" in refused["error"], refused
        # The freshness probe of scenario 4 reads through the edge as a shopper: the page and the home listing.
        from sockdrill.scenarios import scripted

        ctx = scripted.ScriptContext(front_end_url=front, record=rc.record, profile="fast", propagation_budget_s=5)
        probe = scripted.CatalogueFreshness(ctx, scripted.FreshnessParams(
            product=holy, field="price", via=["edge-us"], list_path="/catalogue?size=5&page=1"))
        readings = probe.read(time.time())
        assert len(readings) == 2 and all(r.ok and r.value_s == 0.0 for r in readings), readings
        done, _ = reset_deployments(rc, Setup())
        assert done["scaled"] == {"edge-us": 0} and rc.get("/v1/describe/edge-us")["pods"] == []
