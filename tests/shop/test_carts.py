"""carts against upstream's contract: a real carts process on a scratch PostgreSQL database."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import redis
import requests
from servicekit import ServiceProcess, db_run, scratch_database

JSON_UTF8 = "application/json;charset=UTF-8"


# Dedicated dbs of this machine's Redis, flushed before and after: one for the contract tests' carts, one for
# the cache tests' own (two carts processes on one cache would write each other's carts back).
CACHE_URL = "redis://127.0.0.1:6379/11"
OWN_CACHE_URL = "redis://127.0.0.1:6379/12"


def _cache(url: str = CACHE_URL) -> redis.Redis:
    r = redis.Redis.from_url(url, socket_timeout=5)
    try:
        r.ping()
    except redis.RedisError as exc:
        pytest.skip(f"needs this machine's Redis at 127.0.0.1:6379: {exc}")
    return r


# Every contract test runs twice: carts on carts-db alone, and behind its write-behind carts-cache.
@pytest.fixture(scope="module", params=["db", "cache"])
def carts(request: pytest.FixtureRequest) -> Iterator[str]:
    env: dict[str, str] = {}
    r = None
    if request.param == "cache":
        r = _cache()
        r.flushdb()
        env = {"SOCKDRILL_URL_CARTS_CACHE": CACHE_URL, "SOCKDRILL_KNOBS": '{"cache_flush_interval_s": 0.2}'}
    try:
        with scratch_database("carts") as db_url, \
                ServiceProcess("carts", {"SOCKDRILL_URL_CARTS_DB": db_url, **env}) as svc:
            yield svc.url
    finally:
        if r is not None:
            r.flushdb()


def cid() -> str:
    return f"cust-{uuid.uuid4().hex[:8]}"


def add(carts: str, customer: str, item: str, **extra: object) -> requests.Response:
    return requests.post(f"{carts}/carts/{customer}/items", json={"itemId": item, **extra}, timeout=5)


# ---- tests ----------------------------------------------------------------------------------------
def test_health_lists_carts_and_db_with_date(carts: str) -> None:
    r = requests.get(f"{carts}/health", timeout=5)
    assert r.status_code == 200
    items = r.json()["health"]
    assert [(i["service"], i["status"]) for i in items][:2] == [("carts", "OK"), ("carts-db", "OK")]
    assert all(i["status"] == "OK" for i in items) and len(items) in (2, 3)  # 3: carts-cache
    assert all("date" in i and "time" not in i for i in items)


def test_get_cart_creates_and_returns_only_customer_id(carts: str) -> None:
    c = cid()
    r = requests.get(f"{carts}/carts/{c}", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == JSON_UTF8
    assert r.text == f'{{"customerId":"{c}"}}'
    r = requests.get(f"{carts}/carts/{c}/items", timeout=5)
    assert r.status_code == 200 and r.json() == []
    assert r.headers["Content-Type"] == JSON_UTF8


def test_post_new_item_then_same_item_adds_one(carts: str) -> None:
    c = cid()
    r = add(carts, c, "sock-a", quantity=20, unitPrice=99.0)
    assert r.status_code == 201
    assert r.headers["Content-Type"] == JSON_UTF8
    item = r.json()
    assert list(item) == ["id", "itemId", "quantity", "unitPrice"]
    assert re.fullmatch(r"[0-9a-f]{24}", item["id"])
    assert (item["itemId"], item["quantity"], item["unitPrice"]) == ("sock-a", 20, 99.0)
    assert '"unitPrice":99.0' in r.text
    # Existing itemId: +1, body quantity ignored, same line returned.
    r = add(carts, c, "sock-a", quantity=5, unitPrice=1.0)
    assert r.status_code == 201
    again = r.json()
    assert again["id"] == item["id"] and again["quantity"] == 21 and again["unitPrice"] == 99.0
    # No quantity: defaults to 1; no unitPrice: 0.0.
    r = add(carts, c, "sock-b")
    assert r.status_code == 201 and r.json()["quantity"] == 1 and r.json()["unitPrice"] == 0.0
    lines = requests.get(f"{carts}/carts/{c}/items", timeout=5).json()
    assert [(i["itemId"], i["quantity"]) for i in lines] == [("sock-a", 21), ("sock-b", 1)]


def test_get_single_item_and_missing_item_is_500(carts: str) -> None:
    c = cid()
    created = add(carts, c, "sock-a", unitPrice=7.99).json()
    r = requests.get(f"{carts}/carts/{c}/items/sock-a", timeout=5)
    assert r.status_code == 200 and r.json() == created
    r = requests.get(f"{carts}/carts/{c}/items/not-there", timeout=5)
    assert r.status_code == 500
    body = r.json()
    assert body["status"] == 500 and body["error"] == "Internal Server Error"
    assert body["path"] == f"/carts/{c}/items/not-there" and "timestamp" in body and "message" in body


def test_patch_sets_quantity_and_missing_line_is_500(carts: str) -> None:
    c = cid()
    add(carts, c, "sock-a", unitPrice=10.0)
    r = requests.patch(f"{carts}/carts/{c}/items",
                       json={"itemId": "sock-a", "quantity": 7, "unitPrice": 10.0}, timeout=5)
    assert r.status_code == 202 and r.content == b""
    assert requests.get(f"{carts}/carts/{c}/items/sock-a", timeout=5).json()["quantity"] == 7
    r = requests.patch(f"{carts}/carts/{c}/items", json={"itemId": "nope", "quantity": 1, "unitPrice": 1.0},
                       timeout=5)
    assert r.status_code == 500 and r.json()["status"] == 500


def test_delete_item_and_missing_line_is_500(carts: str) -> None:
    c = cid()
    add(carts, c, "sock-a")
    add(carts, c, "sock-b")
    r = requests.delete(f"{carts}/carts/{c}/items/sock-a", timeout=5)
    assert r.status_code == 202 and r.content == b""
    assert [i["itemId"] for i in requests.get(f"{carts}/carts/{c}/items", timeout=5).json()] == ["sock-b"]
    r = requests.delete(f"{carts}/carts/{c}/items/sock-a", timeout=5)
    assert r.status_code == 500 and r.json()["message"]


def test_delete_cart_is_202_even_when_absent(carts: str) -> None:
    c = cid()
    add(carts, c, "sock-a")
    assert requests.delete(f"{carts}/carts/{c}", timeout=5).status_code == 202
    assert requests.get(f"{carts}/carts/{c}/items", timeout=5).json() == []
    assert requests.delete(f"{carts}/carts/{cid()}", timeout=5).status_code == 202


def test_merge_appends_lines_and_deletes_session_cart(carts: str) -> None:
    customer, session = cid(), cid()
    add(carts, customer, "sock-a", quantity=2, unitPrice=1.0)
    add(carts, session, "sock-a", quantity=3, unitPrice=1.0)  # duplicate itemId: appended, not summed
    add(carts, session, "sock-c", unitPrice=2.5)
    r = requests.get(f"{carts}/carts/{customer}/merge", params={"sessionId": session}, timeout=5)
    assert r.status_code == 202 and r.content == b""
    lines = requests.get(f"{carts}/carts/{customer}/items", timeout=5).json()
    assert [(i["itemId"], i["quantity"]) for i in lines] == [("sock-a", 2), ("sock-a", 3), ("sock-c", 1)]
    assert requests.get(f"{carts}/carts/{session}/items", timeout=5).json() == []
    # Merging into a cart that does not exist yet creates it.
    fresh, session2 = cid(), cid()
    add(carts, session2, "sock-z")
    assert requests.get(f"{carts}/carts/{fresh}/merge?sessionId={session2}", timeout=5).status_code == 202
    assert [i["itemId"] for i in requests.get(f"{carts}/carts/{fresh}/items", timeout=5).json()] == ["sock-z"]


def test_a_merge_whose_caller_gave_up_is_dropped_and_changes_nothing(carts: str) -> None:
    """The caller's deadline (X-Request-Deadline) passed: carts does not merge behind its back."""
    import time

    customer, session = cid(), cid()
    add(carts, customer, "sock-a", unitPrice=1.0)
    add(carts, session, "sock-b", unitPrice=1.0)
    late = {"X-Request-Deadline": f"{time.time() - 0.5:.6f}"}
    r = requests.get(f"{carts}/carts/{customer}/merge", params={"sessionId": session}, headers=late, timeout=5)
    assert r.status_code == 504 and r.json()["status"] == 504, r.text
    assert [i["itemId"] for i in requests.get(f"{carts}/carts/{customer}/items", timeout=5).json()] == ["sock-a"]
    assert [i["itemId"] for i in requests.get(f"{carts}/carts/{session}/items", timeout=5).json()] == ["sock-b"]
    in_time = {"X-Request-Deadline": f"{time.time() + 30:.6f}"}
    r = requests.get(f"{carts}/carts/{customer}/merge", params={"sessionId": session}, headers=in_time, timeout=5)
    assert r.status_code == 202
    assert [i["itemId"] for i in requests.get(f"{carts}/carts/{customer}/items", timeout=5).json()] == ["sock-a",
                                                                                                     "sock-b"]
    for bad in ("soon", "nan", "-1"):  # not a deadline: ignored, as if none was given
        other = cid()
        add(carts, other, "sock-c", unitPrice=1.0)
        r = requests.get(f"{carts}/carts/{customer}/merge", params={"sessionId": other},
                         headers={"X-Request-Deadline": bad}, timeout=5)
        assert r.status_code == 202, (bad, r.text)


