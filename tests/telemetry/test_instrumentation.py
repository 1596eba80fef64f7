"""Instrumentation against the real shop: the runtime's /metrics (pods, PostgreSQL, Redis, queue, mesh),
scrape targets, and one checkout traced end to end (front-end → orders → user/carts/payment/shipping →
queue → queue-master) with the same trace id in every pod's JSON logs."""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from sockdrill.bench import load
from sockdrill.cluster.ports import free_port
from sockdrill.telemetry.collectors import PostgresExporter, QueueExporter, RedisExporter, parse_text, render
from tests.conftest import Shop, wait_for

Series = dict[str, list[tuple[dict[str, str], float]]]
TRACED = ("front-end", "orders", "user", "carts", "payment", "shipping", "queue-master")
POSTGRES = ("catalogue-db", "carts-db", "orders-db", "user-db")
REDIS = ("session-db", "queue")


def scrape(shop: Shop) -> Series:
    req = urllib.request.Request(shop.client.record["metrics_url"], headers=shop.telemetry)
    with urllib.request.urlopen(req, timeout=15) as resp:
        assert resp.status == 200
        return parse_text(resp.read().decode())


def pod_name(shop: Shop, deployment: str) -> str:
    """The current pod of a one-replica deployment (restarts replace service pods under new names)."""
    return str(shop.describe(deployment)["pods"][0]["name"])


def value(series: Series, name: str, **labels: str) -> float:
    found = [v for lab, v in series.get(name, []) if all(lab.get(k) == want for k, want in labels.items())]
    assert found, f"no {name}{labels} in the runtime's metrics"
    return sum(found)


# ---- metrics ----------------------------------------------------------------------------------------
def test_targets_list_every_service_pod_and_the_runtime(shop: Shop) -> None:
    targets = shop.client.get("/v1/targets")
    jobs = {t["job"] for t in targets}
    assert set(TRACED) | {"catalogue", "sockdrill-runtime"} <= jobs
    assert not jobs & set(POSTGRES + REDIS)  # stores are read by the runtime's exporters, not scraped
    requests.get(shop.url + "/catalogue", timeout=10).raise_for_status()
    for t in targets:
        text = requests.get(t["url"], headers=shop.telemetry, timeout=10).text
        if t["job"] == "sockdrill-runtime":
            assert t["url"] == shop.client.record["metrics_url"]
            assert "container_cpu_usage_seconds_total" in text
        else:
            assert t["pod"].startswith(t["job"] + "-")
            assert "# TYPE http_request_duration_seconds histogram" in text, t
            assert "# TYPE request_duration_seconds histogram" in text, t


def test_pod_resources_restarts_and_readiness(shop: Shop) -> None:
    before = scrape(shop)
    fe = shop.url
    load([fe + "/catalogue", fe + "/catalogue?size=20", fe + "/tags"], 16, 2.0)
    after = scrape(shop)
    for pod in (pod_name(shop, "front-end"), pod_name(shop, "catalogue")):
        used = (value(after, "container_cpu_usage_seconds_total", pod=pod)
                - value(before, "container_cpu_usage_seconds_total", pod=pod))
        assert used > 0.1, f"{pod} used only {used:.3f} CPU-s under load"
    status = shop.status()
    for dep in status["deployments"]:
        for pod in dep["pods"]:
            labels = {"pod": pod["name"], "service": dep["name"], "namespace": "sock-shop"}
            assert value(after, "container_memory_working_set_bytes", **labels) > 1 << 20
            assert value(after, "kube_pod_container_status_restarts_total", **labels) == pod["restarts"]
            assert value(after, "kube_pod_status_ready", condition="true", **labels) == (1 if pod["ready"] else 0)
            assert value(after, "kube_pod_status_phase", phase="Running", **labels) == 1
            assert value(after, "container_cpu_usage_seconds_total", container=dep["name"], **labels) > 0
    assert value(after, "kube_deployment_spec_replicas", deployment="front-end") == 1
    # The mesh edges are in the same scrape.
    assert value(after, "mesh_edge_requests_total", source="front-end", destination="catalogue") > 0


