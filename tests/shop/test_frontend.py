"""front-end contract tests: the real service as a subprocess against small fake backends.

The fakes (catalogue, carts, orders, user) are stateful aiohttp apps in a background thread that speak
the upstream shapes (reference §3) and record every call, so each test can check both what the browser
sees (statuses, bodies, cookies) and what the front-end sent to its backends. Sessions go to this
machine's Redis (db 7, flushed afterwards).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import requests
from aiohttp import web
from servicekit import ServiceProcess, free_port

from tests.conftest import Shop

# ==== fake backends =============================================================================

USER_ID = "57a98d98e4b00679b4a830b2"
SOCKS = [
    {"id": f"sock-{n}", "name": name, "description": f"{name}: a fine test sock.",
     "imageUrl": [f"/catalogue/images/{n}_1.svg", f"/catalogue/images/{n}_2.svg"], "price": price,
     "count": 10 * n, "tag": tags}
    for n, (name, price, tags) in enumerate([
        ("Holy", 99.99, ["magic", "action"]), ("Colourful", 18, ["brown", "blue"]),
        ("SuperSport XL", 15, ["sport", "black"]), ("Crossed", 17.32, ["blue", "red"]),
        ("Figueroa", 14, ["formal", "green"]), ("Cat socks", 15, ["brown", "green"]),
        ("Nerd leg", 7.99, ["blue", "skin"]), ("Classic", 12, ["brown", "green"]),
    ], start=1)
]
TAGS = ["brown", "blue", "sport", "black", "red", "formal", "green", "skin", "magic", "action"]
SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10" '
       b'fill="#e4572e"/></svg>')


@dataclass
class Call:
    dest: str
    method: str
    path: str  # with query string
    body: Any
    headers: dict[str, str]


@dataclass
class FakeBackends:
    calls: list[Call] = field(default_factory=list)
    carts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    decline: bool = False  # orders answers 406 like a payment decline
    merge_delay: float = 0.0  # carts takes this long to merge
    urls: dict[str, str] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls.clear()
        self.carts.clear()
        self.orders.clear()
        self.decline = False
        self.merge_delay = 0.0
        self.users.clear()
        self.users[USER_ID] = {"id": USER_ID, "username": "user", "password": "password",
                               "firstName": "User", "lastName": "Name",
                               "addresses": [{"id": "addr-1", "street": "Whitelees Road", "number": "246",
                                              "country": "United Kingdom", "city": "Glasgow",
                                              "postcode": "G67 3DL"}],
                               "cards": [{"id": "card-1", "longNum": "5544154011345918", "expires": "08/19",
                                          "ccv": "958"}]}

    def called(self, dest: str, method: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.dest == dest and (method is None or c.method == method)]

    # ---- plumbing ----------------------------------------------------------------------------
    def _recorder(self, dest: str) -> Any:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            self.calls.append(Call(dest, request.method, request.path_qs, body, dict(request.headers)))
            return await handler(request)

        return record

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._start_apps())
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True, name="fake-backends").start()
        if not ready.wait(10):
            raise RuntimeError("fake backends did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def cleanup() -> None:
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    async def _start_apps(self) -> None:
        for dest, routes in (("catalogue", self._catalogue_routes), ("carts", self._carts_routes),
                             ("orders", self._orders_routes), ("user", self._user_routes)):
            app = web.Application(middlewares=[self._recorder(dest)])
            routes(app.router)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._runners.append(runner)
            self.urls[dest] = f"http://127.0.0.1:{port}"

    def env(self) -> dict[str, str]:
        return {f"SOCKDRILL_URL_{d.upper()}": u for d, u in self.urls.items()}

    @staticmethod
    def _json(data: Any, status: int = 200, ctype: str = "application/json; charset=utf-8") -> web.Response:
        return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": ctype})

    # ---- catalogue ---------------------------------------------------------------------------
    def _catalogue_routes(self, r: web.UrlDispatcher) -> None:
        def matching(tags: str) -> list[dict[str, Any]]:
            wanted = [t for t in tags.split(",") if t]
            return [s for s in SOCKS if not wanted or set(wanted) & set(s["tag"])]

        async def listing(request: web.Request) -> web.Response:
            try:
                page = int(request.query.get("page", "1"))
                size = int(request.query.get("size", "10"))
            except ValueError:
                return self._json([])
            start = (page - 1) * size
            return self._json(matching(request.query.get("tags", ""))[start:start + size] if page > 0 else [])

        async def size(request: web.Request) -> web.Response:
            return self._json({"size": len(matching(request.query.get("tags", ""))), "err": None})

        async def one(request: web.Request) -> web.Response:
            sid = request.match_info["id"]
            if sid == "slow":
                await asyncio.sleep(3)
            for sock in SOCKS:
                if sock["id"] == sid:
                    return self._json(sock)
            return web.Response(status=404,
                                text='{"error":"not found","status_code":404,"status_text":"Not Found"}')

        async def tags(_request: web.Request) -> web.Response:
            return self._json({"tags": TAGS, "err": None})

        async def image(request: web.Request) -> web.Response:
            return web.Response(body=SVG, headers={"Content-Type": "image/svg+xml"})

        async def admin_patch(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {SHOP_TOKEN}":
                return self._json({"error": "token"}, 401)
            body = await request.json()
            for sock in SOCKS:
                if sock["id"] == request.match_info["id"]:
                    return self._json({**sock, **body})
            return self._json({"error": "not found"}, 404)

        r.add_patch("/admin/products/{id}", admin_patch)
        r.add_get("/catalogue", listing)
        r.add_get("/catalogue/size", size)
        r.add_get("/catalogue/images/{file}", image)
        r.add_get("/catalogue/{id}", one)
        r.add_get("/tags", tags)

    # ---- carts --------------------------------------------------------------------------------
    def _carts_routes(self, r: web.UrlDispatcher) -> None:
        async def items(request: web.Request) -> web.Response:
            return self._json(self.carts.get(request.match_info["cid"], []))

        async def add(request: web.Request) -> web.Response:
            body = await request.json()
            cart = self.carts.setdefault(request.match_info["cid"], [])
            for line in cart:
                if line["itemId"] == body["itemId"]:
                    line["quantity"] += 1
                    return self._json(line, 201)
            line = {"id": uuid.uuid4().hex[:24], "itemId": body["itemId"],
                    "quantity": body.get("quantity", 1), "unitPrice": body["unitPrice"]}
            cart.append(line)
            return self._json(line, 201)

        async def patch(request: web.Request) -> web.Response:
            body = await request.json()
            for line in self.carts.get(request.match_info["cid"], []):
                if line["itemId"] == body["itemId"]:
                    line["quantity"] = body["quantity"]
                    return web.Response(status=202)
            return self._json({"status": 500, "message": "Cannot find item in cart"}, 500)

        async def delete_cart(request: web.Request) -> web.Response:
            self.carts.pop(request.match_info["cid"], None)
            return web.Response(status=202)

        async def delete_item(request: web.Request) -> web.Response:
            cart = self.carts.get(request.match_info["cid"], [])
            for line in cart:
                if line["itemId"] == request.match_info["item"]:
                    cart.remove(line)
                    return web.Response(status=202)
            return self._json({"status": 500, "message": "Cannot find item in cart"}, 500)

        async def merge(request: web.Request) -> web.Response:
            sid = request.query.get("sessionId")
            if not sid:
                return self._json({"status": 400}, 400)
            await asyncio.sleep(self.merge_delay)
            self.carts.setdefault(request.match_info["cid"], []).extend(self.carts.pop(sid, []))
            return web.Response(status=202)

        r.add_get("/carts/{cid}/items", items)
        r.add_post("/carts/{cid}/items", add)
        r.add_patch("/carts/{cid}/items", patch)
        r.add_delete("/carts/{cid}", delete_cart)
        r.add_delete("/carts/{cid}/items/{item}", delete_item)
        r.add_get("/carts/{cid}/merge", merge)

    # ---- orders -------------------------------------------------------------------------------
    def _orders_routes(self, r: web.UrlDispatcher) -> None:
        def hal(order: dict[str, Any], host: str) -> dict[str, Any]:
            out = {k: v for k, v in order.items() if k != "id"}
            href = f"http://{host}/orders/{order['id']}"
            out["_links"] = {"self": {"href": href}, "order": {"href": href}}
            return out

        async def create(request: web.Request) -> web.Response:
            body = await request.json()
            if not all(body.get(k) for k in ("customer", "address", "card", "items")):
                return self._json({"status": 406, "message": "Invalid order request. Order requires "
                                   "customer, address, card and items."}, 406)
            if self.decline:
                return self._json({"status": 406, "message": "Payment declined: amount exceeds 100.00"}, 406)
            cid = body["items"].rstrip("/").split("/")[-2]
            user = self.users.get(cid, {})
            items = [dict(i) for i in self.carts.get(cid, [])]
            total = round(sum(i["quantity"] * i["unitPrice"] for i in items) + 4.99, 2)
            oid = uuid.uuid4().hex[:24]
            def first(kind: str) -> dict[str, Any]:
                return {"id": None, **{k: v for k, v in (user.get(kind) or [{}])[0].items() if k != "id"}}

            order = {"id": oid, "customerId": cid,
                     "customer": {"id": None, "firstName": user.get("firstName"),
                                  "lastName": user.get("lastName"), "username": user.get("username"),
                                  "addresses": [], "cards": []},
                     "address": first("addresses"), "card": first("cards"),
                     "items": items, "shipment": {"id": str(uuid.uuid4()), "name": cid},
                     "date": "2024-05-18T21:56:40.476+0000", "total": total}
            self.orders[oid] = order
            return self._json(order, 201, "application/json;charset=UTF-8")

        async def search(request: web.Request) -> web.Response:
            cid = request.query.get("custId", "")
            found = [hal(o, "orders") for o in self.orders.values() if o["customerId"] == cid]
            if cid == "nobody-404":
                return self._json({"timestamp": 0, "status": 404}, 404)
            return self._json({"_embedded": {"customerOrders": found},
                               "_links": {"self": {"href": "http://orders/orders/search/customerId"}}},
                              ctype="application/hal+json;charset=UTF-8")

        async def one(request: web.Request) -> web.Response:
            order = self.orders.get(request.match_info["id"])
            if order is None:
                return self._json({"status": 404, "error": "Not Found"}, 404)
            return self._json(hal(order, "orders"), ctype="application/hal+json;charset=UTF-8")

        r.add_post("/orders", create)
        r.add_get("/orders/search/customerId", search)
        r.add_get("/orders/{id}", one)

    # ---- user ---------------------------------------------------------------------------------
    def _user_routes(self, r: web.UrlDispatcher) -> None:
        hal = "application/hal+json"

        def public(user: dict[str, Any]) -> dict[str, Any]:
            uid = user["id"]
            return {"firstName": user["firstName"], "lastName": user["lastName"],
                    "username": user["username"], "id": uid, "_links": {
                        "addresses": {"href": f"http://user/customers/{uid}/addresses"},
                        "cards": {"href": f"http://user/customers/{uid}/cards"},
                        "customer": {"href": f"http://user/customers/{uid}"},
                        "self": {"href": f"http://user/customers/{uid}"}}}

        def err(message: str, status: int = 500) -> web.Response:
            return self._json({"error": message, "status_code": status,
                               "status_text": "Unauthorized" if status == 401 else "Internal Server Error"},
                              status, hal)

        async def login(request: web.Request) -> web.Response:
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Basic "):
                return err("Unauthorized", 401)
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            for user in self.users.values():
                if user["username"] == name:
                    if user["password"] != password:
                        return err("Unauthorized", 401)
                    return self._json({"user": public(user)}, ctype=hal)
            return err("not found")

        async def register(request: web.Request) -> web.Response:
            body = await request.json()
            if any(u["username"] == body["username"] for u in self.users.values()):
                return err("duplicate key")
            uid = uuid.uuid4().hex[:24]
            self.users[uid] = {"id": uid, "username": body["username"], "password": body["password"],
                               "firstName": body.get("firstName", ""), "lastName": body.get("lastName", ""),
                               "addresses": [], "cards": []}
            return self._json({"id": uid}, ctype=hal)

        async def customer(request: web.Request) -> web.Response:
            user = self.users.get(request.match_info["id"])
            return self._json(public(user), ctype=hal) if user else err("not found")

        def listing(kind: str, rel: str) -> Any:
            async def handler(request: web.Request) -> web.Response:
                user = self.users.get(request.match_info["id"])
                if user is None:
                    return err("not found")
                out = [{**{k: v for k, v in x.items() if k != "id"}, "id": x["id"], "_links": {
                    "self": {"href": f"http://user/{kind}/{x['id']}"}}} for x in user[kind]]
                return self._json({"_embedded": {rel: out}}, ctype=hal)

            return handler

        def adder(kind: str) -> Any:
            async def handler(request: web.Request) -> web.Response:
                body = await request.json()
                user = self.users.get(body.pop("userID", ""))
                if user is None:
                    return err("not found")
                new = {"id": uuid.uuid4().hex[:24], **body}
                user[kind].append(new)
                return self._json({"id": new["id"]}, ctype=hal)

            return handler

        async def everyone(_request: web.Request) -> web.Response:
            everyone = [public(u) for u in self.users.values()]
            return self._json({"_embedded": {"customer": everyone}}, ctype=hal)

        async def delete(_request: web.Request) -> web.Response:
            return self._json({"status": True}, ctype=hal)

        async def staff_login(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != "Basic " + base64.b64encode(b"admin:staffpw").decode():
                return err("staff login refused", 401)
            return self._json({"username": "admin", "role": "admin"})

        r.add_get("/staff/login", staff_login)
        r.add_get("/login", login)
        r.add_post("/register", register)
        r.add_get("/customers", everyone)
        r.add_get("/customers/{id}", customer)
        r.add_get("/customers/{id}/addresses", listing("addresses", "address"))
        r.add_get("/customers/{id}/cards", listing("cards", "card"))
        r.add_post("/addresses", adder("addresses"))
        r.add_post("/cards", adder("cards"))
        r.add_delete("/customers/{id}", delete)
        r.add_delete("/addresses/{id}", delete)
        r.add_delete("/cards/{id}", delete)


# ==== the front-end under test ==================================================================
REDIS_URL = "redis://127.0.0.1:6379/7"  # a dedicated db of this machine's Redis, flushed after
SHOP_TOKEN = "front-end-test-shop-token"  # what the runtime gives every service pod


class FrontEndProcess(ServiceProcess):
    """``python -m sockdrill.shop front-end`` on a free port, ready once /health answers 200 (the session-db
    test starts one whose health is not all OK)."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__("front-end", env, ready_timeout=20, require_ok=False)


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeBackends]:
    fb = FakeBackends()
    fb.start()
    yield fb
    fb.stop()