def test_merge_without_session_id_is_400(carts: str) -> None:
    r = requests.get(f"{carts}/carts/{cid()}/merge", timeout=5)
    assert r.status_code == 400 and r.json()["status"] == 400


def test_post_requires_json_content_type(carts: str) -> None:
    r = requests.post(f"{carts}/carts/{cid()}/items", data='{"itemId":"x"}',
                      headers={"Content-Type": "text/plain"}, timeout=5)
    assert r.status_code == 415 and r.json()["status"] == 415
    # The front-end sends a charset parameter: still JSON.
    r = requests.post(f"{carts}/carts/{cid()}/items", data='{"itemId":"x","unitPrice":1}',
                      headers={"Content-Type": "application/json; charset=utf-8"}, timeout=5)
    assert r.status_code == 201


@pytest.mark.parametrize("body", [
    "not json", "[]", '{"quantity": 1}', '{"itemId": 5}', '{"itemId": "x", "quantity": "3"}',
    '{"itemId": "x", "quantity": 1.5}', '{"itemId": "x", "unitPrice": "cheap"}',
    '{"itemId": "x", "quantity": true}', '{"itemId": "x", "quantity": 99999999999}',
])
def test_bad_bodies_are_400_json(carts: str, body: str) -> None:
    r = requests.post(f"{carts}/carts/{cid()}/items", data=body, headers={"Content-Type": "application/json"},
                      timeout=5)
    assert r.status_code == 400
    assert r.json()  # a JSON error body
    r = requests.patch(f"{carts}/carts/{cid()}/items", data=body,
                       headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400


def test_patch_without_quantity_is_400(carts: str) -> None:
    c = cid()
    add(carts, c, "sock-a")
    r = requests.patch(f"{carts}/carts/{c}/items", json={"itemId": "sock-a"}, timeout=5)
    assert r.status_code == 400


def test_concurrent_adds_of_one_item_make_one_line(carts: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    c = cid()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: add(carts, c, "sock-a", unitPrice=1.0).status_code, range(8)))
    assert codes == [201] * 8
    lines = requests.get(f"{carts}/carts/{c}/items", timeout=5).json()
    assert len(lines) == 1 and lines[0]["quantity"] == 8


