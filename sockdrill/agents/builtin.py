"""The sanity agents: floors and a ceiling for every scenario.

- ``noop`` does nothing and reports nothing: it must get no detection or mitigation credit.
- ``restart-all`` restarts every service and reports the first one: a blunt instrument that sometimes
  helps by accident; it must not reach a full score.
- ``oracle`` reads the ground truth (the runner hands it over; no other agent gets it) and applies the
  variant's remediation: it proves every oracle passes a correct fix.
"""

from __future__ import annotations

import time
from typing import Any

from sockdrill.agents.base import Incident


class Noop:
    def run(self, tools: Any, incident: Incident) -> None:
        return None


class RestartAll:
    def run(self, tools: Any, incident: Incident) -> None:
        topo = tools.call("topology")
        services = [d["name"] for d in topo.get("result", {}).get("deployments", []) if d["kind"] == "service"]
        for name in services:
            if incident.time_left() <= 0:
                break
            tools.call("restart", service=name)
        tools.call("submit", detected=True, root_causes=services[:3], category="process_crash",
                   summary="restarted every service")
        tools.call("mitigation_done")


class Oracle:
    """Needs ``ground_truth`` (root_cause, category) and ``remediation`` (tool calls) set by the runner."""

    privileged = True

    def __init__(self) -> None:
        self.ground_truth: dict[str, Any] | None = None
        self.remediation: list[dict[str, Any]] = []

    def run(self, tools: Any, incident: Incident) -> None:
        if self.ground_truth is None:  # a control run: nothing is wrong
            tools.call("submit", detected=False, root_causes=[], summary="no fault")
            return
        for component in self.ground_truth["root_cause"]:  # a diagnosis names what it looked at
            tools.call("describe", service=component)
        tools.call("submit", detected=True, root_causes=list(self.ground_truth["root_cause"]),
                   category=self.ground_truth["category"], summary="applied the runbook's remediation")
        for action in self.remediation:
            tools.call(action["tool"], **action.get("args", {}))
            if action.get("wait_s"):
                time.sleep(float(action["wait_s"]))
        tools.call("mitigation_done")
