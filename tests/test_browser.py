"""A real headless Chromium shops on the running shop: log in, add a sock, check out, see the order.

Uses the session-wide ``shop`` fixture (all services up). Skipped when /usr/bin/chromium is missing
(Debian package ``chromium``; never ``playwright install``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium "
                       "(apt-get install -y chromium)"),
]


@pytest.fixture
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield pg
        finally:
            context.close()
            browser.close()
        assert not errors, f"JavaScript errors on the pages: {errors}"


def shop_journey(pg: Any, base: str) -> None:
    """What a shopper does; ``base`` is the front-end URL."""
    from playwright.sync_api import expect

    # Waits are for the page to get there, not timing goals: a busy CI machine may take seconds per call.
    expect.set_options(timeout=15_000)
    # Home page and log in through the dialog.
    pg.goto(base + "/")
    expect(pg.locator("#featured .tile").first).to_be_visible()
    pg.click("#login-link")
    pg.fill("#login-username", "user")
    pg.fill("#login-password", "password")
    pg.click("#login-dialog button[type=submit]")
    expect(pg.locator("#account")).to_contain_text("Logged in as User Name")

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

    # And its detail page lists the sock.
    rows.filter(has_text=f"${total:.2f}").first.locator("a.btn").click()
    expect(pg.locator("#order")).to_contain_text(name)
    expect(pg.locator("#order")).to_contain_text("User Name")


def test_log_in_add_sock_check_out(shop: Any, page: Any) -> None:
    shop_journey(page, shop.url)
