"""The agent contract: ``class MyAgent: def run(self, tools, incident) -> None``.

An agent gets the tools and the incident (in investigation mode the user-impact text; in detection
mode nothing but the fact that it is on call), acts through the tools until it is done or its budget
runs out, and ends with ``tools.submit(...)`` (and ``tools.mitigation_done()`` when it believes it fixed
things). Agents are named ``noop``, ``restart-all``, ``oracle``, ``baseline``, ``llm`` or ``module:Class``.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

from sockdrill.errors import SockdrillError, did_you_mean


@dataclass
class Incident:
    mode: str  # "detection" | "investigation"
    text: str  # what users report (empty in detection mode)
    started: float
    deadline: float  # unix time by which the agent must be done
    budget_steps: int

    def time_left(self) -> float:
        return max(0.0, self.deadline - time.time())


class Agent(Protocol):
    def run(self, tools: Any, incident: Incident) -> None: ...


BUILTIN = {
    "noop": "sockdrill.agents.builtin:Noop",
    "restart-all": "sockdrill.agents.builtin:RestartAll",
    "oracle": "sockdrill.agents.builtin:Oracle",
    "baseline": "sockdrill.agents.baseline:Baseline",
    # The baseline's loop with a statistical diagnosis (rca.py): measured beside it before either is the default.
    "rca": "sockdrill.agents.statistical:StatisticalBaseline",
    "llm": "sockdrill.agents.llm:LlmAgent",
    # Automated remediation with guardrails (acts on a page, only when its checks agree): autopilot.py.
    "autopilot": "sockdrill.agents.autopilot:Autopilot",
    # Gaming strategies (``gaming.py``): each must score ~0; the tests and ``bench agents`` prove it.
    "gaming-sleeper": "sockdrill.agents.gaming:Sleeper",
    "gaming-shotgun": "sockdrill.agents.gaming:Shotgun",
    "gaming-majority": "sockdrill.agents.gaming:MajorityGuesser",
    "gaming-replayer": "sockdrill.agents.gaming:RunbookReplayer",
    "gaming-peeker": "sockdrill.agents.gaming:Peeker",
}


class AgentError(SockdrillError):
    pass


def load_agent(name: str, **options: Any) -> Any:
    ref = BUILTIN.get(name, name)
    if ":" not in ref:
        raise AgentError(f"unknown agent '{name}'" + did_you_mean(name, BUILTIN) + " (or give module:Class)")
    module_name, _, cls_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentError(f"cannot import agent module '{module_name}': {exc}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise AgentError(f"module '{module_name}' has no class '{cls_name}'")
    try:
        agent = cls(**options) if options else cls()
    except TypeError as exc:
        raise AgentError(f"cannot create agent {ref}: {exc}") from None
    if not callable(getattr(agent, "run", None)):
        raise AgentError(f"agent {ref} has no run(tools, incident) method")
    return agent


def failing_slos(tools: Any) -> int | None:
    """How many SLOs ``slo_status`` says are failing now (None when there is no SLO source)."""
    res = tools.call("slo_status")
    status = res.get("result") if res.get("ok") else None
    return None if status is None else sum(1 for s in status.get("slos", []) if not s.get("holds", True))


def settle(tools: Any, incident: Incident, verify_s: float) -> int | None:
    """Wait until the SLOs hold (or ``verify_s`` passes, or the incident's time is nearly up); the number
    still failing."""
    deadline = time.time() + min(verify_s, max(0.0, incident.time_left() - 3))
    failing = failing_slos(tools)
    while failing and time.time() < deadline:
        time.sleep(1.0)
        failing = failing_slos(tools)
    return failing