def test_cpu_limit_shows_as_throttling(shop: Shop) -> None:
    if shop.status()["cgroups"]["version"] == 0:
        pytest.skip("no writable cgroups here: " + shop.status()["cgroups"]["reason"])
    limits = shop.describe("catalogue")["limits"]
    pod = pod_name(shop, "catalogue")
    shop.post("/v1/limits", {"deployment": "catalogue", "cpu": "100m"})
    try:
        before = scrape(shop)
        assert value(before, "container_spec_cpu_quota", pod=pod) == 10_000
        load([shop.addresses["catalogue"] + "/catalogue?size=50"], 16, 2.5)
        after = scrape(shop)
        for name in ("container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
                     "container_cpu_cfs_throttled_seconds_total"):
            rise = value(after, name, pod=pod) - value(before, name, pod=pod)
            assert rise > 0, f"{name} did not rise under a 100m limit"
    finally:
        shop.post("/v1/limits", {"deployment": "catalogue", "clear": True})
        if limits["cpu_millicores"] or limits["memory_bytes"]:
            body: dict[str, Any] = {"deployment": "catalogue"}
            if limits["cpu_millicores"]:
                body["cpu"] = f"{limits['cpu_millicores']}m"
            if limits["memory_bytes"]:
                body["memory"] = str(limits["memory_bytes"])
            shop.post("/v1/limits", body)
    # Back to the manifest's limit (every pod has one): 1000m is a quota of 100,000 µs per 100 ms period.
    assert value(scrape(shop), "container_spec_cpu_quota", pod=pod) == limits["cpu_millicores"] * 100


def test_postgres_metrics(shop: Shop) -> None:
    # Traffic on user-db: a login looks the customer up, the catalogue reads socks.
    requests.get(shop.url + "/login", auth=("user", "password"), timeout=10)
    requests.get(shop.url + "/catalogue", timeout=10).raise_for_status()
    m = scrape(shop)
    for db in POSTGRES:
        base = {"service": db, "instance": db}
        assert value(m, "pg_up", **base) == 1
        assert value(m, "pg_stat_activity_count", datname="sockdrill", state="idle", **base) >= 1
        assert value(m, "pg_stat_activity_count", datname="sockdrill", state="active", **base) >= 0
        assert value(m, "pg_stat_database_xact_commit", datname="sockdrill", **base) > 0
        assert value(m, "pg_stat_database_xact_rollback", datname="sockdrill", **base) >= 0
        assert value(m, "pg_stat_database_tup_returned", datname="sockdrill", **base) > 0
        assert value(m, "pg_stat_database_tup_fetched", datname="sockdrill", **base) > 0
        assert value(m, "pg_locks_count", datname="sockdrill", mode="accesssharelock", **base) >= 0
        assert value(m, "pg_settings_max_connections", **base) > 0
    customers = {"service": "user-db", "relname": "customers", "datname": "sockdrill"}
    assert value(m, "pg_stat_user_tables_seq_scan", **customers) >= 0
    assert value(m, "pg_stat_user_tables_idx_scan", **customers) > 0  # login by username uses an index
    assert value(m, "pg_stat_user_tables_n_live_tup", **customers) >= 2000
    statements = [lab for lab, _ in m.get("pg_stat_statements_seconds_total", []) if lab["service"] == "user-db"]
    assert statements and all(lab["query"] and lab["queryid"] for lab in statements)
    assert len(statements) <= 10
    # The exact names (postgres_exporter's counters have no _total).
    assert "# TYPE pg_stat_database_xact_commit counter" in requests.get(
        shop.client.record["metrics_url"], headers=shop.telemetry, timeout=15).text


def test_redis_and_queue_metrics(shop: Shop) -> None:
    requests.get(shop.url + "/cart", timeout=10)  # a session read and write
    m = scrape(shop)
    for store in REDIS:
        base = {"service": store, "instance": store}
        assert value(m, "redis_up", **base) == 1
        assert value(m, "redis_memory_used_bytes", **base) > 100_000
        assert value(m, "redis_memory_max_bytes", **base) >= 0
        assert value(m, "redis_connected_clients", **base) >= 1
        for name in ("redis_evicted_keys_total", "redis_expired_keys_total", "redis_keyspace_hits_total",
                     "redis_keyspace_misses_total"):
            assert value(m, name, **base) >= 0
    assert value(m, "redis_db_keys", service="session-db", db="db0") >= 1
    assert value(m, "rabbitmq_up", service="queue") == 1
    for name in ("rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacknowledged",
                 "rabbitmq_queue_consumers", "rabbitmq_queue_messages_published_total"):
        assert value(m, name, service="queue", queue="shipping-task") >= 0
    assert value(m, "rabbitmq_queue_consumers", service="queue") >= 1
    assert value(m, "sockdrill_scrape_collector_success") == len(
        m["sockdrill_scrape_collector_success"])  # every collector worked


