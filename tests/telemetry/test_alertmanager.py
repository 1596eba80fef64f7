"""Alertmanager between Prometheus and the recorder: its config passes amtool, Prometheus's passes promtool,
and on a live recorder an alert sent to Alertmanager reaches the recorder's webhook (firing, then resolved)
and is served to whoever holds the telemetry token. Skips (with the reason) where a binary is missing."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sockdrill.bench.recorder import start_recorder, stop_recorder
from sockdrill.telemetry.alertmanager import (
    find_alertmanager,
    firing_now,
    notification_alerts,
    page_times,
)
from sockdrill.telemetry.alertmanager import write_config as am_config
from sockdrill.telemetry.prometheus import find_prometheus, private_file
from sockdrill.telemetry.prometheus import write_config as prom_config
from tests.conftest import Shop

needs_alertmanager = pytest.mark.skipif(
    find_alertmanager() is None or find_prometheus() is None,
    reason="needs prometheus and prometheus-alertmanager (apt-get install prometheus prometheus-alertmanager)")


def _alert(status: str, slo: str = "login latency_p95 < 1s", severity: str = "page", fp: str = "a1",
           starts: str = "2026-12-04T18:00:00Z") -> dict[str, Any]:
    return {"status": status, "fingerprint": fp, "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
            "labels": {"alertname": "SLOLoginLatencyP95", "slo": slo, "severity": severity, "journey": "login"},
            "annotations": {"summary": "login is slow"}}


def test_webhook_payloads_become_pages() -> None:
    got = notification_alerts({"version": "4", "alerts": [_alert("firing")]}, 100.0)
    assert got[0]["status"] == "firing" and got[0]["labels"]["slo"] == "login latency_p95 < 1s"
    assert got[0]["received_at"] == 100.0
    for bad in ({}, {"alerts": "x"}, {"alerts": [{"status": "maybe"}]}, [1, 2]):
        with pytest.raises(ValueError):
            notification_alerts(bad, 1.0)
    notes = [*notification_alerts({"alerts": [_alert("firing")]}, 10.0),
             *notification_alerts({"alerts": [_alert("firing")]}, 12.0),       # the same page, sent again
             *notification_alerts({"alerts": [_alert("firing", severity="ticket", fp="t")]}, 13.0),
             *notification_alerts({"alerts": [_alert("firing", slo="other", fp="o")]}, 14.0),
             *notification_alerts({"alerts": [_alert("resolved")]}, 20.0),
             *notification_alerts({"alerts": [_alert("firing", starts="2026-12-04T18:05:00Z")]}, 30.0)]
    assert page_times(notes, {"login latency_p95 < 1s"}) == [10.0, 30.0]   # two page periods, each at first sight
    assert sorted(n["fingerprint"] for n in firing_now(notes)) == ["a1", "o", "t"]
    assert firing_now(notes[:5]) == firing_now(notes[2:4])                     # resolved: no longer firing


@pytest.mark.skipif(shutil.which("amtool") is None or shutil.which("promtool") is None,
                    reason="needs amtool and promtool (apt-get install prometheus prometheus-alertmanager)")
def test_the_generated_configs_pass_amtool_and_promtool(tmp_path: Path) -> None:
    token = private_file(tmp_path / "token", "s3cret")
    am = am_config(tmp_path / "am" / "alertmanager.yml", "http://127.0.0.1:1/v1/alerts/webhook", token)
    checked = subprocess.run(["amtool", "check-config", str(am)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    prom = prom_config([{"job": "user", "pod": "user-0", "url": "http://127.0.0.1:2/metrics"}], 1.0,
                       tmp_path / "prom" / "prometheus.yml", token, alertmanager="http://127.0.0.1:3")
    config = json.loads(prom.read_text())
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [{"targets": ["127.0.0.1:3"]}]
    checked = subprocess.run(["promtool", "check", "config", str(prom)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _get(url: str, headers: dict[str, str]) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
        return json.loads(resp.read())


def _post(url: str, body: Any, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@needs_alertmanager
def test_an_alert_reaches_the_recorder_through_alertmanager(shop: Shop, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    token = shop.client.record["telemetry_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    proc, url = start_recorder(run_dir, shop.client.base, shop.client.token, shop.data_dir / "logs", 1.0,
                               prometheus="on", telemetry_token=token)
    try:
        deadline = time.monotonic() + 40
        info: dict[str, Any] = {}
        while time.monotonic() < deadline and not (info.get("prometheus_url") and info.get("alertmanager_url")):
            time.sleep(0.3)
            info = json.loads((run_dir / "telemetry" / "recorder.json").read_text())
        am_url, prom_url = info.get("alertmanager_url"), info.get("prometheus_url")
        assert am_url and prom_url, info
        assert not am_url.endswith((":9093", ":9094"))
        basic = {"Authorization": "Basic " + base64.b64encode(f"sockdrill:{token}".encode()).decode()}
        # Alertmanager's API asks for the token, as Prometheus's does.
        assert _post(f"{am_url}/api/v2/alerts", [], {}) == 401
        # Prometheus knows where to send its alerts.
        deadline = time.monotonic() + 20
        active: list[Any] = []
        while time.monotonic() < deadline and not active:
            active = _get(f"{prom_url}/api/v1/alertmanagers", basic)["data"]["activeAlertmanagers"]
            time.sleep(0.5)
        assert [a["url"] for a in active] == [f"{am_url}/api/v2/alerts"], active

        now = dt.datetime.now(dt.UTC)
        alert = {"labels": {"alertname": "SLOTest", "slo": "login error_rate < 1%", "severity": "page",
                            "journey": "login"}, "annotations": {"summary": "a test page"},
                 "startsAt": now.isoformat()}
        sent = time.time() - 1
        assert _post(f"{am_url}/api/v2/alerts", [alert], basic) == 200

        def statuses() -> list[str]:
            got = _get(f"{url}/v1/alerts/notifications?since={sent}", bearer)
            assert got["alertmanager"] == am_url
            return [n["status"] for n in got["notifications"] if n["labels"].get("alertname") == "SLOTest"]

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "firing" not in statuses():
            time.sleep(0.3)
        assert statuses()[:1] == ["firing"]
        alert["endsAt"] = (now + dt.timedelta(seconds=1)).isoformat()
        assert _post(f"{am_url}/api/v2/alerts", [alert], basic) == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "resolved" not in statuses():
            time.sleep(0.3)
        assert statuses()[-1] == "resolved"
        kept = [json.loads(line) for line in (run_dir / "telemetry" / "alertmanager.jsonl").read_text().splitlines()]
        assert {k["status"] for k in kept if k["labels"]["alertname"] == "SLOTest"} == {"firing", "resolved"}
        # The webhook and the notifications ask for the token; a body that is no webhook payload is a 400.
        assert _post(f"{url}/v1/alerts/webhook", {"alerts": []}, {}) == 401
        assert _post(f"{url}/v1/alerts/webhook", {"alerts": "no"}, bearer) == 400
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(f"{url}/v1/alerts/notifications?since=soon", bearer)
        assert err.value.code == 400
    finally:
        stop_recorder(proc)
