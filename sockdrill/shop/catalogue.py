"""catalogue: the product catalogue on PostgreSQL (``catalogue-db``), upstream-compatible.

``size`` is clamped to ``MAX_PAGE_SIZE`` (1000) socks per page; a parameter holding a NUL byte is a 400
naming it (every service).
Upstream routes (reference §3.1): ``GET /catalogue``, ``/catalogue/size``, ``/catalogue/{id}``, ``/tags``,
``/catalogue/images/{file}``. Beyond upstream, an admin API that only the shop's own services may call
(``Authorization: Bearer`` with the shop's service token; the front-end's admin panel is its client), for
product changes (price, stock, text) that caches downstream must pick up:

- ``POST /admin/products`` ``{name, description, price, count, tags[, id, imageUrl]}`` → 201 Sock;
- ``PATCH /admin/products/{id}`` with any of ``price``, ``count``, ``name``, ``description``, ``tags`` → Sock;
- ``DELETE /admin/products/{id}`` → ``{"deleted": id}``;
- ``GET /admin/products/export?after=&limit=`` → ``{"items": [Sock…], "next": id | null}`` (keyset pages in id
  order: what the search indexer rebuilds its index from).

Each change is then published (shop/product_events.py): a change record for the search indexer, purges for
the regions' edge caches.

Data: the nine released socks on first start, plus ``SOCKDRILL_DATA_PRODUCTS`` generated ones (COPY).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from aiohttp import web

from sockdrill.cluster.admin import SHOP_TOKEN_ENV, bearer_ok
from sockdrill.errors import ShopError
from sockdrill.shop.common.db import DB_KNOBS, Database
from sockdrill.shop.common.knobs import Knob
from sockdrill.shop.common.service import Service, bad_request, json_response, read_json, run_service
from sockdrill.shop.data import data_products, data_seed, images
from sockdrill.shop.data.generate import generate_products
from sockdrill.shop.data.seed import SOCKS, TAG_IDS, TAGS, Sock
from sockdrill.shop.product_events import KNOBS as PURGE_KNOBS
from sockdrill.shop.product_events import ProductEvents

KNOBS = [*DB_KNOBS, *PURGE_KNOBS,
         # An earlier release kept answers in memory; 0 turns that off (the current release's default).
         Knob("product_cache_ttl_s", 0.0, "seconds a product, listing or count answer is kept in memory "
              "and served again (0: never)", minimum=0, maximum=86400)]

JSON_TYPE = "application/json; charset=utf-8"
# Upstream's Go handlers set Content-Type after writing an error status, so clients saw a sniffed type.
ERROR_TYPE = "text/plain; charset=utf-8"
IMAGE_PREFIX = "/catalogue/images/"
MAX_PRICE = 1_000_000.0
MAX_COUNT = 10_000_000
MAX_OFFSET = 1 << 62
MAX_PAGE_SIZE = 1000  # a larger ``size`` is clamped to this (a real API pages; 100k products in one answer is a DoS)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sock (
    sock_id     varchar(40) COLLATE "C" PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL,
    price       real NOT NULL,
    count       integer NOT NULL,
    image_url_1 text NOT NULL,
    image_url_2 text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tag (
    tag_id serial PRIMARY KEY,
    name   text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS sock_tag (
    sock_id varchar(40) COLLATE "C" NOT NULL REFERENCES sock (sock_id) ON DELETE CASCADE,
    tag_id  integer NOT NULL REFERENCES tag (tag_id),
    pos     smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (sock_id, tag_id)
);
CREATE INDEX IF NOT EXISTS sock_tag_tag_id_idx ON sock_tag (tag_id, sock_id);
CREATE TABLE IF NOT EXISTS catalogue_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
"""

