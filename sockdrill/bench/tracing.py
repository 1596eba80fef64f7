"""What tracing costs: front-end ``GET /catalogue`` throughput with tracing on, off, and on again, in one run.

One shop; spans go to the flight recorder (or, where there is none, to a sink in this process that
reads and drops them, so export still costs what it costs). Tracing is switched off by a rolling env
change (``SOCKDRILL_TRACING=off`` on front-end and catalogue, the only services on that path) and back
on by rolling the change back; the same load generator (``sockdrill.bench.load``) drives every phase.

    python -m sockdrill.bench.tracing [SECONDS]
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sockdrill.cluster.admin import telemetry_headers

SWITCHED = ("front-end", "catalogue")


class _Sink:
    """Accepts OTLP/HTTP posts and drops them (the stand-in for a collector)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _traced_share(data_dir: Path, deployment: str, since: float) -> float:
    """Share of the deployment's traced requests since ``since`` whose access log line carries a trace
    id (1.0 with tracing on, 0.0 off)."""
    from sockdrill.telemetry.tracing import UNTRACED_PATHS

    total = traced = 0
    for path in (data_dir / "logs").glob(f"{deployment}-*.log"):
        for line in path.read_text(errors="replace").splitlines()[-5000:]:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            fields = rec.get("fields") or {}
            if rec.get("time", 0) < since or fields.get("kind") != "access" or fields.get("route") in UNTRACED_PATHS:
                continue
            total += 1
            traced += 1 if rec.get("trace_id") else 0
    return round(traced / total, 3) if total else float("nan")


def _cpu_seconds(metrics_url: str, services: tuple[str, ...], token: str | None = None) -> dict[str, float]:
    """CPU seconds used so far by each service's pods (the runtime's cAdvisor-style counter)."""
    from sockdrill.telemetry.collectors import parse_text

    req = urllib.request.Request(metrics_url, headers=telemetry_headers(token))
    with urllib.request.urlopen(req, timeout=15) as resp:
        series = parse_text(resp.read().decode())
    out = dict.fromkeys(services, 0.0)
    for labels, value in series.get("container_cpu_usage_seconds_total", []):
        if labels.get("service") in out:
            out[labels["service"]] += value
    return out


def _recorder_cpu(recorder_url: str | None, token: str | None = None) -> float | None:
    if not recorder_url:
        return None
    req = urllib.request.Request(recorder_url + "/health", headers=telemetry_headers(token))
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return float(json.loads(resp.read())["cpu_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_tracing_bench(duration_s: float = 10.0, concurrency: int = 32, rounds: int = 2) -> dict[str, Any]:
    """Alternate tracing on and off ``rounds`` times, ``duration_s`` of load per phase."""
    from sockdrill.bench import load
    from sockdrill.cluster import client
    from sockdrill.cluster.ports import free_port
    from sockdrill.shop.manifest import shop_deployments

    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-tracing-"))
    os.chmod(data_dir, 0o711)
    sink: _Sink | None = None
    pod_env: dict[str, str] = {}
    if importlib.util.find_spec("sockdrill.telemetry.recorder") is None:
        sink = _Sink()
        pod_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
    try:
        rc, _ = client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=180,
                          pod_env=pod_env)
        url = rc.record["front_end_url"]
        metrics_url = rc.record["metrics_url"]
        recorder_url = rc.record.get("recorder_url")
        token = rc.record.get("telemetry_token")
        urls = [url + "/catalogue", url + "/catalogue?size=5"]

        def wait_ready() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not rc.get("/v1/status")["ready"]:
                time.sleep(0.2)

        def phase(name: str) -> dict[str, Any]:
            load(urls, 4, 1.0)  # warm-up: connection pools fill lazily
            started = time.time()
            cpu0, rec0 = _cpu_seconds(metrics_url, SWITCHED, token), _recorder_cpu(recorder_url, token)
            figures = load(urls, concurrency, duration_s)
            cpu1, rec1 = _cpu_seconds(metrics_url, SWITCHED, token), _recorder_cpu(recorder_url, token)
            n = max(1, figures["requests"])
            out = {"tracing": name, "rps": round(figures["rps"], 1), "p50_ms": round(figures["p50_ms"], 2),
                   "p99_ms": round(figures["p99_ms"], 2), "errors": figures["errors"],
                   "traced_share": _traced_share(data_dir, "front-end", started)}
            for svc in SWITCHED:
                out[f"{svc}_cpu_ms_per_request"] = round((cpu1[svc] - cpu0[svc]) * 1000 / n, 3)
            if rec0 is not None and rec1 is not None:
                out["recorder_cpu_ms_per_request"] = round((rec1 - rec0) * 1000 / n, 3)
            return out

        def switch(on: bool) -> None:
            for dep in SWITCHED:
                if on:
                    rc.post("/v1/env/rollback", {"deployment": dep})
                else:
                    rc.post("/v1/env", {"deployment": dep, "env": {"SOCKDRILL_TRACING": "off"}})
            wait_ready()

        phases: list[dict[str, Any]] = []
        for i in range(rounds):
            if i:
                switch(True)
            phases.append(phase("on"))
            switch(False)
            phases.append(phase("off"))

        def mean(key: str, state: str) -> float:
            vals = [p[key] for p in phases if p["tracing"] == state and isinstance(p.get(key), int | float)]
            return round(sum(vals) / len(vals), 3) if vals else float("nan")

        rps_on, rps_off = mean("rps", "on"), mean("rps", "off")
        summary = {key: {"on": mean(key, "on"), "off": mean(key, "off")}
                   for key in ("rps", "p50_ms", "p99_ms", "front-end_cpu_ms_per_request",
                               "catalogue_cpu_ms_per_request", "recorder_cpu_ms_per_request")}
        return {
            "concurrency": concurrency, "phase_s": duration_s, "rounds": rounds,
            "exporter": "flight recorder" if recorder_url else "in-process OTLP sink",
            "path": "GET /catalogue via front-end → catalogue → catalogue-db",
            "phases": phases, "mean": summary,
            "throughput_cost_pct": round((rps_off - rps_on) / rps_off * 100, 1) if rps_off else float("nan"),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        }
    finally:
        client.down(data_dir)
        if sink is not None:
            sink.close()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    print(json.dumps(run_tracing_bench(seconds), indent=1))
