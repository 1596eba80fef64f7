"""OpenTelemetry tracing for shop pods: W3C trace context across every hop, OTLP/HTTP export.

``setup_tracing(service, pod)`` (called by ``run_service``) turns tracing on when an OTLP endpoint is
configured — ``SOCKDRILL_OTLP_ENDPOINT`` (the flight recorder, set by the runtime) and/or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (any collector; spans go to
each distinct endpoint). ``SOCKDRILL_TRACING=off`` or ``OTEL_SDK_DISABLED=true`` turn it off. The SDK
is imported only then; while tracing is off every helper here is a shared no-op, so instrumented code
pays one global lookup per call.

What gets spans (all through the OTel API, no auto-instrumentation packages):
- a server span per request (``server_middleware``, the outermost middleware, so the access log line
  and every log line of the request carry its trace id), parent taken from ``traceparent``;
- a client span per outgoing call (``client_call`` in ``Upstreams.request``), whose context is injected
  as ``traceparent``;
- every PostgreSQL statement (``watch_queries``: asyncpg's query logger, so transactions on acquired
  connections are covered too), Redis session calls, queue publish (producer) and consume (consumer,
  child of the publish span through the message's ``traceparent`` header).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("sockdrill.tracing")

# Paths probed by the runtime and scraped by the recorder: tracing them would drown real traffic.
UNTRACED_PATHS = frozenset({"/health", "/metrics", "/prometheus"})
STATEMENT_MAX = 500  # db.statement is truncated to this many characters
DEFAULT_SCHEDULE_DELAY_MS = 1000.0  # export batches every second (OTel's default 5 s is slow for tests)

_OFF = ("off", "0", "false", "no", "disabled")

_enabled = False
_tracer: Any = None
_provider: Any = None
_api: Any = None  # the opentelemetry modules, imported by setup_tracing (see _Api)


class _Api:
    """The OTel names used on the hot path, bound once so that calls do not re-import."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.context = context
        self.propagate = propagate
        self.trace = trace
        self.kinds = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT, "producer": SpanKind.PRODUCER,
                      "consumer": SpanKind.CONSUMER, "internal": SpanKind.INTERNAL}
        self.error = Status(StatusCode.ERROR)
        self.Status = Status
        self.StatusCode = StatusCode


def enabled() -> bool:
    return _enabled


def _truthy_off(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _OFF


def export_endpoints() -> list[str]:
    """The OTLP/HTTP traces URLs this pod exports to (empty: tracing stays off)."""
    urls: list[str] = []
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none":
        explicit = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        if explicit:
            urls.append(explicit)
        elif base:
            urls.append(base.rstrip("/") + "/v1/traces")
    ours = os.environ.get("SOCKDRILL_OTLP_ENDPOINT", "").strip()
    if ours:
        url = ours.rstrip("/") + "/v1/traces"
        if url not in urls:
            urls.append(url)
    return urls


def tracing_disabled_by_env() -> bool:
    return _truthy_off("SOCKDRILL_TRACING") or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


DEFAULT_SAMPLE_RATIO = 0.1


def _sampler() -> Any:
    """Head sampling: the standard ``OTEL_TRACES_SAMPLER`` variables win; otherwise a parent-based
    ratio (``SOCKDRILL_TRACE_SAMPLE``, default 0.1), so a request that arrives sampled (a
    ``traceparent`` ending in ``-01``) is traced on every hop. Measured: tracing every request cost
    42 % of front-end throughput on 2 cores (``sockdrill bench tracing``); one in ten keeps traces for
    every journey at a fraction of that."""
    from opentelemetry.sdk.trace import sampling

    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None  # the SDK reads the standard variables itself
    raw = os.environ.get("SOCKDRILL_TRACE_SAMPLE", "")
    try:
        ratio = min(1.0, max(0.0, float(raw))) if raw else DEFAULT_SAMPLE_RATIO
    except ValueError:
        log.warning("SOCKDRILL_TRACE_SAMPLE=%r is not a number; using %s", raw, DEFAULT_SAMPLE_RATIO)
        ratio = DEFAULT_SAMPLE_RATIO
    return sampling.ParentBased(sampling.TraceIdRatioBased(ratio))


def setup_tracing(service: str, pod: str) -> bool:
    """Install the tracer provider and the hooks; return whether tracing is on."""
    global _enabled, _tracer, _provider, _api
    if _enabled:
        return True
    urls = export_endpoints()
    if tracing_disabled_by_env() or not urls:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from sockdrill.cluster.admin import TELEMETRY_TOKEN_ENV, telemetry_headers

    api = _Api()
    resource = Resource.create({
        "service.name": service, "service.instance.id": pod, "service.namespace": "sock-shop",
        "k8s.namespace.name": "sock-shop", "k8s.pod.name": pod, "k8s.deployment.name": service,
    })
    provider = TracerProvider(resource=resource, sampler=_sampler())
    delay = float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY") or DEFAULT_SCHEDULE_DELAY_MS)
    # The flight recorder asks for the shop's telemetry token; a collector of the user's never gets it.
    ours = os.environ.get("SOCKDRILL_OTLP_ENDPOINT", "").strip().rstrip("/") + "/v1/traces"
    token_headers = telemetry_headers(os.environ.get(TELEMETRY_TOKEN_ENV))
    for url in urls:
        exporter = (OTLPSpanExporter(endpoint=url, headers=token_headers) if url == ours and token_headers
                    else OTLPSpanExporter(endpoint=url))
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay))
    api.trace.set_tracer_provider(provider)
    _api, _provider = api, provider
    _tracer = provider.get_tracer("sockdrill.shop")
    _enabled = True  # the caller hooks current_trace_id and inject_headers into its logs and HTTP client
    log.info("tracing on", extra={"fields": {"endpoints": urls}})
    return True