# One page of socks, each with its tags in insertion order. $3 = tag filter (NULL = no filter): a sock
# matches if it has any of the tags, and then lists only the tags that matched (as upstream's join did).
LIST_SQL = """
WITH page AS (
    SELECT s.* FROM sock s
    WHERE $3::text[] IS NULL OR EXISTS (
        SELECT 1 FROM sock_tag st JOIN tag t ON t.tag_id = st.tag_id
        WHERE st.sock_id = s.sock_id AND t.name = ANY ($3::text[]))
    ORDER BY s.sock_id
    LIMIT $1 OFFSET $2
)
SELECT p.sock_id, p.name, p.description, p.price, p.count, p.image_url_1, p.image_url_2,
       coalesce((SELECT array_agg(t.name ORDER BY st.pos, st.tag_id)
                 FROM sock_tag st JOIN tag t ON t.tag_id = st.tag_id
                 WHERE st.sock_id = p.sock_id AND ($3::text[] IS NULL OR t.name = ANY ($3::text[]))),
                '{}') AS tags
FROM page p
ORDER BY p.sock_id
"""

GET_SQL = """
SELECT s.sock_id, s.name, s.description, s.price, s.count, s.image_url_1, s.image_url_2,
       coalesce((SELECT array_agg(t.name ORDER BY st.pos, st.tag_id)
                 FROM sock_tag st JOIN tag t ON t.tag_id = st.tag_id WHERE st.sock_id = s.sock_id),
                '{}') AS tags
FROM sock s WHERE s.sock_id = $1
"""

# Every product after a key, in key order (a keyset page): how the search indexer rebuilds its index.
EXPORT_SQL = """
SELECT s.sock_id, s.name, s.description, s.price, s.count, s.image_url_1, s.image_url_2,
       coalesce((SELECT array_agg(t.name ORDER BY st.pos, st.tag_id)
                 FROM sock_tag st JOIN tag t ON t.tag_id = st.tag_id WHERE st.sock_id = s.sock_id),
                '{}') AS tags
FROM sock s WHERE s.sock_id > $1 ORDER BY s.sock_id LIMIT $2
"""
MAX_EXPORT_PAGE = 5000

COUNT_SQL = """
SELECT count(*) FROM sock s
WHERE $1::text[] IS NULL OR EXISTS (
    SELECT 1 FROM sock_tag st JOIN tag t ON t.tag_id = st.tag_id
    WHERE st.sock_id = s.sock_id AND t.name = ANY ($1::text[]))
"""


# ---- formatting ---------------------------------------------------------------------------------------

def _f32(value: float) -> bytes:
    return struct.pack("<f", value)


def price_out(value: float) -> float | int:
    """The price as upstream printed its float32: shortest digits that round-trip, ``18`` not ``18.0``."""
    packed = _f32(value)
    text = repr(value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if _f32(float(text)) == packed:
            break
    out = float(text)
    return int(out) if out.is_integer() and abs(out) < 2**53 else out


def sock_json(row: asyncpg.Record) -> dict[str, Any]:
    # Field order as upstream emitted it.
    return {
        "id": row["sock_id"],
        "name": row["name"],
        "description": row["description"],
        "imageUrl": [row["image_url_1"], row["image_url_2"]],
        "price": price_out(row["price"]),
        "count": row["count"],
        "tag": list(row["tags"]),
    }


def go_error(message: str, status: int) -> web.Response:
    reason = web.Response(status=status).reason
    body = json.dumps({"error": message, "status_code": status, "status_text": reason}, separators=(",", ":"))
    resp = web.Response(body=body.encode(), status=status)
    resp.headers["Content-Type"] = ERROR_TYPE
    return resp


# Only a lost or unreachable store is upstream's "database connection error"; any other PostgreSQL error
# (a query that fails) is "database query error", the same 500 shape (bad input never gets this far:
# see the NUL guard in shop/common/service.py).
DB_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError,
             asyncpg.exceptions.CannotConnectNowError)
QUERY_ERRORS = (asyncpg.PostgresError,)


# ---- data set-up --------------------------------------------------------------------------------------

def _sock_record(s: Sock) -> tuple[Any, ...]:
    return (s.id, s.name, s.description, float(s.price), s.count,
            IMAGE_PREFIX + s.images[0], IMAGE_PREFIX + s.images[1])


