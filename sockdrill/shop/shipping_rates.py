"""shipping-rates: what delivery costs, by destination (seed scenario 10). Not in upstream Sock Shop, whose
orders add a flat 4.99; asleep unless a scenario wakes it (with ``rates-db``, ``rates-cache`` and
``carrier-api``).

``POST /quotes`` ``{address: {country, postcode, ...}, items: [{quantity}, ...]}`` answers the delivery options
for a basket to an address: ``{destination: {country, postcode, zone, region}, weightGrams, currency, tariff,
options: [{service, price, days}]}``. On the way:

1. geocoding: the address's postcode area (``shipping_tariff.postcode_area``) is looked up in the postcode
   directory, table ``postcode_areas`` of rates-db (imported from the release this version ships with when the
   table is empty; job ``import-directory`` imports it again); a British area the directory lacks is priced as
   the mainland and counted (``shipping_geocode_lookups_total{match="fallback"}``);
2. rates: the carrier's rates for the zone and the parcel's 500 g band, from rates-cache (Redis; an entry is
   fresh for ``rates_cache_ttl_s`` from when it was fetched, and kept a day for ``serve_stale_on_error``) or
   else from carrier-api (``carrier_timeout_s``);
3. options: the carrier's services this shop offers (``carrier_services``), priced as the carrier priced them.

A quote the carrier could not rate (and no stale entry may stand in) is a 503 naming the carrier; a bad address
is a 400. Every ten seconds the service reads the carrier's published tariff and the directory's contents (the
gauges ``shipping_carrier_tariff_revision`` and ``shipping_directory_areas``); a cached rate from an older
tariff than the carrier's is logged, not dropped: nothing invalidates the cache but its TTL.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from sockdrill.shop import shipping_tariff as tariff
from sockdrill.shop.common import Knob, Service, bad_request, json_response, read_json, run_service
from sockdrill.shop.common.db import DB_KNOBS, Database
from sockdrill.shop.common.env import upstream_url
from sockdrill.shop.common.http import UpstreamError
from sockdrill.shop.common.redisconn import redis_store

KNOBS: list[Knob] = [
    *DB_KNOBS,
    Knob("carrier_timeout_s", 2.0, "timeout of one rate request to the carrier (seconds)", minimum=0.001,
         maximum=300),
    Knob("rates_cache_ttl_s", 300.0, "how long a carrier rate is served from rates-cache before it is fetched "
         "again (seconds)", minimum=0, maximum=30 * 86400),
    Knob("serve_stale_on_error", False, "quote from an expired cached rate when the carrier cannot answer"),
    Knob("carrier_services", "standard,express", "the carrier's services offered at checkout, comma-separated",
         choices=("standard,express", "express,standard", "standard", "express")),
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS postcode_areas (
    country TEXT NOT NULL,
    area    TEXT NOT NULL,
    zone    TEXT NOT NULL,
    region  TEXT NOT NULL,
    PRIMARY KEY (country, area)
);
CREATE TABLE IF NOT EXISTS directory_releases (
    release     TEXT NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    areas       INTEGER NOT NULL
);
"""
CACHE_KEEP_S = 86400  # an entry outlives its freshness by this much, for serve_stale_on_error
WATCH_EVERY_S = 10.0
MAX_ITEMS = 100
MAX_PAIRS = 200


async def import_directory(conn: asyncpg.Connection) -> int:
    """The shipped release into postcode_areas, replacing what is there, in one transaction."""
    rows = tariff.directory_rows()
    async with conn.transaction():
        await conn.execute("DELETE FROM postcode_areas")
        await conn.copy_records_to_table("postcode_areas", records=rows,
                                         columns=["country", "area", "zone", "region"])
        await conn.execute("INSERT INTO directory_releases (release, areas) VALUES ($1, $2)",
                           tariff.DIRECTORY_RELEASE, len(rows))
    return len(rows)


async def init_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(SCHEMA)
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM postcode_areas)"):
        await import_directory(conn)


class QuoteFailed(Exception):
    def __init__(self, status: int, message: str, result: str) -> None:
        super().__init__(message)
        self.status, self.message, self.result = status, message, result


