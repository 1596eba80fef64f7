"""``--agent llm``: any OpenAI-compatible chat endpoint as an agent, through the same tools.

A plain tool-calling loop: the model gets the incident and every tool (``ToolSpec.openai()``), each
tool call it makes runs through ``Tools.call`` (audited, budgeted) and its JSON result goes back as a
``tool`` message. The loop ends when the model answers without tool calls after submitting, or at
the step, token or time budget. Token usage from each response is reported with
``Tools.count_tokens`` so it lands in the run's efficiency score.

Configuration: ``OPENAI_BASE_URL`` (default https://api.openai.com/v1), ``OPENAI_API_KEY``, and the
model (``--model`` or ``OPENAI_MODEL``). Only the standard library talks HTTP.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from sockdrill.agents.base import AgentError, Incident

SYSTEM = """You are the on-call site reliability engineer for an online sock shop (microservices, \
databases, a queue, a payment gateway) running under real customer traffic. Use the tools to look at \
SLO status, alerts, topology, metrics, edges, traces, logs and runbooks. Find the component at fault \
and the kind of cause, then call submit (detected, root_causes best first, category, summary) as soon \
as you are confident. Then fix it with the action tools (each change is audited; prefer the smallest \
safe change a runbook suggests), check that the SLOs recover, and call mitigation_done. If nothing is \
wrong, submit detected=false. Keep tool calls few and results small (use limit, by and since_s)."""

MAX_RESULT_CHARS = 16000  # a whole topology (about 6 KB of JSON) must fit: a cut one is unreadable JSON


class LlmError(AgentError):
    pass


class LlmAgent:
    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 max_steps: int = 40, max_tokens: int = 300_000, temperature: float = 0.0,
                 timeout_s: float = 120.0) -> None:
        self.model = model or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.transcript: list[dict[str, Any]] = []

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"model": self.model, "messages": messages, "tools": tools, "tool_choice": "auto",
                "temperature": self.temperature}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise LlmError(f"the model endpoint answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise LlmError(f"the model endpoint {self.base_url} failed: {exc}") from None

    def run(self, tools: Any, incident: Incident) -> None:
        specs = [{"type": "function", "function": {"name": s["name"], "description": s["description"],
                                                   "parameters": s["parameters"]}} for s in tools.specs()]
        task = (f"Users report: {incident.text}" if incident.text else
                "You are on call; nobody has reported anything. Check whether users are being hurt.")
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{task}\nYou have {incident.time_left():.0f} s and "
                                        f"{incident.budget_steps} tool calls."}]
        used = 0
        nudged = False
        for _ in range(self.max_steps):
            if incident.time_left() < 2 or used >= self.max_tokens:
                break
            reply = self.chat(messages, specs)
            usage = reply.get("usage") or {}
            prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            tools.count_tokens(prompt, completion)
            used += prompt + completion
            try:
                msg = reply["choices"][0]["message"]
            except (KeyError, IndexError, TypeError):
                raise LlmError(f"the model endpoint answered without a message: {str(reply)[:200]}") from None
            calls = msg.get("tool_calls") or []
            messages.append({"role": "assistant", "content": msg.get("content") or "",
                             **({"tool_calls": calls} if calls else {})})
            self.transcript.append(msg)
            if not calls:
                if tools.submission is not None or nudged:
                    break
                nudged = True  # one reminder: a run without a submission scores nothing
                messages.append({"role": "user", "content": "Call submit with your conclusion (detected, "
                                                            "root_causes, category, summary)."})
                continue
            for call in calls:
                fn = call.get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                    if not isinstance(args, dict):
                        raise ValueError("arguments must be a JSON object")
                    out = tools.call(str(fn.get("name", "")), **args)
                except ValueError as exc:
                    out = {"ok": False, "error": f"bad arguments: {exc}"}
                text = json.dumps(out, default=str)
                if len(text) > MAX_RESULT_CHARS:
                    text = text[:MAX_RESULT_CHARS] + "… (cut: ask for less with limit/offset)"
                messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": text})
            if tools.submission is not None and tools.mitigation_done_at is not None:
                break