async def _copy_socks(conn: asyncpg.Connection, socks: list[Sock]) -> None:
    cols = ["sock_id", "name", "description", "price", "count", "image_url_1", "image_url_2"]
    await conn.copy_records_to_table("sock", records=[_sock_record(s) for s in socks], columns=cols)
    links = [(s.id, TAG_IDS[t], pos) for s in socks for pos, t in enumerate(s.tags)]
    await conn.copy_records_to_table("sock_tag", records=links, columns=["sock_id", "tag_id", "pos"])


async def init_db(conn: asyncpg.Connection) -> None:
    """Schema, then (first start only) the nine socks, the tags and the generated products."""
    await conn.execute(SCHEMA)
    if await conn.fetchval("SELECT value FROM catalogue_meta WHERE key = 'seeded'") is not None:
        return
    seed, extra = data_seed(), data_products()
    async with conn.transaction():
        await conn.executemany("INSERT INTO tag (tag_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                               [(TAG_IDS[t], t) for t in TAGS])
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('tag', 'tag_id'), (SELECT max(tag_id) FROM tag))")
        await _copy_socks(conn, list(SOCKS))
        await _copy_generated(conn, seed, 0, extra)
        await conn.execute("INSERT INTO catalogue_meta (key, value) VALUES ('seeded', $1)",
                           json.dumps({"seed": seed, "products": extra}))
    await conn.execute("ANALYZE sock; ANALYZE sock_tag; ANALYZE tag")


async def _copy_generated(conn: asyncpg.Connection, seed: int, start: int, stop: int) -> None:
    """Generated products ``start``..``stop`` of ``seed`` (the same socks whatever the total), in batches."""
    seeded = {s.id for s in SOCKS}
    batch: list[Sock] = []
    for sock in itertools.islice(generate_products(stop, seed), start, None):
        if sock.id in seeded:  # never for uuid4s, but a clash would abort the whole load
            continue
        batch.append(sock)
        if len(batch) >= 5000:
            await _copy_socks(conn, batch)
            batch = []
    if batch:
        await _copy_socks(conn, batch)


async def ensure_generated_products(url: str, n: int) -> int:
    """Grow the generated products of a running catalogue-db to ``n`` (same seed, same socks); returns how
    many were added. Used by the scenario runner when a variant's set-up asks for more products (a search
    over 10,000 of them); a shop never shrinks, as it never loses its users."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        raw = await conn.fetchval("SELECT value FROM catalogue_meta WHERE key = 'seeded'")
        if raw is None:
            raise ShopError("catalogue-db is not seeded yet: the catalogue service seeds it on its first start")
        meta = json.loads(raw)
        have, seed = int(meta.get("products", 0)), int(meta.get("seed", 1))
        if have >= n:
            return 0
        async with conn.transaction():
            await _copy_generated(conn, seed, have, n)
            meta["products"] = n
            await conn.execute("UPDATE catalogue_meta SET value = $1 WHERE key = 'seeded'", json.dumps(meta))
        for table in ("sock", "sock_tag"):  # now, not by autovacuum in the middle of a measured run
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        return n - have
    finally:
        await conn.close()


async def generated_product_count(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        raw = await conn.fetchval("SELECT value FROM catalogue_meta WHERE key = 'seeded'")
        return int(json.loads(raw).get("products", 0)) if raw else 0
    finally:
        await conn.close()


# ---- query parsing --------------------------------------------------------------------------------------

def _tags_param(request: web.Request) -> list[str] | None:
    raw = request.query.get("tags", "")
    tags = [t.strip() for t in raw.split(",") if t.strip()]
    return tags or None


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return 0  # upstream: a non-numeric value parses as 0 → empty page


# ---- validation of the admin API ---------------------------------------------------------------------

def _plain_text(value: str) -> bool:
    """Text PostgreSQL can store: no NUL character, no lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 100 or not _plain_text(value):
        raise bad_request("'name' must be a non-empty string of at most 100 characters (plain text)")
    return value.strip()


