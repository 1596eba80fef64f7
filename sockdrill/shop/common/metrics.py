"""Prometheus metrics shared by every service, in a per-process registry.

Server side, two histograms of the same observations:
- ``http_request_duration_seconds{service,method,path,status_code}``: the name the seed's PromQL uses;
  ``path`` is the route template (``/catalogue/{id}``) so cardinality stays bounded;
- ``request_duration_seconds{service,method,route,status_code}``: upstream's released name, for its
  dashboards and alert rules (``route`` is the same template).
Requests that end in an error are counted too (upstream's Java services dropped them).
Client side (outgoing calls): ``http_client_request_duration_seconds{service,destination,method,status_code}``,
``http_client_timeouts_total``, ``http_client_retries_total`` and pool usage.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.http = Histogram(
            "http_request_duration_seconds",
            "Server-side request latency by route template.",
            ["service", "method", "path", "status_code"],
            buckets=BUCKETS,
            registry=r,
        )
        self.legacy = Histogram(
            "request_duration_seconds",
            "Server-side request latency (upstream Sock Shop's released name).",
            ["service", "method", "route", "status_code"],
            buckets=BUCKETS,
            registry=r,
        )
        self.inflight = Gauge("http_requests_in_flight", "Requests being served.", ["service"], registry=r)
        self.client = Histogram(
            "http_client_request_duration_seconds",
            "Latency of outgoing calls by destination.",
            ["service", "destination", "method", "status_code"],
            buckets=BUCKETS,
            registry=r,
        )
        self.client_errors = Counter(
            "http_client_errors_total",
            "Outgoing calls that failed without a response, by kind.",
            ["service", "destination", "kind"],
            registry=r,
        )
        self.client_timeouts = Counter(
            "http_client_timeouts_total", "Outgoing calls that timed out.", ["service", "destination"], registry=r
        )
        self.client_retries = Counter(
            "http_client_retries_total", "Outgoing calls retried.", ["service", "destination"], registry=r
        )
        self.pool_in_use = Gauge(
            "client_pool_connections_in_use",
            "Connections in use per pool (HTTP or database).",
            ["service", "pool"],
            registry=r,
        )
        self.pool_size = Gauge(
            "client_pool_connections_max", "Configured pool size.", ["service", "pool"], registry=r
        )

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        code = str(status)
        self.http.labels(self.service, method, path, code).observe(seconds)
        self.legacy.labels(self.service, method, path, code).observe(seconds)
