"""Contract tests of the catalogue service against upstream behaviour (reference §3.1), on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servicekit import Response, ServiceProcess, db_run, request, require_postgres, scratch_database

from sockdrill.shop.data.generate import generate_products
from sockdrill.shop.data.seed import SOCKS

require_postgres()

JSON_TYPE = "application/json; charset=utf-8"
ERROR_TYPE = "text/plain; charset=utf-8"
IDS = [s.id for s in SOCKS]
NERD_LEG = "a0a4f044-b040-410d-8ead-4de0446aec7e"
HOLY = "03fef6ac-1896-4ce8-bd69-b798f85c6e0b"


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    cache = tmp_path_factory.mktemp("images")
    with scratch_database("cat") as url, ServiceProcess(
        "catalogue", {"SOCKDRILL_URL_CATALOGUE_DB": url, "SOCKDRILL_CACHE_DIR": str(cache),
                      "SOCKDRILL_SHOP_TOKEN": SHOP_TOKEN}
    ) as svc:
        yield svc


SHOP_TOKEN = "catalogue-test-shop-token"


def get(svc: ServiceProcess, path: str) -> Response:
    return request("GET", svc.url + path)


def ok_json(resp: Response) -> object:
    assert resp.status == 200, resp.body
    assert resp.content_type == JSON_TYPE
    return resp.json()


# ---- upstream routes -------------------------------------------------------------------------------

def test_list_default_is_all_nine_socks_in_id_order(cat: ServiceProcess) -> None:
    resp = get(cat, "/catalogue")
    socks = ok_json(resp)
    assert isinstance(socks, list)
    assert [s["id"] for s in socks] == IDS[:9]
    for s in socks:
        assert list(s) == ["id", "name", "description", "imageUrl", "price", "count", "tag"]
    # Prices print minimally, like upstream's float32.
    raw = resp.body.decode()
    for text in ('"price":99.99', '"price":18,', '"price":15,', '"price":17.32', '"price":14,',
                 '"price":7.99', '"price":10.99', '"price":12,'):
        assert text in raw
    holy = socks[0]
    assert holy["name"] == "Holy" and holy["count"] == 1
    assert holy["imageUrl"] == ["/catalogue/images/holy_1.jpeg", "/catalogue/images/holy_2.jpeg"]
    assert sorted(holy["tag"]) == ["action", "magic"]


def test_get_one_sock_exact(cat: ServiceProcess) -> None:
    sock = ok_json(get(cat, f"/catalogue/{NERD_LEG}"))
    nerd = next(s for s in SOCKS if s.id == NERD_LEG)
    assert sock == {
        "id": NERD_LEG, "name": "Nerd leg", "description": nerd.description,
        "imageUrl": ["/catalogue/images/bit_of_leg_1.jpeg", "/catalogue/images/bit_of_leg_2.jpeg"],
        "price": 7.99, "count": 115, "tag": ["blue", "skin"],
    }


def test_unknown_sock_is_404_with_upstream_error_body(cat: ServiceProcess) -> None:
    resp = get(cat, "/catalogue/no-such-sock")
    assert resp.status == 404
    assert resp.content_type == ERROR_TYPE  # upstream's Content-Type was never applied on errors
    assert resp.json() == {"error": "not found", "status_code": 404, "status_text": "Not Found"}


@pytest.mark.parametrize(("query", "expected"), [
    ("size=3", IDS[0:3]),
    ("page=2&size=3", IDS[3:6]),
    ("page=3&size=4", IDS[8:9]),
    ("page=1&size=100", IDS),
    ("page=4&size=3", []),
    ("page=0", []),
    ("size=0", []),
    ("page=-1", []),
    ("page=abc", []),
    ("size=ten", []),
    ("page=99999999999999999999&size=99999999999999999999", []),
    ("sort=name", IDS),
    ("sort=PRICE&size=2", IDS[:2]),
])
def test_paging_and_sort(cat: ServiceProcess, query: str, expected: list[str]) -> None:
    socks = ok_json(get(cat, "/catalogue?" + query))
    assert [s["id"] for s in socks] == expected


def test_tag_filter_is_or_and_keeps_only_matched_tags(cat: ServiceProcess) -> None:
    blue = ok_json(get(cat, "/catalogue?tags=blue"))
    assert [s["name"] for s in blue] == ["Colourful", "Crossed", "Figueroa", "Nerd leg"]
    assert all(s["tag"] == ["blue"] for s in blue)
    mixed = ok_json(get(cat, "/catalogue?tags=%20magic%20,blue"))  # trimmed
    assert [s["name"] for s in mixed] == ["Holy", "Colourful", "Crossed", "Figueroa", "Nerd leg"]
    assert mixed[0]["tag"] == ["magic"]
    crossed = ok_json(get(cat, "/catalogue?tags=red,action,sport"))
    by_name = {s["name"]: s for s in crossed}
    assert set(by_name) == {"Holy", "SuperSport XL", "Crossed"}
    assert sorted(by_name["Crossed"]["tag"]) == ["action", "red"]
    assert ok_json(get(cat, "/catalogue?tags=nosuchtag")) == []
    assert [s["id"] for s in ok_json(get(cat, "/catalogue?tags=blue&page=2&size=3"))] == [NERD_LEG]
    assert len(ok_json(get(cat, "/catalogue?tags="))) == 9  # empty filter = no filter


def test_size(cat: ServiceProcess) -> None:
    resp = get(cat, "/catalogue/size")
    assert ok_json(resp) == {"size": 9, "err": None}
    assert resp.body == b'{"size":9,"err":null}'
    assert ok_json(get(cat, "/catalogue/size?tags=blue")) == {"size": 4, "err": None}
    assert ok_json(get(cat, "/catalogue/size?tags=brown,geek")) == {"size": 4, "err": None}
    assert ok_json(get(cat, "/catalogue/size?tags=zzz")) == {"size": 0, "err": None}


def test_tags(cat: ServiceProcess) -> None:
    assert ok_json(get(cat, "/tags")) == {
        "tags": ["brown", "geek", "formal", "blue", "skin", "red", "action", "sport", "black", "magic",
                 "green"],
        "err": None,
    }


def test_every_image_url_answers_with_a_jpeg(cat: ServiceProcess) -> None:
    seen: dict[str, bytes] = {}
    for sock in ok_json(get(cat, "/catalogue")):  # type: ignore[union-attr]
        for url in sock["imageUrl"]:
            resp = get(cat, url)
            assert resp.status == 200, url
            assert resp.content_type == "image/jpeg"
            assert int(resp.headers["Content-Length"]) == len(resp.body) > 1000
            assert resp.body[:3] == b"\xff\xd8\xff"
            seen[url] = resp.body
        if sock["imageUrl"][0] != sock["imageUrl"][1]:
            assert seen[sock["imageUrl"][0]] != seen[sock["imageUrl"][1]]
    assert len(set(seen.values())) == len(seen) == 17


@pytest.mark.parametrize("path", ["/catalogue/images/nope.jpg", "/catalogue/images/..%2Fcatalogue.py"])
def test_unknown_image_is_404_json(cat: ServiceProcess, path: str) -> None:
    resp = get(cat, path)
    assert resp.status == 404
    assert resp.json()["status_code"] == 404


def test_health_and_metrics(cat: ServiceProcess) -> None:
    health = get(cat, "/health").json()["health"]
    assert [(h["service"], h["status"]) for h in health] == [("catalogue", "OK"), ("catalogue-db", "OK")]
    assert all(h["time"] for h in health)
    metrics = get(cat, "/metrics")
    assert metrics.status == 200 and b"request_duration_seconds" in metrics.body
    assert b'route="/catalogue/{id}"' in metrics.body


def test_db_knobs_are_declared(cat: ServiceProcess) -> None:
    knobs = get(cat, "/admin/config").json()["knobs"]
    assert {"db_pool_size", "db_timeout_s"} <= set(knobs)


def test_schema_has_indexes(cat: ServiceProcess) -> None:
    rows = db_run(cat.db_url, "SELECT indexname FROM pg_indexes WHERE tablename IN ('sock', 'sock_tag')")
    assert {"sock_pkey", "sock_tag_pkey", "sock_tag_tag_id_idx"} <= {r["indexname"] for r in rows}


# ---- admin API ---------------------------------------------------------------------------------------

def admin(svc: ServiceProcess, method: str, path: str, body: object = None,
          raw: str | None = None, token: str | None = SHOP_TOKEN) -> Response:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    if raw is not None:
        return request(method, svc.url + path, body=raw, headers={"Content-Type": "application/json", **auth})
    return request(method, svc.url + path, json_body=body, headers=auth)


def test_the_admin_api_answers_only_the_shop_s_services(cat: ServiceProcess) -> None:
    """A customer, an agent or a local user who finds catalogue's port cannot change products."""
    for token in (None, "not-the-token"):
        assert admin(cat, "PATCH", f"/admin/products/{HOLY}", {"price": 1.0}, token=token).status == 401
        assert admin(cat, "DELETE", f"/admin/products/{HOLY}", token=token).status == 401
        assert admin(cat, "POST", "/admin/products", {"name": "x"}, token=token).status == 401
    assert ok_json(get(cat, f"/catalogue/{HOLY}"))["price"] != 1.0


