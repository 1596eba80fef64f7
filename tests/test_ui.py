"""The control room's API on run folders written by hand: its token, its bounds, and what a live run hides.

The page itself, on a real run with a real fault, is driven in Chromium in tests/test_browser.py."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from typer.testing import CliRunner

from sockdrill.cli import app
from sockdrill.ui.server import make_app

TOKEN = "t0ken"


def record(t: float, p95: float, count: int = 10, failures: int = 0) -> dict[str, Any]:
    return {"time": t, "elapsed": 1.0, "users": 4, "journeys": {"login": {"count": count, "failures": failures,
                                                                            "p95": p95, "p50": p95 / 2}}}


def write_live(root: Path) -> Path:
    run = root / ".run-abc123"
    run.mkdir(parents=True)
    now = time.time()
    (run / "live.json").write_text(json.dumps({"phase": "on call", "started": now - 30, "profile": "fast",
                                               "data_dir": None}))
    # 10 good seconds, then 10 slow ones where half the logins fail: both of login's SLOs burn their budgets.
    rows = [record(now - 20 + i, 0.2 if i < 10 else 3.0, failures=0 if i < 10 else 5) for i in range(20)]
    (run / "load.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"time\": 1, \"jour")  # torn
    (run / "agent-audit.jsonl").write_text(json.dumps({"time": now - 5, "tool": "describe", "kind": "observe",
                                                       "args": {"service": "user"}, "ok": True}) + "\n")
    return run


def call(root: Path, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with TestClient(TestServer(make_app(root, TOKEN))) as client:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            resp = await client.get(path, headers=headers)
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body
    return asyncio.run(go())


def test_the_api_answers_only_its_token(tmp_path: Path) -> None:
    write_live(tmp_path)
    assert call(tmp_path, "/api/runs", token=None)[0] == 401
    assert call(tmp_path, "/api/runs", token="wrong")[0] == 401
    assert call(tmp_path, f"/api/runs?token={TOKEN}", token=None)[0] == 200
    status, page = call(tmp_path, "/", token=None)  # the page holds nothing of any run
    assert status == 200 and "control room" in page


def test_only_runs_under_the_folder_are_served(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_live(root)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "result.json").write_text("{}")
    for bad in ("..", "%2E%2E", "..%2Fsecret", "nope", "%2Fetc"):
        status, body = call(root, f"/api/runs/{bad}")
        assert status == 404, (bad, body)
    assert call(root, "/api/runs/.run-abc123?at=soon")[0] == 400


def test_a_live_run_shows_slis_budgets_alerts_and_actions_but_no_fault(tmp_path: Path) -> None:
    write_live(tmp_path)
    status, runs = call(tmp_path, "/api/runs")
    assert status == 200 and runs["runs"][0] == {"id": ".run-abc123", "live": True, "started": runs["runs"][0]
                                                 ["started"], "phase": "on call"}
    status, state = call(tmp_path, "/api/runs/.run-abc123")
    assert status == 200, state
    assert state["live"] and state["phase"] == "on call" and state["marks"] == [] and "result" not in state
    login = state["journeys"]["login"]
    assert len(login) == 20 and login[-1][1] == 3.0          # the torn last line is skipped
    latency = next(s for s in state["slos"] if s["label"] == "login latency_p95 < 1s")
    assert latency["budget"][-1][1] > 0 and latency["budget"][5][1] == 0
    paging = [a for a in state["alerts"] if a["severity"] == "page" and a["end"] is None]
    # Both page, the latency one too: alerts burn the published 99 % objective, not the fast windows' 0.8.
    assert {a["slo"] for a in paging} == {"login latency_p95 < 1s", "login error_rate < 1%"}, state["alerts"]
    assert state["actions"][0]["tool"] == "describe"
    assert state["edges"] == [] and "no telemetry" in state["edges_note"]


def test_ui_refuses_a_missing_folder(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["ui", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no runs folder" in res.output


def test_an_alert_links_to_its_runbook(tmp_path: Path) -> None:
    write_live(tmp_path)
    state = call(tmp_path, "/api/runs/.run-abc123")[1]
    books = {a["runbook"] for a in state["alerts"]}
    assert books == {"login-slow", "login-failing"}, books
    status, book = call(tmp_path, "/api/runbooks/login-slow")
    assert status == 200 and book["markdown"].startswith("#")
    assert call(tmp_path, "/api/runbooks/..%2Fcatalogue")[0] == 404


def test_a_run_being_finished_is_never_shown_under_its_private_name(tmp_path: Path) -> None:
    """Between the runner removing live.json and renaming the folder, the private folder already holds the
    result (the ground truth): it is not served until it has its final name."""
    run = write_live(tmp_path)
    (run / "live.json").unlink()
    (run / "journal.json").write_text(json.dumps({"scenario": "login-latency", "events": [], "slos": []}))
    (run / "result.json").write_text(json.dumps({"valid": True}))
    assert call(tmp_path, "/api/runs")[1]["runs"] == []
    status, body = call(tmp_path, "/api/runs/.run-abc123")
    assert status == 404 and "login-latency" not in json.dumps(body)