def test_a_dead_or_silent_store_gives_up_zero_quickly() -> None:
    dead = free_port()
    silent = socket.socket()  # accepts connections (backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        async def run() -> list[str]:
            exporters: list[Any] = [
                PostgresExporter("dead-db", lambda: f"postgresql://sockdrill@127.0.0.1:{dead}/sockdrill", 1.0),
                PostgresExporter("silent-db", lambda: f"postgresql://sockdrill@127.0.0.1:{port}/sockdrill", 1.0),
                RedisExporter("dead-redis", lambda: f"redis://127.0.0.1:{dead}/0", 1.0),
                RedisExporter("silent-redis", lambda: f"redis://127.0.0.1:{port}/0", 1.0),
                QueueExporter("dead-queue", lambda: f"redis://127.0.0.1:{dead}/0", timeout=1.0),
            ]
            t0 = time.monotonic()
            results = await asyncio.gather(*(e.collect() for e in exporters))
            assert time.monotonic() - t0 < 3.0
            for e in exporters:
                await e.close()
            return [render(r) for r in results]

        texts = asyncio.run(run())
    finally:
        silent.close()
    assert 'pg_up{service="dead-db",instance="dead-db"} 0.0' in texts[0]
    assert 'pg_up{service="silent-db",instance="silent-db"} 0.0' in texts[1]
    assert 'redis_up{service="dead-redis",instance="dead-redis"} 0.0' in texts[2]
    assert 'redis_up{service="silent-redis",instance="silent-redis"} 0.0' in texts[3]
    assert 'rabbitmq_up{service="dead-queue",instance="dead-queue"} 0.0' in texts[4]


def test_tracing_is_off_without_an_endpoint_or_when_disabled() -> None:
    code = ("import sys; from sockdrill.telemetry import tracing as t; "
            "print(t.setup_tracing('x', 'x-0'), 'opentelemetry.sdk.trace' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SOCKDRILL_"))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]  # no SDK import at all
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", SOCKDRILL_TRACING="off")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    env.pop("SOCKDRILL_TRACING")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


# ---- traces -----------------------------------------------------------------------------------------
class OtlpReceiver:
    """A tiny OTLP/HTTP (protobuf) trace receiver for this test."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[dict[str, Any]] = []
        lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                req = ExportTraceServiceRequest()
                req.ParseFromString(raw)
                got = []
                for rs in req.resource_spans:
                    res = {a.key: a.value.string_value for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            attrs = {a.key: (a.value.string_value or a.value.int_value or a.value.bool_value)
                                     for a in s.attributes}
                            got.append({"trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                                        "parent": s.parent_span_id.hex(), "name": s.name, "kind": s.kind,
                                        "service": res.get("service.name"), "pod": res.get("k8s.pod.name"),
                                        "attributes": attrs, "error": s.status.code == 2})
                with lock:
                    spans.extend(got)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        return [s for s in list(self.spans) if s["trace_id"] == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


TraceSource = Callable[[str], list[dict[str, Any]]]


@pytest.fixture()
def traces(shop: Shop) -> Iterator[TraceSource]:
    """Spans of a trace id: from the flight recorder when it runs; otherwise from our own receiver,
    added to the traced services' exporters by a rolling env change that is rolled back afterwards."""
    recorder = shop.client.record.get("recorder_url")
    if recorder:
        def from_recorder(trace_id: str) -> list[dict[str, Any]]:
            resp = requests.get(f"{recorder}/api/trace/{trace_id}", headers=shop.telemetry, timeout=10)
            if resp.status_code == 404:
                return []
            resp.raise_for_status()
            return [{**sp, "parent": sp["parent_id"]} for sp in resp.json()["spans"]]

        yield from_recorder
        return
    recv = OtlpReceiver()
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": recv.url + "/v1/traces"}

    def all_ready() -> bool:
        return bool(shop.status()["ready"])

    with ThreadPoolExecutor(len(TRACED)) as pool:
        list(pool.map(lambda d: shop.post("/v1/env", {"deployment": d, "env": env}), TRACED))
    try:
        wait_for(all_ready, 60)
        yield recv.trace
    finally:
        with ThreadPoolExecutor(len(TRACED)) as pool:
            list(pool.map(lambda d: shop.post("/v1/env/rollback", {"deployment": d}), TRACED))
        wait_for(all_ready, 60)
        recv.close()


