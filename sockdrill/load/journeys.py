"""The user journeys, as one Locust user class that picks a journey per iteration by weight.

Runs only inside the Locust process (importing this module imports locust, which monkey-patches the
process with gevent). Each journey is a plain function registered with ``@journey("name")``; every
request is a step named ``journey:step`` and states the statuses it expects. A step that gets anything
else (a timeout, 5xx, an unexpected 4xx, a body a customer could not use) fails, and the iteration
stops there and counts as a failed journey.

Expected statuses, decided per step (upstream's quirks included): ``GET /orders`` → 201 (sic),
``POST /cart`` → 201, ``POST /cart/update`` and ``DELETE /cart*`` → 202, ``POST /orders`` → 201 or 406.
A 406 whose message says the payment was declined is a business decline (counted, not a failure); any
other 406 (e.g. an order without address) is a failure. The checkout journey buys items priced under
``PRICE_BUDGET`` so that, with the shop's default payment limit, a healthy shop declines nothing; the
classic journey picks any item, as upstream's locustfile did.

Adding a journey: write ``@journey("name") def name(u: ShopUser) -> bool`` (True = declined) and add the
name to ``sli.JOURNEYS``.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from locust import FastHttpUser, task

from sockdrill.load.choices import Chooser, account_for
from sockdrill.load.config import LoadConfig
from sockdrill.load.order_views import views_disagree
from sockdrill.load.shipping_quotes import DESTINATIONS, PublishedTariff, quote_problem
from sockdrill.load.sli import Aggregator, step_name
from sockdrill.shop.data.generate import search_vocabulary
from sockdrill.shop.data.seed import TAGS

PRICE_BUDGET = 95.0   # item price + 4.99 shipping stays under payment's default decline limit (100)
PAGE_SIZE = 6         # what the category page shows
LOGIN_TTL_S = 3000.0  # the logged_in cookie lives 3600 s; log in again before it expires


class StepFailed(Exception):
    """A step got something a customer could not use; the journey iteration ends as failed."""


Check = Callable[[Any], str | None]
# A journey that returns this has only done its first part (a return visit's first visit): it is counted
# once, when it ends (or at once, if its first part failed), so its error rate is per customer journey.
CONTINUED = None
JOURNEY_FUNCS: dict[str, Callable[[ShopUser], bool | None]] = {}


def journey(name: str) -> Callable[[Callable[[ShopUser], bool | None]], Callable[[ShopUser], bool | None]]:
    def register(fn: Callable[[ShopUser], bool | None]) -> Callable[[ShopUser], bool | None]:
        JOURNEY_FUNCS[name] = fn
        return fn
    return register


def body_json(resp: Any) -> Any:
    # The front-end sends most proxied JSON as text/plain (as upstream did), so parse regardless of type.
    return json.loads(resp.content or b"null")


def is_list(what: str) -> Check:
    def check(resp: Any) -> str | None:
        return None if isinstance(body_json(resp), list) else f"{what}: expected a JSON list"
    return check


def has_keys(what: str, *keys: str) -> Check:
    def check(resp: Any) -> str | None:
        data = body_json(resp)
        if not isinstance(data, dict) or any(k not in data for k in keys):
            return f"{what}: expected an object with {', '.join(keys)}, got {str(data)[:120]}"
        return None
    return check


class ShopUser(FastHttpUser):
    """One simulated customer: its own account, cookie session and seeded choices."""

    abstract = True
    config: LoadConfig
    aggregator: Aggregator
    choice_log: list[dict[str, Any]]
    _free: list[int]
    _next: list[int]

    def __init__(self, environment: Any) -> None:
        cls = type(self)
        # The lowest free index: users stopped by a shape give theirs back, so accounts stay distinct.
        self.index = heapq.heappop(cls._free) if cls._free else cls._next[0]
        if self.index == cls._next[0]:
            cls._next[0] += 1
        cfg = self.config
        if cfg.entries:  # a shopper of one region enters through its edge, for the whole visit
            self.host = cfg.entries[self.index % len(cfg.entries)]
        super().__init__(environment)
        log: list[list[Any]] | None = None
        if cfg.choices_path:
            log = []
            cls.choice_log.append({"user": self.index, "choices": log})
        self.chooser = Chooser(cfg.seed, self.index, cfg.mix, cfg.think, log)
        self.username, self.password = account_for(self.index, cfg.accounts, cfg.data_seed)
        self.logged_in_at: float | None = None
        self.current = ""
        self.declined = False
        # Return visits in progress, first due first: the anonymous browser's client, the cart it left and when it
        # comes back (see max_aways).
        self.aways: list[Away] = []
        self.last_leave = -math.inf
        self.device: Any = None  # the customer's second device (profile-edit)

    def return_due(self) -> bool:
        return bool(self.aways) and time.monotonic() >= self.aways[0].back_at

    def may_leave_another(self) -> bool:
        """Whether this user may start another return visit now. One at a time while the absence is short (the fast
        profile's seconds); when it is long (the standard profile's minutes), one every RETURN_SPACING_S, so that
        returns keep arriving about that often per user, evenly, instead of in one wave an absence (SLO windows
        and the symptom check need them)."""
        away = float(self.config.return_after)
        if away <= PIPELINE_AFTER_S:
            return not self.aways
        return (len(self.aways) < math.ceil(away / RETURN_SPACING_S)
                and time.monotonic() - self.last_leave >= RETURN_SPACING_S)

    def on_stop(self) -> None:
        heapq.heappush(type(self)._free, self.index)

    def wait_time(self) -> float:  # type: ignore[override]
        return self.chooser.think()

    @task
    def iterate(self) -> None:
        name = self.chooser.journey()
        if name == "return-visit" and not self.return_due() and not self.may_leave_another():
            name = "browse"  # still away: the customer does something else meanwhile
        self.current = name
        started = time.perf_counter()
        ok, declined = True, False
        try:
            outcome = JOURNEY_FUNCS[name](self)
        except StepFailed:
            ok = False
        else:
            if outcome is CONTINUED:  # the first half of a journey that ends on a later iteration: not counted
                return
            declined = bool(outcome)
        self.aggregator.journey(name, time.perf_counter() - started, ok, declined)

    # ---- steps ------------------------------------------------------------------------------------
    def step(self, name: str, method: str, path: str, expect: Iterable[int] = (200,),
             check: Check | None = None, client: Any = None, **kw: Any) -> Any:
        """One request of the current journey (on ``client``, default the user's own browser); raises
        StepFailed when the customer was let down."""
        expected = tuple(expect)
        with (client or self.client).request(method, path, name=step_name(self.current, name), catch_response=True,
                                 allow_redirects=False, **kw) as resp:
            problem: str | None = None
            if resp.status_code not in expected:
                why = f" ({type(resp.error).__name__}: {resp.error})" if resp.status_code == 0 else ""
                problem = f"{method} {path}: status {resp.status_code}{why}, expected {expected}"
            elif check is not None:
                try:
                    problem = check(resp)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    problem = f"{method} {path}: unusable body ({type(exc).__name__}: {exc})"
            if problem:
                resp.failure(problem)
            else:
                resp.success()
        if problem:
            raise StepFailed(problem)
        return resp

    def judge(self, name: str, problem: str | None) -> None:
        """A step of the current journey that compares what the customer saw (no request); raises StepFailed
        on a problem."""
        self.aggregator.check(step_name(self.current, name), problem is None, problem)
        if problem:
            raise StepFailed(problem)

    @contextlib.contextmanager
    def dated(self, name: str, left_at: float) -> Iterator[None]:
        """Record a data check of the current journey against the moment the data was left (``left_at``)."""
        try:
            yield
        except StepFailed:
            self.aggregator.dated_check(step_name(self.current, name), left_at, False)
            raise
        self.aggregator.dated_check(step_name(self.current, name), left_at, True)

    def second_device(self) -> Any:
        """The customer's other device (its own cookies), signed in once."""
        if self.device is None:
            self.device = _browser(self)
            self.step("login-other", "GET", "/login", auth=(self.username, self.password), client=self.device)
        return self.device

    def ensure_login(self) -> None:
        if self.logged_in_at is not None and time.monotonic() - self.logged_in_at < LOGIN_TTL_S:
            return
        self.step("login", "GET", "/login", auth=(self.username, self.password))
        self.logged_in_at = time.monotonic()

    def catalogue(self, size: int = 20, tags: str | None = None, page: int = 1, step: str = "catalogue") -> list[Any]:
        query = {"size": size, "page": page, **({"tags": tags} if tags else {})}
        resp = self.step(step, "GET", "/catalogue?" + urlencode(query), check=is_list("catalogue"))
        return body_json(resp)  # type: ignore[no-any-return]

    def order(self) -> bool:
        """POST /orders: True when the payment was declined (a business outcome), StepFailed otherwise."""
        def check(resp: Any) -> str | None:
            data = body_json(resp)
            if resp.status_code == 201:
                return None if isinstance(data, dict) and "id" in data else "order: no order id in the answer"
            message = str(data.get("message", "")) if isinstance(data, dict) else ""
            return None if "declined" in message.lower() else f"order refused (406): {message[:120]}"
        resp = self.step("order", "POST", "/orders", expect=(201, 406), check=check)
        return resp.status_code == 406  # type: ignore[no-any-return]


# Absences longer than this (the standard profile's) are pipelined: a user starts another visit every
# RETURN_SPACING_S while earlier ones are away, so that a return arrives about that often per user.
PIPELINE_AFTER_S = 30.0
RETURN_SPACING_S = 5.0


class Away:
    """A shopper who left items in an anonymous cart and closed the tab; back after ``return_after``."""

    def __init__(self, client: Any, items: dict[str, int], back_at: float) -> None:
        self.client = client
        self.items = items
        self.back_at = back_at
        # Wall clock at leaving: a loss found on return is dated by when the cart was left, so the scorer
        # can tell carts left during the incident from carts left after the agent's hand-back.
        self.left_at = time.time()


def _browser(u: ShopUser) -> Any:
    """A second browser of the same customer (its own cookies): the anonymous visit of a return journey."""
    from locust.contrib.fasthttp import FastHttpSession

    return FastHttpSession(base_url=u.host, request_event=u.environment.events.request,
                           network_timeout=u.network_timeout, connection_timeout=u.connection_timeout,
                           max_redirects=u.max_redirects, max_retries=u.max_retries, insecure=u.insecure,
                           concurrency=u.concurrency, user=u, client_pool=u.client_pool,
                           ssl_context_factory=u.ssl_context_factory, headers=u.default_headers)


def _cheap(items: list[Any]) -> list[Any]:
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("price"), int | float)
            and 0 < i["price"] <= PRICE_BUDGET]