def test_admin_patch_changes_price_stock_and_text(cat: ServiceProcess) -> None:
    before = ok_json(get(cat, f"/catalogue/{HOLY}"))
    try:
        resp = admin(cat, "PATCH", f"/admin/products/{HOLY}",
                     {"price": 49.5, "count": 7, "name": "Holy II", "description": "New text."})
        changed = ok_json(resp)
        assert changed == {**before, "price": 49.5, "count": 7, "name": "Holy II",  # type: ignore[dict-item]
                           "description": "New text."}
        assert ok_json(get(cat, f"/catalogue/{HOLY}")) == changed
        assert ok_json(get(cat, "/catalogue?size=1"))[0]["price"] == 49.5  # type: ignore[index]
        tagged = ok_json(admin(cat, "PATCH", f"/admin/products/{HOLY}", {"tags": ["red", "magic"]}))
        assert tagged["tag"] == ["red", "magic"]  # type: ignore[index]
    finally:
        admin(cat, "PATCH", f"/admin/products/{HOLY}",
              {k: before[k] for k in ("price", "count", "name", "description")}  # type: ignore[index]
              | {"tags": ["magic", "action"]})
    assert ok_json(get(cat, f"/catalogue/{HOLY}")) == before


@pytest.mark.parametrize(("body", "status"), [
    ({"price": -1}, 400),
    ({"price": 0}, 400),
    ({"price": "12"}, 400),
    ({"price": True}, 400),
    ({"count": 1.5}, 400),
    ({"count": -3}, 400),
    ({"name": ""}, 400),
    ({"name": 7}, 400),
    ({"description": ["x"]}, 400),
    ({"tags": ["nosuch"]}, 400),
    ({"tags": []}, 400),
    ({"colour": "red"}, 400),
    ({}, 400),
    ([1, 2], 400),
])
def test_admin_patch_rejects_bad_input(cat: ServiceProcess, body: object, status: int) -> None:
    resp = admin(cat, "PATCH", f"/admin/products/{HOLY}", body)
    assert resp.status == status
    assert resp.json()["status_code"] == status and resp.json()["error"]
    assert ok_json(get(cat, f"/catalogue/{HOLY}"))["price"] == 99.99  # type: ignore[index]


