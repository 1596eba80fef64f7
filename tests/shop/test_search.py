"""The search service (shop/search.py) as a real process over two PostgreSQL shards, fed by the real catalogue
(2,009 products) through its export and its change stream on this machine's Redis: words, phrases, typos, tags,
price ranges, stock and sorts; bad parameters refused by name; the index following staff changes; a shard down
giving partial answers (all down: a 503) while /health stays OK; substring matching only in contains mode; and a
dropped index staying dropped when the service restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from sockdrill.errors import ClusterError
from tests.conftest import wait_for
from tests.shop.servicekit import ServiceProcess, db_run, free_port, machine_redis, require_postgres, scratch_database

require_postgres()

REDIS_URL = "redis://127.0.0.1:6379/14"  # a dedicated db of this machine's Redis, flushed around the tests
SHOP_TOKEN = "search-test-shop-token"
ADMIN = "search-test-admin-token"
PRODUCTS = 2000
AUTH = {"Authorization": f"Bearer {SHOP_TOKEN}"}


@dataclass
class Cluster:
    catalogue: ServiceProcess
    search: ServiceProcess
    shard_urls: dict[str, str]

    def env(self, **extra: str) -> dict[str, str]:
        return {"SOCKDRILL_URL_SEARCH_DB_A": self.shard_urls["a"], "SOCKDRILL_URL_SEARCH_DB_B": self.shard_urls["b"],
                "SOCKDRILL_URL_CATALOGUE": self.catalogue.url, "SOCKDRILL_URL_QUEUE": REDIS_URL,
                "SOCKDRILL_SHOP_TOKEN": SHOP_TOKEN, "SOCKDRILL_ADMIN_TOKEN": ADMIN, **extra}


def _status(search: ServiceProcess) -> dict[str, Any]:
    r = requests.get(f"{search.url}/admin/index-status", headers={"X-Sockdrill-Admin": ADMIN}, timeout=5)
    return dict(r.json())


def _documents(search: ServiceProcess) -> int:
    return sum(s["documents"] for s in _status(search)["shards"].values())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cache = tmp_path_factory.mktemp("images")
    with machine_redis(REDIS_URL), scratch_database("searchcat") as cat_url, scratch_database("shard_a") as a, \
            scratch_database("shard_b") as b, \
            ServiceProcess("catalogue", {"SOCKDRILL_URL_CATALOGUE_DB": cat_url, "SOCKDRILL_CACHE_DIR": str(cache),
                                         "SOCKDRILL_SHOP_TOKEN": SHOP_TOKEN, "SOCKDRILL_URL_QUEUE": REDIS_URL,
                                         "SOCKDRILL_DATA_PRODUCTS": str(PRODUCTS)}, ready_timeout=60) as cat:
        shards = {"a": a, "b": b}
        probe = Cluster(cat, None, shards)  # type: ignore[arg-type]
        with ServiceProcess("search", probe.env(), ready_timeout=30) as search:
            wait_for(lambda: _documents(search) == PRODUCTS + 9, timeout=60, interval=0.5)
            yield Cluster(cat, search, shards)


def find(search: ServiceProcess, **params: Any) -> dict[str, Any]:
    r = requests.get(f"{search.url}/search", params=params, timeout=10)
    assert r.status_code == 200, r.text
    body = dict(r.json())
    assert body["partial"] is False and body["shards"] == {"total": 2, "successful": 2, "failed": 0, "failures": []}
    return body


def test_the_index_holds_every_product_spread_over_both_shards(cluster: Cluster) -> None:
    status = _status(cluster.search)
    docs = {name: s["documents"] for name, s in status["shards"].items()}
    assert set(docs) == {"search-db-a", "search-db-b"} and all(n > 800 for n in docs.values()), docs
    assert status["last_reindex"]["documents"] == PRODUCTS + 9


def test_words_phrases_typos_tags_prices_and_sorts(cluster: Cluster) -> None:
    s = cluster.search
    wool = find(s, q="wool", size=20)
    assert wool["total"] > 20 and len(wool["items"]) == 20
    assert all("wool" in (i["name"] + " " + i["description"]).lower() for i in wool["items"])
    assert [i["score"] for i in wool["items"]] == sorted((i["score"] for i in wool["items"]), reverse=True)
    page2 = find(s, q="wool", size=20, page=2)
    assert not {i["id"] for i in page2["items"]} & {i["id"] for i in wool["items"]}
    phrase = find(s, q='"merino wool"')
    assert phrase["total"] > 0 and all("merino wool" in i["description"].lower() for i in phrase["items"])
    excluded = find(s, q="wool -merino", size=50)
    assert all("merino" not in (i["name"] + i["description"]).lower() for i in excluded["items"])
    # A misspelt name is found by trigram similarity (the released sock "Argyle" and generated argyles).
    typo = find(s, q="argyl")
    assert any("argyle" in i["name"].lower() for i in typo["items"]), typo["items"][:3]
    priced = find(s, tags="formal", price_min=10, price_max=30, sort="price_asc", in_stock=1, size=50)
    prices = [i["price"] for i in priced["items"]]
    assert priced["total"] > 0 and prices == sorted(prices) and all(10 <= p <= 30 for p in prices)
    assert all("formal" in i["tag"] and i["count"] > 0 for i in priced["items"])
    names = [i["name"] for i in find(s, sort="name", size=30)["items"]]
    assert names == sorted(names)
    assert find(s, q="zzqqxx")["total"] == 0


@pytest.mark.parametrize("params, needle", [
    ({"sort": "random"}, "'sort' must be one of"), ({"price_min": "-1"}, "'price_min' must be a number of at least 0"),
    ({"price_min": "nan"}, "'price_min'"), ({"price_min": "30", "price_max": "10"}, "is above 'price_max'"),
    ({"page": "0"}, "'page' must be between 1 and 1000"), ({"size": "1000"}, "'size' must be between 1 and 100"),
    ({"q": "x" * 201}, "'q' is at most 200"), ({"in_stock": "maybe"}, "'in_stock' must be 1 or 0"),
    ({"size": "ten"}, "'size' must be an integer"),
])
def test_a_bad_parameter_is_a_400_that_names_it(cluster: Cluster, params: dict[str, str], needle: str) -> None:
    r = requests.get(f"{cluster.search.url}/search", params=params, timeout=5)
    assert r.status_code == 400 and needle in r.text, r.text


def test_the_index_follows_staff_changes(cluster: Cluster) -> None:
    holy = "03fef6ac-1896-4ce8-bd69-b798f85c6e0b"
    changed = requests.patch(f"{cluster.catalogue.url}/admin/products/{holy}", json={"name": "Zebracorn"},
                             headers=AUTH, timeout=5)
    assert changed.status_code == 200
    wait_for(lambda: [i["id"] for i in find(cluster.search, q="zebracorn")["items"]] == [holy], timeout=15)
    made = requests.post(f"{cluster.catalogue.url}/admin/products", headers=AUTH, timeout=5, json={
        "id": "search-test-new", "name": "Quokkasock", "description": "New.", "price": 5, "count": 1, "tags": ["blue"]})
    assert made.status_code == 201
    wait_for(lambda: find(cluster.search, q="quokkasock")["total"] == 1, timeout=15)
    requests.delete(f"{cluster.catalogue.url}/admin/products/search-test-new", headers=AUTH,
                    timeout=5).raise_for_status()
    wait_for(lambda: find(cluster.search, q="quokkasock")["total"] == 0, timeout=15)
    assert _status(cluster.search)["queue_depth"] == 0


def test_a_shard_down_gives_partial_answers_and_all_down_a_503(cluster: Cluster) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    with ServiceProcess("search", cluster.env(SOCKDRILL_URL_SEARCH_DB_B=dead, SOCKDRILL_URL_QUEUE=""),
                        ready_timeout=30) as half:
        r = requests.get(f"{half.url}/search", params={"q": "wool"}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["partial"] is True and body["total"] > 0, body
        assert body["shards"]["failed"] == 1 and body["shards"]["failures"][0]["shard"] == "search-db-b"
        assert requests.get(f"{half.url}/health", timeout=5).json()["health"][0]["status"] == "OK"
        metrics = requests.get(f"{half.url}/metrics", timeout=5).text
        assert 'search_cluster_health_status{color="red",service="search"} 1.0' in metrics
        assert 'search_queries_total{result="partial",service="search"} 1.0' in metrics
    with ServiceProcess("search", cluster.env(SOCKDRILL_URL_SEARCH_DB_A=dead, SOCKDRILL_URL_SEARCH_DB_B=dead,
                                              SOCKDRILL_URL_QUEUE=""), ready_timeout=30) as none:
        r = requests.get(f"{none.url}/search", params={"q": "wool"}, timeout=10)
        assert r.status_code == 503 and r.json()["shards"]["successful"] == 0


def test_substrings_match_only_in_contains_mode(cluster: Cluster) -> None:
    s = cluster.search
    assert find(s, q="erin")["total"] == 0  # no word "erin": full-text search matches words
    put = requests.put(f"{s.url}/admin/config", json={"match_mode": "contains"}, headers={"X-Sockdrill-Admin": ADMIN},
                       timeout=5)
    try:
        assert put.status_code == 200
        inside = find(s, q="erin", size=50)  # merino, herring, ...
        assert inside["total"] > 0 and all("erin" in (i["name"] + i["description"]).lower() for i in inside["items"])
    finally:
        requests.put(f"{s.url}/admin/config", json={"match_mode": "fts"}, headers={"X-Sockdrill-Admin": ADMIN},
                     timeout=5).raise_for_status()


def test_a_dropped_index_stays_dropped_when_the_service_restarts(cluster: Cluster) -> None:
    """Only a fresh shard gets the schema: a restart is no fix for someone's dropped index."""
    a = cluster.shard_urls["a"]
    db_run(a, "DROP INDEX IF EXISTS products_name_trgm_idx")
    try:
        with ServiceProcess("search", cluster.env(SOCKDRILL_URL_QUEUE=""), ready_timeout=30) as again:
            assert find(again, q="wool")["total"] > 0
            assert db_run(a, "SELECT to_regclass('products_name_trgm_idx') AS idx") == [{"idx": None}]
    finally:
        db_run(a, "CREATE INDEX IF NOT EXISTS products_name_trgm_idx ON products USING gin (name gin_trgm_ops)")


