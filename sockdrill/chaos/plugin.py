"""The chaos room's supervisor plugin: the fault controller and its control routes.

Routes (operator/scenario side, never agent tools): ``GET /v1/chaos/kinds``, ``POST /v1/chaos/inject``
(a fault mapping: kind, target, params, duration...), ``GET /v1/chaos/faults`` (active faults),
``POST /v1/chaos/clear`` (``{"id": ...}`` or everything). Leftovers of a crashed supervisor are
reverted once the runtime has started; the clean-up reverts every fault before the runtime stops.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sockdrill.chaos.controller import ChaosController
from sockdrill.chaos.kinds import describe_kinds
from sockdrill.chaos.spec import parse_fault


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, default=str))


async def attach(runtime: Any, api: Any) -> Callable[[], Awaitable[None]]:
    controller = ChaosController(runtime, runtime.data_dir)
    api.chaos = controller

    async def kinds(_r: web.Request) -> web.Response:
        return _json(describe_kinds())

    async def inject(request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            raise ValueError("body must be a JSON fault: kind, target, params, duration") from None
        return _json(await controller.inject(parse_fault(data)))

    async def faults(_r: web.Request) -> web.Response:
        return _json(controller.list())

    async def clear(request: web.Request) -> web.Response:
        data = await request.json() if request.can_read_body else {}
        fid = (data or {}).get("id")
        if fid is not None and not isinstance(fid, str):
            raise ValueError("'id' must be a fault id string")
        return _json({"cleared": await controller.clear(fid)})

    r = api.app.router
    r.add_get("/v1/chaos/kinds", kinds)
    r.add_post("/v1/chaos/inject", inject)
    r.add_get("/v1/chaos/faults", faults)
    r.add_post("/v1/chaos/clear", clear)

    async def started(_record: dict[str, Any]) -> None:
        if controller.leftovers:
            await controller.revert_leftovers()

    api.started_hooks.append(started)
    return controller.close
