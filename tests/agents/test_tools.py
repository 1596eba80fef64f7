"""The tool set against the shared shop: observe, act (put back), paging, budgets, the audit log."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import redis

from sockdrill.agents.registry import all_tools
from sockdrill.agents.tools import DLQ_SUFFIX, QUEUE_GROUP, ToolContext, Tools
from tests.conftest import Shop


def ok(res: dict) -> object:
    assert res["ok"], res.get("error")
    return res["result"]


def test_registry_declares_every_tool_with_a_schema() -> None:
    specs = all_tools()
    for name in ("metrics", "promql", "traces", "trace", "edges", "logs", "log_stats", "queue_status",
                 "dead_letter", "requeue", "reset_gateway", "failover_gateway", "submit", "mitigation_done"):
        assert name in specs, name
    for s in specs.values():
        assert s.description and s.parameters["type"] == "object"
        assert s.openai()["function"]["name"] == s.name


def test_dispatch_refuses_unknown_tools_bad_args_and_overdraft(shop: Shop, tmp_path) -> None:
    t = Tools(ToolContext(data_dir=shop.data_dir, audit_path=tmp_path / "a.jsonl", max_steps=3))
    assert "did you mean" in t.call("topolgy")["error"]
    assert "needs argument 'service'" in t.call("describe")["error"]
    assert "must be integer" in t.call("scale", service="user", replicas="3")["error"]
    assert "budget" in t.call("topology")["error"]


def test_observe_tools(tools: Tools) -> None:
    topo = ok(tools.call("topology"))
    assert {"front-end", "user-db"} <= {d["name"] for d in topo["deployments"]}
    d = ok(tools.call("describe", service="payment"))
    assert "env" not in d and all("pid" not in p for p in d["pods"])
    names = ok(tools.call("metrics", limit=500))
    assert "container_cpu_usage_seconds_total" in names["names"]
    page = ok(tools.call("metrics", limit=2))
    assert len(page["names"]) == 2 and page["next_offset"] == 2
    cpu = ok(tools.call("metrics", name="container_cpu_usage_seconds_total", fn="rate", op="sum", by="service",
                        since_s=60, limit=3, points=True))
    assert cpu["total"] >= 3 and len(cpu["series"]) == 3 and cpu["next_offset"] == 3
    assert {"last", "min", "max", "mean", "points"} <= set(cpu["series"][0])
    assert "job" not in cpu["series"][0]["labels"]
    one = ok(tools.call("metrics", name="container_cpu_usage_seconds_total", labels={"service": "~user.*"}))
    assert {s["labels"]["service"] for s in one["series"]} <= {"user", "user-db"}
    edges = ok(tools.call("edges", source="front-end"))
    assert edges["edges"] and all(e["source"] == "front-end" for e in edges["edges"])
    for e in edges["edges"]:
        assert "toxics" not in e and "injected" not in e
    logs = ok(tools.call("logs", service="catalogue", limit=3))
    assert len(logs["lines"]) <= 3
    if logs["next_offset"]:
        older = ok(tools.call("logs", service="catalogue", limit=3, offset=3))
        assert older["lines"] != logs["lines"]
    assert isinstance(ok(tools.call("log_stats", since_s=300))["services"], list)
    assert isinstance(ok(tools.call("traces", limit=2))["traces"], list)
    q = ok(tools.call("queue_status"))
    assert q["stream"] and q["dead_letter_stream"].endswith(DLQ_SUFFIX)
    c = ok(tools.call("cache_stats", service="queue"))
    assert c["maxmemory_policy"] == "noeviction" and c["used_memory_bytes"] > 0, c
    assert sum(p["keys_sampled"] for p in c["prefixes"]) == c["sampled_keys"] == min(c["keys"], 500), c
    assert "not a Redis" in tools.call("cache_stats", service="user-db")["error"]
    assert ok(tools.call("runbooks")) == [{"id": "slow-logins", "title": "Slow logins"}]
    assert "slo" in tools.call("slo_status")["error"].lower()  # no SLO source outside a run
    assert tools.call("metrics", name="x", offset=-1)["ok"] is False


def test_a_backtracking_regex_does_not_stall_the_recorder(tools: Tools) -> None:
    """Issue 14 item 7, the way it was found: Python's re spends exponential time on this pattern against
    any pod name of 20-odd characters, which held the recorder at 100 % CPU for the rest of the run. With
    RE2 the query answers (empty) and the recorder stays healthy; a pattern RE2 refuses is a clear error."""
    evil = ok(tools.call("metrics", name="container_cpu_usage_seconds_total",
                         labels={"pod": "~(.|.|.|.)*Z", "service": "~(a|aa)*(b|bb)*c"}))
    assert evil["series"] == []
    after = ok(tools.call("metrics", name="container_cpu_usage_seconds_total", labels={"pod": "~.*-0"}))
    assert after["series"], "the recorder stopped answering after a backtracking regex"
    for bad in ("~(a", "~(a)\\1", "~" + "a" * 600):
        refused = tools.call("metrics", name="container_cpu_usage_seconds_total", labels={"pod": bad})
        assert refused["ok"] is False and "regex" in refused["error"], refused


def test_set_and_roll_back_config(tools: Tools) -> None:
    described = ok(tools.call("describe", service="orders"))
    before, revision = described["config"], described["config_revision"]
    # Every setting is shown with its value, changed or not: which were set is nobody's business.
    assert {"payment_timeout_s", "payment_retries", "fetch_timeout_s"} <= set(before) and "knobs" not in described
    # Nor what the manifest set (a reset's target): a variant's set-up must not show as a difference from it.
    assert not {"default_knobs", "default_replicas", "default_limits", "env"} & set(described), sorted(described)
    try:
        out = ok(tools.call("set_config", service="orders", knobs={"payment_retries": before["payment_retries"] + 1}))
        assert out["changed"] is True and set(out) == {"deployment", "set", "pods", "changed"}
        after = ok(tools.call("describe", service="orders"))
        assert after["config"]["payment_retries"] == before["payment_retries"] + 1
        assert after["config_revision"] == revision + 1
        same = tools.call("set_config", service="orders", knobs={"payment_retries": before["payment_retries"] + 1})
        assert ok(same)["changed"] is False and tools.actions[-1]["changed"] is False   # a no-op is no act
        ok(tools.call("rollback_config", service="orders"))
        assert ok(tools.call("describe", service="orders"))["config"] == before
    finally:
        tools.client.post("/v1/config/reset", {"deployment": "orders"})


def test_a_third_party_s_config_is_neither_shown_nor_changed(tools: Tools) -> None:
    d = ok(tools.call("describe", service="payment-gateway"))
    assert "transient_error_rate" not in str(d)
    assert "third-party" in tools.call("set_config", service="payment-gateway",
                                       knobs={"transient_error_rate": 0})["error"]
    assert "third-party" in tools.call("rollback_config", service="payment-gateway")["error"]


def test_a_second_submission_is_refused(tools: Tools) -> None:
    if tools.submission is not None:
        pytest.skip("this session's tools already hold a submission")
    assert ok(tools.call("submit", detected=False, root_causes=[]))["accepted"]
    second = tools.call("submit", detected=True, root_causes=["user-db"])
    assert "already submitted" in second["error"] and tools.submission is not None
    assert tools.submission.detected is False


def test_scale_is_bounded(tools: Tools) -> None:
    assert "between 0 and 8" in tools.call("scale", service="user", replicas=9)["error"]
    assert "is a datastore" in tools.call("scale", service="user-db", replicas=2)["error"]


def test_reset_gateway_closes_the_breaker_and_keeps_config(tools: Tools) -> None:
    before = ok(tools.call("describe", service="payment"))
    out = ok(tools.call("reset_gateway"))
    assert out["breaker"] == "closed" and out["pods"]
    after = ok(tools.call("describe", service="payment"))
    assert after["config"] == before["config"] and after["config_revision"] == before["config_revision"]


def test_failover_moves_payments_to_the_second_provider_and_a_rollback_moves_them_back(tools: Tools,
                                                                                        shop: Shop) -> None:
    import requests

    from tests.conftest import wait_for

    assert "one payment provider" in tools.call("failover_gateway")["error"]  # the second one is asleep
    rc, addr = shop.client, shop.client.record["addresses"]
    rc.post("/v1/scale", {"deployment": "payment-gateway-b", "replicas": 1})
    try:
        wait_for(lambda: rc.get("/v1/describe/payment-gateway-b")["ready_replicas"] == 1, timeout=60)

        def charge(key: str) -> dict[str, Any]:
            r = requests.post(f"{addr['payment']}/paymentAuth", json={"amount": 9.5}, timeout=10,
                              headers={"Idempotency-Key": key})
            assert r.status_code == 200 and r.json()["authorised"] is True, r.text
            return r.json()

        def ledger(name: str, key: str) -> list[dict[str, Any]]:
            r = requests.get(f"{addr[name]}/v1/charges", params={"reference": key}, timeout=10)
            return list(r.json()["data"])

        out = ok(tools.call("failover_gateway"))
        assert out["provider"] == "secondary" and out["gateway"] == "payment-gateway-b" and out["breaker"] == "closed"
        key = f"failover-{uuid.uuid4().hex}"
        charge(key)
        assert len(ledger("payment-gateway-b", key)) == 1 and ledger("payment-gateway", key) == []
        # Failing back is a config rollback, as for any change an operator made.
        assert ok(tools.call("rollback_config", service="payment"))["restored"] == {"gateway_provider": "primary"}
        key = f"failback-{uuid.uuid4().hex}"
        charge(key)
        assert len(ledger("payment-gateway", key)) == 1 and ledger("payment-gateway-b", key) == []
    finally:
        rc.post("/v1/scale", {"deployment": "payment-gateway-b", "replicas": 0})
        rc.post("/v1/config/reset", {"deployment": "payment"})


def test_dead_letter_and_requeue(tools: Tools, shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"agent-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SOCKDRILL_QUEUE_NAME", name)
    r = redis.Redis.from_url(shop.addresses["queue"])
    try:
        r.xgroup_create(name, QUEUE_GROUP, id="0", mkstream=True)
        mid = r.xadd(name, {"body": json.dumps({"id": "poison"}), "headers": "{}"}).decode()
        r.xreadgroup(QUEUE_GROUP, "crashed-consumer", {name: ">"}, count=1)  # delivered, never acked
        status = ok(tools.call("queue_status"))
        assert status["pending"] == 1 and status["oldest_pending"][0]["message_id"] == mid
        moved = ok(tools.call("dead_letter", min_idle_s=0))
        assert moved["dead_lettered"] == [mid]
        status = ok(tools.call("queue_status"))
        assert status["pending"] == 0 and status["length"] == 0 and status["dead_letters"] == 1
        back = ok(tools.call("requeue"))
        assert len(back["requeued"]) == 1 and back["left_in_dead_letter"] == 0
        assert r.xlen(name) == 1
        assert json.loads(r.xrange(name)[0][1][b"body"]) == {"id": "poison"}
        assert "no message" in tools.call("dead_letter", message_id="1-1")["error"]
    finally:
        r.delete(name, name + DLQ_SUFFIX)


def test_queue_tools_work_on_any_stream_of_the_queue_store(tools: Tools, shop: Shop) -> None:
    """An edge's purge stream, as scenario 4 has one: its group's poison message is found, moved aside and put
    back by naming the stream; a name that is not a stream is refused with the streams that are."""
    name = f"cdn-purge.test-{uuid.uuid4().hex[:6]}"
    r = redis.Redis.from_url(shop.addresses["queue"])
    try:
        r.xgroup_create(name, "edge-test", id="0", mkstream=True)
        mid = r.xadd(name, {"body": "PURGE /catalogue/x", "headers": "{}"}).decode()
        r.xreadgroup("edge-test", "edge-test", {name: ">"}, count=1)  # delivered, never acknowledged
        status = ok(tools.call("queue_status", queue=name))
        assert status["stream"] == name and status["pending"] == 1
        assert status["oldest_pending"][0]["message_id"] == mid
        assert {"stream": name, "length": 1} in status["streams"]
        moved = ok(tools.call("dead_letter", queue=name, min_idle_s=0))
        assert moved["dead_lettered"] == [mid] and moved["dead_letter_stream"] == name + DLQ_SUFFIX
        assert r.xlen(name) == 0 and r.xpending(name, "edge-test")["pending"] == 0
        back = ok(tools.call("requeue", queue=name))
        assert len(back["requeued"]) == 1 and r.xlen(name) == 1
        wrong = tools.call("queue_status", queue="cdn-purge.nowhere")
        assert wrong["ok"] is False and "no stream 'cdn-purge.nowhere'" in wrong["error"] and name in wrong["error"]
        bad = tools.call("dead_letter", queue="x y")
        assert bad["ok"] is False and "queue must be a stream name" in bad["error"]
    finally:
        r.delete(name, name + DLQ_SUFFIX)


def test_audit_log_records_every_call(tools: Tools) -> None:
    tools.call("topology")
    tools.call("describe", service="nope")
    tools.call("scale", service="user", replicas=99)
    tools.call("submit", detected=True, root_causes=["user"], category="network_latency", summary="x")
    lines = [json.loads(x) for x in tools.ctx.audit_path.read_text().splitlines()]
    assert [x["tool"] for x in lines] == ["topology", "describe", "scale", "submit"]
    for rec in lines:
        assert {"time", "tool", "kind", "args", "ok", "error", "elapsed_s"} <= set(rec)
    assert lines[0]["ok"] and not lines[1]["ok"] and lines[1]["error"]
    assert lines[2]["kind"] == "act" and "result" in lines[2] and not lines[2]["ok"]
    assert tools.submission is not None and tools.submission.root_causes == ["user"]


def test_a_tool_checks_every_argument_before_it_changes_anything(tools: Tools) -> None:
    """Issue 14 item 6, the calls that were found: resize_cache(maxmemory="2b", policy="x") left the new limit
    behind unaudited (and 1b made /catalogue fail), cancel_queries(-1e308) and create_index on a missing
    table printed tracebacks, drop_index could take a primary key. Each is a clear, audited refusal now,
    and nothing changed."""
    import redis as redis_lib

    r = redis_lib.Redis.from_url(tools._address("session-db"), socket_timeout=5)
    before = r.config_get("maxmemory")["maxmemory"], r.config_get("maxmemory-policy")["maxmemory-policy"]
    calls = [("resize_cache", {"service": "session-db", "maxmemory": "2b", "policy": "x"}, "at least 1mb"),
             ("resize_cache", {"service": "session-db", "maxmemory": "64mb", "policy": "x"}, "policy must be"),
             ("cancel_queries", {"service": "user-db", "min_duration_s": -1e308}, "between 0 and"),
             ("create_index", {"service": "user-db", "table": "nope", "columns": ["x"]}, "no table 'nope'"),
             ("create_index", {"service": "user-db", "table": "customers", "columns": ["usernme"]}, "no column"),
             ("drop_index", {"service": "catalogue-db", "name": "sock_pkey"}, "enforces the constraint"),
             ("limit_db_role", {"service": "user-db", "role": "sockdrill", "connections": 0}, "superuser"),
             ("limit_db_role", {"service": "user-db", "role": "shop", "connections": -2}, "from -1 (no limit)"),
             ("limit_db_role", {"service": "user-db", "role": "shpo", "connections": 0}, "did you mean 'shop'"),
             ("drop_constraint", {"service": "user-db", "table": "customers", "name": "customers_username_key"},
              "is a primary, unique"),
             ("drop_constraint", {"service": "user-db", "table": "nope", "name": "x"}, "no table 'nope'")]
    for name, args, why in calls:
        res = tools.call(name, **args)
        assert res["ok"] is False and why in res["error"], (name, res)
    assert (r.config_get("maxmemory")["maxmemory"], r.config_get("maxmemory-policy")["maxmemory-policy"]) == before
    audited = [x for x in tools.audit_records if x["kind"] == "act"]
    assert [x["tool"] for x in audited] == [c[0] for c in calls] and not any(x["changed"] for x in audited)


def test_cli_arguments_are_read_by_the_tool_s_schema() -> None:
    import typer

    from sockdrill.agents.cli import parse_arg
    from sockdrill.agents.registry import all_tools

    tools = all_tools()
    assert parse_arg("service=123", tools["describe"].parameters) == ("service", "123")   # text stays text
    assert parse_arg("replicas=2", tools["scale"].parameters) == ("replicas", 2)
    assert parse_arg("knobs={\"a\": 1}", tools["set_config"].parameters) == ("knobs", {"a": 1})
    with pytest.raises(typer.Exit) as err:
        parse_arg("replicas=two", tools["scale"].parameters)
    assert err.value.exit_code == 2


def _role_sessions(shop: Shop, role: str) -> int:
    import asyncio

    import asyncpg

    async def run() -> int:
        conn = await asyncpg.connect(shop.addresses["user-db"], timeout=10)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_a_query_storm_returns_after_its_queries_end_until_its_role_is_blocked(shop: Shop, tools: Tools) -> None:
    """Issue 13: the storm is a reporting job that retries. Ending its queries is a pause, not a fix (it
    reconnects within seconds); blocking its role stops it; the fault's end drops the role."""
    import time

    from tests.conftest import wait_for

    fault = shop.post("/v1/chaos/inject", {"kind": "datastore.query_storm", "target": "user-db", "duration": "2m",
                                           "params": {"concurrency": 2}})
    try:
        wait_for(lambda: _role_sessions(shop, "reporting") >= 2, timeout=15)
        # A session of the job is between two queries now and then (or not yet at its first): the call ends
        # what is running when it looks, so it is made until it found one of the job's queries running.
        calls: list[dict[str, Any]] = []

        def ends_a_storm_query() -> bool:
            calls.append(tools.call("cancel_queries", service="user-db", min_duration_s=0))
            return bool(calls[-1]["ok"] and calls[-1]["result"]["by_role"].get("reporting", 0) >= 1)

        try:
            wait_for(ends_a_storm_query, timeout=15, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"cancel_queries never ended the storm's queries: {calls[-3:]}") from exc
        wait_for(lambda: _role_sessions(shop, "reporting") >= 2, timeout=20)  # back again: the job retries
        blocked = tools.call("limit_db_role", service="user-db", role="reporting", connections=0, end_sessions=True)
        assert blocked["ok"] and blocked["result"]["changed"] and blocked["result"]["sessions_ended"] >= 1, blocked
        wait_for(lambda: _role_sessions(shop, "reporting") == 0, timeout=10)
        time.sleep(5)  # past its first retries (1 s, 2 s): refused at the door
        assert _role_sessions(shop, "reporting") == 0
    finally:
        shop.post("/v1/chaos/clear", {"id": fault["id"]})
    assert tools.call("limit_db_role", service="user-db", role="reporting", connections=-1)["ok"] is False  # gone


