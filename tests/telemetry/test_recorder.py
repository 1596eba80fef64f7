"""The flight recorder as a real process: scraping, pushed samples, OTLP spans, log tailing, queries
(in-process on the run dir and over its HTTP API), and real data from the shared shop under load."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sockdrill.bench.recorder import drive, start_recorder, stop_recorder
from sockdrill.cluster.ports import free_port
from sockdrill.telemetry.promtext import parse_series, samples
from sockdrill.telemetry.query import Query, QueryError, RemoteQuery, histogram_quantile
from tests.conftest import Shop

INTERVAL = 0.5


# ---- pure functions ---------------------------------------------------------------------------------
def test_promtext_reads_what_prometheus_client_writes() -> None:
    reg = CollectorRegistry()
    c = Counter("reqs", "d", ["path"], registry=reg)
    c.labels('/a b"c\\').inc(3)
    Histogram("lat_seconds", "d", registry=reg, buckets=(0.1, 1)).observe(0.5)
    got = dict(samples(generate_latest(reg).decode()))
    key = next(k for k in got if k.startswith("reqs_total"))
    assert got[key] == 3.0
    assert parse_series(key) == ("reqs_total", {"path": '/a b"c\\'})
    assert got['lat_seconds_bucket{le="1.0"}'] == 1.0 and got['lat_seconds_bucket{le="+Inf"}'] == 1.0
    assert parse_series("bad name{") is None
    assert list(samples("# HELP x\nno_value\nx{a=\"1\"} notanumber\ny 2 1700000000000\n")) == [("y", 2.0)]


def test_histogram_quantile_matches_prometheus() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.5)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.99, [(0.1, 0.0), (math.inf, 10.0)]) == 0.1  # in +Inf: the highest finite bound
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))


# ---- a recorder against a fake target -----------------------------------------------------------------
class FakeTarget:
    """A /metrics endpoint whose counter grows 20/s and whose histogram gets 10 obs/s at 0.3 s."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.started = time.time()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def text(self) -> str:
        el = time.time() - self.started
        n = 10 * el
        lines = [f'http_requests_total{{path="/x",code="200"}} {20 * el}',
                 'http_request_duration_seconds_bucket{path="/x",le="0.1"} 0',
                 f'http_request_duration_seconds_bucket{{path="/x",le="0.5"}} {n}',
                 f'http_request_duration_seconds_bucket{{path="/x",le="+Inf"}} {n}',
                 f'http_request_duration_seconds_count{{path="/x"}} {n}',
                 'queue_depth{pod="someone-else"} 7',  # an exposed pod label wins (honor_labels)
                 'http_requests_created{path="/x"} 1.7e9']
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.server.shutdown()


