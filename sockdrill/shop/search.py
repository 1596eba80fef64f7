"""search: product search over sharded PostgreSQL full-text indexes, for seed scenario 6 (search degradation).

Not an upstream service. PostgreSQL is the engine (``tsvector`` with a GIN index for words and phrases, a
``pg_trgm`` GIN index on names for typos), in shards that are their own deployments (``SOCKDRILL_SEARCH_SHARDS``,
default ``search-db-a,search-db-b``; a product lives on shard ``crc32(id) % n``), so "search cluster health" is
real: a shard down or slower than ``shard_timeout_s`` is left out and the answer says so, in the shape
Elasticsearch gives (``"partial": true``, ``"shards": {"total", "successful", "failed", "failures"}``); all of them
down is a 503. ``/health`` covers this process only: one shard down must give partial answers, not an outage.

``GET /search?q=&tags=a,b&price_min=&price_max=&in_stock=1&sort=relevance|price_asc|price_desc|name&page=&size=``
→ ``{"items": [{id, name, description, price, count, tag, imageUrl, score}], "total", "partial", "shards",
"took_ms"}``; ``q`` takes web-search syntax (``"merino wool" hiking -cotton``). A bad parameter is a 400 naming it.

The index follows the catalogue: at start (and on ``POST /admin/reindex``) a full rebuild from the catalogue's
``/admin/products/export`` pages, then each change from the ``catalogue-changes`` stream (consumer group
``search-indexer``, in order; a change that cannot be applied yet is retried, holding later ones). The group is
created before the rebuild reads anything, so no change made during it is lost. ``GET /admin/index-status``
(the runtime's token) says what each shard holds. The schema is created on a shard that has none; an existing
one is left as it is (an index someone dropped stays dropped until someone creates it: a restart is no fix).

Knobs: ``shard_timeout_s``, ``match_mode`` (``fts``; ``contains`` matches every term as a substring of name or
description with ILIKE, or the words as close to some of the whole text by trigram word similarity, ranked by it:
no index serves either, so every query reads and scores every row), ``fuzzy_names``, ``max_total_hits``,
``shard_pool_size``, ``index_batch``.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from sockdrill.cluster.admin import SHOP_TOKEN_ENV
from sockdrill.shop.common import Knob, Service, bad_request, json_response, run_service
from sockdrill.shop.common.env import optional_upstream_url
from sockdrill.shop.common.http import UpstreamError
from sockdrill.shop.product_events import CHANGES_STREAM, EventError, ensure_group, next_in_order, parse_change

KNOBS: list[Knob] = [
    Knob("shard_timeout_s", 3.0, "a shard slower than this is left out of the answer (partial results)",
         minimum=0.05, maximum=60),
    Knob("match_mode", "fts", "how query terms match: fts (full-text and trigram indexes) or contains (substring "
         "or similar anywhere in the text, unindexed)",
         choices=("fts", "contains")),
    Knob("fuzzy_names", True, "also match names by trigram similarity (typos)"),
    Knob("max_total_hits", 10000, "totals are counted up to this many hits", minimum=100, maximum=1_000_000),
    Knob("shard_pool_size", 4, "connections per shard", minimum=1, maximum=64),
    Knob("index_batch", 500, "products written per statement when indexing", minimum=1, maximum=5000),
]

SORTS = {"relevance": "score DESC, sock_id", "price_asc": "price, sock_id", "price_desc": "price DESC, sock_id",
         "name": "name, sock_id"}
GROUP = "search-indexer"
MAX_QUERY = 200
MAX_PAGE, MAX_SIZE = 1000, 100
PING_S = 5.0

SHARD_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE products (
    sock_id     varchar(40) COLLATE "C" PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL,
    price       numeric(10, 2) NOT NULL,
    count       integer NOT NULL,
    tags        text[] NOT NULL,
    image_url   text NOT NULL,
    indexed_at  timestamptz NOT NULL DEFAULT now(),
    search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A') || setweight(to_tsvector('english', description), 'B')) STORED
);
CREATE INDEX products_search_vector_idx ON products USING gin (search_vector);
CREATE INDEX products_name_trgm_idx ON products USING gin (name gin_trgm_ops);
CREATE INDEX products_tags_idx ON products USING gin (tags);
CREATE INDEX products_price_idx ON products (price);
"""