def _check_description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 2000 or not _plain_text(value):
        raise bad_request("'description' must be a string of at most 2000 characters (plain text)")
    return value


def _check_price(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request("'price' must be a number")
    if not 0 < value <= MAX_PRICE:
        raise bad_request(f"'price' must be > 0 and <= {MAX_PRICE:g}, got {value}")
    return float(value)


def _check_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise bad_request(f"'count' must be an integer between 0 and {MAX_COUNT}")
    return value


def _check_tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise bad_request("'tags' must be a non-empty array of tag names")
    unknown = [t for t in value if t not in TAG_IDS]
    if unknown:
        raise bad_request(f"unknown tag(s) {unknown}; choose from {list(TAGS)}")
    return list(dict.fromkeys(value))


def _check_images(value: Any) -> list[str]:
    known = set(images.image_names())
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise bad_request("'imageUrl' must be an array of two image paths")
    out = []
    for v in value:
        name = v.removeprefix(IMAGE_PREFIX)
        if name not in known:
            raise bad_request(f"unknown image {v!r}; choose from {sorted(known)}")
        out.append(IMAGE_PREFIX + name)
    return out


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": _check_name, "description": _check_description, "price": _check_price, "count": _check_count,
    "tags": _check_tags,
}


# ---- the service ------------------------------------------------------------------------------------

