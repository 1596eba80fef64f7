"""Grafana dashboards as code: one per key user journey and one for the platform, on the same metric names
as the shop's exporters and the generated recording rules (``alert_rules.py``, standard profile).

    sockdrill scenarios dashboards --out dashboards/     # one JSON file per dashboard, for Grafana's provisioning

Every panel is a time series of PromQL targets over a ``datasource`` variable (any Prometheus), with the
SLO drawn as a threshold line where there is one.
"""

from __future__ import annotations

from typing import Any

from sockdrill.scenarios.alert_rules import shop_slos
from sockdrill.scenarios.guards import JOURNEY_TARGETS
from sockdrill.slo.rules import window_text
from sockdrill.slo.slo import PROFILES, SLO

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SHORT = window_text(max(10.0, 3600 * PROFILES["standard"].scale))  # the page rule's long window (5m)


def _panel(pid: int, title: str, targets: list[tuple[str, str]], unit: str, x: int, y: int,
           threshold: float | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit}
    if threshold is not None:
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                {"color": "red", "value": threshold}]}
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    return {
        "id": pid, "type": "timeseries", "title": title, "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
                    for i, (expr, legend) in enumerate(targets)],
    }


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]], tags: list[str]) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "tags": ["sockdrill", *tags], "schemaVersion": 39, "version": 1,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "editable": True,
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": panels,
    }