UPSERT_SQL = """
INSERT INTO products (sock_id, name, description, price, count, tags, image_url)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (sock_id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,
    price = EXCLUDED.price, count = EXCLUDED.count, tags = EXCLUDED.tags, image_url = EXCLUDED.image_url,
    indexed_at = now()
WHERE (products.name, products.description, products.price, products.count, products.tags, products.image_url)
    IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.description, EXCLUDED.price, EXCLUDED.count, EXCLUDED.tags,
                      EXCLUDED.image_url)
"""

_FIELDS = "sock_id, name, description, price, count, tags, image_url"


def shard_of(product: str, shards: int) -> int:
    return zlib.crc32(product.encode()) % shards


@dataclass
class Query:
    q: str
    tags: list[str] | None
    price_min: float
    price_max: float
    in_stock: bool
    sort: str
    page: int
    size: int


def _float_param(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"'{name}' must be a number, got {raw[:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise bad_request(f"'{name}' must be a number of at least 0, got {raw[:40]!r}")
    return value


def _int_param(request: web.Request, name: str, default: int, top: int) -> int:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"'{name}' must be an integer, got {raw[:40]!r}") from None
    if not 1 <= value <= top:
        raise bad_request(f"'{name}' must be between 1 and {top}, got {value}")
    return value


def parse_query(request: web.Request) -> Query:
    q = request.query.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise bad_request(f"'q' is at most {MAX_QUERY} characters, got {len(q)}")
    tags = [t.strip() for t in request.query.get("tags", "").split(",") if t.strip()] or None
    if tags and (len(tags) > 20 or any(len(t) > 40 for t in tags)):
        raise bad_request("'tags' takes at most 20 names of at most 40 characters")
    price_min = _float_param(request, "price_min", 0.0)
    price_max = _float_param(request, "price_max", 1e9)
    if price_min > price_max:
        raise bad_request(f"'price_min' ({price_min:g}) is above 'price_max' ({price_max:g})")
    raw_stock = request.query.get("in_stock", "").lower()
    if raw_stock not in ("", "0", "1", "true", "false"):
        raise bad_request(f"'in_stock' must be 1 or 0, got {raw_stock[:40]!r}")
    sort = request.query.get("sort", "relevance")
    if sort not in SORTS:
        raise bad_request(f"'sort' must be one of {', '.join(SORTS)}, got {sort[:40]!r}")
    return Query(q, tags, price_min, price_max, raw_stock in ("1", "true"), sort,
                 _int_param(request, "page", 1, MAX_PAGE), _int_param(request, "size", 12, MAX_SIZE))


@dataclass
class ShardSQL:
    page: str
    count: str  # its last argument, the cap, is added when it runs
    args: list[Any]


def shard_sql(query: Query, mode: str, fuzzy: bool) -> ShardSQL:
    """The page query and the capped count query for one shard."""
    args: list[Any] = [query.tags, Decimal(repr(query.price_min)), Decimal(repr(query.price_max)), query.in_stock]
    filters = "($1::text[] IS NULL OR tags && $1) AND price BETWEEN $2 AND $3 AND (NOT $4 OR count > 0)"
    source, score = "products", "0::real"
    if query.q and mode == "contains":
        terms = [t for t in re.split(r"\s+", query.q.replace('"', " ")) if t and not t.startswith("-")][:8]
        conds = []
        for term in terms:
            args.append("%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
            conds.append(f"(name ILIKE ${len(args)} OR description ILIKE ${len(args)})")
        if conds:
            # Every term as a substring, or the words close to some of the whole text (trigram word similarity),
            # ranked by that similarity: evaluated on every row, since no index serves a function of two columns
            # (the release's cost, and its fault).
            args.append(" ".join(terms))
            text = "(name || ' ' || description)"
            filters += f" AND (({' AND '.join(conds)}) OR ${len(args)} <% {text})"
            score = f"word_similarity(${len(args)}, {text})"
    elif query.q:
        args.append(query.q)
        n = len(args)
        source = f"products, websearch_to_tsquery('english', ${n}) q"
        # Word similarity (pg_trgm's <%): a misspelt word of the name ("argyl") matches; the trigram index serves it.
        match = f"search_vector @@ q OR name %> ${n}" if fuzzy else "search_vector @@ q"
        filters += f" AND ({match})"
        score = "ts_rank_cd(search_vector, q)"
    page = (f"SELECT {_FIELDS}, {score} AS score FROM {source} WHERE {filters} "
            f"ORDER BY {SORTS[query.sort]} LIMIT {query.page * query.size}")
    count = f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {filters} LIMIT ${len(args) + 1}) hits"
    return ShardSQL(page, count, args)