def test_admin_bad_json_and_unknown_product(cat: ServiceProcess) -> None:
    resp = admin(cat, "PATCH", f"/admin/products/{HOLY}", raw="{not json")
    assert resp.status == 400 and "JSON" in resp.json()["error"]
    resp = admin(cat, "PATCH", "/admin/products/no-such-sock", {"price": 3})
    assert resp.status == 404 and resp.json()["status_code"] == 404
    assert admin(cat, "DELETE", "/admin/products/no-such-sock").status == 404


def test_admin_create_and_delete(cat: ServiceProcess) -> None:
    resp = admin(cat, "POST", "/admin/products", {"name": "Test sock", "description": "A test.", "price": 3.5,
                                                  "count": 2, "tags": ["geek", "red"]})
    assert resp.status == 201 and resp.content_type == JSON_TYPE
    sock = resp.json()
    try:
        assert sock["name"] == "Test sock" and sock["tag"] == ["geek", "red"] and sock["price"] == 3.5
        assert all(get(cat, url).status == 200 for url in sock["imageUrl"])
        assert ok_json(get(cat, f"/catalogue/{sock['id']}")) == sock
        assert ok_json(get(cat, "/catalogue/size")) == {"size": 10, "err": None}
        dup = admin(cat, "POST", "/admin/products",
                    {"id": sock["id"], "name": "X", "price": 1, "count": 1, "tags": ["geek"]})
        assert dup.status == 409
    finally:
        assert admin(cat, "DELETE", f"/admin/products/{sock['id']}").status == 200
    assert get(cat, f"/catalogue/{sock['id']}").status == 404
    assert ok_json(get(cat, "/catalogue/size")) == {"size": 9, "err": None}