@pytest.fixture(scope="module")
def fe(fakes: FakeBackends) -> Iterator[FrontEndProcess]:
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.ping()
    except redis.RedisError as exc:
        pytest.skip(f"needs this machine's Redis at 127.0.0.1:6379: {exc}")
    with FrontEndProcess({**fakes.env(), "SOCKDRILL_URL_SESSION_DB": REDIS_URL, "SOCKDRILL_SHOP_TOKEN": SHOP_TOKEN,
                          "SOCKDRILL_KNOBS": json.dumps({"http_timeout_s": 1.0, "session_ttl_s": 600})}) as proc:
        yield proc
    r.flushdb()
    r.close()


@pytest.fixture
def client(fe: FrontEndProcess, fakes: FakeBackends) -> Iterator[requests.Session]:
    fakes.reset()
    with requests.Session() as s:
        yield s


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def login(client: requests.Session, url: str) -> requests.Response:
    resp = client.get(url + "/login", headers=basic("user", "password"))
    assert resp.status_code == 200, resp.text
    return resp


def assert_json_error(resp: requests.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["status_code"] == status and body["message"]
    return body


# ---- sessions and static pages -------------------------------------------------------------------
def test_a_page_starts_the_session_its_calls_share_and_assets_start_none(fe: FrontEndProcess) -> None:
    """A new visitor's page sets ``md.sid`` before its scripts run, so their parallel first calls share one
    session: were each to start its own, a late answer's cookie could replace the one a login was saved in."""
    for asset in ("/css/shop.css", "/js/shop.js", "/js/pages.js"):
        resp = requests.get(fe.url + asset)
        assert resp.status_code == 200, asset
        assert "Set-Cookie" not in resp.headers, asset
    for page in ("/", "/index.html", "/category.html", "/detail.html", "/basket.html",
                 "/customer-orders.html", "/customer-order.html", "/profile.html", "/admin.html"):
        resp = requests.get(fe.url + page)
        assert resp.status_code == 200, page
        assert resp.headers["Content-Type"].startswith("text/html"), page
        assert re.fullmatch(r"md\.sid=s%3A[\w-]+\.[\w-]+; Path=/; HttpOnly", resp.headers["Set-Cookie"]), page
        with ThreadPoolExecutor(4) as pool:
            later = list(pool.map(functools.partial(requests.get, cookies=resp.cookies),
                                  [fe.url + p for p in ("/cart", "/catalogue", "/tags", "/customers/x", page)]))
        assert [r.status_code for r in later] == [200] * 5, page
        assert [r.headers.get("Set-Cookie") for r in later] == [None] * 5, page
    assert_json_error(requests.get(fe.url + "/nope.html"), 404)
    assert_json_error(requests.get(fe.url + "/../../etc/passwd"), 404)
    assert_json_error(requests.get(fe.url + "/%2e%2e/app.py"), 404)


def test_api_call_sets_signed_session_cookie_once(client: requests.Session, fe: FrontEndProcess) -> None:
    resp = client.get(fe.url + "/catalogue")
    cookie = resp.headers["Set-Cookie"]
    assert re.fullmatch(r"md\.sid=s%3A[\w-]+\.[\w-]+; Path=/; HttpOnly", cookie), cookie
    sid = client.cookies["md.sid"].split("%3A", 1)[1].rsplit(".", 1)[0]
    r = redis.Redis.from_url(REDIS_URL)
    assert r.exists(f"sess:{sid}") and 0 < r.ttl(f"sess:{sid}") <= 600
    assert "Set-Cookie" not in client.get(fe.url + "/catalogue").headers  # same session: no new cookie
    # a forged signature is not trusted: a new session starts
    forged = requests.get(fe.url + "/catalogue", cookies={"md.sid": f"s%3A{sid}.AAAA"})
    assert "md.sid=" in forged.headers["Set-Cookie"] and sid not in forged.headers["Set-Cookie"]


def _expired_count(fe: FrontEndProcess) -> float:
    text = requests.get(fe.url + "/metrics", timeout=5).text
    line = next(ln for ln in text.splitlines() if ln.startswith("sessions_expired_total{"))
    return float(line.rsplit(" ", 1)[1])


def test_a_returning_shopper_whose_session_expired_is_counted(client: requests.Session, fe: FrontEndProcess) -> None:
    """Scenario 3's "session expiration events": our own cookie back after its record is gone."""
    client.get(fe.url + "/catalogue")
    sid = client.cookies["md.sid"].split("%3A", 1)[1].rsplit(".", 1)[0]
    before = _expired_count(fe)
    requests.get(fe.url + "/catalogue", cookies={"md.sid": f"s%3A{sid}.AAAA"})  # forged: not ours, not counted
    assert _expired_count(fe) == before
    redis.Redis.from_url(REDIS_URL).delete(f"sess:{sid}")  # what the TTL does
    resp = client.get(fe.url + "/catalogue")
    assert "md.sid=" in resp.headers["Set-Cookie"] and sid not in resp.headers["Set-Cookie"]
    assert _expired_count(fe) == before + 1


def test_trailing_slash_redirects(client: requests.Session, fe: FrontEndProcess) -> None:
    resp = client.get(fe.url + "/catalogue/?size=2", allow_redirects=False)
    assert resp.status_code == 301 and resp.headers["Location"] == "/catalogue?size=2"
    assert client.get(fe.url + "/basket.html/", allow_redirects=False).headers["Location"] == "/basket.html"
    assert_json_error(client.get(fe.url + "//evil.example/", allow_redirects=False), 400)


# ---- catalogue ------------------------------------------------------------------------------------
def test_catalogue_passthrough(client: requests.Session, fe: FrontEndProcess, fakes: FakeBackends) -> None:
    resp = client.get(fe.url + "/catalogue?page=2&size=6&tags=")
    assert resp.status_code == 200 and [s["id"] for s in resp.json()] == ["sock-7", "sock-8"]
    assert not resp.headers["Content-Type"].startswith("application/json")  # upstream: untyped body
    assert fakes.called("catalogue")[-1].path == "/catalogue?page=2&size=6&tags="
    assert client.get(fe.url + "/catalogue/size?tags=blue").json() == {"size": 3, "err": None}
    assert client.get(fe.url + "/tags").json()["tags"] == TAGS
    missing = client.get(fe.url + "/catalogue/nope")
    assert missing.status_code == 200 and missing.json()["status_code"] == 404  # upstream: always 200
    image = client.get(fe.url + "/catalogue/images/1_1.svg")
    assert image.status_code == 200 and image.content == SVG
    assert image.headers["Content-Type"] == "image/svg+xml"


def test_backend_timeout_is_clean_504(client: requests.Session, fe: FrontEndProcess) -> None:
    body = assert_json_error(client.get(fe.url + "/catalogue/slow"), 504)
    assert "catalogue" in body["message"]
    assert client.get(fe.url + "/health").status_code == 200  # still alive


# ---- cart -----------------------------------------------------------------------------------------
def test_anonymous_cart_flow(client: requests.Session, fe: FrontEndProcess, fakes: FakeBackends) -> None:
    assert client.get(fe.url + "/cart").json() == []
    sid = client.cookies["md.sid"].split("%3A", 1)[1].rsplit(".", 1)[0]
    resp = client.post(fe.url + "/cart", json={"id": "sock-2", "quantity": 1})
    assert resp.status_code == 201 and resp.content == b""
    post = fakes.called("carts", "POST")[-1]
    assert post.path == f"/carts/{sid}/items" and post.body == {"itemId": "sock-2", "unitPrice": 18}
    client.post(fe.url + "/cart", json={"id": "sock-2"})
    assert client.get(fe.url + "/cart").json()[0]["quantity"] == 2

    resp = client.post(fe.url + "/cart/update", json={"id": "sock-2", "quantity": 5})
    assert resp.status_code == 202
    patch = fakes.called("carts", "PATCH")[-1]
    assert patch.body == {"itemId": "sock-2", "quantity": 5, "unitPrice": 18}
    missing = client.post(fe.url + "/cart/update", json={"id": "sock-3", "quantity": 1})
    assert missing.status_code == 500  # not in the cart: carts' 500, as upstream

    assert client.delete(fe.url + "/cart/sock-2").status_code == 202
    assert fakes.called("carts", "DELETE")[-1].path == f"/carts/{sid}/items/sock-2"
    client.post(fe.url + "/cart", json={"id": "sock-1"})
    assert client.delete(fe.url + "/cart").status_code == 202
    assert fakes.called("carts", "DELETE")[-1].path == f"/carts/{sid}"
    assert client.get(fe.url + "/cart").json() == []


def test_cart_bad_input_is_4xx_json(client: requests.Session, fe: FrontEndProcess,
                                    fakes: FakeBackends) -> None:
    headers = {"Content-Type": "application/json"}
    assert_json_error(client.post(fe.url + "/cart", data="{not json", headers=headers), 400)
    assert_json_error(client.post(fe.url + "/cart", data="", headers=headers), 400)
    assert_json_error(client.post(fe.url + "/cart", json=["sock-1"]), 400)
    assert_json_error(client.post(fe.url + "/cart", json={"quantity": 1}), 400)
    assert_json_error(client.post(fe.url + "/cart", json={"id": 7}), 400)
    assert_json_error(client.post(fe.url + "/cart", json={"id": "no-such-sock"}), 404)
    assert_json_error(client.post(fe.url + "/cart/update", json={"id": "sock-1"}), 400)
    assert_json_error(client.post(fe.url + "/cart/update", json={"id": "sock-1", "quantity": -2}), 400)
    assert_json_error(client.post(fe.url + "/cart/update", json={"id": "sock-1", "quantity": "lots"}), 400)
    assert not fakes.called("carts", "POST") and not fakes.called("carts", "PATCH")


# ---- login, register, logout ----------------------------------------------------------------------
def test_a_merge_slower_than_its_budget_is_given_up_and_the_login_goes_on(
        client: requests.Session, fe: FrontEndProcess, fakes: FakeBackends) -> None:
    """Scenario 3's "failed cart synchronization": login does not wait for a slow merge, and the items put in
    the cart before logging in are not in the customer's cart afterwards (said only in the log)."""
    client.post(fe.url + "/cart", json={"id": "sock-3"})
    fakes.merge_delay = 1.0
    assert client.post(fe.url + "/admin/config", json={"cart_merge_timeout_s": 0.2}).status_code == 200
    try:
        login(client, fe.url)
        assert client.get(fe.url + "/cart").json() == []
        assert '"cart_merge_failed"' in fe.logs()
    finally:
        client.post(fe.url + "/admin/config", json={"cart_merge_timeout_s": 2.0})


def test_login_basic_sets_cookie_and_merges_cart(client: requests.Session, fe: FrontEndProcess,
                                                fakes: FakeBackends) -> None:
    client.post(fe.url + "/cart", json={"id": "sock-3"})
    sid = client.cookies["md.sid"].split("%3A", 1)[1].rsplit(".", 1)[0]
    resp = login(client, fe.url)
    assert resp.text == "Cookie is set"
    cookie = resp.headers["Set-Cookie"]
    assert re.match(rf"logged_in={re.escape(sid)}; Max-Age=3600; Path=/", cookie), cookie
    assert "HttpOnly" not in cookie
    sent = fakes.called("user", "GET")[-1]
    assert sent.path == "/login"
    assert sent.headers["Authorization"] == basic("user", "password")["Authorization"]
    merge = [c for c in fakes.called("carts", "GET") if "/merge" in c.path]
    assert merge[-1].path == f"/carts/{USER_ID}/merge?sessionId={sid}"
    # the cart now belongs to the customer
    assert [i["itemId"] for i in client.get(fe.url + "/cart").json()] == ["sock-3"]
    assert fakes.called("carts", "GET")[-1].path == f"/carts/{USER_ID}/items"
    me = client.get(fe.url + f"/customers/{sid}")
    assert me.status_code == 200 and me.json()["firstName"] == "User"
    assert not me.headers["Content-Type"].startswith("application/json")
    assert fakes.called("user", "GET")[-1].path == f"/customers/{USER_ID}"


def test_login_failures_are_401(client: requests.Session, fe: FrontEndProcess) -> None:
    assert client.get(fe.url + "/login", headers=basic("user", "wrong")).status_code == 401
    assert client.get(fe.url + "/login", headers=basic("nobody", "x")).status_code == 401
    assert client.get(fe.url + "/login").status_code == 401
    assert "logged_in" not in client.cookies


def test_post_login_json_and_form(client: requests.Session, fe: FrontEndProcess) -> None:
    resp = client.post(fe.url + "/login", json={"username": "user", "password": "password"})
    assert resp.status_code == 200 and resp.text == "Cookie is set" and "logged_in" in client.cookies
    with requests.Session() as other:
        resp = other.post(fe.url + "/login", data={"username": "user", "password": "password"})  # locust form
        assert resp.status_code == 200 and "logged_in" in other.cookies
        assert other.post(fe.url + "/login", data={"username": "user", "password": "bad"}).status_code == 401
        assert_json_error(other.post(fe.url + "/login", json={"username": "user"}), 400)
        bad = other.post(fe.url + "/login", data="{oops", headers={"Content-Type": "application/json"})
        assert_json_error(bad, 400)


def test_register_then_logout(client: requests.Session, fe: FrontEndProcess, fakes: FakeBackends) -> None:
    client.post(fe.url + "/cart", json={"id": "sock-4"})
    sid = client.cookies["md.sid"].split("%3A", 1)[1].rsplit(".", 1)[0]
    resp = client.post(fe.url + "/register", json={"username": "newbie", "password": "pw", "email": "n@x.io",
                                                   "firstName": "New", "lastName": "Bie"})
    assert resp.status_code == 200
    new_id = resp.json()["id"]
    assert client.cookies["logged_in"] == sid
    assert fakes.called("user", "POST")[-1].body["username"] == "newbie"
    assert any(c.path == f"/carts/{new_id}/merge?sessionId={sid}" for c in fakes.called("carts"))
    assert [i["itemId"] for i in client.get(fe.url + "/cart").json()] == ["sock-4"]
    again = client.post(fe.url + "/register", json={"username": "newbie", "password": "pw"})
    assert again.status_code == 500 and again.json()["message"].startswith("Unable to register")
    assert_json_error(client.post(fe.url + "/register", json={"username": "x"}), 400)

    out = client.post(fe.url + "/logout")
    assert out.status_code == 200 and "logged_in=;" in out.headers["Set-Cookie"]
    assert "logged_in" not in client.cookies
    assert client.get(fe.url + "/cart").json() == []  # back to the anonymous cart
    assert_json_error(client.get(fe.url + "/orders"), 401)


# ---- the admin panel ------------------------------------------------------------------------------
def test_the_admin_panel_needs_a_staff_login_and_passes_the_shop_token(client: requests.Session,
                                                                        fe: FrontEndProcess) -> None:
    sock = "sock-1"
    assert_json_error(client.get(fe.url + "/admin/products"), 401)
    assert_json_error(client.patch(fe.url + f"/admin/products/{sock}", json={"count": 3}), 401)
    login(client, fe.url)  # a customer is not staff
    assert_json_error(client.get(fe.url + "/admin/me"), 401)
    assert_json_error(client.post(fe.url + "/admin/login", json={"username": "admin", "password": "nope"}), 401)
    who = client.post(fe.url + "/admin/login", json={"username": "admin", "password": "staffpw"})
    assert who.status_code == 200 and who.json()["username"] == "admin"
    assert client.get(fe.url + "/admin/me").json() == {"username": "admin"}
    listed = client.get(fe.url + "/admin/products", params={"size": 2})
    assert listed.status_code == 200 and len(listed.json()) == 2
    changed = client.patch(fe.url + f"/admin/products/{sock}", json={"count": 3, "price": 9.5})
    assert changed.status_code == 200 and (changed.json()["count"], changed.json()["price"]) == (3, 9.5)
    assert '"admin_change"' in fe.logs()
    client.post(fe.url + "/admin/logout")
    assert_json_error(client.get(fe.url + "/admin/products"), 401)


# ---- orders ---------------------------------------------------------------------------------------
def test_orders_and_the_profile_need_login(client: requests.Session, fe: FrontEndProcess,
                                          fakes: FakeBackends) -> None:
    assert_json_error(client.get(fe.url + "/orders"), 401)
    assert_json_error(client.post(fe.url + "/orders"), 401)
    assert_json_error(client.get(fe.url + "/profile"), 401)
    assert_json_error(client.patch(fe.url + "/profile", json={"phone": "+1 555 0100"}), 401)
    # a stale logged_in cookie without a customer in the session is not a login
    client.cookies.set("logged_in", "whatever")
    assert_json_error(client.post(fe.url + "/orders"), 401)
    assert not fakes.called("orders")


def test_checkout_flow_and_order_list(client: requests.Session, fe: FrontEndProcess,
                                      fakes: FakeBackends) -> None:
    login(client, fe.url)
    client.post(fe.url + "/cart", json={"id": "sock-2"})
    assert client.get(fe.url + "/orders").status_code == 201  # sic, and empty
    assert client.get(fe.url + "/orders").json() == []
    fakes.calls.clear()

    resp = client.post(fe.url + "/orders")
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["total"] == 22.99
    user_paths = [c.path for c in fakes.called("user")]
    assert user_paths[0] == f"/customers/{USER_ID}"
    assert set(user_paths[1:]) == {f"/customers/{USER_ID}/addresses", f"/customers/{USER_ID}/cards"}
    sent = fakes.called("orders", "POST")[0]
    assert sent.body == {"customer": f"http://user/customers/{USER_ID}", "address": "http://user/addresses/addr-1",
                         "card": "http://user/cards/card-1", "items": f"http://carts/carts/{USER_ID}/items"}
    assert sent.headers["Accept"] == "application/json"

    listing = client.get(fe.url + "/orders")
    assert listing.status_code == 201
    [item] = listing.json()
    assert item["_links"]["self"]["href"] == f"/orders/{order['id']}"
    assert item["total"] == 22.99 and "date" in item
    one = client.get(fe.url + f"/orders/{order['id']}")
    assert one.status_code == 200 and one.headers["Content-Type"].startswith("application/hal+json")
    assert one.json()["customer"]["firstName"] == "User"
    assert client.get(fe.url + "/orders/unknown").status_code == 404


def test_checkout_decline_is_406_with_message(client: requests.Session, fe: FrontEndProcess,
                                             fakes: FakeBackends) -> None:
    login(client, fe.url)
    client.post(fe.url + "/cart", json={"id": "sock-1"})
    fakes.decline = True
    resp = client.post(fe.url + "/orders")
    assert resp.status_code == 406 and resp.json()["message"].startswith("Payment declined")


def test_checkout_without_card_sends_null(client: requests.Session, fe: FrontEndProcess,
                                          fakes: FakeBackends) -> None:
    fakes.users[USER_ID]["cards"] = []
    login(client, fe.url)
    resp = client.post(fe.url + "/orders")
    assert resp.status_code == 406
    assert fakes.called("orders", "POST")[0].body["card"] is None


# ---- customers, addresses, cards ----------------------------------------------------------------
def test_user_proxies(client: requests.Session, fe: FrontEndProcess, fakes: FakeBackends) -> None:
    assert client.get(fe.url + "/card").json() == {"status_code": 500}  # anonymous
    assert client.get(fe.url + "/address").json() == {"status_code": 500}
    body = client.get(fe.url + "/customers/whoever")
    assert body.status_code == 200 and body.json()["status_code"] == 401
    assert_json_error(client.post(fe.url + "/addresses", json={"street": "x"}), 401)
    for listing in ("/customers", "/addresses", "/cards", "/cards/card-1"):  # nobody's data to anonymous users
        assert_json_error(client.get(fe.url + listing), 401)
    login(client, fe.url)
    assert client.get(fe.url + "/card").json() == {"number": "5918"}
    assert client.get(fe.url + "/address").json()["city"] == "Glasgow"
    resp = client.post(fe.url + "/addresses", json={"number": "1", "street": "High St", "city": "Leeds",
                                                     "postcode": "LS1", "country": "UK"})
    assert resp.status_code == 200 and "id" in resp.json()
    assert fakes.called("user", "POST")[-1].body["userID"] == USER_ID
    card = {"longNum": "4111111111111111", "expires": "01/30", "ccv": "123"}
    resp = client.post(fe.url + "/cards", json=card)
    assert resp.status_code == 200 and "id" in resp.json()
    assert_json_error(client.post(fe.url + "/cards", json="4111"), 400)
    own = client.get(fe.url + "/customers")          # upstream lists every customer; we list only oneself
    assert own.status_code == 200 and [c["username"] for c in own.json()["_embedded"]["customer"]] == ["user"]
    assert not [c for c in fakes.called("user", "GET") if c.path == "/customers"]
    assert client.get(fe.url + "/cards").status_code == 200
    assert not [c for c in fakes.called("user", "GET") if c.path in ("/cards", "/addresses")]
    deleted = client.delete(fe.url + "/cards/card-1")
    assert deleted.status_code == 200 and json.loads(deleted.json()) == {"status": True}  # string-wrapped
    assert fakes.called("user", "DELETE")[-1].path == "/cards/card-1"


@pytest.mark.parametrize("raw", ["/orders/../orders", "/orders/..%2Forders", "/catalogue/../customers",
                                 "/catalogue/images/../../cards", "/orders/./x", "/catalogue//size"])
def test_a_path_never_climbs_to_another_resource(fe: FrontEndProcess, fakes: FakeBackends, raw: str) -> None:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(fe.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", raw)  # sent exactly as written: no client-side normalisation
    resp = conn.getresponse()
    resp.read()
    assert resp.status in (400, 404), (raw, resp.status)
    listed = [c for c in fakes.called("orders", "GET") + fakes.called("user", "GET")
              if c.path in ("/orders", "/customers", "/cards")]
    assert listed == []


# ---- session-db down ------------------------------------------------------------------------------
def test_session_db_down_is_clean_500(fakes: FakeBackends) -> None:
    with FrontEndProcess({**fakes.env(), "SOCKDRILL_URL_SESSION_DB": f"redis://127.0.0.1:{free_port()}/0",
                          "SOCKDRILL_KNOBS": json.dumps({"session_db_timeout_s": 0.5})}) as proc:
        resp = requests.get(proc.url + "/catalogue")
        assert_json_error(resp, 500)
        assert "session" in resp.json()["message"]
        page = requests.get(proc.url + "/index.html")  # pages still work, without a session
        assert page.status_code == 200 and "Set-Cookie" not in page.headers
        health = requests.get(proc.url + "/health").json()["health"]
        assert {"service": "session-db", "status": "err"}.items() <= health[1].items()


@pytest.mark.parametrize("path, name", [("/catalogue?tags=%00", "tags"), ("/catalogue?size=%00", "size"),
                                        ("/catalogue/size?tags=a%00b", "tags"), ("/catalogue/%00", None)])
def test_a_nul_byte_is_bad_input_not_a_lost_database(shop: Shop, path: str, name: str | None) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(shop.url + path, timeout=10)
    assert info.value.code in (400, 404), info.value.code
    body = info.value.read().decode()
    assert "connection" not in body
    if name:
        assert info.value.code == 400 and f"'{name}'" in body, body
    with urllib.request.urlopen(shop.url + "/catalogue?size=1000000000", timeout=30) as resp:
        assert resp.status == 200
