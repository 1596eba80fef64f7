"""A real headless Chromium shops on the running shop: log in, add a sock, check out, see the order.

Uses the session-wide ``shop`` fixture (all services up). Skipped when /usr/bin/chromium is missing
(Debian package ``chromium``; never ``playwright install``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chromium import ARTIFACTS, CHROMIUM, chromium_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium "
                       "(apt-get install -y chromium)"),
]


@pytest.fixture
def page() -> Iterator[Any]:
    pytest.importorskip("playwright.sync_api")
    with chromium_page() as pg:
        yield pg


def log_in(pg: Any, base: str) -> None:
    """The home page, then the seeded customer ``user`` logs in through the dialog."""
    from playwright.sync_api import expect

    pg.goto(base + "/")
    expect(pg.locator("#featured .tile").first).to_be_visible()
    pg.click("#login-link")
    pg.fill("#login-username", "user")
    pg.fill("#login-password", "password")
    pg.click("#login-dialog button[type=submit]")
    expect(pg.locator("#account")).to_contain_text("Logged in as User Name")


def shop_journey(pg: Any, base: str) -> None:
    """What a shopper does; ``base`` is the front-end URL."""
    from playwright.sync_api import expect

    # Waits are for the page to get there, not timing goals: a busy CI machine may take seconds per call.
    expect.set_options(timeout=15_000)
    # Home page and log in through the dialog.
    log_in(pg, base)

    # Start from an empty basket (the shop is shared with other tests) and count the orders so far.
    pg.evaluate("fetch('/cart', {method: 'DELETE', credentials: 'same-origin'})")
    pg.reload()
    expect(pg.locator("#cart-count")).to_have_text("0 items in cart")
    orders_before = pg.evaluate("fetch('/orders').then(r => r.json()).then(l => l.length)")

    # Browse the catalogue and open an affordable sock (payment declines orders over $100).
    pg.click("nav.mainnav >> text=Socks")
    expect(pg.locator("#products .tile").first).to_be_visible()
    assert pg.locator("#products .tile").count() <= 6
    tiles = pg.locator("#products .tile")
    chosen = None
    for i in range(tiles.count()):
        price = float(tiles.nth(i).locator(".price").inner_text().lstrip("$"))
        if price < 40:
            chosen = tiles.nth(i)
            break
    assert chosen is not None, "no sock under $40 on the first catalogue page"
    name = chosen.locator(".name").inner_text()
    chosen.locator(".name").click()
    expect(pg.locator(".product h1")).to_have_text(name)
    unit_price = float(pg.locator(".product .price").inner_text().lstrip("$"))

    pg.click("#add-to-cart")
    expect(pg.locator("#cart-count")).to_have_text("1 item(s) in cart")

    # Basket: two of them, then check out.
    pg.click("#cart-link")
    row = pg.locator("#basket-lines tbody tr")
    expect(row).to_have_count(1)
    expect(row.first).to_contain_text(name)
    row.first.locator("input[type=number]").fill("2")
    pg.click("#update-basket")
    expect(pg.locator("#cart-count")).to_have_text("2 item(s) in cart")
    total = round(2 * unit_price + 4.99, 2)
    expect(pg.locator("#total")).to_have_text(f"${total:.2f}")
    expect(pg.locator("#delivery-address")).to_be_visible()
    expect(pg.locator("#payment-card")).to_contain_text("Card ending in")
    pg.click("#place-order")

    # My orders shows the new order; the basket is empty again.
    pg.wait_for_url(re.compile(r".*/customer-orders\.html$"))
    expect(pg.locator("h1")).to_have_text("My orders")
    rows = pg.locator("#orders-table tbody tr")
    expect(rows).to_have_count(orders_before + 1)
    expect(rows.filter(has_text=f"${total:.2f}").first).to_be_visible()
    expect(pg.locator("#cart-count")).to_have_text("0 items in cart")

    # And its detail page lists the sock, its status and where the parcel is (the warehouse hands it over at once
    # here: the page, reloaded, says delivered on both).
    expect(rows.filter(has_text=f"${total:.2f}").first.locator(".order-status")).to_have_text(
        re.compile(r"^(shipped|delivered)$"))
    rows.filter(has_text=f"${total:.2f}").first.locator("a.btn").click()
    expect(pg.locator("#order")).to_contain_text(name)
    expect(pg.locator("#order")).to_contain_text("User Name")
    for _ in range(20):
        if "Delivered" in pg.locator("#parcel").inner_text():
            break
        pg.wait_for_timeout(250)
        pg.reload()
    expect(pg.locator("#parcel")).to_contain_text("Delivered")
    expect(pg.locator(".order-head .status")).to_have_text("delivered")


def test_log_in_add_sock_check_out(shop: Any, page: Any) -> None:
    shop_journey(page, shop.url)


def test_profile_page_saves_validates_and_reports_a_conflict(shop: Any, page: Any) -> None:
    """Scenario 9's page: a new customer fills in phone and home address, saves, sees them after a reload;
    a bad phone is refused with its reason; a save based on a version another session replaced is refused."""
    import uuid

    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    username = f"prof{uuid.uuid4().hex[:8]}"
    page.goto(shop.url + "/")
    status = page.evaluate(
        "(u) => fetch('/register', {method: 'POST', credentials: 'same-origin', headers: {'Content-Type': "
        "'application/json'}, body: JSON.stringify({username: u, password: 'pw', firstName: 'Pat', "
        "lastName: 'Profile', email: u + '@example.com'})}).then(r => r.status)", username)
    assert status == 200
    page.goto(shop.url + "/profile.html")
    expect(page.locator("#profile-firstName")).to_have_value("Pat")
    page.fill("#profile-phone", "+44 20 7946 0018")
    for field, value in (("number", "221b"), ("street", "Baker Street"), ("city", "London"),
                         ("postcode", "NW1 6XE"), ("country", "UK")):
        page.fill(f"#profile-address-{field}", value)
    page.click("#profile-save")
    expect(page.locator("#profile-status")).to_have_text("Profile saved.")
    page.reload()
    expect(page.locator("#profile-phone")).to_have_value("+44 20 7946 0018")
    expect(page.locator("#profile-address-city")).to_have_value("London")

    page.fill("#profile-phone", "call me")
    page.click("#profile-save")
    expect(page.locator("#profile-status")).to_contain_text("'phone' is not a phone number")

    page.reload()
    expect(page.locator("#profile-lastName")).to_have_value("Profile")
    saved = page.evaluate(
        "fetch('/profile').then(r => r.json()).then(p => fetch('/profile', {method: 'PATCH', credentials: "
        "'same-origin', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({lastName: "
        "'Elsewhere', version: p.version})})).then(r => r.status)")
    assert saved == 200  # another session saved first
    page.fill("#profile-lastName", "Here")
    page.click("#profile-save")
    expect(page.locator("#profile-status")).to_contain_text("changed elsewhere")


def test_admin_panel_changes_stock_that_shoppers_see(shop: Any, page: Any) -> None:
    """Scenario 4's start: staff log in to the admin panel (the shop's own staff password) and change a sock's
    stock; the product page shows the new stock. A customer's login does not open the panel."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    password = shop.client.record["staff"]["password"]
    page.goto(shop.url + "/admin.html")
    page.fill("#admin-username", "admin")
    page.fill("#admin-password", "not-it")
    page.click("#admin-login button[type=submit]")
    expect(page.locator("#admin-error")).to_contain_text("refused")
    page.fill("#admin-username", "admin")
    page.fill("#admin-password", password)
    page.click("#admin-login button[type=submit]")
    first = page.locator("#admin-products tbody tr").first
    expect(first).to_be_visible()
    sock = first.get_attribute("data-id")
    before = first.locator("input[name=count]").input_value()
    try:
        first.locator("input[name=count]").fill("7")
        first.locator("button").click()
        expect(first).to_contain_text("Saved.")
        page.goto(shop.url + f"/detail.html?id={sock}")
        expect(page.locator(".stock")).to_have_text("In stock (7 left)")
    finally:
        page.goto(shop.url + "/admin.html")
        row = page.locator(f"#admin-products tbody tr[data-id='{sock}']")
        row.locator("input[name=count]").fill(before)
        row.locator("button").click()
        expect(row).to_contain_text("Saved.")


