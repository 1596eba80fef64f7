"""The MCP server driven by the official MCP client: stdio and token-gated streamable HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from sockdrill.agents.registry import all_tools
from sockdrill.cluster.ports import free_port
from tests.conftest import Shop

SOCKDRILL = str(Path(sys.executable).parent / "sockdrill")

# Arguments that exercise every tool without changing the shared shop (act tools are refused by validation).
SAFE_ARGS: dict[str, dict] = {
    "describe": {"service": "payment"}, "logs": {"service": "catalogue", "limit": 2},
    "read_runbook": {"runbook_id": "nope"}, "metrics": {"limit": 3}, "promql": {"query": "up"},
    "trace": {"trace_id": "00"}, "restart": {"service": "no-such-service"},
    "scale": {"service": "user", "replicas": 99}, "set_limits": {"service": "no-such-service"},
    "set_config": {"service": "orders", "knobs": {"no_such_knob": 1}}, "rollback_config": {"service": "nope"},
    "create_index": {"service": "catalogue", "table": "t", "columns": ["c"]},
    "drop_index": {"service": "catalogue", "name": "x"}, "cancel_queries": {"service": "catalogue"},
    "limit_db_role": {"service": "catalogue", "role": "x", "connections": 0},
    "drop_constraint": {"service": "catalogue", "table": "t", "name": "x"},
    "flush_cache": {"service": "catalogue"}, "resize_cache": {"service": "catalogue", "maxmemory": "1mb"},
    "reconcile_payments": {"dry_run": True}, "dead_letter": {"service": "catalogue"},
    "requeue": {"service": "catalogue"}, "reset_gateway": {}, "failover_gateway": None,
    "submit": {"detected": False, "root_causes": [], "summary": "mcp test"}, "mitigation_done": None,
    "queue_status": {"service": "catalogue"}, "purge_cache": {"service": "catalogue"},
    "cache_stats": {"service": "session-db", "sample": 5}, "db_sessions": {"service": "user-db", "limit": 3},
    "set_route": {"service": "no-such-service", "weights": {"primary": 1}}, "rollback_route": {"service": "nope"},
    "run_job": {"service": "catalogue", "job": "no-such-job"},
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_stdio_lists_and_calls_every_tool(shop: Shop, tmp_path: Path) -> None:
    params = StdioServerParameters(command=SOCKDRILL, args=["mcp", "--data-dir", str(shop.data_dir), "--run",
                                                            str(tmp_path)], env=_env())
    called: dict[str, tuple[bool, object]] = {}

    async def main() -> None:
        async with Client(params, read_timeout_seconds=60) as client:
            listed = await client.list_tools()
            assert {t.name for t in listed.tools} == set(all_tools())
            assert all(t.input_schema["type"] == "object" for t in listed.tools)
            for tool in listed.tools:
                args = SAFE_ARGS.get(tool.name, {})
                if args is None:  # would restart a deployment or end the session's story
                    continue
                res = await client.call_tool(tool.name, args)
                text = res.content[0].text
                called[tool.name] = (bool(res.is_error), json.loads(text))

    anyio.run(main)
    assert called["topology"][0] is False and called["topology"][1]["deployments"]
    assert called["scale"][0] is True and "between 0 and 8" in called["scale"][1]["error"]
    assert called["flush_cache"][0] is True and "not a Redis" in called["flush_cache"][1]["error"]
    assert called["submit"] == (False, {"accepted": True})
    audit = [json.loads(x) for x in (tmp_path / "agent-audit.jsonl").read_text().splitlines()]
    assert {a["tool"] for a in audit} == set(called)


def test_http_needs_the_token(shop: Shop, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([SOCKDRILL, "mcp", "--http", "--port", str(port), "--data-dir", str(shop.data_dir),
                             "--run", str(tmp_path)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        info_path = tmp_path / "mcp.json"
        deadline = time.monotonic() + 60
        while not info_path.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.2)
        info = json.loads(info_path.read_text())
        assert info["url"] == f"http://127.0.0.1:{port}/mcp"
        assert oct(info_path.stat().st_mode & 0o777) == "0o600"
        for _ in range(100):
            try:
                r = httpx2.post(info["url"], json={})
                break
            except httpx2.TransportError:
                time.sleep(0.2)
        assert r.status_code == 401
        assert httpx2.post(info["url"], json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401

        async def main() -> None:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {info['token']}"}, timeout=60)
            async with http, Client(streamable_http_client(info["url"], http_client=http)) as client:
                listed = await client.list_tools()
                assert "metrics" in {t.name for t in listed.tools}
                res = await client.call_tool("pods", {})
                assert not res.is_error and json.loads(res.content[0].text)

        anyio.run(main)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    if proc.returncode not in (0, -15):
        pytest.fail(f"mcp server exited with {proc.returncode}")