def _post(url: str, body: bytes, ctype: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _otlp_request(trace_id: str, spans: list[tuple[str, str, str, float, int]]) -> bytes:
    """spans: (span_id, parent_id, name, duration_ms, status_code)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "orders"
    ss = rs.scope_spans.add()
    start = int(time.time() * 1e9)
    for span_id, parent, name, ms, code in spans:
        sp = ss.spans.add()
        sp.trace_id = bytes.fromhex(trace_id)
        sp.span_id = bytes.fromhex(span_id)
        if parent:
            sp.parent_span_id = bytes.fromhex(parent)
        sp.name, sp.kind = name, 2
        sp.start_time_unix_nano, sp.end_time_unix_nano = start, start + int(ms * 1e6)
        sp.status.code = code
        a = sp.attributes.add()
        a.key, a.value.int_value = "http.response.status_code", 500 if code == 2 else 200
    return req.SerializeToString()


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Path, FakeTarget]]:
    root = tmp_path_factory.mktemp("recorder")
    target = FakeTarget()
    logs = root / "logs"
    logs.mkdir()
    (logs / "orders-0.log").write_text('{"time": 1, "level": "info", "message": "before start-up"}\n')
    targets = root / "targets.json"
    dead = free_port()
    targets.write_text(json.dumps([
        {"job": "orders", "pod": "orders-0", "url": f"http://127.0.0.1:{target.port}/metrics"},
        {"job": "ghost", "pod": "ghost-0", "url": f"http://127.0.0.1:{dead}/metrics"}]))
    run_dir = root / "run"
    proc, url = start_recorder(run_dir, "", "", logs, INTERVAL, extra=["--targets-file", str(targets)])
    try:
        yield run_dir, url, logs, target
    finally:
        stop_recorder(proc)
        target.close()


def test_recorder_scrapes_ingests_and_answers(fake_run: tuple[Path, str, Path, FakeTarget]) -> None:
    run_dir, url, logs, _target = fake_run
    trace = "0af7651916cd43dd8448eb211c80319c"
    code, _ = _post(url + "/v1/traces", _otlp_request(trace, [
        ("b7ad6b7169203331", "", "POST /orders", 250.0, 2),
        ("00f067aa0ba902b7", "b7ad6b7169203331", "GET /customers/{id}", 3.0, 0)]), "application/x-protobuf")
    assert code == 200
    json_body = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "carts"}}]}, "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "GET /carts/{id}",
            "kind": 2, "startTimeUnixNano": str(int(time.time() * 1e9)),
            "endTimeUnixNano": str(int(time.time() * 1e9) + 4_000_000), "status": {}}]}]}]}
    code, body = _post(url + "/v1/traces", json.dumps(json_body).encode(), "application/json")
    assert code == 200 and json.loads(body) == {}
    now = time.time()
    code, body = _post(url + "/v1/ingest", json.dumps({"samples": [
        {"name": "journey_success_ratio", "labels": {"journey": "login"}, "value": v, "time": now - 2 + i}
        for i, v in enumerate((1.0, 0.5, 0.75))]}).encode(), "application/json")
    assert code == 200 and json.loads(body) == {"accepted": 3}
    with open(logs / "orders-0.log", "a") as fh:
        fh.write(json.dumps({"time": now, "level": "error", "service": "orders", "pod": "orders-0",
                             "trace_id": trace, "message": "payment declined", "fields": {"order": 7}}) + "\n")
    (logs / "orders-db-0.log").write_text("2024-01-01 LOG:  checkpoint\n2024-01-01 ERROR:  deadlock detected\n")
    time.sleep(INTERVAL * 8)  # several scrapes and flushes

    for q in (Query.open(run_dir), RemoteQuery(url)):
        rate = q.rate("http_requests_total", {"job": "orders"}, since="30s", window="3s")
        assert rate and rate[0]["labels"] == {"job": "orders", "pod": "orders-0", "path": "/x", "code": "200"}
        assert rate[0]["points"][-1][1] == pytest.approx(20.0, rel=0.1)
        p95 = q.quantile(0.95, "http_request_duration_seconds", {"job": "orders"}, since="30s", window="3s")
        assert p95[0]["points"][-1][1] == pytest.approx(0.1 + 0.4 * 0.95)  # all observations in (0.1, 0.5]
        up = {s["labels"]["job"]: s["points"][-1][1] for s in q.series("up", since="30s")}
        assert up == {"orders": 1.0, "ghost": 0.0}  # a failed scrape records up=0
        depth = q.series("queue_depth", since="30s")
        assert depth[0]["labels"]["pod"] == "someone-else"
        assert "http_requests_created" not in q.names()
        pushed = q.series("journey_success_ratio", ["journey=~log.*"], since="1m")
        assert [v for _, v in pushed[0]["points"]] == [1.0, 0.5, 0.75]
        total = q.aggregate("http_request_duration_seconds_bucket", op="count", by="job", since="10s")
        assert total[0]["labels"] == {"job": "orders"} and total[0]["points"][-1][1] == 3
        logs_found = q.logs(service="orders", level="error", since="5m")
        assert [entry["message"] for entry in logs_found] == ["payment declined"]  # not the line from before start
        assert logs_found[0]["trace_id"] == trace and logs_found[0]["extra"]["fields"] == {"order": 7}
        assert q.logs(grep="DEADLOCK", since="5m")[0]["service"] == "orders-db"  # plain text, case-insensitive
        slow = q.traces(service="orders", min_ms=100, since="5m")
        assert [t["trace_id"] for t in slow] == [trace] and slow[0]["errors"] == 1
        assert slow[0]["root_name"] == "POST /orders" and slow[0]["spans_count"] == 2
        assert q.traces(service="orders", min_ms=1000, since="5m") == []
        assert [t["root_service"] for t in q.traces(since="5m", limit=10)].count("carts") == 1
        one = q.trace(trace)
        assert [(s["name"], s["depth"]) for s in one["spans"]] == [("POST /orders", 0), ("GET /customers/{id}", 1)]
        q.close()


def test_the_load_s_latest_samples_are_served_for_prometheus(fake_run: tuple[Path, str, Path, FakeTarget]) -> None:
    """Prometheus scrapes the load's SLIs from the recorder (``/metrics/load``): the latest value of each series,
    typed, with escaped labels; a series the load stopped sending is left out."""
    import urllib.request

    _run_dir, url, _logs, _t = fake_run
    now = time.time()
    samples = [
        {"name": "journey_requests_total", "labels": {"journey": "login"}, "value": 10, "time": now - 1},
        {"name": "journey_requests_total", "labels": {"journey": "login"}, "value": 12, "time": now},
        {"name": "journey_latency_seconds", "labels": {"journey": "log\"in", "quantile": "0.95"}, "value": 0.25,
         "time": now},
        {"name": "load_users", "labels": {}, "value": 3, "time": now - 3600},  # stale: left out
    ]
    assert _post(url + "/v1/ingest", json.dumps({"samples": samples}).encode(), "application/json")[0] == 200
    with urllib.request.urlopen(url + "/metrics/load", timeout=10) as resp:
        text = resp.read().decode()
    assert "# TYPE journey_requests_total counter" in text and 'journey_requests_total{journey="login"} 12.0' in text
    assert "# TYPE journey_latency_seconds gauge" in text
    assert 'journey_latency_seconds{journey="log\\"in",quantile="0.95"} 0.25' in text
    assert "load_users" not in text
    from sockdrill.telemetry.promtext import parse_series, samples  # read back as a scraper reads it

    read = {(s[0], s[1].get("journey")): v for k, v in samples(text) if (s := parse_series(k)) is not None}
    assert read[("journey_requests_total", "login")] == 12.0
    assert read[("journey_latency_seconds", 'log"in')] == 0.25


def test_recorder_rejects_bad_input(fake_run: tuple[Path, str, Path, FakeTarget]) -> None:
    _run_dir, url, _logs, _t = fake_run
    assert _post(url + "/v1/traces", b"\xff\x00garbage", "application/x-protobuf")[0] == 400
    assert _post(url + "/v1/traces", b"{not json", "application/json")[0] == 400
    for body in (b"[]", b'{"samples": [{"name": "bad name", "value": 1}]}', b'{"samples": [{"name": "x"}]}',
                 b"nope"):
        code, out = _post(url + "/v1/ingest", body, "application/json")
        assert code == 400 and "error" in json.loads(out)
    for path in ("/api/rate?name=x&label=nolabel", "/api/quantile?name=x", "/api/logs?level=loud",
                 "/api/rate?name=x&since=yesterday", "/api/trace/xyz", "/api/series"):
        code, out = _get(url + path)
        assert code == 400 and "error" in out, path
    assert _get(url + "/api/nothing")[0] == 404
    assert _get(url + "/api/trace/" + "1" * 32)[0] == 404
    code, out = _get(url + "/api/promql?query=up")
    assert code == 503 and "not running" in out["error"]  # started with --prometheus off
    with pytest.raises(QueryError):
        RemoteQuery(url).rate("x", ["=bad"])


def test_recorder_info_and_health(fake_run: tuple[Path, str, Path, FakeTarget]) -> None:
    run_dir, url, _logs, _t = fake_run
    info = json.loads((run_dir / "telemetry" / "recorder.json").read_text())
    assert info["url"] == url and info["interval"] == INTERVAL
    code, health = _get(url + "/health")
    assert code == 200 and health["stats"]["scrapes"] > 0 and health["targets"] == 2


# ---- the shop ---------------------------------------------------------------------------------------
def test_queries_return_real_data_from_the_shop(shop: Shop, tmp_path: Path) -> None:
    token = shop.client.record["telemetry_token"]
    proc, _url = start_recorder(tmp_path / "run", shop.client.base, shop.client.token, shop.data_dir / "logs", 1.0,
                                telemetry_token=token)
    try:
        time.sleep(1.5)
        counts = asyncio.run(drive(shop.url, 8, concurrency=3))
        assert counts["logins"] > 0
        time.sleep(2.5)
        q = Query.open(tmp_path / "run")
        targets = {s["labels"]["job"] for s in q.series("up", since="1m")}
        assert {"front-end", "catalogue", "user", "orders"} <= targets
        rate = q.aggregate("http_request_duration_seconds_count", ["job=front-end", "path=/login"], op="sum",
                           fn="rate", window="5s", since="15s")
        assert max(v for _, v in rate[0]["points"]) > 0.5
        p95 = q.quantile(0.95, "http_request_duration_seconds", ["job=front-end", "path=/login"], window="5s",
                         since="15s")
        assert p95 and 0 < max(v for _, v in p95[0]["points"]) < 30
        cpu = q.aggregate("container_cpu_usage_seconds_total", op="sum", by="container", fn="rate", window="5s",
                          since="10s")
        if cpu:  # the runtime's resource metrics (telemetry plugin) are there
            assert {"front-end", "user"} <= {c["labels"]["container"] for c in cpu}
        logins = q.logs(service="front-end", grep="/login", since="1m")
        assert logins and all(e["service"] == "front-end" for e in logins)
        q.close()
    finally:
        stop_recorder(proc)
    # Spans go to the recorder the runtime started (the pods' OTLP endpoint), when it runs.
    rec_url = shop.client.record.get("recorder_url")
    if rec_url:
        found = RemoteQuery(rec_url, token=token).traces(service="front-end", operation="/login", since="5m",
                                                         limit=5)
        assert found and found[0]["root_service"] == "front-end"
        one = RemoteQuery(rec_url, token=token).trace(found[0]["trace_id"])
        assert one["spans"][0]["depth"] == 0 and len(one["spans"]) >= 2