def build(svc: Service) -> None:
    # catalogue-ro reads a streaming replica: a standby refuses writes, so it neither seeds nor migrates (the
    # primary's schema and rows arrive by replication), and the mesh sends it reads only.
    store = os.environ.get("SOCKDRILL_CATALOGUE_STORE", "catalogue-db")
    db = Database(svc, store, init=init_db if store == "catalogue-db" else None)
    purges = ProductEvents(svc)  # edge caches learn of each change (when cdn_regions names any)

    async def warm_images(_app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, images.warm)

    svc.on_startup(warm_images)

    async def list_socks(request: web.Request) -> web.Response:
        page = _int_param(request, "page", 1)
        size = _int_param(request, "size", 10)
        # ``sort`` is accepted and ignored: upstream bound it as a value, so the order was always by id.
        offset = (page - 1) * size
        if page < 1 or size < 1 or offset >= MAX_OFFSET:
            return json_response([], content_type=JSON_TYPE)
        try:
            rows = await db.fetch(LIST_SQL, min(size, MAX_PAGE_SIZE), offset, _tags_param(request))
        except DB_ERRORS:
            svc.log.exception("catalogue query failed")
            return go_error("database connection error", 500)
        except QUERY_ERRORS:
            svc.log.exception("catalogue query failed")
            return go_error("database query error", 500)
        return json_response([sock_json(r) for r in rows], content_type=JSON_TYPE)

    async def count_socks(request: web.Request) -> web.Response:
        try:
            n = await db.fetchval(COUNT_SQL, _tags_param(request))
        except DB_ERRORS:
            svc.log.exception("catalogue count failed")
            return go_error("database connection error", 500)
        except QUERY_ERRORS:
            svc.log.exception("catalogue count failed")
            return go_error("database query error", 500)
        return json_response({"size": n, "err": None}, content_type=JSON_TYPE)

    async def get_sock(request: web.Request) -> web.Response:
        try:
            row = await db.fetchrow(GET_SQL, request.match_info["id"])
        except DB_ERRORS:
            svc.log.exception("catalogue get failed")
            return go_error("database connection error", 500)
        except QUERY_ERRORS:
            svc.log.exception("catalogue get failed")
            return go_error("database query error", 500)
        if row is None:
            return go_error("not found", 404)
        return json_response(sock_json(row), content_type=JSON_TYPE)

    async def list_tags(_request: web.Request) -> web.Response:
        try:
            rows = await db.fetch("SELECT name FROM tag ORDER BY tag_id")
        except DB_ERRORS:
            svc.log.exception("tags query failed")
            return go_error("database connection error", 500)
        except QUERY_ERRORS:
            svc.log.exception("tags query failed")
            return go_error("database query error", 500)
        return json_response({"tags": [r["name"] for r in rows], "err": None}, content_type=JSON_TYPE)

    async def get_image(request: web.Request) -> web.Response:
        data = images.image_bytes(request.match_info["file"])
        if not data:
            raise bad_request("image not found", 404)
        return web.Response(body=data, content_type=images.CONTENT_TYPE,
                            headers={"Cache-Control": "public, max-age=3600"})

    # ---- admin API ----
    async def _set_tags(conn: asyncpg.Connection, sock_id: str, tags: list[str]) -> None:
        await conn.execute("DELETE FROM sock_tag WHERE sock_id = $1", sock_id)
        await conn.executemany("INSERT INTO sock_tag (sock_id, tag_id, pos) VALUES ($1, $2, $3)",
                               [(sock_id, TAG_IDS[t], pos) for pos, t in enumerate(tags)])

    def _admin_only(request: web.Request) -> None:
        """The admin API answers the shop's own services (the front-end's admin panel) only."""
        if not bearer_ok(os.environ.get(SHOP_TOKEN_ENV), request.headers):
            raise bad_request("the admin API needs the shop's service token", 401)

    async def create_product(request: web.Request) -> web.Response:
        _admin_only(request)
        body = await read_json(request)
        allowed = {"id", "name", "description", "price", "count", "tags", "imageUrl"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise bad_request(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
        missing = [k for k in ("name", "price", "count", "tags") if k not in body]
        if missing:
            raise bad_request(f"missing field(s) {missing}")
        clean = {k: _CHECKS[k](body[k]) for k in _CHECKS if k in body}
        sock_id = body.get("id") or str(uuid.uuid4())
        if not isinstance(sock_id, str) or len(sock_id) > 40 or not sock_id.strip():
            raise bad_request("'id' must be a non-empty string of at most 40 characters")
        if "imageUrl" in body:
            image_urls = _check_images(body["imageUrl"])
        else:  # reuse the drawings of a seeded sock that shares a tag
            like = next((s for s in SOCKS if set(s.tags) & set(clean["tags"])), SOCKS[0])
            image_urls = [IMAGE_PREFIX + like.images[0], IMAGE_PREFIX + like.images[1]]
        async with db.acquire() as conn, conn.transaction():
            done = await conn.execute(
                "INSERT INTO sock (sock_id, name, description, price, count, image_url_1, image_url_2) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sock_id) DO NOTHING",
                sock_id, clean["name"], clean.get("description", ""), clean["price"], clean["count"],
                *image_urls)
            if done.endswith(" 0"):
                raise bad_request(f"product {sock_id!r} already exists", 409)
            await _set_tags(conn, sock_id, clean["tags"])
            row = await conn.fetchrow(GET_SQL, sock_id)
        svc.log.info("product created", extra={"fields": {"kind": "product_change", "id": sock_id}})
        await purges.changed("create", sock_id)  # a cached "not found" of it, or a listing without it
        return json_response(sock_json(row), status=201, content_type=JSON_TYPE)

    async def update_product(request: web.Request) -> web.Response:
        _admin_only(request)
        sock_id = request.match_info["id"]
        body = await read_json(request)
        unknown = sorted(set(body) - set(_CHECKS))
        if unknown:
            raise bad_request(f"unknown field(s) {unknown}; allowed: {sorted(_CHECKS)}")
        if not body:
            raise bad_request(f"nothing to change; give any of {sorted(_CHECKS)}")
        clean = {k: _CHECKS[k](v) for k, v in body.items()}
        async with db.acquire() as conn, conn.transaction():
            old = await conn.fetchrow(GET_SQL + " FOR UPDATE OF s", sock_id)
            if old is None:
                raise bad_request(f"product {sock_id!r} not found", 404)
            cols = [k for k in ("name", "description", "price", "count") if k in clean]
            if cols:
                sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
                await conn.execute(f"UPDATE sock SET {sets}, updated_at = now() WHERE sock_id = $1",
                                   sock_id, *(clean[c] for c in cols))
            if "tags" in clean:
                await _set_tags(conn, sock_id, clean["tags"])
                await conn.execute("UPDATE sock SET updated_at = now() WHERE sock_id = $1", sock_id)
            row = await conn.fetchrow(GET_SQL, sock_id)
        before = sock_json(old)
        after = sock_json(row)
        changes = {k: {"old": before[k], "new": after[k]} for k in after if before[k] != after[k]}
        svc.log.info("product updated", extra={"fields": {"kind": "product_change", "id": sock_id,
                                                          "changes": changes}})
        await purges.changed("update", sock_id)
        return json_response(after, content_type=JSON_TYPE)

    async def export_products(request: web.Request) -> web.Response:
        """``GET /admin/products/export?after=<id>&limit=<n>`` (the service token): products after ``after`` in
        id order, ``{"items": [...], "next": <last id, or null at the end>}``."""
        _admin_only(request)
        after = request.query.get("after", "")
        raw_limit = request.query.get("limit", str(MAX_EXPORT_PAGE))
        if len(after) > 40:
            raise bad_request("'after' is a product id (at most 40 characters)")
        try:
            limit = int(raw_limit)
        except ValueError:
            raise bad_request(f"'limit' must be an integer, got {raw_limit[:40]!r}") from None
        if not 1 <= limit <= MAX_EXPORT_PAGE:
            raise bad_request(f"'limit' must be between 1 and {MAX_EXPORT_PAGE}, got {limit}")
        try:
            rows = await db.fetch(EXPORT_SQL, after, limit)
        except DB_ERRORS:
            svc.log.exception("catalogue export failed")
            return go_error("database connection error", 500)
        items = [sock_json(r) for r in rows]
        nxt = items[-1]["id"] if len(items) == limit else None
        return json_response({"items": items, "next": nxt}, content_type=JSON_TYPE)

    async def delete_product(request: web.Request) -> web.Response:
        _admin_only(request)
        sock_id = request.match_info["id"]
        done = await db.execute("DELETE FROM sock WHERE sock_id = $1", sock_id)
        if done.endswith(" 0"):
            raise bad_request(f"product {sock_id!r} not found", 404)
        svc.log.info("product deleted", extra={"fields": {"kind": "product_change", "id": sock_id}})
        await purges.changed("delete", sock_id)
        return json_response({"deleted": sock_id}, content_type=JSON_TYPE)

    answers: dict[str, tuple[float, web.Response]] = {}  # path and query → (when, the answer), product_cache_ttl_s

    def kept(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        """Serve a read again from memory for ``product_cache_ttl_s`` (0: always from the database)."""
        async def serve(request: web.Request) -> web.Response:
            ttl = float(svc.knobs["product_cache_ttl_s"])
            if ttl <= 0:
                return await handler(request)  # type: ignore[no-any-return]
            now = time.monotonic()
            hit = answers.get(request.path_qs)
            if hit is not None and now - hit[0] < ttl:
                return web.Response(body=hit[1].body, status=hit[1].status, content_type=hit[1].content_type,
                                    charset=hit[1].charset)
            resp: web.Response = await handler(request)
            if resp.status == 200:
                if len(answers) > 10_000:
                    answers.clear()
                answers[request.path_qs] = (now, resp)
            return resp
        return serve

    r = svc.app.router
    r.add_get("/catalogue", kept(list_socks))
    r.add_get("/catalogue/size", kept(count_socks))
    r.add_get("/catalogue/images/{file}", get_image)
    r.add_get("/catalogue/{id}", kept(get_sock))
    r.add_get("/tags", kept(list_tags))
    r.add_get("/admin/products/export", export_products)
    r.add_post("/admin/products", create_product)
    r.add_patch("/admin/products/{id}", update_product)
    r.add_delete("/admin/products/{id}", delete_product)


def main() -> None:
    run_service("catalogue", build, KNOBS)


if __name__ == "__main__":
    main()
