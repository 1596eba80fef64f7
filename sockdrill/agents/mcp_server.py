"""``sockdrill mcp``: the agent tool set over the Model Context Protocol (the official ``mcp`` SDK).

The same registry as the Python API and the CLI: each tool's name, description and JSON schema come
from ``sockdrill.agents.registry``, and every call goes through ``Tools.call`` (argument checks, step
budget, audit log). Two transports:

- stdio (default): an MCP client launches ``sockdrill mcp --data-dir DIR`` as a subprocess;
- streamable HTTP on 127.0.0.1 (``--http``): every request needs ``Authorization: Bearer TOKEN`` (a fresh
  per-run token, printed at start and written to ``RUN/mcp.json``), so other local users cannot act.

A tool's result is JSON text; a refused or failed call is a tool result with ``isError`` set, so it costs
the agent one step, never the session.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server

from sockdrill.agents.registry import all_tools
from sockdrill.agents.tools import Tools

INSTRUCTIONS = ("You are on call for an online sock shop. Observe with the read tools, act with the change "
                "tools (each is audited), and report with submit (then mitigation_done once it is fixed).")


def build_server(tools: Tools) -> Server[Any]:
    """An MCP server whose tools are the registry's, dispatched to ``tools``."""
    specs = all_tools()
    lock = anyio.Lock()  # Tools is not thread-safe; calls are serialised like an engineer's terminal

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=s.name, description=f"[{s.kind}] {s.description}", input_schema=s.parameters)
            for s in specs.values()])

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = dict(params.arguments or {})
        async with lock:
            out = await anyio.to_thread.run_sync(lambda: tools.call(params.name, **args))
        text = json.dumps(out.get("result") if out.get("ok") else {"error": out.get("error")}, default=str)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    is_error=not out.get("ok", False))

    return Server("sockdrill", version="1", instructions=INSTRUCTIONS, on_list_tools=list_tools,
                  on_call_tool=call_tool)


async def serve_stdio(tools: Tools) -> None:
    from mcp.server.stdio import stdio_server

    server = build_server(tools)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


class TokenGate:
    """ASGI middleware: refuse any request without the run's bearer token (constant-time compare)."""

    def __init__(self, app: Callable[..., Awaitable[None]], token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            got = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not secrets.compare_digest(got, self.expected):
                body = json.dumps({"error": "missing or wrong bearer token"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(tools: Tools, token: str) -> Any:
    """The streamable-HTTP ASGI app (path ``/mcp``) behind the token gate."""
    server = build_server(tools)
    return TokenGate(server.streamable_http_app(host="127.0.0.1"), token)


async def serve_http(tools: Tools, port: int, token: str, info_path: Path | None = None,
                     ready: Callable[[str], None] | None = None) -> None:
    import uvicorn

    app = http_app(tools, token)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    url = f"http://127.0.0.1:{port}/mcp"
    if info_path is not None:
        info_path.parent.mkdir(parents=True, exist_ok=True)
        info_path.write_text(json.dumps({"url": url, "token": token}))
        info_path.chmod(0o600)
    if ready is not None:
        ready(url)
    await server.serve()


def new_token() -> str:
    return secrets.token_hex(16)
