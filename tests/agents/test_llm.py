"""The LLM adapter against a scripted local endpoint that speaks the OpenAI chat-completions protocol."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sockdrill.agents.base import Incident
from sockdrill.agents.llm import LlmAgent, LlmError
from sockdrill.agents.tools import Tools


def _tool_call(i: int, name: str, args: dict[str, Any] | str) -> dict[str, Any]:
    text = args if isinstance(args, str) else json.dumps(args)
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": text}}


SCRIPT = [
    {"tool_calls": [_tool_call(1, "topology", {}), _tool_call(2, "describe", "{not json")]},
    {"tool_calls": [_tool_call(3, "submit", {"detected": True, "root_causes": ["user"],
                                              "category": "network_latency", "summary": "slow edge"})]},
    {"content": "Done."},
]


class FakeModel:
    """Answers each POST /v1/chat/completions with the next scripted message and records the requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    self.send_response(404)
                    self.end_headers()
                    return
                step = SCRIPT[min(len(outer.requests) - 1, len(SCRIPT) - 1)]
                reply = {"id": "x", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "tool_calls" if "tool_calls" in step else "stop",
                                      "message": {"role": "assistant", "content": step.get("content"),
                                                  **({"tool_calls": step["tool_calls"]}
                                                     if "tool_calls" in step else {})}}],
                         "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def model() -> Iterator[FakeModel]:
    fake = FakeModel()
    yield fake
    fake.server.shutdown()


def _incident() -> Incident:
    now = time.time()
    return Incident(mode="investigation", text="logins are slow", started=now, deadline=now + 60, budget_steps=50)


def test_tool_calling_loop(model: FakeModel, tools: Tools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", model.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    agent = LlmAgent(model="scripted-1")
    agent.run(tools, _incident())
    assert len(model.requests) == 3
    first = model.requests[0]
    assert first["model"] == "scripted-1" and "logins are slow" in first["messages"][1]["content"]
    assert {t["function"]["name"] for t in first["tools"]} >= {"topology", "metrics", "submit"}
    assert model.headers[0]["Authorization"] == "Bearer sk-test"
    second = model.requests[1]["messages"]
    results = {m["tool_call_id"]: json.loads(m["content"]) for m in second if m["role"] == "tool"}
    assert results["call_1"]["ok"] and results["call_1"]["result"]["deployments"]
    assert results["call_2"] == {"ok": False, "error": results["call_2"]["error"]}
    assert "bad arguments" in results["call_2"]["error"]
    assert tools.submission is not None and tools.submission.root_causes == ["user"]
    assert (tools.tokens_in, tools.tokens_out) == (300, 30)
    assert [r["tool"] for r in tools.audit_records] == ["topology", "submit"]


def test_budget_and_endpoint_errors(model: FakeModel, tools: Tools) -> None:
    agent = LlmAgent(model="m", base_url=model.url, api_key="", max_steps=1)
    agent.run(tools, _incident())
    assert len(model.requests) == 1 and "Authorization" not in model.headers[0]
    with pytest.raises(LlmError, match="answered 404"):
        LlmAgent(base_url=model.url.replace("/v1", "/nope")).run(tools, _incident())
