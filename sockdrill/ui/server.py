"""``sockdrill ui``: the control room's web server (aiohttp, 127.0.0.1 only, one token per start).

Routes: ``/`` the page (static, holds nothing of any run); ``/api/runs`` the runs under the runs folder
(newest first, those in progress as 'live'); ``/api/runs/{id}`` one run's state (``?at=`` epoch seconds
moves the edge-health window of a finished run); ``/api/runbooks/{id}`` the runbook an alert links to.
The API answers only the token printed at start (as ``Authorization: Bearer`` or ``?token=``): finished
runs hold their ground truth, and an agent on call on this machine must not read earlier answers here.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from sockdrill.ui.state import RunNotFound, list_runs, run_path, run_state, runbook_text

PAGE = Path(__file__).resolve().parent / "static" / "control-room.html"
ROOT_KEY: web.AppKey[Path] = web.AppKey("root", Path)
TOKEN_KEY: web.AppKey[str] = web.AppKey("token", str)


def _authorised(request: web.Request) -> bool:
    token = request.app[TOKEN_KEY]
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/api/") and not _authorised(request):
        return web.json_response({"error": "this control room answers only its token (printed by sockdrill ui)"},
                                 status=401)
    try:
        return await handler(request)
    except RunNotFound as exc:
        return web.json_response({"error": str(exc)}, status=404)


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})


async def _runs(request: web.Request) -> web.StreamResponse:
    runs = await asyncio.to_thread(list_runs, request.app[ROOT_KEY])
    return web.json_response({"root": str(request.app[ROOT_KEY]), "runs": runs})


async def _run(request: web.Request) -> web.StreamResponse:
    at: float | None = None
    if "at" in request.query:
        try:
            at = float(request.query["at"])
        except ValueError:
            return web.json_response({"error": f"at must be epoch seconds, got {request.query['at']!r}"}, status=400)
    path = run_path(request.app[ROOT_KEY], request.match_info["run_id"])
    state = await asyncio.to_thread(run_state, path, at)
    return web.json_response(state, dumps=_dumps)


async def _runbook(request: web.Request) -> web.StreamResponse:
    return web.json_response({"id": request.match_info["runbook_id"],
                              "markdown": runbook_text(request.match_info["runbook_id"])})


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str, allow_nan=False)


def make_app(root: Path, token: str) -> web.Application:
    app = web.Application(middlewares=[_guard])
    app[ROOT_KEY] = root
    app[TOKEN_KEY] = token
    app.router.add_get("/", _page)
    app.router.add_get("/api/runs", _runs)
    app.router.add_get("/api/runs/{run_id}", _run)
    app.router.add_get("/api/runbooks/{runbook_id}", _runbook)
    return app


def new_token() -> str:
    return secrets.token_urlsafe(24)


async def serve(root: Path, port: int, token: str, announce: Any) -> None:
    """Serve until cancelled; ``announce(url)`` is called once the port is bound (port 0: any free one)."""
    runner = web.AppRunner(make_app(root, token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    announce(f"http://127.0.0.1:{bound}/?token={token}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


__all__ = ["make_app", "new_token", "serve"]