class Rates:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.db = Database(svc, "rates-db", init=init_schema, lock_id=424250)
        self.cache: Any = None
        self.watch: asyncio.Task[None] | None = None
        r = svc.metrics.registry
        name = svc.name
        # The seed's key metrics: calculation error rate, shipping API response time, cache hit/miss ratio,
        # geocoding accuracy.
        self.quotes = Counter("shipping_quotes_total", "Quotes by result (ok, invalid, carrier_error, error).",
                              ["service", "result"], registry=r)
        self.carrier_calls = Histogram("shipping_carrier_request_duration_seconds", "Rate requests to the carrier.",
                                       ["service", "outcome"], registry=r,
                                       buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.cache_requests = Counter("shipping_rates_cache_requests_total", "Rate lookups in rates-cache by result "
                                      "(hit, miss, stale: expired but served because the carrier failed).",
                                      ["service", "result"], registry=r)
        self.geocodes = Counter("shipping_geocode_lookups_total", "Addresses geocoded, by how the directory matched "
                                "(area, country, fallback: a British area it lacks, unknown: a country it lacks).",
                                ["service", "match"], registry=r)
        self.quoted_zone = Counter("shipping_quotes_by_zone_total", "Quotes by the zone the address was put in.",
                                   ["service", "zone"], registry=r)
        self.options_offered = Counter("shipping_quote_options_total", "Delivery options offered in quotes, by "
                                       "option.", ["service", "option"], registry=r)
        self.directory = Gauge("shipping_directory_areas", "Postcode areas (and countries) in the directory, by zone.",
                               ["service", "zone"], registry=r)
        self.carrier_revision = Gauge("shipping_carrier_tariff_revision", "The tariff the carrier publishes now.",
                                      ["service"], registry=r)
        self.cached_revision = Gauge("shipping_cached_tariff_revision", "The oldest tariff among the rates served "
                                     "from rates-cache in the last ten seconds.", ["service"], registry=r)
        self._oldest_served: int | None = None
        self.carrier_revision.labels(name)
        self.cached_revision.labels(name)
        svc.on_startup(self._open)
        svc.on_cleanup(self._close)
        svc.add_health("rates-cache", self._cache_ok)
        svc.add_job("import-directory", "import the postcode directory again from the release this version ships "
                    f"with ({tariff.DIRECTORY_RELEASE}), replacing the table's rows", self._reimport)

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def _open(self, _app: web.Application) -> None:
        self.cache = redis_store(upstream_url("rates-cache"), timeout=2.0)
        self.watch = asyncio.create_task(self._watch())

    async def _close(self, _app: web.Application) -> None:
        if self.watch is not None:
            self.watch.cancel()
        if self.cache is not None:
            await self.cache.aclose()

    async def _cache_ok(self) -> bool:
        return bool(await self.cache.ping())

    async def _reimport(self) -> dict[str, Any]:
        async with self.db.pool.acquire() as conn:  # type: ignore[union-attr]
            areas = await import_directory(conn)
        await self._read_directory()
        return {"release": tariff.DIRECTORY_RELEASE, "areas": areas}

    async def _watch(self) -> None:
        """The carrier's published tariff and the directory's contents, as gauges (what an operator compares)."""
        while True:
            try:
                await self._read_directory()
                up = await self.svc.http.request("carrier-api", "GET", "/v1/tariff",
                                                 timeout=self.svc.knobs["carrier_timeout_s"])
                published = up.json()
                if up.status == 200 and isinstance(published, dict) and isinstance(published.get("revision"), int):
                    self.carrier_revision.labels(self.svc.name).set(published["revision"])
                    oldest = self._oldest_served
                    if oldest is not None and oldest < published["revision"]:
                        self.svc.log.warning(
                            "rates served from rates-cache are from tariff %d; the carrier publishes %d", oldest,
                            published["revision"], extra={"fields": {"cached_tariff": oldest,
                                                                     "carrier_tariff": published["revision"]}})
                if self._oldest_served is not None:
                    self.cached_revision.labels(self.svc.name).set(self._oldest_served)
                self._oldest_served = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a watcher that cannot read now reads again next time
                self.svc.log.info("tariff/directory watch: %s", exc)
            await asyncio.sleep(WATCH_EVERY_S)

    async def _read_directory(self) -> None:
        rows = await self.db.fetch("SELECT zone, count(*) AS n FROM postcode_areas GROUP BY zone")
        counts = {r["zone"]: int(r["n"]) for r in rows}
        for zone in {*tariff.ZONES, *counts}:
            self.directory.labels(self.svc.name, zone).set(counts.get(zone, 0))

    # ---- the quote ---------------------------------------------------------------------------------------
    async def geocode(self, country: str, postcode: str) -> dict[str, str]:
        code = tariff.country_code(country)
        area = tariff.postcode_area(code, postcode)
        if code == "GB" and not area:
            raise QuoteFailed(400, f"postcode {postcode!r} is not a British postcode", "invalid")
        row = await self.db.fetchrow("SELECT zone, region FROM postcode_areas WHERE country = $1 AND area = $2",
                                     code, area)
        if row is not None:
            self.geocodes.labels(self.svc.name, "area" if area != "*" else "country").inc()
            return {"country": code, "zone": row["zone"], "region": row["region"]}
        if code == "GB":  # an area the directory lacks: priced as the mainland, and counted
            self.geocodes.labels(self.svc.name, "fallback").inc()
            self.svc.log.warning("postcode area %s is not in the directory; priced as the mainland", area,
                                 extra={"fields": {"area": area}})
            return {"country": code, "zone": "uk", "region": "unknown"}
        self.geocodes.labels(self.svc.name, "unknown").inc()
        raise QuoteFailed(422, f"we do not deliver to country {country!r}", "invalid")

    async def carrier_rates(self, zone: str, band: int) -> dict[str, Any]:
        """The carrier's answer for a zone and band: fresh from rates-cache, else from the carrier, else (when
        allowed) an expired entry."""
        key = f"rates:{zone}:{band}"
        now = time.time()
        cached: dict[str, Any] | None = None
        try:
            raw = await self.cache.get(key)
            cached = json.loads(raw) if raw else None
        except Exception as exc:  # a cache that cannot answer is a miss, not a failed quote
            self.svc.log.warning("rates-cache unreadable: %s", exc)
        if cached is not None and cached.get("fresh_until", 0) > now:
            self.cache_requests.labels(self.svc.name, "hit").inc()
            self._served(int(cached["answer"].get("tariff", 0)))
            return dict(cached["answer"])
        self.cache_requests.labels(self.svc.name, "miss").inc()
        started = time.perf_counter()
        outcome, answer = "error", None
        try:
            up = await self.svc.http.request("carrier-api", "GET", "/v1/rates",
                                             params={"zone": zone, "weight_g": str(band * tariff.BAND_G)},
                                             timeout=self.svc.knobs["carrier_timeout_s"])
            data = up.json()
            if up.status == 200 and isinstance(data, dict) and isinstance(data.get("options"), list):
                outcome, answer = "ok", data
            why = f"status {up.status}"
        except UpstreamError as exc:
            outcome, why = exc.kind, exc.kind
        self.carrier_calls.labels(self.svc.name, outcome).observe(time.perf_counter() - started)
        if answer is not None:
            ttl = self.svc.knobs["rates_cache_ttl_s"]
            entry = {"answer": answer, "fetched_at": now, "fresh_until": now + ttl}
            try:
                await self.cache.set(key, json.dumps(entry), ex=int(ttl + CACHE_KEEP_S))
            except Exception as exc:
                self.svc.log.warning("rates-cache unwritable: %s", exc)
            return answer
        if cached is not None and self.svc.knobs["serve_stale_on_error"]:
            self.cache_requests.labels(self.svc.name, "stale").inc()
            self._served(int(cached["answer"].get("tariff", 0)))
            return dict(cached["answer"])
        raise QuoteFailed(503, f"the carrier could not rate a parcel to {zone}: {why}", "carrier_error")

    def _served(self, revision: int) -> None:
        if self._oldest_served is None or revision < self._oldest_served:
            self._oldest_served = revision

    async def quote(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            address, pairs = parse_quote(body)
            place = await self.geocode(address["country"], address["postcode"])
            weight = tariff.parcel_weight_g(pairs)
            answer = await self.carrier_rates(place["zone"], tariff.weight_band(weight))
        except QuoteFailed as exc:
            self.quotes.labels(self.svc.name, exc.result).inc()
            if exc.result == "carrier_error":
                self.svc.log.warning("quote failed: %s", exc.message, extra={"fields": {"kind": "quote_failed"}})
            raise bad_request(exc.message, exc.status) from None
        except web.HTTPException:
            self.quotes.labels(self.svc.name, "invalid").inc()
            raise
        offered = [s.strip() for s in str(self.svc.knobs["carrier_services"]).split(",") if s.strip()]
        options = [{"service": o.get("service"), "price": o.get("price"), "days": o.get("days")}
                   for o in answer["options"] if isinstance(o, dict) and o.get("service") in offered]
        for o in options:
            self.options_offered.labels(self.svc.name, str(o["service"])).inc()
        self.quotes.labels(self.svc.name, "ok").inc()
        self.quoted_zone.labels(self.svc.name, place["zone"]).inc()
        return json_response({
            "destination": {"country": place["country"], "postcode": address["postcode"], "zone": place["zone"],
                            "region": place["region"]},
            "weightGrams": weight, "currency": answer.get("currency", tariff.CURRENCY),
            "tariff": answer.get("tariff"), "options": options})


def parse_quote(body: dict[str, Any]) -> tuple[dict[str, str], int]:
    """(address with country and postcode, pairs of socks), or a 400 naming the bad field."""
    address = body.get("address")
    if not isinstance(address, dict):
        raise bad_request('body needs "address": an object with country and postcode')
    out: dict[str, str] = {}
    for name in ("country", "postcode"):
        value = address.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > 40 or "\x00" in value:
            raise bad_request(f"address.{name} must be a non-empty string of at most 40 characters")
        out[name] = value.strip()
    items = body.get("items")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_ITEMS:
        raise bad_request(f'body needs "items": a list of 1 to {MAX_ITEMS} lines with a quantity')
    pairs = 0
    for line in items:
        quantity = line.get("quantity") if isinstance(line, dict) else None
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise bad_request("items[].quantity must be a whole number of at least 1")
        pairs += quantity
    if pairs > MAX_PAIRS:
        raise bad_request(f"a parcel holds at most {MAX_PAIRS} pairs, got {pairs}")
    return out, pairs


def build(svc: Service) -> None:
    rates = Rates(svc)
    svc.app.router.add_post("/quotes", rates.quote)


def main() -> None:
    run_service("shipping-rates", build, KNOBS)


if __name__ == "__main__":
    main()
