"""carrier-api: the "third-party" parcel carrier's rating API behind shipping-rates (seed scenario 10).

Not part of upstream Sock Shop: it stands in for a carrier's public API (think a postal operator's price
finder), so that its latency, its outages and its tariff changes are the world's, not the shop's
configuration (``thirdparty.*`` faults change it; no agent tool can).

- ``GET /v1/rates?zone=&weight_g=``: the price of each service (``standard``, ``express``) for a parcel to a
  delivery zone, under the tariff in force: ``{zone, weight_g, tariff, currency, options: [{service, price,
  days}]}``. A zone it does not serve or a weight out of range is a 400.
- ``GET /v1/tariff``: the tariff in force, ``{revision, currency, zones, services}``, as a carrier publishes it.

Knobs: ``latency_ms`` + ``latency_jitter_ms`` (time to answer a rate request; jitter seeded from
``SOCKDRILL_SEED``), ``transient_error_rate`` (share of rate requests answered 503), ``tariff_revision`` (the
tariff in force: ``shipping_tariff.price``).
"""

from __future__ import annotations

import asyncio
import os
import random
import re

from aiohttp import web
from prometheus_client import Counter, Gauge

from sockdrill.shop import shipping_tariff as tariff
from sockdrill.shop.common import Knob, Service, bad_request, json_response, run_service

KNOBS = [
    Knob("latency_ms", 25.0, "time to answer a rate request (milliseconds)", minimum=0, maximum=600_000),
    Knob("latency_jitter_ms", 10.0, "uniform jitter added to latency_ms (+/- milliseconds)", minimum=0,
         maximum=600_000),
    Knob("transient_error_rate", 0.0, "share of rate requests answered 503", minimum=0, maximum=1),
    Knob("tariff_revision", 1, "the tariff in force (each revision puts prices up)", minimum=1, maximum=99),
]
MAX_WEIGHT_G = 30_000


class Carrier:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.rng = random.Random(f"{os.environ.get('SOCKDRILL_SEED', '0')}:{svc.pod}")
        r = svc.metrics.registry
        self.requests = Counter("carrier_rate_requests_total", "Rate requests by outcome.", ["service", "outcome"],
                                registry=r)
        self.revision = Gauge("carrier_tariff_revision", "The tariff in force.", ["service"], registry=r)
        self.revision.labels(svc.name).set(svc.knobs["tariff_revision"])
        svc.knobs.on_change(self._changed)

    def _changed(self, changes: dict[str, object]) -> None:
        if "tariff_revision" in changes:
            self.revision.labels(self.svc.name).set(float(changes["tariff_revision"]))  # type: ignore[arg-type]
            self.svc.log.info("tariff revision %s published", changes["tariff_revision"])

    async def rates(self, request: web.Request) -> web.Response:
        zone = request.query.get("zone", "")
        if zone not in tariff.ZONES:
            self.requests.labels(self.svc.name, "invalid").inc()
            raise bad_request(f"zone must be one of {list(tariff.ZONES)}, got {zone!r}")
        raw = request.query.get("weight_g", "")
        if not re.fullmatch(r"[0-9]{1,6}", raw) or not 0 < int(raw) <= MAX_WEIGHT_G:
            self.requests.labels(self.svc.name, "invalid").inc()
            raise bad_request(f"weight_g must be a whole number of grams from 1 to {MAX_WEIGHT_G}, got {raw!r}")
        weight = int(raw)
        k = self.svc.knobs
        jitter = k["latency_jitter_ms"]
        await asyncio.sleep(max(0.0, k["latency_ms"] + (self.rng.uniform(-jitter, jitter) if jitter else 0)) / 1000)
        if self.rng.random() < k["transient_error_rate"]:
            self.requests.labels(self.svc.name, "error").inc()
            raise bad_request("rating temporarily unavailable, retry later", 503)
        revision = int(k["tariff_revision"])
        self.requests.labels(self.svc.name, "ok").inc()
        return json_response({
            "zone": zone, "weight_g": weight, "tariff": revision, "currency": tariff.CURRENCY,
            "options": [{"service": s, "price": tariff.price(revision, zone, s, weight), "days": tariff.days(zone, s)}
                        for s in tariff.SERVICES]})

    async def published(self, _request: web.Request) -> web.Response:
        return json_response({"revision": int(self.svc.knobs["tariff_revision"]), "currency": tariff.CURRENCY,
                              "zones": list(tariff.ZONES), "services": list(tariff.SERVICES)})


def build(svc: Service) -> None:
    carrier = Carrier(svc)
    svc.app.router.add_get("/v1/rates", carrier.rates)
    svc.app.router.add_get("/v1/tariff", carrier.published)


def main() -> None:
    run_service("carrier-api", build, KNOBS)


if __name__ == "__main__":
    main()