def _user_db(shop: Shop, sql: str, *args: object, timeout: float = 10, db: str = "user-db") -> object:
    import asyncio

    import asyncpg

    async def run() -> object:
        conn = await asyncpg.connect(shop.addresses[db], timeout=10)
        try:
            return await conn.fetchval(sql, *args, timeout=timeout)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_a_stuck_maintenance_lock_holds_writes_until_its_session_is_ended(shop: Shop, tools: Tools) -> None:
    """Scenario 9's "service timeouts": writes to customers wait behind a lock an idle transaction holds; reads
    go on. Ending idle-in-transaction sessions (not plain cancel_queries) ends it for good."""
    import asyncio

    from tests.conftest import wait_for

    any_id = _user_db(shop, "SELECT id FROM customers ORDER BY seq LIMIT 1")
    write = "UPDATE customers SET phone = phone WHERE id = $1"
    fault = shop.post("/v1/chaos/inject", {"kind": "datastore.lock_table", "target": "user-db", "duration": "2m",
                                           "params": {"table": "customers", "mode": "share"}})
    try:
        with pytest.raises(asyncio.TimeoutError):
            _user_db(shop, write, any_id, timeout=1.0)
        assert _user_db(shop, "SELECT count(*) FROM customers WHERE id = $1", any_id, timeout=5) == 1  # reads go on
        plain = tools.call("cancel_queries", service="user-db", min_duration_s=0)
        assert plain["ok"] and plain["result"]["by_role"].get("maintenance", 0) == 0  # it runs no query
        ended = tools.call("cancel_queries", service="user-db", min_duration_s=0, idle_in_transaction=True)
        assert ended["ok"] and ended["result"]["by_role"].get("maintenance") == 1, ended
        wait_for(lambda: _user_db(shop, write, any_id, timeout=5) is None, timeout=10)
        time.sleep(2)
        assert _user_db(shop, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'maintenance'") == 0
    finally:
        shop.post("/v1/chaos/clear", {"id": fault["id"]})
    assert _user_db(shop, "SELECT count(*) FROM pg_roles WHERE rolname = 'maintenance'") == 0


def test_a_migration_check_refuses_new_writes_until_it_is_dropped(shop: Shop, tools: Tools) -> None:
    """Scenario 9's "database constraint violations": old rows stay, new phone numbers with a '+' are refused."""
    import asyncpg

    any_id = _user_db(shop, "SELECT id FROM customers ORDER BY seq LIMIT 1")
    write = "UPDATE customers SET phone = '+44 20 7946 0018' WHERE id = $1"
    fault = shop.post("/v1/chaos/inject", {"kind": "datastore.add_check", "target": "user-db", "duration": "2m",
                                           "params": {"column": "phone", "pattern": "^[0-9]*$"}})
    try:
        with pytest.raises(asyncpg.CheckViolationError, match="customers_phone_check"):
            _user_db(shop, write, any_id)
        dropped = tools.call("drop_constraint", service="user-db", table="customers", name="customers_phone_check")
        assert dropped["ok"] and dropped["result"]["changed"], dropped
        _user_db(shop, write, any_id)
    finally:
        shop.post("/v1/chaos/clear", {"id": fault["id"]})
        _user_db(shop, "UPDATE customers SET phone = '' WHERE id = $1", any_id)
    assert _user_db(shop, "SELECT count(*) FROM pg_constraint WHERE conname = 'customers_phone_check'") == 0


def _carts_items(shop: Shop, customer: str) -> tuple[int, Any]:
    import requests

    r = requests.get(f"{shop.addresses['carts']}/carts/{customer}/items", timeout=15)
    return r.status_code, r.json() if r.status_code == 200 else r.text


def _carts_fallbacks(shop: Shop) -> float:
    import requests

    text = requests.get(f"{shop.addresses['carts']}/metrics", headers=shop.telemetry, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("carts_db_fallbacks_total{") and 'op="read"' in line)


def test_a_connection_leak_starves_carts_until_its_role_is_blocked(shop: Shop, tools: Tools) -> None:
    """Seed 3's "cart service database connection issues": a leaking client holds every slot carts-db lets a
    non-superuser have, carts' own sessions drop once and cannot come back, and carts (degraded mode) serves a
    stored cart as empty (200) instead of failing. db_sessions names the role; blocking it and ending its sessions
    gives carts its sessions back; the fault's end drops the role and gives the services' role its limit back."""
    import requests

    from tests.conftest import wait_for

    customer = f"leak-{uuid.uuid4().hex[:12]}"
    added = requests.post(f"{shop.addresses['carts']}/carts/{customer}/items",
                          json={"itemId": "sock-leak", "unitPrice": 2.5}, timeout=10)
    assert added.status_code == 201, added.text
    stored = "SELECT count(*) FROM cart_items WHERE customer_id = $1"
    wait_for(lambda: _user_db(shop, stored, customer, db="carts-db") == 1, timeout=20)  # written back
    redis.Redis.from_url(shop.addresses["carts-cache"]).delete(f"cart:{customer}")  # the next read is carts-db's
    before = _carts_fallbacks(shop)
    fault = shop.post("/v1/chaos/inject", {"kind": "datastore.connection_leak", "target": "carts-db",
                                           "duration": "2m"})
    try:
        seen = ok(tools.call("db_sessions", service="carts-db"))
        leak = [g for g in seen["groups"] if g["role"] == "recommender"]
        assert leak and leak[0]["application"] == "recommender", seen
        free_for_others = seen["max_connections"] - seen["reserved_for_superusers"]
        assert sum(g["sessions"] for g in leak) >= free_for_others - 2, seen  # every slot but the operators'
        assert not [g for g in seen["groups"] if g["role"] == "shop"], seen  # carts' sessions are gone
        assert _carts_items(shop, customer) == (200, [])  # degraded: the page loads, the stored sock is not shown
        assert _carts_fallbacks(shop) > before
        # A change starts from an empty cart and is kept in the cache, unwritten: the shopper is told it is saved.
        fresh = f"leak-{uuid.uuid4().hex[:12]}"
        kept = requests.post(f"{shop.addresses['carts']}/carts/{fresh}/items", json={"itemId": "sock-new"},
                             timeout=10)
        assert kept.status_code == 201, kept.text
        time.sleep(1.5)  # past a write-back round (every second): carts cannot take it to carts-db
        assert _user_db(shop, stored, fresh, db="carts-db") == 0
        # Out of degraded mode, the same read fails instead (upstream's behaviour), naming the cause.
        assert tools.call("set_config", service="carts", knobs={"empty_cart_on_db_error": False})["ok"]
        status, text = _carts_items(shop, customer)
        assert status == 500 and "TooManyConnections" in text, (status, text)
        assert tools.call("rollback_config", service="carts")["ok"]
        blocked = tools.call("limit_db_role", service="carts-db", role="recommender", connections=0,
                             end_sessions=True)
        assert blocked["ok"] and blocked["result"]["sessions_ended"] >= free_for_others - 2, blocked
        def shown() -> list[dict[str, Any]] | None:
            status, body = _carts_items(shop, customer)
            return body if status == 200 and body else None

        items = wait_for(shown, timeout=20)  # carts' pool opens again: the stored cart is back
        assert [(i["itemId"], i["quantity"]) for i in items] == [("sock-leak", 1)]
        wait_for(lambda: _user_db(shop, stored, fresh, db="carts-db") == 1, timeout=20)  # written back at last
    finally:
        shop.post("/v1/chaos/clear", {"id": fault["id"]})
    assert _user_db(shop, "SELECT count(*) FROM pg_roles WHERE rolname = 'recommender'", db="carts-db") == 0
    assert _user_db(shop, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'shop'", db="carts-db") == -1
    for cid in (customer, fresh):
        requests.delete(f"{shop.addresses['carts']}/carts/{cid}", timeout=10)


def test_create_index_makes_a_trigram_index_a_search_can_use_and_refuses_what_postgres_would(
        shop: Shop, tools: Tools) -> None:
    """A search's substring match (ILIKE '%wool%') needs a GIN index with pg_trgm's operator class: the agent
    can restore one, by name from an allow-list (no SQL of its own), and a wrong combination is a clear refusal
    that changes nothing."""
    def cat(sql: str) -> object:
        return _user_db(shop, sql, db="catalogue-db")

    calls = [({"method": "gin"}, "refused the index"),  # text has no default GIN operator class
             ({"method": "btree", "opclass": "gin_trgm_ops"}, "belongs to method gin"),
             ({"method": "gin", "opclass": "text_ops; DROP TABLE sock"}, "opclass must be one of"),
             ({"method": "spgist"}, "must be one of"),
             ({"method": "hash", "unique": True}, "only a btree index can be unique")]
    for extra, why in calls:
        res = tools.call("create_index", service="catalogue-db", table="sock", columns=["name"], **extra)
        assert res["ok"] is False and why in res["error"], (extra, res)
    cat("DROP EXTENSION IF EXISTS pg_trgm")
    res = tools.call("create_index", service="catalogue-db", table="sock", columns=["name"], method="gin",
                     opclass="gin_trgm_ops")
    assert res["ok"] is False and "needs the pg_trgm extension" in res["error"], res
    assert not any(x["changed"] for x in tools.audit_records if x["kind"] == "act")
    try:
        cat("CREATE EXTENSION pg_trgm")
        made = ok(tools.call("create_index", service="catalogue-db", table="sock", columns=["name"], method="gin",
                             opclass="gin_trgm_ops"))
        assert made["created"] == "sock_name_gin_idx" and made["changed"] is True, made
        definition = str(cat("SELECT indexdef FROM pg_indexes WHERE indexname = 'sock_name_gin_idx'"))
        assert "USING gin (name gin_trgm_ops)" in definition, definition
        plan = _explain(shop, "SELECT * FROM sock WHERE name ILIKE '%wool%'")
        assert "sock_name_gin_idx" in plan, plan
        again = ok(tools.call("create_index", service="catalogue-db", table="sock", columns=["name"], method="gin",
                              opclass="gin_trgm_ops"))
        assert again["changed"] is False and again["exists"] == "sock_name_gin_idx"
    finally:
        cat("DROP INDEX IF EXISTS sock_name_gin_idx")
        cat("DROP EXTENSION IF EXISTS pg_trgm")


def _explain(shop: Shop, query: str) -> str:
    """The plan PostgreSQL picks when a sequential scan is off (the test table is too small to need an index)."""
    import asyncio

    import asyncpg

    async def run() -> str:
        conn = await asyncpg.connect(shop.addresses["catalogue-db"], timeout=10)
        try:
            await conn.execute("SET enable_seqscan = off")
            return "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}"))
        finally:
            await conn.close()

    return asyncio.run(run())
