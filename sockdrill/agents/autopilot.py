"""The autopilot: automated remediation as SRE teams run it (StackStorm, Rundeck), scored like any agent.

It does nothing until a page fires. Then, on the paged journey's path (the service that owns the journey and
everything it calls), it runs three checks with the agent tools:
- a **recent change**: a service's configuration changed shortly before the page (``describe``: revision and
  time of the last change) → roll it back (``rollback_config``);
- **starved**: a component throttled by its CPU limit (``container_cpu_cfs_throttled_seconds_total``) →
  give it its default limits back (``set_limits clear``);
- **down**: a component with a pod that is not ready (``pods``) → replace its pods (``restart``).
It acts only when exactly one check names exactly one component (its checks agree); otherwise it declines and
says so in its report, as an escalation to a human. Guardrails: the three actions above only, one action per
incident, on one component; ``SOCKDRILL_AUTOPILOT_MODE`` ``dry-run`` (plan, never act) or ``approve`` (propose
and wait for a human: here, never act) besides ``auto``. After acting it watches the SLOs; if more of them fail
than before, it undoes its own change where it can (limits back as they were). Everything it does goes through
the tools, so the run's audit has all of it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sockdrill.agents.base import Incident, failing_slos, settle

# Which service owns a journey (an SRE team's service catalogue knows this).
OWNERS = {"login": "user", "profile-edit": "user", "checkout": "orders", "order-status": "orders",
          "checkout-page": "orders", "cart": "carts", "return-visit": "carts", "browse": "catalogue",
          "classic": "orders"}
ALLOWED = ("rollback_config", "set_limits", "restart")
THROTTLED_S_PER_S = 0.2  # a component throttled this long each second is starved of CPU
PAGE_WAIT_S = 20.0


def _ok(res: dict[str, Any]) -> Any:
    return res.get("result") if res.get("ok") else None


class Autopilot:
    def __init__(self, mode: str | None = None) -> None:
        self.mode = (mode or os.environ.get("SOCKDRILL_AUTOPILOT_MODE", "auto")).strip().lower()
        if self.mode not in ("auto", "dry-run", "approve"):
            self.mode = "dry-run"  # an unknown mode must never mean "act"
        self.verify_s = 20.0

    # ---- the run -------------------------------------------------------------------------------------
    def run(self, tools: Any, incident: Incident) -> None:
        page = self._wait_for_page(tools, incident)
        if page is None:
            tools.call("submit", detected=False, root_causes=[], summary="autopilot: no page, nothing to do")
            return
        journey = str(page.get("journey", ""))
        path = self._path(tools, journey)
        findings = self._checks(tools, path)
        plan = self._plan(findings)
        if plan is None:
            why = ("no check found a cause" if not findings else
                   "checks disagree: " + "; ".join(f"{f['check']} on {f['component']}" for f in findings))
            tools.call("submit", detected=True, root_causes=[], summary=f"autopilot declined ({why}); escalated "
                       f"to the on-call human for the {journey} page")
            return
        finding, (tool, args) = plan
        summary = f"autopilot: {finding['check']} on {finding['component']} ({finding['evidence']})"
        if self.mode != "auto":
            verb = "would" if self.mode == "dry-run" else "asks approval to"
            tools.call("submit", detected=True, root_causes=[finding["component"]], category=finding["category"],
                       summary=f"{summary}; {verb} run {tool}({args}); did nothing")
            return
        tools.call("submit", detected=True, root_causes=[finding["component"]], category=finding["category"],
                   summary=f"{summary}; runs {tool}")
        before = failing_slos(tools)
        undo = self._undo_for(tools, tool, args)
        res = tools.call(tool, **args)
        if res.get("ok"):
            after = settle(tools, incident, self.verify_s)
            if undo is not None and before is not None and after is not None and after > before:
                tools.call(undo[0], **undo[1])  # it made things worse: put back what it changed
        tools.call("mitigation_done")

    # ---- the steps ---------------------------------------------------------------------------------
    def _wait_for_page(self, tools: Any, incident: Incident) -> dict[str, Any] | None:
        deadline = time.time() + min(PAGE_WAIT_S, max(0.0, incident.time_left() - 5))
        while True:
            pages = [a for a in (_ok(tools.call("alerts")) or []) if a.get("severity") == "page"]
            if pages:
                return dict(pages[0])
            if time.time() >= deadline:
                return None
            time.sleep(1.0)

    def _path(self, tools: Any, journey: str) -> list[str]:
        """The journey's owner and everything it calls, in call order (breadth first)."""
        topo = _ok(tools.call("topology")) or {}
        calls: dict[str, list[str]] = {}
        for e in topo.get("edges", []):
            calls.setdefault(e["source"], []).append(e["destination"])
        owner = OWNERS.get(journey)
        if owner is None:
            return []
        seen, queue = [owner], [owner]
        while queue:
            for nxt in calls.get(queue.pop(0), []):
                if nxt not in seen:
                    seen.append(nxt)
                    queue.append(nxt)
        return seen

    def _checks(self, tools: Any, path: list[str]) -> list[dict[str, Any]]:
        findings: list[dict[str, Any]] = []
        slos = (_ok(tools.call("slo_status")) or {}).get("slos") or [{}]
        window = float(slos[0].get("window_s") or 10.0)
        now = time.time()
        not_ready = {p["deployment"] for p in (_ok(tools.call("pods")) or []) if not p.get("ready", True)}
        for comp in path:
            d = _ok(tools.call("describe", service=comp)) or {}
            changed = d.get("config_changed_at")
            if d.get("kind") == "service" and d.get("config_revision", 0) and isinstance(changed, int | float) \
                    and now - changed <= 3 * window:
                findings.append({"check": "recent change", "component": comp, "category": "misconfiguration",
                                 "evidence": f"config revision {d['config_revision']}, {now - changed:.0f}s ago"})
            throttled = _ok(tools.call("metrics", name="container_cpu_cfs_throttled_seconds_total", fn="rate",
                                       labels={"service": comp}, op="sum", since_s=3 * window)) or {}
            last = max((s.get("last") or 0.0 for s in throttled.get("series", [])), default=0.0)
            if last >= THROTTLED_S_PER_S:
                findings.append({"check": "starved", "component": comp, "category": "resource_saturation",
                                 "evidence": f"throttled {last:.2f}s per second"})
            if comp in not_ready:
                findings.append({"check": "down", "component": comp, "category": "process_crash",
                                 "evidence": "a pod is not ready"})
        return findings

    @staticmethod
    def _plan(findings: list[dict[str, Any]]) -> tuple[dict[str, Any], tuple[str, dict[str, Any]]] | None:
        if len(findings) != 1:
            return None
        f = findings[0]
        action = {"recent change": ("rollback_config", {"service": f["component"]}),
                  "starved": ("set_limits", {"service": f["component"], "clear": True}),
                  "down": ("restart", {"service": f["component"]})}[f["check"]]
        return (f, action) if action[0] in ALLOWED else None

    def _undo_for(self, tools: Any, tool: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if tool != "set_limits":
            return None  # a rollback or a restart cannot be taken back
        limits = (_ok(tools.call("describe", service=args["service"])) or {}).get("limits") or {}
        cpu = limits.get("cpu_millicores")
        return ("set_limits", {"service": args["service"], "cpu": f"{cpu}m"}) if cpu else None

