"""One shopper's whole journey against a running front-end, step by step, with timings.

Used by ``sockdrill demo`` and by tests: register (or log in) → browse → view a sock → add to cart →
update quantity → checkout → see the order in the order list.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Step:
    name: str
    method: str
    path: str
    status: int
    ms: float
    ok: bool
    detail: str = ""


@dataclass
class JourneyResult:
    steps: list[Step] = field(default_factory=list)
    order: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


class Shopper:
    """A browser-like client: keeps cookies, records every step."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base = base_url.rstrip("/")
        self.session = session
        self.result = JourneyResult()

    async def call(self, name: str, method: str, path: str, expect: tuple[int, ...], **kw: Any) -> tuple[int, Any]:
        started = time.perf_counter()
        try:
            async with self.session.request(method, self.base + path, allow_redirects=False, **kw) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.result.steps.append(Step(name, method, path, 0, (time.perf_counter() - started) * 1000, False,
                                          f"{type(exc).__name__}: {exc}"))
            return 0, None
        ms = (time.perf_counter() - started) * 1000
        try:
            import json

            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        ok = status in expect
        self.result.steps.append(Step(name, method, path, status, ms, ok, "" if ok else str(body)[:200]))
        return status, body


async def run_journey(base_url: str, *, username: str | None = None, password: str = "password",
                      register: bool = True, item_id: str = "3395a43e-2d88-40de-b95f-e00e1502085b",
                      timeout: float = 30.0) -> JourneyResult:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        s = Shopper(base_url, session)
        await s.call("browse", "GET", "/catalogue?size=6", (200,))
        await s.call("tags", "GET", "/tags", (200,))
        await s.call("detail", "GET", f"/catalogue/{item_id}", (200,))
        await s.call("add to cart (anonymous)", "POST", "/cart", (201,), json={"id": item_id})
        if register:
            username = username or f"demo_{uuid.uuid4().hex[:10]}"
            await s.call("register", "POST", "/register", (200,), json={
                "username": username, "password": password, "email": f"{username}@example.com",
                "firstName": "Demo", "lastName": "Shopper"})
            await s.call("add address", "POST", "/addresses", (200,), json={
                "number": "12", "street": "Sock Lane", "city": "Glasgow", "postcode": "G1 1AA",
                "country": "United Kingdom"})
            await s.call("add card", "POST", "/cards", (200,), json={
                "longNum": "4111111111111111", "expires": "12/30", "ccv": "123"})
        else:
            token = base64.b64encode(f"{username or 'user'}:{password}".encode()).decode()
            await s.call("login", "GET", "/login", (200,), headers={"Authorization": f"Basic {token}"})
        await s.call("view cart", "GET", "/cart", (200,))
        await s.call("update quantity", "POST", "/cart/update", (202,), json={"id": item_id, "quantity": 2})
        status, order = await s.call("checkout", "POST", "/orders", (201,))
        if status == 201 and isinstance(order, dict):
            s.result.order = order
            await s.call("empty cart", "DELETE", "/cart", (202,))
        await s.call("order list", "GET", "/orders", (201,))
        return s.result
