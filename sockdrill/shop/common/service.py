"""The skeleton every shop service runs on.

A service module declares its knobs and a ``build(svc)`` that adds routes, start-up/clean-up hooks and
health checks; ``run_service`` does the rest: JSON logs, metrics, ``/health``, ``/metrics``,
``/admin/config`` (the runtime's set-config action; never routed by the front-end), an error layer that
turns bad input into a 4xx JSON body, and an aiohttp server on ``PORT``.

    KNOBS = [Knob("decline_over", 100.0, "decline above this amount", minimum=0)]

    def build(svc: Service) -> None:
        svc.app.router.add_post("/paymentAuth", authorise)

    if __name__ == "__main__":
        run_service("payment", build, KNOBS)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sockdrill.cluster.admin import ADMIN_HEADER, ADMIN_TOKEN_ENV, TELEMETRY_TOKEN_ENV, bearer_ok
from sockdrill.shop.common import env, logs
from sockdrill.shop.common.http import UpstreamError, Upstreams
from sockdrill.shop.common.knobs import Knob, Knobs
from sockdrill.shop.common.logs import setup_logging
from sockdrill.shop.common.metrics import ServiceMetrics
from sockdrill.telemetry import tracing

HealthCheck = Callable[[], Awaitable[bool]]

# Knobs every service has.
COMMON_KNOBS = (
    Knob("http_timeout_s", 5.0, "timeout of outgoing HTTP calls (seconds)", minimum=0.001, maximum=300),
    Knob("http_pool_size", 100, "max concurrent outgoing HTTP connections", minimum=1, maximum=10000),
)

MAX_BODY = 1024 * 1024  # 1 MiB: bigger bodies get 413


def json_response(data: Any, status: int = 200, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> web.Response:
    """JSON body with an exact Content-Type string (upstream clients compare them)."""
    body = json.dumps(data, separators=(",", ":"))
    resp = web.Response(body=body.encode(), status=status, headers=headers)
    resp.headers["Content-Type"] = content_type
    return resp


def bad_request(message: str, status: int = 400) -> web.HTTPException:
    """An HTTP error with a JSON body ``{"error", "status_code", "status_text"}`` to raise."""
    reason = web.Response(status=status).reason
    body = json.dumps({"error": message, "status_code": status, "status_text": reason})
    exc_class = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 404: web.HTTPNotFound,
                 405: web.HTTPMethodNotAllowed, 406: web.HTTPNotAcceptable, 409: web.HTTPConflict,
                 413: web.HTTPRequestEntityTooLarge, 415: web.HTTPUnsupportedMediaType,
                 422: web.HTTPUnprocessableEntity, 500: web.HTTPInternalServerError,
                 503: web.HTTPServiceUnavailable}.get(status, web.HTTPBadRequest)
    if exc_class is web.HTTPMethodNotAllowed:
        return web.HTTPBadRequest(text=body, content_type="application/json")
    if exc_class is web.HTTPRequestEntityTooLarge:
        return web.HTTPRequestEntityTooLarge(MAX_BODY, 0, text=body, content_type="application/json")
    return exc_class(text=body, content_type="application/json")


async def read_json(request: web.Request, *, kind: type | tuple[type, ...] = dict, allow_empty: bool = False) -> Any:
    """Parse the request body as JSON of the given type, or raise a 400 that says what is wrong."""
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return None
        raise bad_request("request body is empty; expected JSON")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        wanted = {"dict": "an object", "list": "an array"}.get(names, names)
        raise bad_request(f"request body must be {wanted}")
    return data


class Service:
    """One running pod of a service: its app, knobs, metrics, logger and upstream client."""

    def __init__(self, name: str, knobs: Iterable[Knob] = ()) -> None:
        self.name = env.service_name(name)
        self.pod = env.pod_name(self.name)
        self.port = env.listen_port()
        self.started_at = time.time()
        self.knobs = Knobs.declare(self.name, [*COMMON_KNOBS, *knobs])
        self.metrics = ServiceMetrics(self.name)
        self.log = logging.getLogger(f"sockdrill.{self.name}")
        self.http = Upstreams(self.name, self.metrics, self.knobs["http_timeout_s"], self.knobs["http_pool_size"])
        self.health_checks: dict[str, HealthCheck] = {}
        self.health_time_field = "time"
        self.app = web.Application(
            middlewares=[self._observe, self._errors], client_max_size=MAX_BODY, handler_args={}
        )
        self.app["svc"] = self
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/admin/config", self._get_config)
        self.app.router.add_route("PUT", "/admin/config", self._put_config)
        self.app.router.add_post("/admin/config", self._put_config)
        self.jobs: dict[str, tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = {}
        self.app.router.add_get("/admin/jobs", self._list_jobs)
        self.app.router.add_post("/admin/jobs/{job}", self._run_job)
        self.app.on_startup.append(self._start_http)
        self.app.on_cleanup.append(self._stop_http)
        self.knobs.on_change(self._apply_common)

    # ---- hooks for service modules -------------------------------------------------------------
    def on_startup(self, fn: Callable[[web.Application], Awaitable[None]]) -> None:
        self.app.on_startup.append(fn)

    def on_cleanup(self, fn: Callable[[web.Application], Awaitable[None]]) -> None:
        self.app.on_cleanup.append(fn)

    def add_health(self, name: str, check: HealthCheck) -> None:
        self.health_checks[name] = check

    def add_job(self, name: str, description: str, run: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """A maintenance job an operator may start (a Kubernetes Job made from the service's image: a data
        re-import, say); the runtime's ``/v1/job`` runs it on one pod and passes on what it returns."""
        self.jobs[name] = (description, run)

    # ---- built-in endpoints -----------------------------------------------------------------
    async def _start_http(self, _app: web.Application) -> None:
        await self.http.start()

    async def _stop_http(self, _app: web.Application) -> None:
        await self.http.close()

    def _apply_common(self, changes: dict[str, Any]) -> None:
        if "http_timeout_s" in changes:
            self.http.default_timeout = changes["http_timeout_s"]
        if "http_pool_size" in changes:
            self._resizing = asyncio.ensure_future(self.http.resize(changes["http_pool_size"]))

    async def _health(self, _request: web.Request) -> web.Response:
        now = dt.datetime.now(dt.UTC)
        stamp = now.isoformat(timespec="milliseconds")
        items = [{"service": self.name, "status": "OK", self.health_time_field: stamp}]
        for name, check in self.health_checks.items():
            try:
                ok = await asyncio.wait_for(check(), timeout=2.0)
            except Exception:
                ok = False
            items.append({"service": name, "status": "OK" if ok else "err", self.health_time_field: stamp})
        return json_response({"health": items})

    async def _metrics(self, request: web.Request) -> web.Response:
        self.check_telemetry(request)
        resp = web.Response(body=generate_latest(self.metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    @staticmethod
    def check_telemetry(request: web.Request) -> None:
        """Only the telemetry side (the recorder, Prometheus, the runtime) reads a pod's metrics
        (``sockdrill/cluster/admin.py``); 401 for anyone else."""
        import os

        if not bearer_ok(os.environ.get(TELEMETRY_TOKEN_ENV), request.headers):
            raise web.HTTPUnauthorized(text=json.dumps({"error": "metrics need the shop's telemetry token"}),
                                       content_type="application/json",
                                       headers={"WWW-Authenticate": 'Bearer realm="sockdrill telemetry"'})

    def _check_admin(self, request: web.Request) -> None:
        """Only the runtime (which holds the pod's admin token) may read or change its configuration."""
        import hmac
        import os

        expected = os.environ.get(ADMIN_TOKEN_ENV, "")
        given = request.headers.get(ADMIN_HEADER, "")
        if expected and not hmac.compare_digest(given.encode(), expected.encode()):
            raise web.HTTPForbidden(text=json.dumps({"error": "admin endpoints need the runtime's token"}),
                                    content_type="application/json")

    async def _get_config(self, request: web.Request) -> web.Response:
        self._check_admin(request)
        return json_response({"service": self.name, "pod": self.pod, "knobs": self.knobs.describe()})

    async def _put_config(self, request: web.Request) -> web.Response:
        self._check_admin(request)
        updates = await read_json(request)
        try:
            changes = self.knobs.set(updates)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response({"service": self.name, "pod": self.pod, "changed": changes,
                              "values": self.knobs.snapshot()})

    async def _list_jobs(self, request: web.Request) -> web.Response:
        self._check_admin(request)
        return json_response({"service": self.name, "jobs": {n: d for n, (d, _run) in self.jobs.items()}})

    async def _run_job(self, request: web.Request) -> web.Response:
        self._check_admin(request)
        name = request.match_info["job"]
        if name not in self.jobs:
            raise bad_request(f"{self.name} has no job {name!r} (its jobs: {', '.join(sorted(self.jobs)) or 'none'})",
                              404)
        started = time.time()
        self.log.info("job %s started", name, extra={"fields": {"kind": "job", "job": name}})
        result = await self.jobs[name][1]()
        self.log.info("job %s done", name, extra={"fields": {"kind": "job", "job": name, **result}})
        return json_response({"service": self.name, "pod": self.pod, "job": name, "seconds": round(time.time() -
                              started, 3), "result": result})

    # ---- middlewares ----------------------------------------------------------------------
    @web.middleware
    async def _observe(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = request.match_info.route
            resource = route.resource if route is not None else None
            path = resource.canonical if resource is not None else "unmatched"
            # Probes and scrapes (the runtime twice a second, the recorder every interval) are neither traffic
            # nor news: they are not counted and leave no access line (issue 19: at idle they were most of the
            # shop's log volume and of the recorder's ingest).
            if path not in ("/metrics", "/health"):
                self.metrics.observe_request(request.method, path, status, elapsed)
                self.log.info(
                    "%s %s %d", request.method, request.path, status,
                    extra={"fields": {"kind": "access", "method": request.method, "path": request.path_qs,
                                      "route": path, "status": status, "ms": round(elapsed * 1000, 3)}},
                )

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        bad = _nul_parameter(request)
        if bad is not None:
            # PostgreSQL text cannot hold a NUL byte: such input is the client's error, never the store's.
            return json_response({"error": f"parameter '{bad}' contains a NUL byte", "status_code": 400,
                                  "status_text": "Bad Request"}, status=400)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400 and not cast(str, exc.text).startswith("{") and exc.status != 304:
                # aiohttp's own plain-text errors (404 no route, 405, 413) get a JSON body too.
                body = json.dumps({"error": exc.reason, "status_code": exc.status, "status_text": exc.reason})
                exc.text = body
                exc.content_type = "application/json"
            raise
        except UpstreamError as exc:
            self.log.warning("upstream call failed: %s", exc, extra={"fields": {"destination": exc.destination,
                                                                                 "kind": exc.kind}})
            status = 504 if exc.kind == "timeout" else 502
            return json_response({"error": str(exc), "status_code": status,
                                  "status_text": "Gateway Timeout" if status == 504 else "Bad Gateway"},
                                 status=status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.exception("unhandled error on %s %s", request.method, request.path)
            return json_response({"error": f"{type(exc).__name__}: {exc}", "status_code": 500,
                                  "status_text": "Internal Server Error"}, status=500)


def _nul_parameter(request: web.Request) -> str | None:
    """The first query parameter or path segment holding a NUL byte, by name, or None."""
    for key, value in request.query.items():
        if "\x00" in key or "\x00" in value:
            return key.replace("\x00", "\\0")
    for key, value in request.match_info.items():
        if "\x00" in value:
            return key
    return "path" if "\x00" in request.path else None


def run_service(name: str, build: Callable[[Service], None], knobs: Iterable[Knob] = ()) -> None:
    """Build the service and serve it on ``PORT`` until SIGTERM/SIGINT."""
    svc = Service(name, knobs)
    setup_logging(svc.name, svc.pod)
    if tracing.setup_tracing(svc.name, svc.pod):
        # Telemetry sits below the shop: the shop hooks tracing in, tracing never reaches up into it.
        logs.trace_id_provider = tracing.current_trace_id
        Upstreams.inject_headers = staticmethod(tracing.inject_headers)  # type: ignore[method-assign]
        tracing.instrument_app(svc.app)
    build(svc)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        pass
    svc.log.info("starting", extra={"fields": {"port": svc.port, "knobs": svc.knobs.snapshot()}})
    asyncio.run(_serve(svc))


async def _serve(svc: Service) -> None:
    runner = web.AppRunner(svc.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", svc.port, backlog=1024, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    svc.log.info("serving", extra={"fields": {"port": svc.port}})
    await stop.wait()
    svc.log.info("stopping")
    await runner.cleanup()