@pytest.mark.parametrize("body", [
    {"price": 3, "count": 1, "tags": ["geek"]},
    {"name": "X", "price": 3, "count": 1},
    {"name": "X", "price": 3, "count": 1, "tags": ["geek"], "imageUrl": ["/etc/passwd", "a.jpg"]},
    {"name": "X", "price": 3, "count": 1, "tags": ["geek"], "id": 12},
    {"name": "X", "price": 3, "count": 1, "tags": ["geek"], "stock": 5},
])
def test_admin_create_rejects_bad_input(cat: ServiceProcess, body: object) -> None:
    resp = admin(cat, "POST", "/admin/products", body)
    assert resp.status == 400, resp.body
    assert ok_json(get(cat, "/catalogue/size")) == {"size": 9, "err": None}


# ---- generated products ----------------------------------------------------------------------------

def test_generated_products_are_loaded(tmp_path: Path) -> None:
    n, seed = 300, 11
    with scratch_database("catgen") as url, ServiceProcess("catalogue", {
        "SOCKDRILL_URL_CATALOGUE_DB": url, "SOCKDRILL_DATA_PRODUCTS": str(n), "SOCKDRILL_SEED": str(seed),
        "SOCKDRILL_CACHE_DIR": str(tmp_path),
    }) as svc:
        assert ok_json(get(svc, "/catalogue/size")) == {"size": n + 9, "err": None}
        everything = ok_json(get(svc, f"/catalogue?size={n + 100}"))
        ids = [s["id"] for s in everything]  # type: ignore[union-attr]
        assert ids == sorted(ids) and len(ids) == n + 9
        expected = list(generate_products(n, seed))
        assert {p.id for p in expected} | set(IDS) == set(ids)
        one = expected[17]
        got = ok_json(get(svc, f"/catalogue/{one.id}"))
        assert got["name"] == one.name and got["count"] == one.count  # type: ignore[index]
        assert got["tag"] == list(one.tags) and got["price"] == one.price  # type: ignore[index]
        assert all(get(svc, u).status == 200 for u in got["imageUrl"])  # type: ignore[index]
        blue = ok_json(get(svc, "/catalogue/size?tags=blue"))["size"]  # type: ignore[index]
        assert blue == 4 + sum("blue" in p.tags for p in expected)
        svc.stop()
        # A restart keeps the data as it is (no second seeding).
        svc.start()
        assert ok_json(get(svc, "/catalogue/size")) == {"size": n + 9, "err": None}


def test_a_failing_query_is_a_500_but_not_a_lost_connection(cat: ServiceProcess) -> None:
    db_run(cat.db_url, "ALTER TABLE sock RENAME TO sock_away")
    try:
        for path in ("/catalogue", "/catalogue/size", f"/catalogue/{HOLY}"):
            resp = get(cat, path)
            assert resp.status == 500, (path, resp.body)
            assert resp.content_type == ERROR_TYPE
            assert resp.json() == {"error": "database query error", "status_code": 500,
                                   "status_text": "Internal Server Error"}
    finally:
        db_run(cat.db_url, "ALTER TABLE sock_away RENAME TO sock")
    assert len(ok_json(get(cat, "/catalogue"))) == 9  # type: ignore[arg-type]
