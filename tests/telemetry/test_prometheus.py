"""Prometheus beside the flight recorder: generated config, and the seed's validation query answering
with a real value while login traffic runs. Skips (with the reason) where no binary is installed."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sockdrill.bench.recorder import drive, start_recorder, stop_recorder
from sockdrill.telemetry.prometheus import (
    PrometheusError,
    file_sd,
    find_prometheus,
    promql,
    scalar_values,
    write_config,
)
from sockdrill.telemetry.query import RemoteQuery
from tests.conftest import Shop

SEED_QUERY = ('histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket{job="front-end", '
              'path="/login"}[1m])) by (le))')

needs_prometheus = pytest.mark.skipif(
    find_prometheus() is None,
    reason="no 'prometheus' binary on PATH (Debian/Ubuntu: apt-get install prometheus); PromQL tests skipped")


def test_config_has_a_job_per_deployment_and_pod_labels(tmp_path: Path) -> None:
    targets = [{"job": "front-end", "pod": "front-end-0", "url": "http://127.0.0.1:4000/metrics"},
               {"job": "sockdrill-runtime", "pod": "supervisor", "url": "http://127.0.0.1:4001/custom"}]
    path = write_config(targets, 5, tmp_path / "prometheus.yml")
    config = json.loads(path.read_text())  # JSON is YAML
    assert config["rule_files"] == [str(tmp_path / "rules" / "*.yml")] and (tmp_path / "rules").is_dir()
    job = config["scrape_configs"][0]
    assert job["honor_labels"] is True and job["scrape_interval"] == "5000ms"
    sd = json.loads((tmp_path / "targets.json").read_text())
    assert sd == file_sd(targets)
    assert sd[0] == {"targets": ["127.0.0.1:4000"], "labels": {"job": "front-end", "pod": "front-end-0",
                                                               "__metrics_path__": "/metrics", "__scheme__": "http"}}
    assert sd[1]["labels"]["__metrics_path__"] == "/custom"


def test_the_token_goes_to_the_shops_targets_only(tmp_path: Path) -> None:
    targets = [{"job": "front-end", "pod": "front-end-0", "url": "http://127.0.0.1:4000/metrics"},
               {"job": "theirs", "pod": "theirs", "url": "http://10.0.0.9:9100/metrics", "source": "file"}]
    token_file = tmp_path / "scrape.token"
    config = json.loads(write_config(targets, 5, tmp_path / "prometheus.yml", token_file).read_text())
    ours, extra = config["scrape_configs"]
    assert ours["authorization"] == {"type": "Bearer", "credentials_file": str(token_file)}
    assert "authorization" not in extra and "basic_auth" not in extra
    assert json.loads((tmp_path / "targets.json").read_text())[0]["targets"] == ["127.0.0.1:4000"]
    assert json.loads((tmp_path / "extra.json").read_text())[0]["targets"] == ["10.0.0.9:9100"]


@needs_prometheus
def test_seed_promql_answers_during_login_traffic(shop: Shop, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    token = shop.client.record["telemetry_token"]
    proc, url = start_recorder(run_dir, shop.client.base, shop.client.token, shop.data_dir / "logs", 1.0,
                               prometheus="on", telemetry_token=token)
    recorder = RemoteQuery(url, token=token)
    try:
        info_path = run_dir / "telemetry" / "recorder.json"
        deadline = time.monotonic() + 30
        prom_url = None
        while time.monotonic() < deadline and prom_url is None:
            prom_url = json.loads(info_path.read_text()).get("prometheus_url")
            time.sleep(0.2)
        assert prom_url, "prometheus did not start: " + str(json.loads(info_path.read_text()))
        assert not prom_url.endswith(":9090")
        assert (run_dir / "prometheus" / "data").is_dir()
        # Login traffic in the background while we ask.
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                asyncio.run(drive(shop.url, 2, concurrency=2))

        worker = threading.Thread(target=traffic, daemon=True)
        worker.start()
        try:
            values: list[float] = []
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                values = scalar_values(recorder.promql(SEED_QUERY))
                if values and values[0] > 0:
                    break
                time.sleep(1)
        finally:
            stop.set()
            worker.join(10)
        assert values and math.isfinite(values[0]) and 0 < values[0] < 30, values
        # The platform dashboard's panels answer on this recording too (those that count rare events, e.g.
        # 5xx or evictions, may rightly have no series yet).
        from sockdrill.scenarios.dashboards import platform_dashboard

        rare = {"5xx answers by service", "Mesh edges: errors", "Redis: evictions", "CPU throttling by deployment",
                "Payments: gateway p95 and breaker state"}
        def empty_panels() -> list[str]:
            return [p["title"] for p in platform_dashboard()["panels"] if p["title"] not in rare
                    and not any(recorder.promql(t["expr"])["result"] for t in p["targets"])]
        # Rates need two scrapes of each target: the login SLI can answer a scrape before the runtime's
        # counters have their second one (seen on a busy machine), so ask until each panel has, or 30 s.
        deadline = time.monotonic() + 30
        empty = empty_panels()
        while empty and time.monotonic() < deadline:
            time.sleep(1)
            empty = empty_panels()
        assert empty == [], empty
        # The load's SLIs reach Prometheus through the recorder (job "load"), for journey SLOs and their rules.
        got: list[float] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not got:
            body = json.dumps({"samples": [{"name": "journey_requests_total", "labels": {"journey": "probe"},
                                            "value": 41.0, "time": time.time()}]}).encode()
            req = urllib.request.Request(url + "/v1/ingest", data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {token}"})
            urllib.request.urlopen(req, timeout=10).read()
            got = scalar_values(recorder.promql('sum(journey_requests_total{job="load", journey="probe"})'))
            time.sleep(1)
        assert got == [41.0]
        # Rule files dropped beside Prometheus's config are loaded on the recorder's reload.
        (run_dir / "prometheus" / "rules" / "probe.yml").write_text(json.dumps(
            {"groups": [{"name": "probe", "rules": [{"record": "probe:seven", "expr": "vector(7)"}]}]}))
        req = urllib.request.Request(url + "/v1/prometheus/reload", data=b"", method="POST",
                                     headers={"Authorization": f"Bearer {token}"})
        assert json.loads(urllib.request.urlopen(req, timeout=10).read())["reloaded"] is True
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not scalar_values(recorder.promql("probe:seven")):
            time.sleep(0.5)
        assert scalar_values(recorder.promql("probe:seven")) == [7.0]
        # The same straight from Prometheus, and a range query through the recorder.
        # Prometheus's own API asks for the token too (basic auth, user sockdrill), as the recorder does.
        with pytest.raises(PrometheusError):
            promql(prom_url, SEED_QUERY)
        basic = {"Authorization": "Basic " + base64.b64encode(f"sockdrill:{token}".encode()).decode()}
        assert scalar_values(promql(prom_url, SEED_QUERY, headers=basic))
        with pytest.raises(ConnectionError, match="401"):
            RemoteQuery(url).promql(SEED_QUERY)
        ranged = recorder.promql('sum by (job) (up{job=~"front-end|user"})', start=time.time() - 20,
                                 end=time.time(), step=2)
        assert {r["metric"]["job"] for r in ranged["result"]} == {"front-end", "user"}
        with pytest.raises(ValueError):
            recorder.promql("sum(")
    finally:
        stop_recorder(proc)
    # Prometheus goes with the recorder.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _answers(prom_url):
        time.sleep(0.2)
    assert not _answers(prom_url)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # a 401 is an answer too
    except OSError:
        return False