# ---- journeys -----------------------------------------------------------------------------------
@journey("browse")
def browse(u: ShopUser) -> bool:
    """Home page, tags, a category page (maybe filtered by a tag), a sock's page and its image."""
    home = u.catalogue(size=5, step="home")
    tags = body_json(u.step("tags", "GET", "/tags", check=has_keys("tags", "tags"))).get("tags") or []
    tag = u.chooser.pick("tag", tags) if tags and u.chooser.chance("filter", 0.5) else None
    count_q = "?" + urlencode({"tags": tag}) if tag else ""
    size = body_json(u.step("count", "GET", "/catalogue/size" + count_q, check=has_keys("count", "size")))["size"]
    pages = max(1, math.ceil(int(size or 0) / PAGE_SIZE))
    page = u.chooser.randint("page", 1, pages)
    listing = u.catalogue(size=PAGE_SIZE, tags=tag, page=page, step="category") or home
    if not listing:
        return False  # an empty shop: nothing more a customer could look at
    item = u.chooser.pick("item", listing, key="id")
    sock = body_json(u.step("detail", "GET", f"/catalogue/{quote(str(item['id']), safe='')}",
                            check=has_keys("detail", "id", "price")))
    images = [p for p in sock.get("imageUrl") or [] if isinstance(p, str) and p]
    if images:
        u.step("image", "GET", urlsplit(u.chooser.pick("image", images)).path)
    first_tag = (sock.get("tag") or [None])[0]
    u.catalogue(size=3, tags=first_tag if isinstance(first_tag, str) else None, step="related")
    return False


