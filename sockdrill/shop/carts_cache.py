"""carts-cache: a read/write (write-behind) Redis cache in front of carts-db.

Reads are served from the cache; a miss loads the cart from carts-db and keeps it for ``cache_ttl_s``.
Writes change the cached cart only (the customer is answered at once) and mark it dirty; each carts pod
writes dirty carts back to carts-db every ``cache_flush_interval_s``. That is what makes the cache a
failure domain of its own, as in the seed's "data eviction from cache": a dirty cart that Redis evicts
(too little memory under an evicting policy) or loses before it was written back never reaches
carts-db. Under ``noeviction`` a full cache refuses writes instead, and carts writes through to the
database (see ``carts.py``): slower, nothing lost.

A guest's cart (a shopper not logged in: the front-end says so with ``X-Cart-Owner: guest``) stays in the
cache only, unless carts' ``guest_carts_in_db`` is on: most guest baskets are abandoned, and shops keep them
out of their database until a login merges them into the customer's cart (which is written back). Evicted or
expired, a guest's basket is gone: the seed's "data eviction from cache" under memory pressure. A change that
empties a guest's cart is still written back, so that a copy the database took while the cache was away goes too.

Keys: ``cart:<id>`` a hash ``{v, lines}`` (version, JSON lines); ``carts:dirty`` a sorted set of cart ids
scored by when they first became dirty. Concurrent writers (several pods) use WATCH/MULTI and retry, so
no write is lost between two pods; the write-back reads the cart again under the database lock, so it
always stores the newest cached version, and clears the dirty mark only if nothing changed meanwhile.

Metrics: ``carts_cache_requests_total{result="hit"|"miss"}``, ``carts_cache_errors_total{op}``,
``carts_cache_dirty_carts``, ``carts_cache_writeback_lag_seconds`` (age of the oldest unwritten change),
``carts_cache_writebacks_total{result="ok"|"failed"|"lost"}``, ``carts_cache_guest_writes_total`` (changes kept in
the cache only), ``carts_db_fallbacks_total{op}`` (misses carts-db could not answer, served as an empty cart: carts'
degraded mode, ``empty_cart_on_db_error``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError, WatchError

from sockdrill.shop import carts_db
from sockdrill.shop.carts_db import Line
from sockdrill.shop.common.db import UNREACHABLE
from sockdrill.shop.common.redisconn import pooled_redis
from sockdrill.shop.common.tasks import cancel_and_wait
from sockdrill.telemetry import tracing

DIRTY = "carts:dirty"
_SPAN_ATTRS = {"db.system": "redis", "peer.service": "carts-cache", "server.address": "carts-cache"}
MAX_ATTEMPTS = 60  # optimistic retries of one write before it is refused
FLUSH_BATCH = 200


def key(customer_id: str) -> str:
    return f"cart:{customer_id}"


class CacheUnavailable(Exception):
    """The cache could not serve this call (down, refusing writes, contended): use the database."""


class CartCache:
    def __init__(self, svc: Any, url: str, db: Any) -> None:
        self.svc = svc
        self.url = url
        self.db = db  # the service's Database (carts-db pool)
        self._redis: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        reg, name = svc.metrics.registry, svc.name
        self.requests = Counter("carts_cache_requests_total", "Cart reads by cache result.",
                                ["service", "result"], registry=reg)
        self.errors = Counter("carts_cache_errors_total", "Cache calls that failed (the database was used).",
                              ["service", "op"], registry=reg)
        self.writebacks = Counter("carts_cache_writebacks_total", "Dirty carts written back to carts-db, by result.",
                                  ["service", "result"], registry=reg)
        self.dirty = Gauge("carts_cache_dirty_carts", "Carts changed in the cache and not yet in carts-db.",
                           ["service"], registry=reg)
        self.guest_writes = Counter("carts_cache_guest_writes_total",
                                    "Changes to guests' carts kept in the cache only (never written back).",
                                    ["service"], registry=reg)
        self.guest_writes.labels(name)
        self.fallbacks = Counter("carts_db_fallbacks_total", "Cache misses carts-db could not answer, served as an "
                                 "empty cart (degraded mode).", ["service", "op"], registry=reg)
        self.lag = Gauge("carts_cache_writeback_lag_seconds", "Age of the oldest change not yet in carts-db.",
                         ["service"], registry=reg)
        for result in ("hit", "miss"):
            self.requests.labels(name, result)
        for result in ("ok", "failed", "lost"):
            self.writebacks.labels(name, result)
        for op in ("read", "write", "writeback"):
            self.errors.labels(name, op)
        for op in ("read", "write"):
            self.fallbacks.labels(name, op)
        svc.on_startup(self._start)
        svc.on_cleanup(self._stop)
        svc.add_health("carts-cache", self.healthy)
        self._retimed = asyncio.Event()  # the flush interval changed: the write-back loop recomputes its wait
        svc.knobs.on_change(lambda changes: self._retimed.set() if "cache_flush_interval_s" in changes else None)

    # ---- life cycle ------------------------------------------------------------------------------
    def client(self) -> aioredis.Redis:
        if self._redis is None:
            timeout = self.svc.knobs["cache_timeout_s"]
            self._redis = pooled_redis(self.url, timeout, decode_responses=True, socket_connect_timeout=timeout,
                                       health_check_interval=30)
        return self._redis

    async def _start(self, _app: Any) -> None:
        self._task = asyncio.ensure_future(self._flusher())

    async def _stop(self, _app: Any) -> None:
        await cancel_and_wait(self._task)
        try:  # a last write-back, so that a clean shutdown loses nothing
            await asyncio.wait_for(self.flush_once(), 2.0)
        except (TimeoutError, Exception):
            pass
        if self._redis is not None:
            await self._redis.aclose()

    async def healthy(self) -> bool:
        return bool(await self.client().ping())

    # ---- reads and writes ------------------------------------------------------------------------
    async def read(self, customer_id: str) -> list[Line]:
        r = self.client()
        try:
            with tracing.span("carts-cache HGET", "client", {**_SPAN_ATTRS, "db.operation": "HGET"}):
                raw = await r.hget(key(customer_id), "lines")
        except RedisError as exc:
            self.errors.labels(self.svc.name, "read").inc()
            raise CacheUnavailable(str(exc)) from None
        if raw is not None:
            self.requests.labels(self.svc.name, "hit").inc()
            return list(json.loads(raw))
        self.requests.labels(self.svc.name, "miss").inc()
        loaded = await self._load(customer_id, "read")
        if loaded is None:
            return []  # not kept: the next read asks carts-db again
        await self._fill(customer_id, *loaded)
        return loaded[0]

    async def _load(self, customer_id: str, op: str) -> tuple[list[Line], int] | None:
        """The stored cart, on a miss; None when carts-db cannot be reached and carts is in degraded mode
        (``empty_cart_on_db_error``): the caller goes on with an empty cart."""
        try:
            async with self.db.acquire() as conn:
                return await carts_db.load(conn, customer_id)
        except UNREACHABLE as exc:
            if not self.svc.knobs["empty_cart_on_db_error"]:
                raise
            self.fallbacks.labels(self.svc.name, op).inc()
            self.svc.log.warning("carts-db could not be reached: cart %s taken as empty (%s: %s)", customer_id,
                                 type(exc).__name__, exc,
                                 extra={"fields": {"kind": "cart_db_fallback", "customer": customer_id, "op": op}})
            return None

    async def _fill(self, customer_id: str, lines: list[Line], version: int) -> None:
        """Keep a cart read from the database, unless a writer got there first (then theirs is newer)."""
        k = key(customer_id)
        try:
            async with self.client().pipeline(transaction=True) as pipe:
                await pipe.watch(k)
                if await pipe.exists(k):
                    return
                pipe.multi()
                pipe.hset(k, mapping={"v": version, "lines": json.dumps(lines)})
                pipe.expire(k, int(self.svc.knobs["cache_ttl_s"]))
                await pipe.execute()
        except (WatchError, RedisError):
            pass  # a cache that cannot keep it serves the next read from the database again

    async def write(self, ids: list[str], change: Callable[[list[list[Line]]], tuple[list[list[Line]], Any]],
                    cache_only: frozenset[str] = frozenset()) -> Any:
        """Change the carts ``ids`` together: ``change`` gets their current lines and returns their new lines and
        a result for the caller. It may run more than once (optimistic retries), so it must not have effects.
        Carts in ``cache_only`` (guests') are not written back unless the change empties them.
        Raises CacheUnavailable when the cache cannot take the write."""
        with tracing.span("carts-cache MULTI", "client", {**_SPAN_ATTRS, "db.operation": "MULTI"}):
            return await self._write(ids, change, cache_only)

    async def _write(self, ids: list[str], change: Callable[[list[list[Line]]], tuple[list[list[Line]], Any]],
                     cache_only: frozenset[str]) -> Any:
        keys = [key(i) for i in ids]
        ttl = int(self.svc.knobs["cache_ttl_s"])
        r = self.client()
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with r.pipeline(transaction=True) as pipe:
                    await pipe.watch(*keys)
                    current: list[list[Line]] = []
                    versions: list[int] = []
                    for cid, k in zip(ids, keys, strict=True):
                        v, raw = await pipe.hmget(k, ["v", "lines"])
                        if raw is None:
                            self.requests.labels(self.svc.name, "miss").inc()
                            lines, version = await self._load(cid, "write") or ([], 0)
                        else:
                            self.requests.labels(self.svc.name, "hit").inc()
                            lines, version = list(json.loads(raw)), int(v or 0)
                        current.append(lines)
                        versions.append(version)
                    new, result = change(current)
                    now = time.time()
                    pipe.multi()
                    kept_only = 0
                    for cid, k, lines, version in zip(ids, keys, new, versions, strict=True):
                        pipe.hset(k, mapping={"v": version + 1, "lines": json.dumps(lines)})
                        pipe.expire(k, ttl)
                        if cid in cache_only and lines:
                            kept_only += 1
                        else:
                            pipe.zadd(DIRTY, {cid: now}, nx=True)
                    await pipe.execute()
                    if kept_only:
                        self.guest_writes.labels(self.svc.name).inc(kept_only)
                    return result
            except WatchError:
                if attempt >= 2:
                    await asyncio.sleep(random.uniform(0, 0.002 * min(attempt, 10)))
            except RedisError as exc:  # down, timing out, or full under noeviction ("OOM command not allowed")
                self.errors.labels(self.svc.name, "write").inc()
                raise CacheUnavailable(str(exc)) from None
        self.errors.labels(self.svc.name, "write").inc()
        raise CacheUnavailable(f"cart {ids[0]} changed {MAX_ATTEMPTS} times under this write")

    async def take_over(self, customer_id: str) -> tuple[list[Line], int] | None:
        """For a write that goes to the database instead (under its lock): the cached cart if it is newer than
        the stored one, and the cache entry dropped so that no older copy is served afterwards. None when the
        cache holds nothing newer. Raises CacheUnavailable if the entry could not be dropped."""
        k = key(customer_id)
        r = self.client()
        try:
            v, raw = await r.hmget(k, ["v", "lines"])
            await r.delete(k)  # DEL works on a full cache too
            await r.zrem(DIRTY, customer_id)
        except RedisError as exc:
            self.errors.labels(self.svc.name, "write").inc()
            raise CacheUnavailable(str(exc)) from None
        if raw is None:
            return None
        return list(json.loads(raw)), int(v or 0)

    # ---- write-back ------------------------------------------------------------------------------
    async def _flusher(self) -> None:
        last = time.monotonic()
        while True:
            # Sleep until the next round, woken early by a new interval (a knob change applies at once). It used
            # to nap 0.1 s and look: ten wake-ups a second, most of an idle carts pod's CPU (issue 19).
            self._retimed.clear()
            remaining = float(self.svc.knobs["cache_flush_interval_s"]) - (time.monotonic() - last)
            if remaining > 0:
                try:
                    await asyncio.wait_for(self._retimed.wait(), remaining)
                except TimeoutError:
                    pass
                continue
            last = time.monotonic()
            try:
                await self.flush_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round tries again; the failure is counted and logged
                self.errors.labels(self.svc.name, "writeback").inc()
                self.svc.log.warning("cart write-back failed: %s", exc)

    async def flush_once(self) -> int:
        """Write every dirty cart back to carts-db; the number written."""
        r = self.client()
        try:
            due: list[tuple[str, float]] = await r.zrange(DIRTY, 0, FLUSH_BATCH - 1, withscores=True)  # type: ignore[assignment]
        except RedisError as exc:
            self.errors.labels(self.svc.name, "writeback").inc()
            raise CacheUnavailable(str(exc)) from None
        written = 0
        for cid, _since in due:
            try:
                written += await self._write_back(cid)
            except CacheUnavailable:
                raise
            except Exception as exc:  # the database: leave it dirty, try again next round
                self.writebacks.labels(self.svc.name, "failed").inc()
                self.svc.log.warning("cart %s not written back to carts-db: %s", cid, exc,
                                     extra={"fields": {"customer": cid, "error": type(exc).__name__}})
                break  # the database is unwell: the next round, not a storm of failing writes
        await self._gauge()
        return written

    async def _write_back(self, cid: str) -> int:
        r = self.client()
        k = key(cid)
        async with self.db.acquire() as conn, conn.transaction():
            await carts_db.lock(conn, cid)
            try:
                v, raw = await r.hmget(k, ["v", "lines"])
            except RedisError as exc:
                raise CacheUnavailable(str(exc)) from None
            if raw is None:
                # Dirty, but gone from the cache (evicted or expired) before it was written back: the change
                # is lost. Only this cart's mark is cleared; carts-db keeps what it had.
                try:
                    removed = await r.zrem(DIRTY, cid)
                except RedisError as exc:
                    raise CacheUnavailable(str(exc)) from None
                if removed:
                    self.writebacks.labels(self.svc.name, "lost").inc()
                    self.svc.log.error("cart %s left carts-cache before it was written back: its last changes "
                                       "are lost", cid, extra={"fields": {"customer": cid}})
                return 0
            version = int(v or 0)
            await carts_db.save(conn, cid, list(json.loads(raw)), version)
        self.writebacks.labels(self.svc.name, "ok").inc()
        # Clear the mark only if the cart did not change while it was being written.
        try:
            async with r.pipeline(transaction=True) as pipe:
                await pipe.watch(k)
                now_v = await pipe.hget(k, "v")
                if now_v is not None and int(now_v) != version:
                    return 1
                pipe.multi()
                pipe.zrem(DIRTY, cid)
                await pipe.execute()
        except WatchError:
            pass  # changed meanwhile: written back again next round
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from None
        return 1

    async def _gauge(self) -> None:
        r = self.client()
        try:
            n = await r.zcard(DIRTY)
            oldest: list[tuple[str, float]] = await r.zrange(DIRTY, 0, 0, withscores=True)  # type: ignore[assignment]
        except RedisError:
            return
        self.dirty.labels(self.svc.name).set(n)
        self.lag.labels(self.svc.name).set(max(0.0, time.time() - oldest[0][1]) if oldest else 0.0)