def test_metrics_count_routes(carts: str) -> None:
    text = requests.get(f"{carts}/metrics", timeout=5).text
    assert ('request_duration_seconds_count{method="POST",route="/carts/{customerId}/items",service="carts",'
            'status_code="201"}') in text


# ---- the write-behind cache ------------------------------------------------------------------------
def _stored(db_url: str, customer: str) -> list[tuple[str, int]]:
    rows = db_run(db_url, "SELECT item_id, quantity FROM cart_items WHERE customer_id = $1 ORDER BY seq", customer)
    return [(r["item_id"], r["quantity"]) for r in rows]


def _metric(url: str, name: str, **labels: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}} in /metrics")


def test_the_cache_answers_first_and_carts_db_gets_the_cart_in_the_background() -> None:
    import time

    r = _cache(OWN_CACHE_URL)
    r.flushdb()
    c = cid()
    with scratch_database("carts") as db_url, ServiceProcess("carts", {
            "SOCKDRILL_URL_CARTS_DB": db_url, "SOCKDRILL_URL_CARTS_CACHE": OWN_CACHE_URL,
            "SOCKDRILL_KNOBS": '{"cache_flush_interval_s": 1.5}'}) as svc:
        assert add(svc.url, c, "sock-a", unitPrice=2.0).status_code == 201
        assert add(svc.url, c, "sock-b", quantity=3, unitPrice=1.0).status_code == 201
        assert _stored(db_url, c) == []  # answered from the cache: not written back yet
        assert r.zscore("carts:dirty", c) is not None
        deadline = time.monotonic() + 15
        while _stored(db_url, c) != [("sock-a", 1), ("sock-b", 3)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _stored(db_url, c) == [("sock-a", 1), ("sock-b", 3)]
        assert r.zscore("carts:dirty", c) is None
        assert _metric(svc.url, "carts_cache_writebacks_total", result="ok") >= 1
        hits = _metric(svc.url, "carts_cache_requests_total", result="hit")
        requests.get(f"{svc.url}/carts/{c}/items", timeout=5)
        assert _metric(svc.url, "carts_cache_requests_total", result="hit") == hits + 1
        # Emptied (an order was placed): carts-db drops the cart too.
        assert requests.delete(f"{svc.url}/carts/{c}", timeout=5).status_code == 202
        deadline = time.monotonic() + 15
        while _stored(db_url, c) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _stored(db_url, c) == []
    r.flushdb()


def test_a_cart_evicted_before_its_write_back_loses_its_changes_and_says_so() -> None:
    """The seed's "data eviction from cache": what Redis drops before the write-back never reaches carts-db."""
    import time

    r = _cache(OWN_CACHE_URL)
    r.flushdb()
    c = cid()
    with scratch_database("carts") as db_url, ServiceProcess("carts", {
            "SOCKDRILL_URL_CARTS_DB": db_url, "SOCKDRILL_URL_CARTS_CACHE": OWN_CACHE_URL,
            "SOCKDRILL_KNOBS": '{"cache_flush_interval_s": 0.5}'}) as svc:
        add(svc.url, c, "sock-a", unitPrice=2.0)
        deadline = time.monotonic() + 15
        while not _stored(db_url, c) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _stored(db_url, c) == [("sock-a", 1)]
        knobs = f"{svc.url}/admin/config"
        assert requests.post(knobs, json={"cache_flush_interval_s": 3600}, timeout=5).status_code == 200
        add(svc.url, c, "sock-b", unitPrice=1.0)
        assert r.zscore("carts:dirty", c) is not None
        r.delete(f"cart:{c}")  # what an evicting Redis does under memory pressure
        assert requests.post(knobs, json={"cache_flush_interval_s": 0.2}, timeout=5).status_code == 200
        deadline = time.monotonic() + 15
        while r.zscore("carts:dirty", c) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _stored(db_url, c) == [("sock-a", 1)]  # sock-b never reached carts-db
        assert [i["itemId"] for i in requests.get(f"{svc.url}/carts/{c}/items", timeout=5).json()] == ["sock-a"]
        assert _metric(svc.url, "carts_cache_writebacks_total", result="lost") == 1
        assert "before it was written back" in svc.logs()
    r.flushdb()


def test_a_guests_cart_lives_in_the_cache_until_a_login_merges_it() -> None:
    """Scenario 3's eviction domain: an anonymous basket (X-Cart-Owner: guest) is never written back, so Redis
    evicting it loses it; merged at login, the customer's cart is written back and the guest's is gone."""
    import time

    r = _cache(OWN_CACHE_URL)
    r.flushdb()
    guest, kept, customer = cid(), cid(), cid()
    hdr = {"X-Cart-Owner": "guest"}
    with scratch_database("carts") as db_url, ServiceProcess("carts", {
            "SOCKDRILL_URL_CARTS_DB": db_url, "SOCKDRILL_URL_CARTS_CACHE": OWN_CACHE_URL,
            "SOCKDRILL_KNOBS": '{"cache_flush_interval_s": 0.2}'}) as svc:
        for g in (guest, kept):
            assert requests.post(f"{svc.url}/carts/{g}/items", json={"itemId": "sock-a", "unitPrice": 2.0},
                                 headers=hdr, timeout=5).status_code == 201
        assert add(svc.url, customer, "sock-c", unitPrice=1.0).status_code == 201
        deadline = time.monotonic() + 15
        while not _stored(db_url, customer) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _stored(db_url, customer) == [("sock-c", 1)]  # a customer's cart is written back ...
        time.sleep(1.0)  # ... five write-back rounds later, no guest's is
        assert _stored(db_url, guest) == [] and _stored(db_url, kept) == []
        assert r.zscore("carts:dirty", guest) is None
        assert _metric(svc.url, "carts_cache_guest_writes_total") == 2
        # Evicted, the guest's basket is gone for good (nothing to reload it from).
        r.delete(f"cart:{guest}")
        assert requests.get(f"{svc.url}/carts/{guest}/items", timeout=5).json() == []
        # The other guest logs in: merged into the customer's cart, written back; the guest's cart is emptied.
        assert requests.get(f"{svc.url}/carts/{customer}/merge", params={"sessionId": kept},
                            timeout=5).status_code == 202
        deadline = time.monotonic() + 15
        while sorted(_stored(db_url, customer)) != [("sock-a", 1), ("sock-c", 1)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(_stored(db_url, customer)) == [("sock-a", 1), ("sock-c", 1)]
        assert requests.get(f"{svc.url}/carts/{kept}/items", timeout=5).json() == []
        # guest_carts_in_db on: a guest's cart is stored like any other.
        assert requests.post(f"{svc.url}/admin/config", json={"guest_carts_in_db": True},
                             timeout=5).status_code == 200
        assert requests.post(f"{svc.url}/carts/{guest}/items", json={"itemId": "sock-b", "unitPrice": 2.0},
                             headers=hdr, timeout=5).status_code == 201
        deadline = time.monotonic() + 15
        while not _stored(db_url, guest) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _stored(db_url, guest) == [("sock-b", 1)]
    r.flushdb()


def test_without_its_cache_carts_writes_through_to_carts_db() -> None:
    from servicekit import free_port

    c = cid()
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with scratch_database("carts") as db_url, ServiceProcess("carts", {
            "SOCKDRILL_URL_CARTS_DB": db_url, "SOCKDRILL_URL_CARTS_CACHE": down}, require_ok=False) as svc:
        health = {i["service"]: i["status"] for i in requests.get(f"{svc.url}/health", timeout=5).json()["health"]}
        assert health == {"carts": "OK", "carts-db": "OK", "carts-cache": "err"}
        assert add(svc.url, c, "sock-a", unitPrice=2.0).status_code == 201
        assert _stored(db_url, c) == [("sock-a", 1)]  # at once: no cache to answer from
        assert [i["itemId"] for i in requests.get(f"{svc.url}/carts/{c}/items", timeout=5).json()] == ["sock-a"]
        assert _metric(svc.url, "carts_cache_errors_total", op="write") >= 1