@journey("login")
def login(u: ShopUser) -> bool:
    """GET /login with HTTP Basic (upstream), then the shop's POST /login (JSON or form), then who am I."""
    u.step("basic", "GET", "/login", auth=(u.username, u.password))
    if u.chooser.chance("form", 0.5):
        u.step("post", "POST", "/login", data=urlencode({"username": u.username, "password": u.password}),
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    else:
        u.step("post", "POST", "/login", json={"username": u.username, "password": u.password})
    u.logged_in_at = time.monotonic()

    def me(resp: Any) -> str | None:
        data = body_json(resp)
        if not isinstance(data, dict) or data.get("username") != u.username:
            return f"customer: expected {u.username}, got {str(data)[:120]}"
        return None
    u.step("customer", "GET", "/customers/me", check=me)
    return False


@journey("cart")
def cart(u: ShopUser) -> bool:
    """Add one or two socks, change a quantity, look at the cart, remove one, empty it."""
    items = [i for i in u.catalogue() if isinstance(i, dict) and "id" in i]
    if not items:
        return False
    first = u.chooser.pick("item", items, key="id")
    u.step("add", "POST", "/cart", expect=(201,), json={"id": first["id"]})
    if u.chooser.chance("second", 0.5):
        u.step("add", "POST", "/cart", expect=(201,), json={"id": u.chooser.pick("item", items, key="id")["id"]})
    quantity = u.chooser.randint("quantity", 1, 5)
    u.step("update", "POST", "/cart/update", expect=(202,), json={"id": first["id"], "quantity": quantity})

    def holds(resp: Any) -> str | None:
        lines = body_json(resp)
        found = [x for x in lines if isinstance(x, dict) and x.get("itemId") == first["id"]]
        if not found or found[0].get("quantity") != quantity:
            return f"cart: expected {quantity} of {first['id']}, got {str(lines)[:160]}"
        return None
    u.step("view", "GET", "/cart", check=holds)
    u.step("remove", "DELETE", f"/cart/{quote(str(first['id']), safe='')}", expect=(202,))
    u.step("empty", "DELETE", "/cart", expect=(202,))
    return False


@journey("return-visit")
def return_visit(u: ShopUser) -> bool | None:
    """Scenario 3's shopper, in two visits. First: browse without logging in, put one or two socks in the cart,
    leave. Back ``return_after`` seconds later (the seed's 30 minutes, compressed): the cart must still hold
    them; log in: they must be in the customer's cart (the merge), then check out is left for another day
    (the cart is emptied). A cart that lost items fails the step that saw it: ``return-visit:kept`` (between
    visits) or ``return-visit:merged`` (at login). Counted as one journey, when the second visit ends."""
    if not u.return_due():
        client = _browser(u)
        items = [i for i in u.catalogue() if isinstance(i, dict) and "id" in i]
        if not items:
            return False
        left: dict[str, int] = {}
        for _ in range(u.chooser.randint("socks", 1, 2)):
            item = str(u.chooser.pick("item", items, key="id")["id"])
            u.step("add", "POST", "/cart", expect=(201,), json={"id": item}, client=client)
            left[item] = left.get(item, 0) + 1
        u.step("basket", "GET", "/cart", check=_holds(left, "the basket after adding"), client=client)
        u.aways.append(Away(client, left, time.monotonic() + u.config.return_after))
        u.last_leave = time.monotonic()
        return CONTINUED
    away = u.aways.pop(0)
    with u.dated("kept", away.left_at):
        u.step("kept", "GET", "/cart", check=_holds(away.items, "the cart after coming back"), client=away.client)
    u.step("login", "GET", "/login", auth=(u.username, u.password), client=away.client)
    with u.dated("merged", away.left_at):
        u.step("merged", "GET", "/cart", check=_holds(away.items, "the customer's cart after logging in"),
               client=away.client)
    u.step("empty", "DELETE", "/cart", expect=(202,), client=away.client)
    return False


CITIES = ("London", "Leeds", "Bristol", "Cardiff", "Glasgow", "Belfast", "York", "Bath")
SURNAMES = ("Lovelace", "Hopper", "Turing", "Hamilton", "Liskov", "Knuth", "Ritchie", "Allen")
PROFILE_FORM = ("firstName", "lastName", "email", "phone", "address", "defaultCard")


def _form(profile: dict[str, Any]) -> dict[str, Any]:
    """What the profile page sends: every field of its form, changed or not, and the version it loaded."""
    body = {k: profile.get(k) for k in PROFILE_FORM}
    if not body["email"]:  # (the seeded accounts have none: the page asks for one)
        body["email"] = f"{profile.get('username') or 'shopper'}@example.com"
    if not body["address"]:
        body["address"] = {"number": "1", "street": "High Street", "city": "London", "postcode": "SW1A 1AA",
                           "country": "UK"}
    if not body["phone"]:
        body["phone"] = "+44 20 7946 0000"
    body["version"] = profile.get("version")
    return body


def _profile(resp: Any) -> str | None:
    data = body_json(resp)
    return None if isinstance(data, dict) and isinstance(data.get("version"), int) else "profile: no version"


@journey("profile-edit")
def profile_edit(u: ShopUser) -> bool:
    """Scenario 9's customer, signed in on two devices. Both open the profile page; the first changes the phone
    and the city of the home address and saves; the second, on the page it loaded before, changes the surname
    and saves: refused as stale (409) it reloads and saves again, as the page tells it to. Then each device
    checks that both changes are there. ``profile-edit:verify`` fails when a change the customer was told was
    saved is not (skipped by validation, lost to a stale overwrite, half-written)."""
    u.ensure_login()
    other = u.second_device()
    a = body_json(u.step("load", "GET", "/profile", check=_profile))
    b = body_json(u.step("load", "GET", "/profile", check=_profile, client=other))
    phone = f"+44 20 7946 {u.chooser.randint('phone', 1000, 9999)}"
    city = u.chooser.pick("city", list(CITIES))
    mine = _form(a)
    mine["phone"] = phone
    mine["address"] = {**mine["address"], "city": city}
    u.step("save", "PATCH", "/profile", json=mine, check=_profile)
    surname = u.chooser.pick("surname", list(SURNAMES))
    theirs = {**_form(b), "lastName": surname}
    resp = u.step("save-other", "PATCH", "/profile", json=theirs, expect=(200, 409), client=other)
    if resp.status_code == 409:  # the page says: reload, then make the change again
        fresh = body_json(u.step("reload", "GET", "/profile", check=_profile, client=other))
        u.step("save-again", "PATCH", "/profile", json={**_form(fresh), "lastName": surname}, check=_profile,
               client=other)

    def both(resp: Any) -> str | None:
        p = body_json(resp)
        lost = [name for name, ok in (("phone", p.get("phone") == phone), ("lastName", p.get("lastName") == surname),
                                      ("address.city", (p.get("address") or {}).get("city") == city)) if not ok]
        return f"profile: saved changes missing: {', '.join(lost)}" if lost else None
    u.step("verify", "GET", "/profile", check=both)
    u.step("verify-other", "GET", "/profile", check=both, client=other)
    return False


def _holds(items: dict[str, int], where: str) -> Check:
    def check(resp: Any) -> str | None:
        have: dict[str, int] = {}
        for line in body_json(resp):
            if isinstance(line, dict) and isinstance(line.get("quantity"), int):
                have[str(line.get("itemId"))] = have.get(str(line.get("itemId")), 0) + line["quantity"]
        lost = {i: n for i, n in items.items() if have.get(i, 0) < n}
        return f"{where}: {len(lost)} of {len(items)} items missing" if lost else None
    return check


@journey("checkout")
def checkout(u: ShopUser) -> bool:
    """A whole purchase: log in, fresh cart, add a sock, basket page, POST /orders, clear the cart."""
    u.ensure_login()
    u.step("empty", "DELETE", "/cart", expect=(202,))
    items = _cheap(u.catalogue()) or _cheap(u.catalogue(size=100))
    if not items:
        raise StepFailed(f"checkout: no sock priced at most {PRICE_BUDGET} in the catalogue")
    item = u.chooser.pick("item", items, key="id")
    u.step("add", "POST", "/cart", expect=(201,), json={"id": item["id"]})

    def not_empty(resp: Any) -> str | None:
        return None if body_json(resp) else "basket: the cart is empty after adding a sock"
    u.step("basket", "GET", "/cart", check=not_empty)
    u.step("address", "GET", "/address", check=has_keys("address", "id"))
    u.step("card", "GET", "/card", check=has_keys("card", "number"))
    declined = u.order()
    if not declined:
        u.step("clear", "DELETE", "/cart", expect=(202,))
    return declined


def _cookie(u: ShopUser, name: str) -> str | None:
    for c in getattr(u.client, "cookiejar", None) or []:
        if c.name == name:
            return str(c.value)
    return None


def _delivery_options(resp: Any) -> str | None:
    # 502: no rating service runs (the shop prices delivery flat), which the page shows as such; 400 "the basket is
    # empty": the customer's other device (another shopper on the same account) just emptied it, not the shop's
    # failure. Any other error leaves the shopper unable to choose a delivery, as the page says.
    if resp.status_code == 502 or (resp.status_code == 200 and isinstance(body_json(resp), dict)):
        return None
    data = body_json(resp)
    if resp.status_code == 400 and isinstance(data, dict) and "basket is empty" in str(data.get("error", "")):
        return None
    return f"shipping-options: status {resp.status_code}"


@journey("checkout-page")
def checkout_page(u: ShopUser) -> bool:
    """Scenario 7's page load: the checkout (basket) page as a browser loads it, its HTML and every API call its
    script makes (tests/test_browser.py checks Chromium makes these and no others): who is logged in, the cart,
    each sock in it, the delivery address, the card, then the delivery options for that address. One at a time
    where the page makes some at once (the address and the card). A shopper with an empty basket first puts a
    sock in it."""
    u.ensure_login()
    u.step("html", "GET", "/basket.html")
    who = _cookie(u, "logged_in")
    u.step("account", "GET", "/customers/" + quote(who, safe="") if who else "/customers/me")
    lines = body_json(u.step("cart", "GET", "/cart", check=is_list("cart")))
    if not lines:
        items = _cheap(u.catalogue(step="pick"))
        if not items:
            raise StepFailed(f"checkout-page: no sock priced at most {PRICE_BUDGET} in the catalogue")
        u.step("add", "POST", "/cart", expect=(201,), json={"id": u.chooser.pick("item", items, key="id")["id"]})
        lines = body_json(u.step("cart", "GET", "/cart", check=is_list("cart")))
    for item in dict.fromkeys(str(x.get("itemId")) for x in lines if isinstance(x, dict)):
        u.step("sock", "GET", "/catalogue/" + quote(item, safe=""), check=has_keys("sock", "id", "price"))
    u.step("address", "GET", "/address", check=has_keys("address", "id"))
    u.step("card", "GET", "/card", check=has_keys("card", "number"))
    u.step("delivery", "POST", "/shipping-options", expect=(200, 400, 502), check=_delivery_options)
    return False


@journey("order-status")
def order_status(u: ShopUser) -> bool:
    """Scenario 8's customer: the order history, then one of the orders in detail and where its parcel is. Past
    CONSISTENT_AFTER_S from the order's last change the three must agree (``order-status:consistent``)."""
    u.ensure_login()
    orders = body_json(u.step("list", "GET", "/orders", expect=(201,), check=is_list("orders")))
    listed = [o for o in orders
              if isinstance(o, dict) and isinstance(o.get("_links", {}).get("self", {}).get("href"), str)]
    if not listed:
        return False
    # The newest few: the ones still moving, where views can fall apart (a long history is mostly settled).
    entry = u.chooser.pick("order", listed[-5:])
    detail = body_json(u.step("detail", "GET", urlsplit(entry["_links"]["self"]["href"]).path,
                              check=has_keys("order", "items", "total")))
    shipment = detail.get("trackingId") if isinstance(detail, dict) else None
    parcel = None
    if isinstance(shipment, str) and shipment and "status" in detail:
        parcel = body_json(u.step("tracking", "GET", f"/tracking/{quote(shipment, safe='')}",
                                  check=has_keys("tracking", "status")))
    if "status" in entry and isinstance(detail, dict) and "status" in detail:  # (an upstream orders has none)
        u.judge("consistent", views_disagree(entry, detail, parcel if isinstance(parcel, dict) else None))
    return False


_TARIFFS: dict[str, PublishedTariff] = {}


def _tariff_in_force(u: ShopUser) -> set[int]:
    url = u.config.carrier_url
    if not url:
        return set()
    return _TARIFFS.setdefault(url, PublishedTariff(url)).in_force()


@journey("shipping-quote")
def shipping_quote(u: ShopUser) -> bool:
    """Scenario 10's customer: a basket of one to three pairs, then the delivery options to one of the probe's test
    addresses, whose zone the probe knows (the checkout page asks as the address is typed). ``shipping-quote:correct``
    fails on a missing service or a price the carrier does not charge (shipping_quotes.quote_problem)."""
    u.ensure_login()
    u.step("empty", "DELETE", "/cart", expect=(202,))
    items = [i for i in u.catalogue(size=PAGE_SIZE) if isinstance(i, dict) and "id" in i]
    if not items:
        raise StepFailed("shipping-quote: the catalogue is empty")
    item = u.chooser.pick("item", items, key="id")
    pairs = u.chooser.randint("pairs", 1, 3)
    u.step("add", "POST", "/cart", expect=(201,), json={"id": item["id"]})
    if pairs > 1:
        u.step("update", "POST", "/cart/update", expect=(202,), json={"id": item["id"], "quantity": pairs})
    place, country, postcode, zone = u.chooser.pick("destination", DESTINATIONS)
    answer = body_json(u.step("options", "POST", "/shipping-options",
                              json={"address": {"country": country, "postcode": postcode}},
                              check=has_keys("options", "options")))
    u.judge("correct", quote_problem(answer, place, postcode, zone, pairs, _tariff_in_force(u)))
    return False


@journey("classic")
def classic(u: ShopUser) -> bool:
    """Upstream's locustfile sequence (reference §7.1), with this user's own account instead of the shared
    ``user`` so concurrent users do not empty each other's cart."""
    items = [i for i in body_json(u.step("catalogue", "GET", "/catalogue", check=is_list("catalogue")))
             if isinstance(i, dict) and "id" in i]
    if not items:
        raise StepFailed("classic: the catalogue is empty")
    item_id = str(u.chooser.pick("item", items, key="id")["id"])
    u.step("home", "GET", "/")
    u.step("login", "GET", "/login", auth=(u.username, u.password))
    u.logged_in_at = time.monotonic()
    u.step("category", "GET", "/category.html")
    u.step("detail", "GET", "/detail.html?" + urlencode({"id": item_id}))
    u.step("empty", "DELETE", "/cart", expect=(202,))
    u.step("add", "POST", "/cart", expect=(201,), json={"id": item_id, "quantity": 1})
    u.step("basket", "GET", "/basket.html")
    return u.order()


SEARCH_PAGE = 12


def _search_query(u: ShopUser) -> tuple[dict[str, Any], bool]:
    """One shopper's search in one of four forms, from the words the shop's products are described with:
    (the query string, whether it must find something in a catalogue of generated products)."""
    words = search_vocabulary()
    form = u.chooser.pick("search-form", ["phrase", "filtered", "typo", "broad"])
    if form == "phrase":  # a quoted material, a kind and a use, as a shopper types them: "merino wool" boot
        # socks for weekend hikes (every word must match: it may find nothing)
        kind = u.chooser.pick("search-kind", words["kinds"]).lower()
        use = u.chooser.pick("search-use", words["uses"])
        return {"q": f'"{u.chooser.pick("search-material", words["materials"])}" {kind} socks for {use}'}, False
    if form == "filtered":  # a word, an exclusion, a tag, a price range, cheapest first
        material = u.chooser.pick("search-material", words["materials"]).split()[-1]
        other = u.chooser.pick("search-exclude", words["styles"]).lower()
        low = u.chooser.randint("search-price", 5, 25)
        return {"q": f"{material} -{other}", "tags": u.chooser.pick("search-tag", TAGS), "price_min": low,
                "price_max": low + 20, "sort": "price_asc"}, False
    if form == "typo":  # a name word with its last letter missing, in stock only: found by trigram similarity
        kind = u.chooser.pick("search-kind", [k for k in words["kinds"] if len(k) >= 5])
        return {"q": kind[:-1].lower(), "in_stock": 1}, True
    return {"q": u.chooser.pick("search-colour", words["colours"]).lower(), "sort": "name"}, True


def _search_answer(must_match: bool) -> Check:
    def check(resp: Any) -> str | None:
        data = body_json(resp)
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            return f"search: expected an object with items, got {str(data)[:120]}"
        if data.get("partial"):
            failed = [f.get("shard") for f in (data.get("shards") or {}).get("failures", [])]
            return f"search: partial results (shards left out: {', '.join(map(str, failed))})"
        if must_match and not data.get("total"):
            return "search: no results for a query that names what the shop sells"
        return None
    return check


@journey("search")
def search(u: ShopUser) -> bool:
    """One search from the header box (four forms: phrase, filtered and sorted, a typo, a broad word), and the
    next page of its results in three of ten."""
    query, must_match = _search_query(u)
    query["size"] = SEARCH_PAGE
    resp = u.step("results", "GET", "/search?" + urlencode(query), check=_search_answer(must_match))
    if int(body_json(resp).get("total") or 0) > SEARCH_PAGE and u.chooser.chance("search-next", 0.3):
        u.step("next-page", "GET", "/search?" + urlencode({**query, "page": 2}), check=_search_answer(False))
    return False


def make_user_class(config: LoadConfig, aggregator: Aggregator) -> type[ShopUser]:
    """The concrete user class Locust runs, bound to one run's config."""
    missing = set(config.mix) - set(JOURNEY_FUNCS)
    if missing:
        raise ValueError(f"journeys without an implementation: {sorted(missing)}")
    class SockShopCustomer(ShopUser):
        host = config.host
        network_timeout = config.timeout
        connection_timeout = config.timeout
        choice_log: list[dict[str, Any]] = []
        _free: list[int] = []
        _next = [0]

    SockShopCustomer.config = config
    SockShopCustomer.aggregator = aggregator
    return SockShopCustomer