def test_a_rebuild_leaves_statistics_and_rewrites_only_what_changed(cluster: Cluster) -> None:
    """After a bulk load the planner needs fresh statistics and the GIN indexes' pending lists merged: without
    them it costs the full-text and trigram indexes above a sequential scan, and a dropped index changes nothing
    (seed scenario 6's first calibration). A rebuild that finds nothing changed rewrites no row."""
    stamp = "SELECT max(indexed_at) AS at, (SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL " \
            "FROM pg_stat_user_tables WHERE relname = 'products') AS kept FROM products"
    before = {n: db_run(url, stamp)[0] for n, url in cluster.shard_urls.items()}
    assert all(row["kept"] for row in before.values()), before
    started = requests.post(f"{cluster.search.url}/admin/reindex", headers={"X-Sockdrill-Admin": ADMIN}, timeout=5)
    assert started.status_code == 202
    wait_for(lambda: not _status(cluster.search)["reindexing"], timeout=30)
    after = {n: db_run(url, stamp)[0] for n, url in cluster.shard_urls.items()}
    assert after == before


def test_a_rebuild_if_stale_needs_a_product_missing_from_the_index(cluster: Cluster) -> None:
    admin = {"X-Sockdrill-Admin": ADMIN}
    kept = requests.post(f"{cluster.search.url}/admin/reindex", params={"if": "stale"}, headers=admin, timeout=10)
    assert kept.status_code == 200 and kept.json()["current"] is True, kept.text
    odd = requests.post(f"{cluster.search.url}/admin/reindex", params={"if": "always"}, headers=admin, timeout=10)
    assert odd.status_code == 400 and "'if'" in odd.text
    a = cluster.shard_urls["a"]
    gone = db_run(a, "DELETE FROM products WHERE sock_id = (SELECT min(sock_id) FROM products) RETURNING sock_id")
    assert len(gone) == 1
    started = requests.post(f"{cluster.search.url}/admin/reindex", params={"if": "stale"}, headers=admin, timeout=10)
    assert started.status_code == 202 and started.json()["started"] is True
    wait_for(lambda: not _status(cluster.search)["reindexing"], timeout=30)
    assert db_run(a, "SELECT count(*) AS n FROM products WHERE sock_id = $1", gone[0]["sock_id"]) == [{"n": 1}]


