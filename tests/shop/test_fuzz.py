"""Property-based fuzzing of every route of every shop service, each called directly at its own address
(the front-end's routes included, and the services' own routes that the front-end never reaches):
whatever a client sends — odd text, NUL bytes, huge numbers, wrong JSON types — the answer is never a
5xx (except the few upstream 500s that upstream clients rely on, listed below), never a hang, and the
shop is still healthy afterwards. The routes come from the services' own code
(``python -m sockdrill.shop SERVICE --routes``), so a new route is fuzzed the day it is added.
Derandomized: the same examples every run, so it cannot be flaky."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockdrill.shop.manifest import SERVICE_MODULES, shop_deployments
from tests.conftest import Shop

# Upstream's own 500s, kept for compatibility (README, "Upstream compatibility"), by route, each with the
# error texts it may carry (empty: any). A cart line that is not in the cart is carts' Spring 500, which
# upstream's front-end passes on; user answers go-kit's 500 for an id that is not 24 hex digits, a record
# that is not there and a taken username (the reference, §3.7); payment answers a request it cannot
# read with a 500, because orders maps that status (sockdrill/shop/payment.py).
USER_500 = ('"error":"Invalid Id Hex"', '"error":"not found"', '"error":"duplicate key: username')
UPSTREAM_500: dict[tuple[str, str], tuple[str, ...]] = {
    ("front-end", "/cart/{id}"): (), ("carts", "/carts/{customerId}/items/{itemId}"): (),
    ("carts", "/carts/{customerId}/items"): (),
    **{("user", path): USER_500 for path in ("/addresses/{id}", "/cards/{id}", "/customers/{id}", "/customers",
                                             "/addresses", "/cards", "/register", "/customers/{id}/addresses",
                                             "/customers/{id}/cards", "/customers/{id}/profile", "/login")},
    ("payment", "/paymentAuth"): ("unmarshal", "invalid JSON", '"error":"EOF"', "Invalid payment amount"),
}
# Not fuzzed: the catalogue's admin writes change the products every other test reads (they are
# validated by tests/shop/test_catalogue.py), and /metrics and /health take no input.
SKIPPED = {("catalogue", "POST", "/admin/products"), ("catalogue", "PATCH", "/admin/products/{id}"),
           ("catalogue", "DELETE", "/admin/products/{id}"),
           # A gateway to the search service, which is asleep in this shop (an optional deployment): a 502 is
           # its right answer here. The service's own routes are fuzzed by tests/shop/test_search.py.
           ("front-end", "GET", "/search"),
           # Likewise shipping-rates (seed scenario 10), asleep here; its routes are fuzzed by
           # tests/shop/test_shipping_rates.py.
           ("front-end", "POST", "/shipping-options")}
NO_INPUT = {"/metrics", "/health"}

TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["\x00", "%00", "../admin", "1e308", "-1", "NaN",
                                                        "999999999999999999999", "' OR 1=1 --", "{}", "",
                                                        "http://user/customers/57a98d98e4b00679b4a830af",
                                                        "http://carts/carts/nobody/items", "http://user/../"]))
JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                          max_leaves=6)
# Bodies shaped like the real ones (right keys, wrong or odd values) get further into a handler than noise.
FIELDS = ["id", "itemId", "quantity", "unitPrice", "customer", "address", "card", "items", "username",
          "password", "email", "firstName", "lastName", "street", "number", "country", "city", "postcode",
          "longNum", "expires", "ccv", "amount", "name", "description", "price", "count", "tags", "idempotencyKey"]
SHAPED = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUE, max_size=6)
QUERY_KEYS = ["tags", "page", "size", "order", "sort", "custId", "sessionId", "customerId", "username",
              "password", "id", "limit"]


def awake_services() -> dict[str, str]:
    """Service deployment → its module, for the ones the shop runs by default (optional ones sleep: the edges'
    and search's own routes are fuzzed by their tests, against the service itself)."""
    return {d.name: d.module or d.name for d in shop_deployments() if d.kind == "service" and not d.optional}


@cache
def routes() -> list[tuple[str, str, str]]:
    """(service, method, path template) of every fuzzed route of every service."""
    found = []
    for service, module in sorted(awake_services().items()):
        out = subprocess.run([sys.executable, "-m", "sockdrill.shop", module, "--routes"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        for route in json.loads(out):
            key = (service, route["method"], route["path"])
            if key not in SKIPPED and route["path"] not in NO_INPUT:
                found.append(key)
    return found


def base_url(shop: Shop, service: str) -> str:
    return shop.url if service == "front-end" else shop.addresses[service].rstrip("/")


def fill(template: str, values: list[str]) -> str:
    """The path template with each ``{param}`` replaced by the next fuzzed value, URL-quoted."""
    parts, i = [], 0
    for segment in template.split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            value = values[i % len(values)] if values else "x"
            parts.append(urllib.parse.quote(value, safe="") or "x")
            i += 1
        else:
            parts.append(segment)
    return "/".join(parts)


def call(url: str, method: str, body: Any = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace")


def check(route: tuple[str, str, str], status: int, body: str, what: str) -> None:
    texts = UPSTREAM_500.get((route[0], route[2]))
    upstream = status == 500 and texts is not None and (not texts or any(t in body for t in texts))
    if status >= 500 and not upstream:
        raise AssertionError(f"{route[0]}: {what} -> {status}: {body[:300]}")


FUZZ = settings(max_examples=400, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


def test_routes_cover_every_service() -> None:
    services = {service for service, _, _ in routes()}
    assert services == set(awake_services()) == set(SERVICE_MODULES)
    assert ("orders", "POST", "/orders") in routes() and ("front-end", "GET", "/catalogue") in routes()


@FUZZ
@given(data=st.data(), values=st.lists(TEXT, min_size=1, max_size=3),
       query=st.dictionaries(st.sampled_from(QUERY_KEYS), TEXT, max_size=3))
def test_no_route_answers_5xx(shop: Shop, data: st.DataObject, values: list[str], query: dict[str, str]) -> None:
    route = data.draw(st.sampled_from(routes()), label="route")
    service, method, template = route
    path = fill(template, values)
    if query:
        path += "?" + urllib.parse.urlencode(query)
    body = data.draw(st.one_of(SHAPED, JSON_VALUE), label="body") if method in ("POST", "PUT", "PATCH") else None
    status, text = call(base_url(shop, service) + path, method, body)
    check(route, status, text, f"{method} {path} {body!r}"[:400])


@pytest.mark.parametrize("service", sorted(SERVICE_MODULES))
def test_every_service_is_healthy_after_fuzzing(shop: Shop, service: str) -> None:
    status, body = call(base_url(shop, service) + "/health", "GET")
    assert status == 200, body
    assert all(item["status"] == "OK" for item in json.loads(body)["health"]), body
    if service == "front-end":
        status, body = call(shop.url + "/catalogue?size=3", "GET")
        assert status == 200 and len(json.loads(body)) == 3