def _item(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["sock_id"], "name": row["name"], "description": row["description"],
            "price": float(row["price"]), "count": row["count"], "tag": list(row["tags"]),
            "imageUrl": [row["image_url"]], "score": round(float(row["score"]), 6)}


_SORT_KEYS = {"relevance": lambda i: (-i["score"], i["id"]), "price_asc": lambda i: (i["price"], i["id"]),
              "price_desc": lambda i: (-i["price"], i["id"]), "name": lambda i: (i["name"], i["id"])}


class Shard:
    def __init__(self, name: str, url: str | None) -> None:
        self.name, self.url = name, url
        self.pool: asyncpg.Pool | None = None
        self.ready = False  # the schema is there
        self.up = False
        self.documents = 0
        self._lock = asyncio.Lock()

    async def acquire_pool(self, size: int) -> asyncpg.Pool:
        async with self._lock:
            if self.pool is None:
                if self.url is None:
                    raise ConnectionError(f"no address for {self.name}")
                self.pool = await asyncpg.create_pool(self.url, min_size=0, max_size=size, timeout=5,
                                                      command_timeout=60)
            if not self.ready:
                async with self.pool.acquire() as conn:
                    # Created on a shard that has none; never "repaired" on one that has it.
                    if await conn.fetchval("SELECT to_regclass('products')") is None:
                        await conn.execute(SHARD_SCHEMA)
                self.ready = True
            return self.pool

    async def reset_pool(self) -> None:
        pool, self.pool, self.ready = self.pool, None, False
        if pool is not None:
            pool.terminate()