def test_a_returning_shopper_finds_the_basket_and_keeps_it_at_login(shop: Any, page: Any) -> None:
    """Scenario 3's page: an anonymous shopper puts a sock in the basket, closes the tab, comes back: the basket
    still holds it, and logging in merges it into the customer's basket. With sessions that expire before the
    shopper is back (the session-ttl fault's knob), the basket they come back to is empty."""
    import time
    import uuid

    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    username = f"back{uuid.uuid4().hex[:8]}"
    other = page.context.browser.new_context()  # the account is made elsewhere: this browser stays anonymous
    try:
        assert other.request.post(shop.url + "/register", data={
            "username": username, "password": "pw", "firstName": "Rita", "lastName": "Return",
            "email": username + "@example.com"}).status == 200
    finally:
        other.close()

    def leave_a_sock(tab: Any) -> str:
        tab.goto(shop.url + "/")
        tab.click("nav.mainnav >> text=Socks")
        tile = tab.locator("#products .tile").first
        name = tile.locator(".name").inner_text()
        tile.locator(".name").click()
        tab.click("#add-to-cart")
        expect(tab.locator("#cart-count")).to_have_text("1 item(s) in cart")
        tab.close()  # the shopper closes the tab; the browser keeps its cookies
        return str(name)

    def come_back() -> Any:
        tab = page.context.new_page()
        tab.goto(shop.url + "/")
        tab.click("#cart-link")
        return tab

    name = leave_a_sock(page)
    tab = come_back()
    expect(tab.locator("#cart-count")).to_have_text("1 item(s) in cart")
    lines = tab.locator("#basket-lines tbody tr")
    expect(lines).to_have_count(1)
    expect(lines.first).to_contain_text(name)
    tab.click("#login-link")
    tab.fill("#login-username", username)
    tab.fill("#login-password", "pw")
    tab.click("#login-dialog button[type=submit]")
    expect(tab.locator("#account")).to_contain_text("Logged in as Rita Return")
    tab.reload()
    expect(lines).to_have_count(1)
    expect(lines.first).to_contain_text(name)
    tab.evaluate("fetch('/cart', {method: 'DELETE', credentials: 'same-origin'})")
    page.context.clear_cookies()  # a new anonymous visitor for the second half

    shop.post("/v1/config", {"deployment": "front-end", "knobs": {"session_ttl_s": 1}})
    try:
        leave_a_sock(tab)
        time.sleep(2.5)  # away longer than the session lives
        back = come_back()
        expect(back.locator("#basket-lines")).to_contain_text("Your basket is empty.")
        expect(back.locator("#cart-count")).to_have_text("0 items in cart")
    finally:
        shop.post("/v1/config/reset", {"deployment": "front-end"})