# ---- context ---------------------------------------------------------------------------------------
def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or "" outside a trace (the log formatter's provider)."""
    if not _enabled:
        return ""
    ctx = _api.trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def inject_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``/baggage if any) for the current context."""
    carrier: dict[str, str] = {}
    if _enabled:
        _api.propagate.inject(carrier)
    return carrier


def inject(carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current context to a message's headers (replacing a forwarded ``traceparent``)."""
    if _enabled:
        _api.propagate.inject(carrier)
    return carrier


# ---- spans -----------------------------------------------------------------------------------------
_NULL: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def span(name: str, kind: str = "internal", attributes: Mapping[str, Any] | None = None,
         parent_headers: Mapping[str, str] | None = None) -> contextlib.AbstractContextManager[Any]:
    """A current span for a ``with`` block (a shared no-op while tracing is off). Exceptions that
    leave the block are recorded and mark the span as an error. ``parent_headers``: continue the trace
    carried by these headers (a queue message) instead of the current one."""
    if not _enabled:
        return _NULL
    ctx = _api.propagate.extract(parent_headers) if parent_headers is not None else None
    return _tracer.start_as_current_span(name, context=ctx, kind=_api.kinds[kind],
                                         attributes=dict(attributes or {}))


class _NoCall:
    __slots__ = ()

    def end(self, status: str, exc: BaseException | None = None) -> None:
        return None


_NO_CALL = _NoCall()


class _ClientCall:
    """A client span made current until ``end`` (used where a ``with`` block would re-indent a lot)."""

    __slots__ = ("span", "token")

    def __init__(self, destination: str, method: str, url: str) -> None:
        self.span = _tracer.start_span(f"{method} {destination}", kind=_api.kinds["client"], attributes={
            "http.request.method": method, "url.full": url, "peer.service": destination,
            "server.address": destination})
        self.token = _api.context.attach(_api.trace.set_span_in_context(self.span))

    def end(self, status: str, exc: BaseException | None = None) -> None:
        span = self.span
        try:
            if status.isdigit():
                code = int(status)
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_attribute("error.type", status)
                    span.set_status(_api.error)
            else:
                kind = getattr(exc, "kind", None) or (type(exc).__name__ if exc else "error")
                span.set_attribute("error.type", kind)
                span.set_status(_api.Status(_api.StatusCode.ERROR, str(exc) if exc else "no response"))
        finally:
            _api.context.detach(self.token)
            span.end()


def client_call(destination: str, method: str, url: str) -> _ClientCall | _NoCall:
    """Start the client span of one outgoing HTTP call; call ``.end(status_or_"error", exc)`` after."""
    if not _enabled:
        return _NO_CALL
    return _ClientCall(destination, method, url)


# ---- PostgreSQL ------------------------------------------------------------------------------------
def _operation(statement: str) -> str:
    word = statement.lstrip().split(None, 1)
    return word[0].upper() if word else "QUERY"


def watch_queries(destination: str) -> Callable[[Any], Awaitable[None]] | None:
    """An asyncpg ``init`` for a pool: every statement on its connections becomes a client span
    (built when asyncpg reports it, from its measured duration, in the caller's context)."""
    if not _enabled:
        return None
    kind = _api.kinds["client"]

    def logged(record: Any) -> None:
        end = time.time_ns()
        statement = record.query or ""
        op = _operation(statement)
        attrs = {"db.system": "postgresql", "db.statement": statement[:STATEMENT_MAX],
                 "db.operation": op, "db.name": "sockdrill", "peer.service": destination,
                 "server.address": destination}
        span = _tracer.start_span(f"{op} {destination}", kind=kind, attributes=attrs,
                                  start_time=end - int(record.elapsed * 1e9))
        if record.exception is not None:
            span.record_exception(record.exception)
            span.set_status(_api.Status(_api.StatusCode.ERROR, f"{type(record.exception).__name__}"))
            span.set_attribute("error.type", type(record.exception).__name__)
        span.end(end_time=end)

    async def init(conn: Any) -> None:
        conn.add_query_logger(logged)

    return init


# ---- HTTP server -------------------------------------------------------------------------------------
Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def server_middleware() -> Any:
    """The aiohttp middleware opening a server span per request (install it outermost)."""
    from aiohttp import web

    api, tracer = _api, _tracer
    server_kind = api.kinds["server"]
    extract = api.propagate.extract
    set_in_context = api.trace.set_span_in_context
    attach, detach = api.context.attach, api.context.detach

    @web.middleware
    async def trace_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _enabled or request.path in UNTRACED_PATHS:
            return await handler(request)
        route = request.match_info.route
        resource = route.resource if route is not None else None
        template = resource.canonical if resource is not None else "unmatched"
        parent = extract(request.headers) if "traceparent" in request.headers else None
        span = tracer.start_span(f"{request.method} {template}", context=parent, kind=server_kind, attributes={
            "http.request.method": request.method, "http.route": template, "url.path": request.path})
        token = attach(set_in_context(span))
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(api.error)
            detach(token)
            span.end()

    return trace_request


def instrument_app(app: web.Application) -> None:
    """Put the server span middleware in front of the app's others (before the app is frozen)."""
    if _enabled:
        app.middlewares.insert(0, server_middleware())