class Search:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        names = [n.strip() for n in os.environ.get("SOCKDRILL_SEARCH_SHARDS", "search-db-a,search-db-b").split(",")
                 if n.strip()]
        self.shards = [Shard(n, optional_upstream_url(n)) for n in names]
        self.reindexing: asyncio.Task[dict[str, Any]] | None = None
        self.last_reindex: dict[str, Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.queue_depth = 0
        reg, s = svc.metrics.registry, svc.name
        self.duration = Histogram("search_query_duration_seconds", "Search queries, answered.", ["service", "sort"],
                                  registry=reg, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.shard_duration = Histogram("search_shard_query_duration_seconds", "One shard's part of a query.",
                                        ["service", "shard"], registry=reg,
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.queries = Counter("search_queries_total", "Search queries by outcome (ok, partial, error).",
                               ["service", "result"], registry=reg)
        self.shard_failures = Counter("search_shard_failures_total", "Shards left out of an answer, by reason.",
                                      ["service", "shard", "reason"], registry=reg)
        self.depth = Gauge("search_indexing_queue_depth", "Catalogue changes not yet indexed.", ["service"],
                           registry=reg)
        self.lag = Histogram("search_indexing_lag_seconds", "From a catalogue change to its indexing.", ["service"],
                             registry=reg, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
        self.indexed = Counter("search_indexed_documents_total", "Products written to the index.", ["service"],
                               registry=reg)
        self.docs = Gauge("search_index_documents", "Products each shard holds.", ["service", "shard"], registry=reg)
        self.health = Gauge("search_cluster_health_status", "1 for the cluster's colour now (green: every shard up; "
                            "red: one or more down).", ["service", "color"], registry=reg)
        self.shard_up = Gauge("search_shard_up", "Whether the shard answered last time.", ["service", "shard"],
                              registry=reg)
        for sh in self.shards:
            self.shard_up.labels(s, sh.name).set(0)
        self._colour()
        svc.on_startup(self._start)
        svc.on_cleanup(self._stop)

    def _colour(self) -> None:
        green = all(sh.up for sh in self.shards)
        self.health.labels(self.svc.name, "green").set(1 if green else 0)
        self.health.labels(self.svc.name, "red").set(0 if green else 1)

    def _mark(self, shard: Shard, up: bool) -> None:
        shard.up = up
        self.shard_up.labels(self.svc.name, shard.name).set(1 if up else 0)
        self._colour()

    async def _pool(self, shard: Shard) -> asyncpg.Pool:
        return await shard.acquire_pool(int(self.svc.knobs["shard_pool_size"]))

    # ---- queries ------------------------------------------------------------------------------------
    async def _ask(self, shard: Shard, sql: ShardSQL) -> tuple[list[Any], int]:
        started = time.perf_counter()
        try:
            pool = await self._pool(shard)
            async with pool.acquire() as conn:
                rows = await conn.fetch(sql.page, *sql.args)
                total = await conn.fetchval(sql.count, *sql.args, int(self.svc.knobs["max_total_hits"]))
            return [_item(r) for r in rows], int(total)
        finally:
            self.shard_duration.labels(self.svc.name, shard.name).observe(time.perf_counter() - started)

    async def search(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        query = parse_query(request)
        sql = shard_sql(query, str(self.svc.knobs["match_mode"]), bool(self.svc.knobs["fuzzy_names"]))
        timeout = float(self.svc.knobs["shard_timeout_s"])
        results = await asyncio.gather(*(asyncio.wait_for(self._ask(sh, sql), timeout)
                                         for sh in self.shards), return_exceptions=True)
        items: list[dict[str, Any]] = []
        total, failures = 0, []
        for shard, res in zip(self.shards, results, strict=True):
            if isinstance(res, BaseException):
                reason = "timeout" if isinstance(res, TimeoutError) else (
                    "unavailable" if isinstance(res, (OSError, ConnectionError, asyncpg.InterfaceError,
                                                      asyncpg.CannotConnectNowError)) else "query_error")
                failures.append({"shard": shard.name, "reason": reason})
                self.shard_failures.labels(self.svc.name, shard.name, reason).inc()
                if reason == "unavailable":
                    self._mark(shard, False)
                    await shard.reset_pool()
                if reason == "query_error":
                    self.svc.log.error("search on %s failed: %s", shard.name, res)
                continue
            self._mark(shard, True)
            items.extend(res[0])
            total += res[1]
        ok = len(self.shards) - len(failures)
        shards = {"total": len(self.shards), "successful": ok, "failed": len(failures), "failures": failures}
        took = round((time.perf_counter() - started) * 1000, 1)
        self.duration.labels(self.svc.name, query.sort).observe(time.perf_counter() - started)
        if ok == 0:
            self.queries.labels(self.svc.name, "error").inc()
            return json_response({"error": "no search shard answered", "status_code": 503,
                                  "status_text": "Service Unavailable", "shards": shards, "took_ms": took},
                                 status=503)
        items.sort(key=_SORT_KEYS[query.sort])
        first = (query.page - 1) * query.size
        self.queries.labels(self.svc.name, "partial" if failures else "ok").inc()
        return json_response({"items": items[first:first + query.size], "total": total, "partial": bool(failures),
                              "shards": shards, "took_ms": took})

    # ---- the index ----------------------------------------------------------------------------------
    def _rows(self, items: list[dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
        by_shard: list[list[tuple[Any, ...]]] = [[] for _ in self.shards]
        for it in items:
            image = (it.get("imageUrl") or [""])[0]
            by_shard[shard_of(it["id"], len(self.shards))].append(
                (it["id"], it["name"], it["description"], Decimal(str(it["price"])), int(it["count"]),
                 list(it["tag"]), image))
        return by_shard

    async def _write(self, items: list[dict[str, Any]]) -> None:
        batch = int(self.svc.knobs["index_batch"])
        for shard, rows in zip(self.shards, self._rows(items), strict=True):
            if not rows:
                continue
            pool = await self._pool(shard)
            async with pool.acquire() as conn:
                for i in range(0, len(rows), batch):
                    await conn.executemany(UPSERT_SQL, rows[i:i + batch])
            self.indexed.labels(self.svc.name).inc(len(rows))

    async def _catalogue(self, path: str) -> Any:
        token = os.environ.get(SHOP_TOKEN_ENV)
        up = await self.svc.http.request("catalogue", "GET", path, timeout=30,
                                         headers={"Authorization": f"Bearer {token}"} if token else None)
        return up

    async def reindex(self) -> dict[str, Any]:
        """Every product from the catalogue's export into its shard; products no longer there removed."""
        started = time.time()
        seen: list[set[str]] = [set() for _ in self.shards]
        after, pages = "", 0
        while True:
            up = await self._catalogue(f"/admin/products/export?after={after}&limit=5000")
            body = up.json()
            if up.status != 200 or not isinstance(body, dict):
                raise RuntimeError(f"catalogue export answered {up.status}: {up.text[:200]}")
            items = body.get("items") or []
            await self._write(items)
            for it in items:
                seen[shard_of(it["id"], len(self.shards))].add(it["id"])
            pages += 1
            if not body.get("next"):
                break
            after = str(body["next"])
        removed = 0
        for shard, ids in zip(self.shards, seen, strict=True):
            pool = await self._pool(shard)
            async with pool.acquire() as conn:
                done = await conn.execute("DELETE FROM products WHERE NOT (sock_id = ANY ($1::text[]))", list(ids))
                removed += int(done.split()[-1])
                # As after any bulk load: fresh statistics, and the GIN indexes' pending lists merged. Without it
                # the planner costs the full-text and trigram indexes as slower than a sequential scan and every
                # query scans the table, index or no index.
                await conn.execute("VACUUM ANALYZE products")
        out = {"documents": sum(len(s) for s in seen), "removed": removed, "pages": pages,
               "seconds": round(time.time() - started, 3), "finished_at": time.time()}
        self.last_reindex = out
        self.svc.log.info("index rebuilt", extra={"fields": {"kind": "reindex", **out}})
        return out

    async def _apply_change(self, fields: dict[Any, Any]) -> None:
        op, product, at = parse_change(fields)
        up = await self._catalogue(f"/catalogue/{product}") if op != "delete" else None
        if up is not None and up.status == 200 and isinstance(up.json(), dict):
            await self._write([up.json()])
        elif up is None or up.status == 404:  # gone from the catalogue: gone from the index
            shard = self.shards[shard_of(product, len(self.shards))]
            pool = await self._pool(shard)
            async with pool.acquire() as conn:
                await conn.execute("DELETE FROM products WHERE sock_id = $1", product)
        else:
            raise RuntimeError(f"catalogue answered {up.status} for product {product}")
        if at is not None:
            self.lag.labels(self.svc.name).observe(max(0.0, time.time() - at))

    async def _follow(self, url: str) -> None:
        """Create the indexer's group, rebuild the index, then apply each change in order."""
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        from sockdrill.shop.common.redisconn import stale_connection_retry

        r = aioredis.Redis.from_url(url, socket_timeout=5, **stale_connection_retry())
        built, warned = False, 0.0
        try:
            while True:
                try:
                    await ensure_group(r, CHANGES_STREAM, GROUP)  # before the rebuild: no change made during it is lost
                    if not built:
                        # The first rebuild is a tracked one like an admin's: until it has finished (and set
                        # last_reindex), /admin/index-status says reindexing and ?if=stale waits for it. Untracked,
                        # an index that already answered every product could be rebuilt a second time by a reset.
                        if self.reindexing is None or self.reindexing.done():
                            self.reindexing = asyncio.create_task(self.reindex())
                        await asyncio.shield(self.reindexing)
                        built = True
                    for entry_id, fields in await next_in_order(r, CHANGES_STREAM, GROUP, GROUP, 64):
                        try:
                            if fields:
                                await self._apply_change(fields)
                        except EventError as exc:  # unreadable: nothing to retry, the next rebuild covers it
                            self.svc.log.error("change message %s skipped: %s", entry_id, exc)
                        await r.xack(CHANGES_STREAM, GROUP, entry_id)
                        await r.xdel(CHANGES_STREAM, entry_id)
                    self.queue_depth = int(await r.xlen(CHANGES_STREAM))
                    self.depth.labels(self.svc.name).set(self.queue_depth)
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError, UpstreamError, RuntimeError, asyncpg.PostgresError,
                        asyncpg.InterfaceError, TimeoutError) as exc:
                    # Held in order: this change (or the rebuild) is tried again; the depth shows the wait.
                    if time.monotonic() - warned > 30:
                        warned = time.monotonic()
                        self.svc.log.warning("indexing held: %s", exc or type(exc).__name__,
                                             extra={"fields": {"kind": "indexing_held"}})
                    await asyncio.sleep(1.0)
        finally:
            await r.aclose()

    async def _ping(self) -> None:
        while True:
            for shard in self.shards:
                try:
                    pool = await asyncio.wait_for(self._pool(shard), 3)
                    async with pool.acquire(timeout=3) as conn:
                        shard.documents = int(await conn.fetchval("SELECT count(*) FROM products", timeout=3))
                    self.docs.labels(self.svc.name, shard.name).set(shard.documents)
                    self._mark(shard, True)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self._mark(shard, False)
                    await shard.reset_pool()
            await asyncio.sleep(PING_S)

    async def _start(self, _app: web.Application) -> None:
        self._tasks.append(asyncio.create_task(self._ping()))
        url = optional_upstream_url("queue")
        if url is not None and url.startswith("redis"):
            self._tasks.append(asyncio.create_task(self._follow(url)))

    async def _stop(self, _app: web.Application) -> None:
        tasks = [*self._tasks, *([self.reindexing] if self.reindexing is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for shard in self.shards:
            await shard.reset_pool()

    async def documents_behind(self) -> int | None:
        """How many products the catalogue has beyond what the shards hold (0: nothing to rebuild), or None when
        either cannot be counted. Changes made through the catalogue reach the index by its stream; products
        added to catalogue-db directly (a set-up's generated ones) change the count."""
        try:
            up = await self.svc.http.request("catalogue", "GET", "/catalogue/size", timeout=10)
            if up.status != 200:
                return None
            want = int(up.json()["size"])
            have = 0
            for shard in self.shards:
                pool = await self._pool(shard)
                async with pool.acquire() as conn:
                    have += int(await conn.fetchval("SELECT count(*) FROM products"))
        except (UpstreamError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KeyError, TypeError,
                ValueError):
            return None
        return want - have

    async def admin_reindex(self, request: web.Request) -> web.Response:
        """``POST /admin/reindex`` starts a rebuild (202) unless one runs; ``?if=stale`` answers 200 without one
        when the index already holds every product."""
        self.svc._check_admin(request)
        if request.query.get("if", "") not in ("", "stale"):
            raise bad_request("'if' takes only 'stale'")
        if self.reindexing is not None and not self.reindexing.done():
            return json_response({"started": False, "running": True}, status=202)
        if request.query.get("if") == "stale" and self.last_reindex is not None \
                and await self.documents_behind() == 0:
            return json_response({"started": False, "current": True, "documents": self.last_reindex["documents"]})
        self.reindexing = asyncio.create_task(self.reindex())
        return json_response({"started": True}, status=202)

    async def index_status(self, request: web.Request) -> web.Response:
        self.svc._check_admin(request)
        return json_response({
            "shards": {sh.name: {"up": sh.up, "documents": sh.documents} for sh in self.shards},
            "reindexing": self.reindexing is not None and not self.reindexing.done(),
            "last_reindex": self.last_reindex, "queue_depth": self.queue_depth})


def build(svc: Service) -> None:
    search = Search(svc)
    svc.app["search"] = search
    r = svc.app.router
    r.add_get("/search", search.search)
    r.add_post("/admin/reindex", search.admin_reindex)
    r.add_get("/admin/index-status", search.index_status)


def main() -> None:
    run_service("search", build, KNOBS)


if __name__ == "__main__":
    main()
