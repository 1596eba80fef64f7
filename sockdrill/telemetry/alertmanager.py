"""A real Alertmanager between Prometheus and the flight recorder, when the binary is installed (Debian:
``prometheus-alertmanager``).

Prometheus evaluates the run's SLO alert rules and sends what fires to this Alertmanager; its one route sends
every alert, at once and again when it resolves, to the recorder's webhook (``POST /v1/alerts/webhook``),
which keeps them for the run (the agents' ``alerts`` tool and the run's page figures read them there). It is
what an SRE team's paging path looks like, in miniature: rules → Alertmanager → a receiver.

It listens on a free port of 127.0.0.1 (never 9093, a system instance's) with clustering off (no gossip port),
keeps its state in ``RUN_DIR/alertmanager``, and dies with the recorder. With the shop's telemetry token its
web API asks for it (basic auth, as Prometheus's does) and its webhook calls send it as a bearer token.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from sockdrill.cluster.ports import free_port
from sockdrill.telemetry.prometheus import Prometheus, PrometheusError, death_signal, server_home

RESERVED_PORTS = (9093, 9094)
BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, then upstream's


def find_alertmanager() -> str | None:
    """Path of an Alertmanager binary: $SOCKDRILL_ALERTMANAGER_BIN, else PATH; None when there is none."""
    env = os.environ.get("SOCKDRILL_ALERTMANAGER_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    return next((p for p in map(shutil.which, BINARIES) if p), None)


def write_config(path: Path, webhook_url: str, token_file: Path | None = None) -> Path:
    """``alertmanager.yml``: one route, every alert to the recorder's webhook, sent without grouping delays (a
    fast-profile run lasts seconds), resolved ones too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hook: dict[str, object] = {"url": webhook_url, "send_resolved": True, "max_alerts": 0}
    if token_file is not None:
        hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
    config = {
        "route": {"receiver": "sockdrill", "group_by": ["alertname", "slo", "window"],
                  "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "sockdrill", "webhook_configs": [hook]}],
    }
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def launch_alertmanager(run_dir: Path, webhook_url: str, *, binary: str | None = None, port: int | None = None,
                        token: str | None = None) -> Prometheus:
    """Start the process (from the thread that lives as long as it should: PDEATHSIG is per thread). The
    returned handle is Prometheus's (same life cycle: ``url``, ``headers``, ``alive()``, ``stop()``)."""
    binary = binary or find_alertmanager()
    if binary is None:
        raise PrometheusError("no Alertmanager binary on PATH (Debian/Ubuntu: apt-get install prometheus-alertmanager)")
    root, (token_file, web_args, headers) = server_home(run_dir, "alertmanager", token, "webhook.token")
    config = write_config(root / "alertmanager.yml", webhook_url, token_file)
    port = port or free_port()
    if port in RESERVED_PORTS:
        raise PrometheusError(f"port {port} belongs to a system Alertmanager; pick another")
    log = open(root / "alertmanager.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", *web_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, cwd=str(root),
            preexec_fn=death_signal())
    finally:
        log.close()
    return Prometheus(proc, f"http://127.0.0.1:{port}", config, headers)


def notification_alerts(body: object, received_at: float) -> list[dict[str, object]]:
    """The alerts of one webhook call (Alertmanager's payload, version 4), as the recorder keeps them;
    ValueError when it is not such a payload."""
    if not isinstance(body, dict) or not isinstance(body.get("alerts"), list):
        raise ValueError("not an Alertmanager webhook payload: no 'alerts' list")
    out: list[dict[str, object]] = []
    for a in body["alerts"]:
        if not isinstance(a, dict) or a.get("status") not in ("firing", "resolved"):
            raise ValueError("an alert without status 'firing' or 'resolved'")
        labels = a["labels"] if isinstance(a.get("labels"), dict) else {}
        annotations = a["annotations"] if isinstance(a.get("annotations"), dict) else {}
        out.append({"received_at": received_at, "status": a["status"],
                    "fingerprint": str(a.get("fingerprint") or json.dumps(labels, sort_keys=True)),
                    "labels": {str(k): str(v) for k, v in labels.items()},
                    "annotations": {str(k): str(v) for k, v in annotations.items()},
                    "starts_at": str(a.get("startsAt") or ""), "ends_at": str(a.get("endsAt") or "")})
    return out


def fetch_notifications(record: dict[str, Any], since: float, timeout: float = 5.0) -> dict[str, Any] | None:
    """What the shop's recorder kept from Alertmanager since ``since`` (``{"alertmanager": url or None,
    "notifications": [...]}``), or None when the recorder cannot be asked (no recorder, an older one)."""
    import urllib.error
    import urllib.request

    from sockdrill.cluster.admin import telemetry_headers

    url = record.get("recorder_url")
    if not url:
        return None
    req = urllib.request.Request(f"{url}/v1/alerts/notifications?since={since:.3f}",
                                 headers=telemetry_headers(record.get("telemetry_token")))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("notifications"), list) else None


def firing_now(notifications: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts whose latest notification says firing (one per alert, by fingerprint)."""
    latest: dict[str, dict[str, Any]] = {}
    for n in notifications:
        latest[str(n.get("fingerprint"))] = n
    return [n for n in latest.values() if n.get("status") == "firing"]


def page_times(notifications: list[dict[str, Any]], slo_labels: set[str]) -> list[float]:
    """When each page (a ``severity=page`` alert on one of these SLOs) first reached the receiver: one time per
    alert period (fingerprint and start), in order."""
    seen: dict[tuple[str, str], float] = {}
    for n in notifications:
        labels = n.get("labels") or {}
        if n.get("status") != "firing" or labels.get("severity") != "page" or labels.get("slo") not in slo_labels:
            continue
        key = (str(n.get("fingerprint")), str(n.get("starts_at")))
        seen.setdefault(key, float(n["received_at"]))
    return sorted(seen.values())
