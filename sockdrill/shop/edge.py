"""edge: one region's edge cache ("CDN") in front of the front-end, for seed scenario 4 (catalogue staleness).

Modelled on nginx's ``proxy_cache``, the cache operators know best, and written in Python so that the shop
stays pip-installable (``make demo`` needs no system package; nginx with the purge module would exist only
where Debian's packages are installed, and a TTL change would need a config rewrite and a reload):

- **Cacheable**: GET and HEAD of the catalogue API, answered 200 by the origin: ``/catalogue``,
  ``/catalogue/size`` and ``/tags`` (kind ``list``), ``/catalogue/{id}`` (``item``, tagged ``product:<id>``),
  ``/catalogue/images/…`` (``image``). Everything else (pages, login, cart, orders, admin, writes) is passed
  through untouched, cookies both ways (``BYPASS``).
- **Key**: path and sorted query; cookies are not part of it, and a cacheable answer's ``Set-Cookie`` is
  neither stored nor served (the front-end starts a session on anonymous API calls: a cached cookie would
  hand every shopper the same session and basket).
- **Freshness** is judged when an object is read, with the TTL knob of its kind as it is now (a TTL
  rolled back takes effect at once); every answer says ``Age`` (RFC 9111) and ``X-Cache-Status`` (nginx's
  ``HIT``, ``MISS``, ``EXPIRED``, ``BYPASS``). Concurrent misses of one key make one origin request.
- **Purges**: ``POST /admin/purge`` (the runtime's admin token) with ``{"keys": ["product:<id>"]}``, a
  ``{"prefix": "/catalogue"}`` or ``{}`` (everything); and, where the pod has a queue store, the region's
  purge stream ``cdn-purge.<region>`` (Redis streams; the catalogue publishes there on every product
  change), consumed **in order**: a message that cannot be applied is retried and holds every later one
  behind it (as a poison record holds a partition) unless ``purge_max_attempts`` moves it to
  ``cdn-purge.<region>.dlq``. The stream's consumer group and consumer are the region's, so a restarted pod
  finds the message it was stuck on still pending.
- ``/health`` depends on neither the origin nor the queue: a purge outage does not take a region down.

Metrics: ``edge_cache_requests_total{service,region,kind,status}`` (the hit ratio),
``edge_cache_age_seconds{…,kind}`` (the ``Age`` of served hits: the CDN cache age), ``edge_cache_objects``,
``edge_cache_purges_total{…,result}`` (applied, failed, dead_lettered), ``edge_cache_purge_queue_depth``
and ``edge_cache_purge_lag_seconds`` (applied − published).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from sockdrill.shop.common import Knob, Service, bad_request, json_response, read_json, run_service
from sockdrill.shop.common.env import optional_upstream_url
from sockdrill.shop.common.http import UpstreamError
from sockdrill.shop.common.tasks import cancel_and_wait
from sockdrill.shop.product_events import STREAM_PREFIX, EventError, ensure_group, next_in_order, parse_purge

ORIGIN = "front-end"
KINDS = ("list", "item", "image")

KNOBS: list[Knob] = [
    Knob("list_ttl_s", 1.0, "lifetime of cached listings, counts and tags (seconds; never purged)",
         minimum=0, maximum=86400),
    Knob("item_ttl_s", 300.0, "lifetime of cached product pages (seconds; product changes purge them sooner)",
         minimum=0, maximum=86400),
    Knob("image_ttl_s", 3600.0, "lifetime of cached images (seconds)", minimum=0, maximum=86400),
    Knob("max_objects", 20000, "objects kept; the least recently used goes first", minimum=1, maximum=1_000_000),
    Knob("purge_max_attempts", 0, "tries of a purge message that cannot be applied before it is dead-lettered "
         "(0: retry it forever, holding later purges behind it)", minimum=0, maximum=100),
    Knob("purge_retry_s", 1.0, "wait between tries of a purge message that failed (seconds)",
         minimum=0.05, maximum=60),
    Knob("origin_timeout_s", 5.0, "timeout of one request to the origin (seconds)", minimum=0.1, maximum=60),
]

# Headers that belong to one connection, or that the origin's body no longer matches once read here.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length", "content-encoding", "host"}
_ITEM = re.compile(r"^/catalogue/([^/]+)$")
AGE_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
DLQ_SUFFIX = ".dlq"


def classify(method: str, path: str) -> tuple[str | None, str | None]:
    """(kind, tag) of a request the cache may answer; (None, None) for one it passes through."""
    if method not in ("GET", "HEAD"):
        return None, None
    if path in ("/catalogue", "/catalogue/size", "/tags"):
        return "list", None
    if path.startswith("/catalogue/images/"):
        return "image", None
    m = _ITEM.match(path)
    if m:
        return "item", f"product:{m.group(1)}"
    return None, None


def cache_key(path: str, query: list[tuple[str, str]]) -> str:
    return path + ("?" + urlencode(sorted(query)) if query else "")


@dataclass
class Entry:
    kind: str
    tag: str | None
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    stored_at: float


class EdgeCache:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.region = os.environ.get("SOCKDRILL_REGION") or svc.name.removeprefix("edge-") or "default"
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self._filling: dict[str, asyncio.Future[Entry | web.Response]] = {}
        self._consumer: asyncio.Task[None] | None = None
        reg = svc.metrics.registry
        labels = ["service", "region"]
        self.requests = Counter("edge_cache_requests_total", "Requests answered, by kind and cache status.",
                                [*labels, "kind", "status"], registry=reg)
        self.age = Histogram("edge_cache_age_seconds", "Age of the cached objects served (the Age header).",
                             [*labels, "kind"], buckets=AGE_BUCKETS, registry=reg)
        self.objects = Gauge("edge_cache_objects", "Objects in the cache.", [*labels, "kind"], registry=reg)
        self.purges = Counter("edge_cache_purges_total", "Purge messages, by what became of them.",
                              [*labels, "result"], registry=reg)
        self.depth = Gauge("edge_cache_purge_queue_depth", "Purge messages waiting on the region's stream.",
                           labels, registry=reg)
        self.lag = Histogram("edge_cache_purge_lag_seconds", "From a purge's publication to its application.",
                             labels, buckets=LAG_BUCKETS, registry=reg)
        for kind in KINDS:
            self.objects.labels(svc.name, self.region, kind).set(0)
        self.depth.labels(svc.name, self.region).set(0)
        svc.on_startup(self._start)
        svc.on_cleanup(self._stop)

    # ---- the cache ------------------------------------------------------------------------------
    def ttl(self, kind: str) -> float:
        return float(self.svc.knobs[f"{kind}_ttl_s"])

    def _count_objects(self) -> None:
        counts = dict.fromkeys(KINDS, 0)
        for e in self.entries.values():
            counts[e.kind] += 1
        for kind, n in counts.items():
            self.objects.labels(self.svc.name, self.region, kind).set(n)

    def _store(self, key: str, entry: Entry) -> None:
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > int(self.svc.knobs["max_objects"]):
            self.entries.popitem(last=False)
        self._count_objects()

    def purge(self, keys: list[str] | None = None, prefix: str | None = None) -> int:
        """Drop objects by tag (``product:<id>``) or cache key, by key prefix, or all; how many went."""
        if keys is None and prefix is None:
            doomed = list(self.entries)
        else:
            wanted = set(keys or [])
            doomed = [k for k, e in self.entries.items()
                      if k in wanted or (e.tag is not None and e.tag in wanted)
                      or (prefix is not None and k.startswith(prefix))]
        for k in doomed:
            self.entries.pop(k, None)
        self._count_objects()
        return len(doomed)

    def _answer(self, entry: Entry | web.Response, status: str, age: float) -> web.StreamResponse:
        if isinstance(entry, web.Response):  # the origin's answer, not cacheable: passed on as it came
            entry.headers["X-Cache-Status"] = status
            return entry
        resp = web.Response(status=entry.status, body=entry.body)
        for name, value in entry.headers:
            resp.headers.add(name, value)
        resp.headers["Age"] = str(int(age))
        resp.headers["X-Cache-Status"] = status
        return resp

    async def _origin(self, request: web.Request, *, cacheable: bool) -> tuple[int, tuple[tuple[str, str], ...],
                                                                          bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read() if request.can_read_body else None
        method = "GET" if cacheable else request.method  # a HEAD miss fills the cache like a GET
        up = await self.svc.http.request(ORIGIN, method, request.path_qs, data=body, headers=headers,
                                         timeout=float(self.svc.knobs["origin_timeout_s"]))
        kept = tuple((k, v) for k, v in up.header_list if k.lower() not in _HOP
                     and not (cacheable and k.lower() == "set-cookie"))
        return up.status, kept, up.body

    async def _fill(self, request: web.Request, key: str, kind: str, tag: str | None) -> Entry | web.Response:
        status, headers, body = await self._origin(request, cacheable=True)
        if status != 200:
            resp = web.Response(status=status, body=body)
            for name, value in headers:
                resp.headers.add(name, value)
            return resp
        entry = Entry(kind, tag, status, headers, body, time.time())
        self._store(key, entry)
        return entry

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind, tag = classify(request.method, request.path)
        svc, region = self.svc.name, self.region
        if kind is None:
            self.requests.labels(svc, region, "other", "bypass").inc()
            try:
                code, headers, body = await self._origin(request, cacheable=False)
            except UpstreamError as exc:
                return _bad_gateway(exc)
            resp = web.Response(status=code, body=body)
            for name, value in headers:
                resp.headers.add(name, value)
            resp.headers["X-Cache-Status"] = "BYPASS"
            return resp
        key = cache_key(request.path, list(request.query.items()))
        now = time.time()
        entry = self.entries.get(key)
        if entry is not None and now - entry.stored_at < self.ttl(kind):
            self.entries.move_to_end(key)
            age = now - entry.stored_at
            self.requests.labels(svc, region, kind, "hit").inc()
            self.age.labels(svc, region, kind).observe(age)
            return self._answer(entry, "HIT", age)
        status = "EXPIRED" if entry is not None else "MISS"
        self.requests.labels(svc, region, kind, status.lower()).inc()
        pending = self._filling.get(key)
        try:
            if pending is not None:  # another request is filling this key: wait for its answer
                got = await asyncio.shield(pending)
            else:
                fut: asyncio.Future[Entry | web.Response] = asyncio.get_running_loop().create_future()
                self._filling[key] = fut
                try:
                    got = await self._fill(request, key, kind, tag)
                    fut.set_result(got)
                except BaseException as exc:
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: waiters get it, nobody logs it as lost
                    raise
                finally:
                    self._filling.pop(key, None)
        except UpstreamError as exc:
            return _bad_gateway(exc)
        if isinstance(got, web.Response) and pending is not None:
            got = web.Response(status=got.status, body=got.body, headers=got.headers)  # one response per request
        return self._answer(got, status, 0.0)

    async def admin_purge(self, request: web.Request) -> web.Response:
        self.svc._check_admin(request)
        body = await read_json(request, allow_empty=True) or {}
        keys, prefix = body.get("keys"), body.get("prefix")
        if set(body) - {"keys", "prefix"}:
            raise bad_request(f"unknown field(s) {sorted(set(body) - {'keys', 'prefix'})}; give keys or prefix")
        if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) and k for k in keys)):
            raise bad_request("'keys' must be a list of non-empty strings")
        if prefix is not None and not (isinstance(prefix, str) and prefix.startswith("/")):
            raise bad_request("'prefix' must be a path starting with '/'")
        removed = self.purge(keys, prefix)
        self.svc.log.info("purged %d objects", removed, extra={"fields": {"kind": "purge", "removed": removed,
                                                                          "keys": keys, "prefix": prefix}})
        return json_response({"removed": removed, "objects": len(self.entries)})

    # ---- the purge stream --------------------------------------------------------------------------
    async def _start(self, _app: web.Application) -> None:
        url = optional_upstream_url("queue")
        if url is not None and url.startswith("redis"):
            self._consumer = asyncio.create_task(self._consume(url))

    async def _stop(self, _app: web.Application) -> None:
        await cancel_and_wait(self._consumer)

    async def _consume(self, url: str) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        from sockdrill.shop.common.redisconn import stale_connection_retry

        stream = STREAM_PREFIX + self.region
        group = consumer = f"edge-{self.region}"
        r = aioredis.Redis.from_url(url, socket_timeout=5, **stale_connection_retry())
        attempts: dict[bytes, int] = {}
        grouped = False
        warned = 0.0
        labels = (self.svc.name, self.region)
        try:
            while True:
                try:
                    if not grouped:
                        await ensure_group(r, stream, group)
                        grouped = True
                    for entry_id, fields in await next_in_order(r, stream, group, consumer, 16):
                        if not await self._apply_one(r, stream, group, entry_id, fields, attempts):
                            await asyncio.sleep(float(self.svc.knobs["purge_retry_s"]))
                            break  # nothing after it until it is applied (or dead-lettered)
                    self.depth.labels(*labels).set(await r.xlen(stream))
                except (RedisError, OSError) as exc:
                    grouped = False
                    if time.monotonic() - warned > 30:  # an outage is one log line per 30 s, not one per try
                        warned = time.monotonic()
                        self.svc.log.warning("purge stream unavailable: %s", exc,
                                             extra={"fields": {"kind": "purge_stream", "stream": stream}})
                    await asyncio.sleep(float(self.svc.knobs["purge_retry_s"]))
        finally:
            await r.aclose()

    async def _apply_one(self, r: Any, stream: str, group: str, entry_id: bytes, fields: dict[Any, Any] | None,
                         attempts: dict[bytes, int]) -> bool:
        """Apply one message; False when it failed and stays pending (the caller waits, then retries it)."""
        labels = (self.svc.name, self.region)
        if not fields:  # deleted while pending (dead-lettered by an operator): nothing left to apply
            await r.xack(stream, group, entry_id)
            attempts.pop(entry_id, None)
            return True
        try:
            keys, at = parse_purge(fields)
        except EventError as exc:
            n = attempts.get(entry_id, 0) + 1
            attempts[entry_id] = n
            self.purges.labels(*labels, "failed").inc()
            ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            limit = int(self.svc.knobs["purge_max_attempts"])
            if limit and n >= limit:
                await r.xadd(stream + DLQ_SUFFIX, {**fields, "reason": str(exc)[:200], "source_id": ident},
                             maxlen=10000, approximate=True)
                await r.xack(stream, group, entry_id)
                await r.xdel(stream, entry_id)
                attempts.pop(entry_id, None)
                self.purges.labels(*labels, "dead_lettered").inc()
                self.svc.log.error("purge message %s dead-lettered after %d tries: %s", ident, n, exc,
                                   extra={"fields": {"kind": "purge_failed", "message_id": ident, "tries": n}})
                return True
            if n == 1 or n % 30 == 0:
                self.svc.log.error("purge message %s cannot be applied (try %d): %s", ident, n, exc,
                                   extra={"fields": {"kind": "purge_failed", "message_id": ident, "tries": n}})
            return False
        removed = self.purge(keys)
        await r.xack(stream, group, entry_id)
        await r.xdel(stream, entry_id)  # acknowledged ones go: the stream's length is what waits
        attempts.pop(entry_id, None)
        self.purges.labels(*labels, "applied").inc()
        if at is not None:
            self.lag.labels(*labels).observe(max(0.0, time.time() - at))
        self.svc.log.info("purge applied", extra={"fields": {"kind": "purge", "keys": keys, "removed": removed}})
        return True


def _bad_gateway(exc: UpstreamError) -> web.Response:
    return json_response({"error": f"origin {exc.kind}: {exc.detail}", "status_code": 502,
                          "status_text": "Bad Gateway"}, status=502, content_type="application/json")


def build(svc: Service) -> None:
    edge = EdgeCache(svc)
    svc.app["edge"] = edge
    svc.app.router.add_post("/admin/purge", edge.admin_purge)
    svc.app.router.add_route("*", "/{tail:.*}", edge.handle)  # last: everything else is the shop's


def main() -> None:
    run_service("edge", build, KNOBS)


if __name__ == "__main__":
    main()
