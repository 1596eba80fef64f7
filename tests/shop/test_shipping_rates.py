"""Seed scenario 10's delivery pricing as real processes: shipping-rates over a scratch PostgreSQL (its postcode
directory), a Redis db of this machine (its rate cache) and the carrier-api third party. Every test address of the
load's probe is quoted at the carrier's price for its true zone; bad quotes are 4xx by name; and each of the four
causes shows as the probe would see it and goes with its fix: the carrier failing (503, then stale rates allowed),
a new tariff behind a long cache (old prices, until the cache is emptied), a bad directory import (remote areas at
mainland prices, until the import job), express left out of the configuration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockdrill.load.shipping_quotes import DESTINATIONS, quote_problem
from sockdrill.shop import shipping_tariff as tariff
from tests.shop.servicekit import ServiceProcess, db_run, machine_redis, require_postgres, scratch_database

require_postgres()

REDIS_URL = "redis://127.0.0.1:6379/10"  # a db of this machine's Redis no other test uses, flushed around these
ADMIN = "shipping-rates-test-admin"
HEADERS = {"X-Sockdrill-Admin": ADMIN}


@dataclass
class Pricing:
    rates: ServiceProcess
    carrier: ServiceProcess
    db_url: str
    redis: Any

    def knobs(self, proc: ServiceProcess, **knobs: Any) -> None:
        r = requests.put(f"{proc.url}/admin/config", json=knobs, headers=HEADERS, timeout=5)
        assert r.status_code == 200, r.text

    def quote(self, country: str, postcode: str, pairs: int = 1) -> requests.Response:
        return requests.post(f"{self.rates.url}/quotes", json={"address": {"country": country, "postcode": postcode},
                                                                "items": [{"quantity": pairs}]}, timeout=10)


@pytest.fixture(scope="module")
def pricing() -> Iterator[Pricing]:
    with machine_redis(REDIS_URL) as redis, scratch_database("rates") as db_url, \
            ServiceProcess("carrier-api", {"SOCKDRILL_ADMIN_TOKEN": ADMIN}) as carrier, \
            ServiceProcess("shipping-rates", {"SOCKDRILL_URL_RATES_DB": db_url, "SOCKDRILL_URL_RATES_CACHE": REDIS_URL,
                                              "SOCKDRILL_URL_CARRIER_API": carrier.url,
                                              "SOCKDRILL_ADMIN_TOKEN": ADMIN}) as rates:
        yield Pricing(rates, carrier, db_url, redis)


@pytest.fixture
def fresh(pricing: Pricing) -> Iterator[Pricing]:
    """Each test from the deployed state: knobs at their defaults, no cached rate, the shipped directory."""
    yield pricing
    pricing.knobs(pricing.rates, rates_cache_ttl_s=300.0, serve_stale_on_error=False,
                  carrier_services="standard,express")
    pricing.knobs(pricing.carrier, transient_error_rate=0.0, tariff_revision=1)
    pricing.redis.flushdb()
    requests.post(f"{pricing.rates.url}/admin/jobs/import-directory", headers=HEADERS, timeout=10)


def problems(p: Pricing, revision: int, pairs: int = 2) -> dict[str, str]:
    out = {}
    for place, country, postcode, zone in DESTINATIONS:
        r = p.quote(country, postcode, pairs)
        problem = f"status {r.status_code}: {r.text[:120]}" if r.status_code != 200 else \
            quote_problem(r.json(), place, postcode, zone, pairs, {revision})
        if problem:
            out[place] = problem
    return out


def test_every_test_address_is_quoted_what_the_carrier_charges_for_its_true_zone(fresh: Pricing) -> None:
    for pairs in (1, 3):
        assert problems(fresh, 1, pairs) == {}
    body = fresh.quote("UK", "kw15 1bx", 3).json()
    assert body["destination"] == {"country": "GB", "postcode": "kw15 1bx", "zone": "uk-remote",
                                   "region": "Highlands and Islands"}
    assert body["weightGrams"] == tariff.parcel_weight_g(3) and body["tariff"] == 1
    assert [o["service"] for o in body["options"]] == ["standard", "express"]
    assert body["options"][0]["price"] == tariff.price(1, "uk-remote", "standard", tariff.parcel_weight_g(3)) == 10.95


@pytest.mark.parametrize(("body", "status", "says"), [
    ({}, 400, "address"),
    ({"address": {"country": "UK"}, "items": [{"quantity": 1}]}, 400, "address.postcode"),
    ({"address": {"country": "UK", "postcode": "NOT A CODE"}, "items": [{"quantity": 1}]}, 400, "British postcode"),
    ({"address": {"country": "Atlantis", "postcode": "1"}, "items": [{"quantity": 1}]}, 422, "deliver"),
    ({"address": {"country": "UK", "postcode": "SW1A 1AA"}, "items": []}, 400, "items"),
    ({"address": {"country": "UK", "postcode": "SW1A 1AA"}, "items": [{"quantity": 0}]}, 400, "quantity"),
    ({"address": {"country": "UK", "postcode": "SW1A 1AA"}, "items": [{"quantity": True}]}, 400, "quantity"),
    ({"address": {"country": "UK", "postcode": "SW1A\u00001AA"}, "items": [{"quantity": 1}]}, 400, "postcode"),
    ({"address": {"country": "UK", "postcode": "SW1A 1AA"}, "items": [{"quantity": 500}]}, 400, "at most"),
])
def test_bad_quotes_are_refused_by_name(pricing: Pricing, body: dict[str, Any], status: int, says: str) -> None:
    r = requests.post(f"{pricing.rates.url}/quotes", data=json.dumps(body), timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == status and says in r.json()["error"], r.text


def test_the_carrier_failing_fails_quotes_until_stale_rates_are_allowed(fresh: Pricing) -> None:
    fresh.knobs(fresh.rates, rates_cache_ttl_s=0.0)
    assert fresh.quote("UK", "LS1 4AP").status_code == 200  # cached now (fresh for no time at all)
    fresh.knobs(fresh.carrier, transient_error_rate=1.0)
    r = fresh.quote("UK", "LS1 4AP")
    assert r.status_code == 503 and "carrier" in r.json()["error"], r.text
    fresh.knobs(fresh.rates, serve_stale_on_error=True)
    assert quote_problem(fresh.quote("UK", "LS1 4AP").json(), "Leeds", "LS1 4AP", "uk", 1, {1}) is None
    # A zone never fetched has no stale rate to fall back on.
    assert fresh.quote("US", "10001").status_code == 503


def test_a_new_tariff_behind_a_long_cache_is_quoted_at_old_prices_until_the_cache_is_emptied(fresh: Pricing) -> None:
    fresh.knobs(fresh.rates, rates_cache_ttl_s=3600.0)
    assert problems(fresh, 1) == {}
    fresh.knobs(fresh.carrier, tariff_revision=2)
    stale = problems(fresh, 2)
    assert len(stale) == len(DESTINATIONS) and all("the carrier charges" in p for p in stale.values()), stale
    fresh.redis.flushdb()  # what flush_cache(service="rates-cache") does
    assert problems(fresh, 2) == {}


def test_a_bad_directory_import_prices_remote_areas_as_the_mainland_until_the_import_job(fresh: Pricing) -> None:
    db_run(fresh.db_url, "UPDATE postcode_areas SET zone = 'uk' WHERE zone = 'uk-remote'")
    wrong = problems(fresh, 1)
    remote = {place for place, _c, _p, zone in DESTINATIONS if zone == "uk-remote"}
    assert set(wrong) == remote, wrong
    listed = requests.get(f"{fresh.rates.url}/admin/jobs", headers=HEADERS, timeout=5).json()["jobs"]
    assert "import-directory" in listed
    assert requests.post(f"{fresh.rates.url}/admin/jobs/import-directory", timeout=5).status_code == 403
    r = requests.post(f"{fresh.rates.url}/admin/jobs/import-directory", headers=HEADERS, timeout=30)
    assert r.status_code == 200 and r.json()["result"]["areas"] == len(tariff.directory_rows()), r.text
    assert problems(fresh, 1) == {}
    r = requests.post(f"{fresh.rates.url}/admin/jobs/no-such-job", headers=HEADERS, timeout=5)
    assert r.status_code == 404 and "import-directory" in r.json()["error"]


def test_express_left_out_of_the_configuration_is_a_missing_option(fresh: Pricing) -> None:
    fresh.knobs(fresh.rates, carrier_services="standard")
    missing = problems(fresh, 1)
    assert len(missing) == len(DESTINATIONS) and all("missing shipping options: express" in p
                                                    for p in missing.values()), missing


def test_the_carrier_refuses_bad_rate_requests_by_name(pricing: Pricing) -> None:
    for query, says in (({"zone": "mars", "weight_g": "100"}, "zone"), ({"zone": "uk", "weight_g": "-1"}, "weight_g"),
                        ({"zone": "uk", "weight_g": "99999999"}, "weight_g")):
        r = requests.get(f"{pricing.carrier.url}/v1/rates", params=query, timeout=5)
        assert r.status_code == 400 and says in r.json()["error"], r.text
    assert requests.get(f"{pricing.carrier.url}/v1/tariff", timeout=5).json()["revision"] == 1


TEXT = st.one_of(st.text(max_size=30), st.sampled_from(["\x00", "SW1A 1AA", "KW15 1BX", "UK", "GB", "US", "", " ",
                                                        "1e308", "-1", "' OR 1=1 --"]))
VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                     max_leaves=6)
QUOTE = st.fixed_dictionaries({}, optional={
    "address": st.one_of(VALUE, st.fixed_dictionaries({}, optional={"country": VALUE, "postcode": VALUE})),
    "items": st.one_of(VALUE, st.lists(st.fixed_dictionaries({}, optional={"quantity": VALUE}), max_size=3))})


@settings(max_examples=300, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(QUOTE, VALUE), zone=TEXT, weight=TEXT)
def test_no_quote_or_rate_request_answers_5xx(pricing: Pricing, body: Any, zone: str, weight: str) -> None:
    r = requests.post(f"{pricing.rates.url}/quotes", data=json.dumps(body), timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (body, r.status_code, r.text[:300])
    r = requests.get(f"{pricing.carrier.url}/v1/rates", params={"zone": zone, "weight_g": weight}, timeout=10)
    assert r.status_code < 500, (zone, weight, r.status_code, r.text[:300])