def test_the_search_page_finds_filters_sorts_and_flags_a_partial_answer(shop: Any, page: Any) -> None:
    """Scenario 6's page: search and its two shards woken on the shared shop (then asleep again), a phrase finds
    its sock, a price ceiling and a price sort hold on every tile, a bad range is refused by name, and with one
    shard down the page says that results may be missing."""
    import requests
    from playwright.sync_api import expect

    from sockdrill.scenarios.reset import reset_deployments
    from sockdrill.scenarios.schema import Setup

    expect.set_options(timeout=15_000)
    rc = shop.client
    reset_deployments(rc, Setup(replicas={"search": 1, "search-db-a": 1, "search-db-b": 1}))
    try:
        total = requests.get(shop.url + "/catalogue/size", timeout=10).json()["size"]
        # Every product indexed (the shared shop may hold scenario 6's 50,000, and a search's total is capped).
        assert rc.post("/v1/reindex", {"deployment": "search"})["documents"] == total
        page.goto(shop.url + "/search.html?q=hole+toe")
        expect(page.locator("#products .tile")).to_have_count(1)
        expect(page.locator("#products .tile .name")).to_have_text("Holy")
        expect(page.locator("#partial-banner")).to_be_hidden()

        page.fill("#search-q", "wool")
        page.fill("#price-max", "20")
        page.select_option("#search-sort", "price_asc")
        page.click("#search-form button[type=submit]")
        expect(page).to_have_url(re.compile(r"search\.html\?q=wool&price_max=20&sort=price_asc"))
        expect(page.locator("#products .tile").first).to_be_visible()
        prices = [float(p.lstrip("$")) for p in page.locator("#products .tile .price").all_inner_texts()]
        assert prices and all(p <= 20 for p in prices) and prices == sorted(prices), prices
        expect(page.locator("#result-count")).to_contain_text("socks")

        page.fill("#price-min", "30")
        page.click("#search-form button[type=submit]")
        expect(page.locator("#products .alert-error")).to_contain_text("price_min")

        rc.post("/v1/chaos/inject", {"kind": "pod.failure", "target": "search-db-b", "params": {}, "duration": 60})
        page.goto(shop.url + "/search.html?q=wool")
        expect(page.locator("#partial-banner")).to_be_visible()
        expect(page.locator("#products .tile").first).to_be_visible()  # half the index still answers
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "search-partial.png"), full_page=True)
    finally:
        rc.post("/v1/chaos/clear", {})
        reset_deployments(rc, Setup())