def test_the_index_status_and_reindex_need_the_runtime_s_token(cluster: Cluster) -> None:
    assert requests.get(f"{cluster.search.url}/admin/index-status", timeout=5).status_code == 403
    assert requests.post(f"{cluster.search.url}/admin/reindex", timeout=5).status_code == 403
    started = requests.post(f"{cluster.search.url}/admin/reindex", headers={"X-Sockdrill-Admin": ADMIN}, timeout=5)
    assert started.status_code == 202
    wait_for(lambda: not _status(cluster.search)["reindexing"], timeout=30)
    assert json.loads(json.dumps(_status(cluster.search)["last_reindex"]))["documents"] == PRODUCTS + 9


def test_no_query_string_gets_a_5xx(cluster: Cluster) -> None:
    """Property-based, as every service's routes are in tests/shop/test_fuzz.py (derandomized: the same examples
    every run): odd text, NUL bytes, huge numbers in any parameter are a 200 or a 400, never a 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.shop.test_fuzz import TEXT

    keys = st.sampled_from(["q", "tags", "price_min", "price_max", "in_stock", "sort", "page", "size", "other"])

    @settings(max_examples=150, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(query=st.dictionaries(keys, TEXT, max_size=4))
    def fuzz(query: dict[str, str]) -> None:
        r = requests.get(f"{cluster.search.url}/search", params=query, timeout=20)
        assert r.status_code in (200, 400), (query, r.status_code, r.text[:300])

    fuzz()
    assert find(cluster.search, q="wool")["total"] > 0  # and it still answers


def test_the_search_journey_finds_what_shoppers_look_for(tmp_path: Any) -> None:
    """The manifest's own deployments on the runtime: search and its shards sleep, a set-up wakes them (the
    shards' schema and pg_trgm created by the service's login), the index fills from the catalogue (2,009
    products), the front-end passes searches on, and the load's search journey (phrases, filters, typos, broad
    words, next pages) is served without a failure; asleep again, /search is a gateway error, not a hang."""
    from sockdrill.load.runner import run_load
    from sockdrill.scenarios.reset import reset_deployments
    from sockdrill.scenarios.schema import Setup
    from tests.conftest import manifest_part, running_shop

    specs = manifest_part({"catalogue-db", "queue", "session-db", "user-db", "catalogue", "user", "search-db-a",
                           "search-db-b", "search", "front-end"}, front_end_port=free_port())
    with running_shop(specs, "sockdrill-search-", pod_env={"SOCKDRILL_DATA_PRODUCTS": str(PRODUCTS)}) as rc:
        front = rc.record["front_end_url"]
        asleep = requests.get(f"{front}/search", params={"q": "sock"}, timeout=20)
        assert asleep.status_code in (502, 503), asleep.text
        done, _ = reset_deployments(rc, Setup(replicas={"search": 1, "search-db-a": 1, "search-db-b": 1}))
        assert done["scaled"] == {"search-db-a": 1, "search-db-b": 1, "search": 1}, done

        def answer() -> dict[str, Any] | None:
            r = requests.get(f"{front}/search", params={"size": 50}, timeout=20)  # no words: every product
            return dict(r.json()) if r.status_code == 200 and r.json().get("total") == PRODUCTS + 9 else None

        body = wait_for(answer, timeout=60, interval=0.5)
        assert body["partial"] is False and len(body["items"]) == 50
        # Products written straight to catalogue-db (as a set-up's generated ones are) reach the index on a reindex.
        from sockdrill.shop.catalogue import ensure_generated_products

        # Only when the index is behind, if asked so (a reset asks so): the count tells, and then it rebuilds.
        current = rc.post("/v1/reindex", {"deployment": "search", "if_stale": True})
        assert current["rebuilt"] is False and current["documents"] == PRODUCTS + 9, current
        assert asyncio.run(ensure_generated_products(rc.record["addresses"]["catalogue-db"], PRODUCTS + 50)) == 50
        behind = rc.post("/v1/reindex", {"deployment": "search", "if_stale": True})
        assert behind["rebuilt"] is True and behind["documents"] == PRODUCTS + 59, behind
        assert rc.post("/v1/reindex", {"deployment": "search"})["rebuilt"] is True
        with pytest.raises(ClusterError, match="not a search service"):
            rc.post("/v1/reindex", {"deployment": "catalogue"})
        holy = requests.get(f"{front}/search", params={"q": "hole toe"}, timeout=20).json()
        assert [i["name"] for i in holy["items"]] == ["Holy"], holy
        summary = run_load(None, {"search": 1}, users=4, spawn_rate=10, duration=8, seed=5, data_dir=rc.data_dir,
                           think=(0.0, 0.2), stats_path=tmp_path / "search.jsonl")
        journey = summary.journeys["search"]
        assert journey["count"] >= 10 and journey["failures"] == 0, summary.errors
        assert summary.steps["search:results"]["count"] >= 10 and "search:next-page" in summary.steps
        done, _ = reset_deployments(rc, Setup())
        assert done["scaled"] == {"search-db-a": 0, "search-db-b": 0, "search": 0}, done