def checkout(base: str, traceparent: str) -> requests.Response:
    s = requests.Session()
    name = f"trace_{uuid.uuid4().hex[:10]}"
    steps = [
        ("POST", "/register", {"username": name, "password": "pw", "email": f"{name}@example.com",
                               "firstName": "Trace", "lastName": "Test"}),
        ("POST", "/addresses", {"number": "1", "street": "Span Street", "city": "Glasgow", "postcode": "G1",
                                "country": "UK"}),
        ("POST", "/cards", {"longNum": "4111111111111111", "expires": "12/30", "ccv": "123"}),
        ("POST", "/cart", {"id": "3395a43e-2d88-40de-b95f-e00e1502085b"}),
    ]
    for method, path, body in steps:
        resp = s.request(method, base + path, json=body, timeout=15)
        assert resp.status_code < 300, (path, resp.status_code, resp.text)
    return s.post(base + "/orders", headers={"traceparent": traceparent}, timeout=30)


def log_lines(shop: Shop, deployment: str, trace_id: str) -> list[dict[str, Any]]:
    """JSON log lines mentioning the trace id, from every pod the deployment has had."""
    pod_log = re.compile(re.escape(deployment) + r"-\d+\.log")
    out = []
    for path in sorted((shop.data_dir / "logs").iterdir()):
        if not pod_log.fullmatch(path.name):
            continue
        for line in path.read_text(errors="replace").splitlines():
            if trace_id in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    return out


def test_one_checkout_is_one_trace_across_every_hop(shop: Shop, traces: TraceSource) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    resp = checkout(shop.url, f"00-{trace_id}-{parent}-01")
    assert resp.status_code == 201, resp.text

    def complete() -> list[dict[str, Any]] | None:
        spans = traces(trace_id)
        services = {s["service"] for s in spans}
        root = any(s["parent"] == parent for s in spans)  # the front-end's server span ends last
        return spans if root and set(TRACED) <= services else None

    spans = wait_for(complete, 20, 0.3)
    by_id = {s["span_id"]: s for s in spans}
    root = [s for s in spans if s["parent"] == parent]
    assert [s["name"] for s in root] == ["POST /orders"] and root[0]["service"] == "front-end"
    for s in spans:  # one tree: every span's parent is in the trace (or is the caller's)
        assert s["parent"] == parent or s["parent"] in by_id, s
    # front-end → orders → payment/shipping/user/carts are server spans under client spans.
    orders = [s for s in spans if s["service"] == "orders" and s["name"] == "POST /orders"]
    assert orders and by_id[orders[0]["parent"]]["service"] == "front-end"
    for svc in ("user", "carts", "payment", "shipping"):
        server = [s for s in spans if s["service"] == svc and s["kind"] == 2]  # SPAN_KIND_SERVER
        assert server, svc
        assert any(by_id[s["parent"]]["service"] == "orders" for s in server), svc
    publish = [s for s in spans if s["service"] == "shipping" and s["name"].endswith(" publish")]
    consume = [s for s in spans if s["service"] == "queue-master" and s["name"].endswith(" process")]
    assert publish and consume and consume[0]["parent"] == publish[0]["span_id"]
    db = [s for s in spans if s["attributes"].get("db.system") == "postgresql"]
    assert {s["service"] for s in db} >= {"orders", "user"}
    assert all(s["attributes"].get("db.statement") for s in db)
    # carts answers from its write-behind cache (carts-db is written in the background, outside the trace).
    assert any(s["attributes"].get("db.system") in ("redis", "postgresql") and s["kind"] == 3
               for s in spans if s["service"] == "carts")
    assert any(s["attributes"].get("db.system") == "redis" for s in spans if s["service"] == "front-end")
    # The same trace id in every pod's logs, including queue-master's shipment lines.
    for svc in TRACED:
        lines = wait_for(functools.partial(log_lines, shop, svc, trace_id), 10)
        assert all(line["trace_id"] == trace_id and line["service"] == svc for line in lines)
    qm = log_lines(shop, "queue-master", trace_id)
    assert any(line["message"].startswith("Received shipment task") for line in qm)
    access = [line for line in log_lines(shop, "front-end", trace_id)
              if line.get("fields", {}).get("kind") == "access"]
    assert access and access[0]["fields"]["route"] == "/orders"
    # Requests without an incoming traceparent get a fresh, real trace id in their log lines.
    requests.get(shop.url + "/catalogue", timeout=10)
    time.sleep(0.3)
    tail = (shop.data_dir / "logs" / f"{pod_name(shop, 'front-end')}.log").read_text().splitlines()[-20:]
    ids = [json.loads(line)["trace_id"] for line in tail if '"/catalogue"' in line]
    assert ids and all(len(i) == 32 and int(i, 16) for i in ids)
    # The runtime's probes (every second since the shop started) and the recorder's scrapes leave no access line.
    log = (shop.data_dir / "logs" / f"{pod_name(shop, 'front-end')}.log").read_text().splitlines()
    routes = {json.loads(line).get("fields", {}).get("route") for line in log
              if line.startswith("{") and '"access"' in line}
    assert "/catalogue" in routes and not routes & {"/health", "/metrics"}, routes


