"""Every outgoing call says when its caller stops waiting (X-Request-Deadline), so a callee can drop work
nobody waits for: the deadline is now plus the call's own timeout."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from sockdrill.shop.common.env import url_env_name
from sockdrill.shop.common.http import DEADLINE_HEADER, Upstreams, caller_deadline
from sockdrill.shop.common.metrics import ServiceMetrics


def test_calls_carry_their_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get(DEADLINE_HEADER))
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/x", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        monkeypatch.setenv(url_env_name("carts"), f"http://127.0.0.1:{port}")
        client = Upstreams("front-end", ServiceMetrics("front-end"))
        try:
            before = time.time()
            await client.request("carts", "GET", "/x", timeout=0.75)
            await client.request("carts", "GET", "/x")  # the default timeout (5 s)
        finally:
            await client.close()
            await runner.cleanup()
        short, default = (float(v) for v in seen)  # type: ignore[arg-type]
        assert before + 0.7 < short < time.time() + 0.8
        assert before + 4.9 < default < time.time() + 5.1

    asyncio.run(main())


def test_a_deadline_that_is_not_a_time_is_none() -> None:
    assert caller_deadline({DEADLINE_HEADER: "1796396000.5"}) == 1796396000.5
    for bad in ("soon", "nan", "-3", "0", ""):
        assert caller_deadline({DEADLINE_HEADER: bad}) is None, bad
    assert caller_deadline({}) is None