def _layout(specs: list[tuple[str, list[tuple[str, str]], str, float | None]]) -> list[dict[str, Any]]:
    return [_panel(i + 1, title, targets, unit, 12 * (i % 2), 8 * (i // 2), threshold)
            for i, (title, targets, unit, threshold) in enumerate(specs)]


def probe_journeys() -> list[str]:
    """Journeys a scenario's probe measures (not the load's): e.g. ``freshness``, how stale a shopper's reading of
    a product staff changed is. Their samples reach the recorder under the load's metric names, without steps."""
    from sockdrill.scenarios import load_catalogue

    found = {p.journey for sc in load_catalogue().scenarios.values() for p in sc.probes}
    return sorted(found - set(JOURNEY_TARGETS))


def journey_dashboard(journey: str, slos: list[SLO], probe: bool = False) -> dict[str, Any]:
    """A journey's board; a probe's journey (``probe``) has no steps, and its "latency" is the probe's value."""
    j = f'journey="{journey}"'
    p95 = next((s.threshold for s in slos if s.journey == journey and s.sli == "latency_p95"), None)
    errors = next((s.threshold for s in slos if s.journey == journey and s.sli == "error_rate"), None)
    burn = [(f'slo:bad_fraction:{SHORT}{{slo="{s.label}"}} / {s.budget_fraction:g}', s.label)
            for s in slos if s.journey == journey]
    specs: list[tuple[str, list[tuple[str, str]], str, float | None]] = [
        (f"{journey}: p95 latency" + (f" (SLO < {p95:g} s)" if p95 else ""),
         [(f'max(journey_latency_seconds{{{j},quantile="0.95"}})', "p95"),
          (f'max(journey_latency_seconds{{{j},quantile="0.5"}})', "p50")], "s", p95),
        (f"{journey}: failed journeys" + (f" (SLO < {errors:.2%})" if errors else ""),
         [(f"sum(rate(journey_failures_total{{{j}}}[1m])) / sum(rate(journey_requests_total{{{j}}}[1m]))",
           "error ratio")], "percentunit", errors),
        (f"{journey}: journeys per second", [(f"sum(rate(journey_requests_total{{{j}}}[1m]))", "journeys/s")],
         "reqps", None),
        (f"{journey}: error-budget burn rate ({SHORT})", burn or [("vector(0)", "no SLO")], "none", 1.0),
        (f"{journey}: p95 latency by step",
         [(f'max by (step) (step_latency_seconds{{{j},quantile="0.95"}})', "{{step}}")], "s", None),
        (f"{journey}: failing steps", [(f"sum by (step) (rate(step_failures_total{{{j}}}[1m]))", "{{step}}")],
         "reqps", None),
    ]
    if probe:  # no steps; the value is the probe's (for freshness: seconds stale)
        specs = specs[:4]
        specs[0] = (f"{journey}: p95 of the probe's value (s)", specs[0][1], "s", p95)
    return _dashboard(f"sockdrill-journey-{journey}", f"Sock Shop journey: {journey}", _layout(specs),
                      ["journey", journey])


def platform_dashboard() -> dict[str, Any]:
    specs: list[tuple[str, list[tuple[str, str]], str, float | None]] = [
        ("Requests per second by service",
         [("sum by (service) (rate(http_request_duration_seconds_count[1m]))", "{{service}}")], "reqps", None),
        ("p95 server latency by service",
         [("histogram_quantile(0.95, sum by (service, le) (rate(http_request_duration_seconds_bucket[1m])))",
           "{{service}}")], "s", None),
        ("5xx answers by service",
         [('sum by (service) (rate(http_request_duration_seconds_count{status_code=~"5.."}[1m]))', "{{service}}")],
         "reqps", None),
        ("CPU by deployment", [("sum by (service) (rate(container_cpu_usage_seconds_total[1m]))", "{{service}}")],
         "percentunit", None),
        ("CPU throttling by deployment",
         [("sum by (service) (rate(container_cpu_cfs_throttled_seconds_total[1m]))", "{{service}}")], "s", None),
        ("Memory working set by deployment",
         [("sum by (service) (container_memory_working_set_bytes)", "{{service}}")], "bytes", None),
        ("Restarts (5m)", [("sum by (service) (increase(kube_pod_container_status_restarts_total[5m]))",
                            "{{service}}")], "none", None),
        ("Mesh edges: p95 latency",
         [("histogram_quantile(0.95, sum by (source, destination, le) "
           "(rate(mesh_edge_request_duration_seconds_bucket[1m])))", "{{source}} → {{destination}}")], "s", None),
        ("Mesh edges: errors", [("sum by (source, destination, kind) (rate(mesh_edge_errors_total[1m]))",
                                 "{{source}} → {{destination}} {{kind}}")], "reqps", None),
        ("PostgreSQL: active sessions", [('sum by (service) (pg_stat_activity_count{state="active"})', "{{service}}")],
         "none", None),
        ("PostgreSQL: commits per second", [("sum by (service) (rate(pg_stat_database_xact_commit[1m]))",
                                             "{{service}}")], "ops", None),
        ("Redis: memory used and budget", [("redis_memory_used_bytes", "{{service}} used"),
                                           ("redis_memory_max_bytes > 0", "{{service}} max")], "bytes", None),
        ("Redis: evictions", [("sum by (service) (rate(redis_evicted_keys_total[1m]))", "{{service}}")], "ops", None),
        ("carts-cache: hit ratio and lost write-backs",
         [('sum(rate(carts_cache_requests_total{result="hit"}[1m])) / sum(rate(carts_cache_requests_total[1m]))',
           "hit ratio"),
          ('sum(increase(carts_cache_writebacks_total{result="lost"}[5m]))', "lost (5m)")], "none", None),
        ("Payments: gateway p95 and breaker state",
         [("histogram_quantile(0.95, sum by (le) (rate(payment_gateway_duration_seconds_bucket[1m])))", "p95"),
          ("max(payment_circuit_breaker_state)", "breaker (2 = open)")], "s", None),
        ("Profile saves by result", [("sum by (result) (rate(profile_updates_total[1m]))", "{{result}}")],
         "ops", None),
    ]
    return _dashboard("sockdrill-platform", "Sock Shop platform", _layout(specs), ["platform"])


def all_dashboards() -> dict[str, dict[str, Any]]:
    """File name → dashboard: every journey with SLOs (the load's and the probes'), and the platform."""
    slos = shop_slos()
    out = {f"journey-{j}.json": journey_dashboard(j, slos) for j in JOURNEY_TARGETS}
    out.update({f"journey-{j}.json": journey_dashboard(j, slos, probe=True) for j in probe_journeys()})
    out["platform.json"] = platform_dashboard()
    return out


def panel_queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
