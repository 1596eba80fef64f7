"""Datastore faults: the dropped login index turns index scans into sequential scans and comes back
exactly; a query storm really runs in user-db; Redis settings are set and restored."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
import redis

from sockdrill.errors import ClusterError, SockdrillError
from tests.chaos.conftest import active, inject, wait_for
from tests.conftest import Shop

LOGIN = "EXPLAIN SELECT id FROM customers WHERE username = 'user'"
# the storm's sessions (not this one, whose own text would match the pattern)
STORM = ("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%customers%generate_series%~%' "
         "AND pid <> pg_backend_pid()")
INDEXDEF = "SELECT indexdef FROM pg_indexes WHERE indexname = 'customers_username_idx'"


def _sql(shop: Shop, *queries: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(shop.addresses["user-db"])
        try:
            return [await conn.fetch(q) for q in queries]
        finally:
            await conn.close()

    return asyncio.run(run())


def _plan(shop: Shop) -> str:
    return "\n".join(r[0] for r in _sql(shop, LOGIN)[0])


def test_drop_index_turns_index_scans_into_seq_scans(shop: Shop, chaos: Any) -> None:
    definition = _sql(shop, INDEXDEF)[0][0][0]
    assert "Index" in _plan(shop)
    inject(chaos, "datastore.drop_index", "user-db", duration=2)  # defaults: customers_username_idx
    plan = _plan(shop)
    assert "Seq Scan" in plan and "customers_username_idx" not in plan
    wait_for(lambda: not active(chaos), timeout=6)
    assert _sql(shop, INDEXDEF)[0][0][0] == definition
    assert "customers_username_idx" in _plan(shop)


def test_query_storm_runs_in_the_store(shop: Shop, chaos: Any) -> None:
    def cpu() -> float:
        return shop.describe("user-db")["pods"][0]["cpu_seconds"] or 0.0

    i0, ti = cpu(), time.monotonic()
    time.sleep(0.5)
    idle = (cpu() - i0) / (time.monotonic() - ti)
    inject(chaos, "datastore.query_storm", "user-db", duration=2.5, params={"concurrency": 4})
    time.sleep(0.3)
    c0, t0 = cpu(), time.monotonic()
    rows = _sql(shop, STORM)[0]
    assert rows[0][0] >= 4
    time.sleep(1.0)
    busy = (cpu() - c0) / (time.monotonic() - t0)
    assert busy > max(0.2, 3 * idle), (idle, busy)  # a shared 2-core machine: a clear rise, not a figure
    wait_for(lambda: not active(chaos), timeout=6)
    wait_for(lambda: _sql(shop, STORM + " AND state = 'active'")[0][0][0] == 0, timeout=5)
    wait_for(lambda: _sql(shop, STORM)[0][0][0] == 0, timeout=5)


def test_redis_maxmemory_is_set_and_restored(shop: Shop, chaos: Any) -> None:
    r = redis.Redis.from_url(shop.addresses["session-db"])
    before = r.config_get("maxmemory*")
    inject(chaos, "datastore.redis_config", "session-db", duration=2,
           params={"maxmemory": "1mb", "maxmemory_policy": "noeviction"})
    assert r.config_get("maxmemory")["maxmemory"] == str(1 << 20)
    with pytest.raises(redis.ResponseError, match=r"OOM|maxmemory"):
        r.set("chaos-test-big", b"x" * (2 << 20))
    wait_for(lambda: not active(chaos), timeout=6)
    after = r.config_get("maxmemory*")
    assert {k: after[k] for k in ("maxmemory", "maxmemory-policy")} == \
        {k: before[k] for k in ("maxmemory", "maxmemory-policy")}
    r.delete("chaos-test-big")


def test_a_cache_with_room_for_little_data_evicts_as_it_grows(shop: Shop, chaos: Any) -> None:
    """maxmemory_data: Redis's own overhead at the fault's start plus room for some data, so new writes evict
    old keys whatever that overhead is on this machine (a fixed 1mb was below it some days, above others) and
    however much the cache held when the fault began."""
    r = redis.Redis.from_url(shop.addresses["session-db"])
    before = r.config_get("maxmemory*")
    evicted = int(r.info("stats")["evicted_keys"])
    overhead = int(r.info("memory")["used_memory_overhead"])
    # 256 kB of room: far more than Redis's own accounting moves under a test's load (tens of kB), so writes
    # evict and are never refused (with 16 kB, a write could find nothing left to evict and get OOM).
    inject(chaos, "datastore.redis_config", "session-db", duration=3,
           params={"maxmemory_data": "256kb", "maxmemory_policy": "allkeys-lru"})
    limit = int(r.config_get("maxmemory")["maxmemory"])
    assert abs(limit - 256 * 1024 - overhead) < 64 * 1024, (limit, overhead)  # its overhead then, plus 256 kB
    try:
        for i in range(1000):  # 1 MB of new keys into 256 kB of room: old ones must go
            r.set(f"chaos-test-evict-{i}", b"x" * 1024)
        assert int(r.info("stats")["evicted_keys"]) > evicted
        assert int(r.info("memory")["used_memory_dataset"]) < 512 * 1024
    finally:
        r.delete(*[f"chaos-test-evict-{i}" for i in range(1000)])
    wait_for(lambda: not active(chaos), timeout=8)
    after = r.config_get("maxmemory*")
    assert {k: after[k] for k in ("maxmemory", "maxmemory-policy")} == \
        {k: before[k] for k in ("maxmemory", "maxmemory-policy")}
    with pytest.raises(ClusterError, match="maxmemory or maxmemory_data, not both"):
        inject(chaos, "datastore.redis_config", "session-db", params={"maxmemory": "1mb", "maxmemory_data": "1kb"})
    with pytest.raises(ClusterError, match="Redis size"):
        inject(chaos, "datastore.redis_config", "session-db", params={"maxmemory_data": "lots"})


def test_a_noisy_tenant_fills_a_redis_and_its_keys_go_on_revert(shop: Shop, chaos: Any) -> None:
    """datastore.redis_fill: another job's keys arrive at about the rate asked (they expire by themselves), an
    evicting cache too small for them evicts, and the revert stops the job and deletes what it wrote."""
    r = redis.Redis.from_url(shop.addresses["session-db"])
    before = r.config_get("maxmemory*")
    evicted = int(r.info("stats")["evicted_keys"])
    inject(chaos, "datastore.redis_fill", "session-db", duration=60,
           params={"rate": "1mb", "value_size": "16kb", "ttl_s": 30, "prefix": "rpt-test:"})
    try:
        wait_for(lambda: len(list(r.scan_iter(match="rpt-test:*", count=1000))) >= 64, timeout=20)
        keys = list(r.scan_iter(match="rpt-test:*", count=1000))
        assert 0 < r.ttl(keys[0]) <= 30 and r.strlen(keys[0]) == 16 * 1024
        # Under an evicting limit with room for 256 kB, its writes evict (they are never refused).
        inject(chaos, "datastore.redis_config", "session-db", duration=60,
               params={"maxmemory_data": "256kb", "maxmemory_policy": "allkeys-lru"})
        wait_for(lambda: int(r.info("stats")["evicted_keys"]) > evicted + 16, timeout=20)
    finally:
        chaos.post("/v1/chaos/clear", {})
    assert list(r.scan_iter(match="rpt-test:*", count=1000)) == []
    after = r.config_get("maxmemory*")
    assert {k: after[k] for k in ("maxmemory", "maxmemory-policy")} == \
        {k: before[k] for k in ("maxmemory", "maxmemory-policy")}
    with pytest.raises(ClusterError, match=r"params\.rate"):
        inject(chaos, "datastore.redis_fill", "session-db", params={"rate": "1gb"})
    with pytest.raises(ClusterError, match=r"params\.prefix"):
        inject(chaos, "datastore.redis_fill", "session-db", params={"prefix": "a b*"})
    with pytest.raises(ClusterError, match="needs a redis one"):
        inject(chaos, "datastore.redis_fill", "user-db")


def test_a_bad_import_rewrites_the_chosen_rows_and_their_values_come_back(shop: Shop, chaos: Any) -> None:
    cities = "SELECT id, city FROM addresses ORDER BY id"
    before = [tuple(r) for r in _sql(shop, cities)[0]]
    glasgow = {i for i, city in before if city == "Glasgow"}
    assert glasgow
    inject(chaos, "datastore.bad_import", "user-db", duration=2, params={
        "table": "addresses", "column": "city", "value": "Nowhere", "where_column": "city",
        "where_values": ["Glasgow"], "key": ["id"]})
    during = dict(tuple(r) for r in _sql(shop, cities)[0])
    assert {i for i, city in during.items() if city == "Nowhere"} == glasgow
    assert all(during[i] == city for i, city in before if i not in glasgow)
    wait_for(lambda: not active(chaos), timeout=6)
    assert [tuple(r) for r in _sql(shop, cities)[0]] == before
    with pytest.raises(ClusterError, match=r"params\.where_column: addresses has no column 'cty'"):
        inject(chaos, "datastore.bad_import", "user-db", params={
            "table": "addresses", "column": "city", "value": "x", "where_column": "cty", "where_values": ["a"]})
    with pytest.raises(ClusterError, match=r"params\.table: user-db has no table 'adresses'"):
        inject(chaos, "datastore.bad_import", "user-db", params={
            "table": "adresses", "column": "city", "value": "x", "where_column": "city", "where_values": ["a"]})
    assert active(chaos) == []


def test_datastore_errors_name_the_field(shop: Shop, chaos: Any) -> None:
    with pytest.raises(ClusterError, match=r"params.index: public.customers has no index 'customers_usrname_idx' "
                                           r"\(did you mean 'customers_username_idx'"):
        inject(chaos, "datastore.drop_index", "user-db", params={"index": "customers_usrname_idx"})
    with pytest.raises(ClusterError, match="needs a postgres one"):
        inject(chaos, "datastore.drop_index", "session-db")
    with pytest.raises(ClusterError, match=r"params\.column"):
        inject(chaos, "datastore.query_storm", "user-db", params={"column": "emial"})
    with pytest.raises(ClusterError, match=r"params\.table"):
        inject(chaos, "datastore.drop_index", "user-db", params={"table": "bad name"})
    assert active(chaos) == []
    assert "customers_username_idx" in _plan(shop)


def test_a_poison_message_holds_an_ordered_consumer_until_moved_and_leaves_nothing_behind(
        shop: Shop, chaos: Any) -> None:
    """queue.poison on a stream read in order by a group (an edge's purge stream): the message is there, pending
    for the consumer that read it; moved aside to the dead-letter stream it is found and deleted there on revert;
    left pending, revert acknowledges and deletes it. Bad parameters change nothing."""
    r = redis.Redis.from_url(shop.addresses["queue"])
    stream = "cdn-purge.chaos-test"
    try:
        r.xgroup_create(stream, "edge-chaos-test", id="$", mkstream=True)
        for moved_aside in (True, False):
            fault = inject(chaos, "queue.poison", "queue", duration=60,
                           params={"queue": stream, "body": "PURGE /catalogue/x"})
            got = r.xreadgroup("edge-chaos-test", "edge-chaos-test", {stream: ">"}, count=5)
            [(mid, fields)] = got[0][1]
            assert fields[b"body"] == b"PURGE /catalogue/x"
            if moved_aside:  # what the dead_letter tool does
                r.xadd(stream + ".dlq", {**fields, "dead_lettered_from": mid})
                r.xack(stream, "edge-chaos-test", mid)
                r.xdel(stream, mid)
            chaos.post("/v1/chaos/clear", {"id": fault["id"]})
            assert r.xlen(stream) == 0 and r.xpending(stream, "edge-chaos-test")["pending"] == 0
            assert r.xlen(stream + ".dlq") == 0
        for params, why in (({"queue": "a b", "body": "x"}, "stream name"), ({"queue": "s", "body": ""}, "body"),
                            ({"queue": "s.dlq", "body": "x"}, "dead-letter stream")):
            with pytest.raises(SockdrillError, match=why):
                inject(chaos, "queue.poison", "queue", params=params)
        with pytest.raises(SockdrillError, match="is a postgres deployment"):
            inject(chaos, "queue.poison", "user-db", params={"queue": "s", "body": "x"})
    finally:
        r.delete(stream, stream + ".dlq")