def test_the_basket_page_offers_delivery_priced_for_the_address_and_the_order_charges_it(shop: Any, page: Any) -> None:
    """Scenario 10's page: shipping-rates, its stores and the carrier woken on the shared shop (then asleep again);
    the basket page lists standard and express delivery to the customer's saved address (Glasgow: the mainland
    zone) at the carrier's prices, the total follows the option chosen, and the order placed charges it."""
    from playwright.sync_api import expect

    from sockdrill.scenarios.reset import reset_deployments
    from sockdrill.scenarios.schema import Setup
    from sockdrill.shop import shipping_tariff as tariff

    expect.set_options(timeout=15_000)
    rc = shop.client
    reset_deployments(rc, Setup(replicas={"shipping-rates": 1, "carrier-api": 1, "rates-db": 1, "rates-cache": 1}))
    try:
        log_in(page, shop.url)
        page.evaluate("fetch('/cart', {method: 'DELETE', credentials: 'same-origin'})")
        sock = page.evaluate("fetch('/catalogue?size=100').then(r => r.json())"
                             ".then(l => l.filter(s => s.price < 40)[0])")
        page.evaluate("id => fetch('/cart', {method: 'POST', credentials: 'same-origin', headers: "
                      "{'Content-Type': 'application/json'}, body: JSON.stringify({id})})", sock["id"])
        page.goto(shop.url + "/basket.html")
        weight = tariff.parcel_weight_g(1)
        standard, express = (tariff.price(1, "uk", s, weight) for s in ("standard", "express"))
        options = page.locator("#delivery-options .delivery-option")
        expect(options).to_have_count(2)
        expect(options.nth(0)).to_contain_text(f"${standard:.2f}")
        expect(options.nth(1)).to_contain_text(f"${express:.2f}")
        expect(page.locator("#total")).to_have_text(f"${sock['price'] + standard:.2f}")
        options.nth(1).locator("input").check()
        total = round(sock["price"] + express, 2)
        expect(page.locator("#shipping")).to_have_text(f"${express:.2f}")
        expect(page.locator("#total")).to_have_text(f"${total:.2f}")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "basket-delivery.png"), full_page=True)
        page.click("#place-order")
        page.wait_for_url(re.compile(r".*/customer-orders\.html$"))
        placed = page.evaluate("fetch('/orders').then(r => r.json()).then(l => l.filter(o => o.delivery))")
        assert any(o["delivery"]["service"] == "express" and o["delivery"]["zone"] == "uk"
                   and abs(o["total"] - total) < 0.01 for o in placed), placed
    finally:
        reset_deployments(rc, Setup())


def test_the_checkout_page_makes_the_calls_its_journey_times_and_says_when_the_gateway_cuts_them(
        shop: Any, page: Any) -> None:
    """Scenario 7's SLI is the checkout (basket) page as a browser loads it: the calls Chromium makes for it must be
    the ones the checkout-page journey sends (load/journeys.py), or the SLI would time another page. Then the
    gateway-timeouts fault (front-end's upstream timeout at 3 ms): the page says the basket could not be loaded,
    it does not sit blank."""
    from urllib.parse import urlsplit

    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    rc = shop.client
    log_in(page, shop.url)
    page.evaluate("fetch('/cart', {method: 'DELETE', credentials: 'same-origin'})")
    sock = page.evaluate("fetch('/catalogue?size=100').then(r => r.json()).then(l => l.filter(s => s.price < 40)[0])")
    page.evaluate("id => fetch('/cart', {method: 'POST', credentials: 'same-origin', headers: "
                  "{'Content-Type': 'application/json'}, body: JSON.stringify({id})})", sock["id"])
    calls: list[str] = []
    page.on("request", lambda r: calls.append(urlsplit(r.url).path)
            if r.resource_type in ("fetch", "xhr") else None)
    page.goto(shop.url + "/basket.html")
    expect(page.locator("#basket-lines tbody tr")).to_have_count(1)
    expect(page.locator("#payment-card")).to_contain_text("Card ending in")
    # The journey's calls (the HTML is its first step): who is logged in, the basket, each sock in it, the address,
    # the card, the delivery options.
    who = next(c["value"] for c in page.context.cookies() if c["name"] == "logged_in")
    journey = {f"/customers/{who}", "/cart", f"/catalogue/{sock['id']}", "/address", "/card", "/shipping-options"}
    assert set(calls) == journey, calls
    statuses: dict[str, int] = {}
    page.on("response", lambda r: statuses.__setitem__(urlsplit(r.url).path, r.status)
            if r.request.resource_type in ("fetch", "xhr") else None)
    try:
        rc.post("/v1/config", {"deployment": "front-end", "knobs": {"http_timeout_s": 0.003}})
        # Which calls the gateway cuts depends on each backend's time (a fast call can beat 3 ms: half the page loads
        # of the calibration lost one); the page shows the ones it lost (a sock by its id, the address or card form,
        # "could not be loaded") and the shopper's browser gets 504s. Up to 20 loads, for one that lost a call.
        for _ in range(20):
            statuses.clear()
            page.goto(shop.url + "/basket.html")
            page.wait_for_load_state("networkidle")
            if 504 in statuses.values():
                break
        assert 504 in statuses.values(), statuses
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "checkout-page-gateway-timeouts.png"), full_page=True)
    finally:
        rc.post("/v1/config/reset", {"deployment": "front-end"})
    statuses.clear()
    page.goto(shop.url + "/basket.html")
    expect(page.locator("#payment-card")).to_contain_text("Card ending in")
    expect(page.locator("#basket-lines tbody tr").first).to_contain_text(sock["name"])
    page.wait_for_load_state("networkidle")
    assert 504 not in statuses.values(), statuses