# ---- the recorder's life cycle --------------------------------------------------------------------
def test_recorder_is_cleaned_up_after_a_supervisor_crash() -> None:
    import shutil
    import signal

    import psutil

    from sockdrill.cluster import client
    from sockdrill.cluster.admin import telemetry_headers
    from sockdrill.cluster.spec import DeploymentSpec
    from tests.conftest import make_data_dir

    data_dir = make_data_dir("sockdrill-telemetry-")
    try:
        rc, _ = client.up([DeploymentSpec(name="cache", kind="redis")], data_dir=data_dir, timeout=60)
        token = telemetry_headers(rc.record.get("telemetry_token"))
        text = requests.get(rc.record["metrics_url"], headers=token, timeout=10).text
        assert requests.get(rc.record["metrics_url"], timeout=10).status_code == 401
        assert 'redis_up{service="cache",instance="cache"} 1' in text
        assert rc.get("/v1/targets") == [{"job": "sockdrill-runtime", "pod": "supervisor",
                                          "url": rc.record["metrics_url"]}]
        recorder = rc.record.get("recorder")
        if not recorder:
            pytest.skip("no flight recorder in this build")
        assert requests.get(rc.record["recorder_url"] + "/health", headers=token, timeout=5).json()["stats"]
        assert rc.record["run_dir"].startswith(str(data_dir / "runs"))
        os.kill(rc.record["supervisor"]["pid"], signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(rc.record["supervisor"]["pid"])
                 or psutil.Process(rc.record["supervisor"]["pid"]).status() == psutil.STATUS_ZOMBIE, 10)
        assert psutil.pid_exists(recorder["pid"])  # orphaned, still running
        done = client.down(data_dir)
        assert any("recorder" in line for line in done), done
        assert not psutil.pid_exists(recorder["pid"]) or \
            psutil.Process(recorder["pid"]).status() == psutil.STATUS_ZOMBIE
    finally:
        client.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_queue_exporter_speaks_rabbitmq_too() -> None:
    """Same series for the RabbitMQ backend (this machine's broker, a queue of our own)."""
    from sockdrill.shop.queue import open_queue

    url = "amqp://guest:guest@127.0.0.1:5672/"
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 5672)) != 0:
            pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    name = f"sockdrill-test-{uuid.uuid4().hex[:8]}"

    async def run() -> Series:
        q = open_queue(url, name)
        try:
            await q.publish({"id": "1", "name": "x"}, {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"})
            exporter = QueueExporter("queue", lambda: url, name, timeout=5.0)
            series = parse_text(render(await exporter.collect()))
            await exporter.close()
            return series
        finally:
            await q.delete()  # type: ignore[attr-defined]
            await q.close()

    m = asyncio.run(run())
    assert value(m, "rabbitmq_up", service="queue") == 1
    assert value(m, "rabbitmq_queue_messages_ready", queue=name) == 1
    assert value(m, "rabbitmq_queue_consumers", queue=name) == 0
