"""The autopilot's decisions, against scripted tool answers (its live scores come from `sockdrill bench`):
it acts only on a page, only when exactly one check names one component, only with its allowed actions, never
in dry-run or approve mode, and undoes its own change when the SLOs get worse."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sockdrill.agents.autopilot import Autopilot
from sockdrill.agents.base import Incident

TOPOLOGY = {"deployments": [], "edges": [{"source": "front-end", "destination": "orders"},
                                         {"source": "orders", "destination": "payment"},
                                         {"source": "orders", "destination": "orders-db"},
                                         {"source": "payment", "destination": "payment-gateway"}]}


class Tools:
    """Answers like the real tools' (``{"ok", "result"}``), and records every call."""

    def __init__(self, *, page: bool = True, changed: tuple[str, ...] = (), throttled: tuple[str, ...] = (),
                 not_ready: tuple[str, ...] = (), failing: list[int] | None = None) -> None:
        self.page, self.changed, self.throttled, self.not_ready = page, changed, throttled, not_ready
        self.failing = list(failing or [1, 0])
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, name: str, /, **args: Any) -> dict[str, Any]:
        self.calls.append((name, args))
        now = time.time()
        if name == "alerts":
            return {"ok": True, "result": [{"journey": "checkout", "severity": "page"}] if self.page else []}
        if name == "topology":
            return {"ok": True, "result": TOPOLOGY}
        if name == "slo_status":
            n = self.failing.pop(0) if len(self.failing) > 1 else self.failing[0]
            return {"ok": True, "result": {"slos": [{"holds": i >= n, "window_s": 10.0} for i in range(2)]}}
        if name == "pods":
            return {"ok": True, "result": [{"deployment": d, "ready": False} for d in self.not_ready]}
        if name == "describe":
            svc = args["service"]
            return {"ok": True, "result": {"kind": "postgres" if svc.endswith("-db") else "service",
                                           "config_revision": 2 if svc in self.changed else 0,
                                           "config_changed_at": now - 5 if svc in self.changed else None,
                                           "limits": {"cpu_millicores": 35}}}
        if name == "metrics":
            svc = args["labels"]["service"]
            return {"ok": True, "result": {"series": [{"last": 0.6 if svc in self.throttled else 0.0}]}}
        return {"ok": True, "result": {"changed": True}}

    def acts(self) -> list[tuple[str, dict[str, Any]]]:
        return [(n, a) for n, a in self.calls if n in ("rollback_config", "set_limits", "restart", "scale",
                                                        "cancel_queries", "create_index")]

    def submission(self) -> dict[str, Any]:
        return next(a for n, a in self.calls if n == "submit")


def incident() -> Incident:
    return Incident(mode="investigation", text="", started=time.time(), deadline=time.time() + 30, budget_steps=60)


def test_no_page_no_action() -> None:
    tools = Tools(page=False, changed=("orders",))
    pilot = Autopilot("auto")
    pilot.run(tools, Incident(mode="detection", text="", started=time.time(), deadline=time.time() + 6,
                              budget_steps=60))
    assert tools.acts() == [] and tools.submission()["detected"] is False


def test_one_recent_change_on_the_paged_path_is_rolled_back() -> None:
    tools = Tools(changed=("orders",))
    Autopilot("auto").run(tools, incident())
    assert tools.acts() == [("rollback_config", {"service": "orders"})]
    sub = tools.submission()
    assert sub["root_causes"] == ["orders"] and sub["category"] == "misconfiguration"
    assert ("mitigation_done", {}) in tools.calls


def test_checks_that_disagree_or_find_nothing_escalate() -> None:
    for tools in (Tools(changed=("orders", "payment")), Tools(changed=("orders",), throttled=("orders-db",)),
                  Tools()):
        Autopilot("auto").run(tools, incident())
        assert tools.acts() == [] and "declined" in tools.submission()["summary"]


def test_a_change_outside_the_paged_path_is_not_its_business() -> None:
    tools = Tools(changed=("user",))  # login's owner; the page is checkout's
    Autopilot("auto").run(tools, incident())
    assert tools.acts() == []


@pytest.mark.parametrize("mode", ["dry-run", "approve", "yolo"])
def test_dry_run_approve_and_unknown_modes_never_act(mode: str) -> None:
    tools = Tools(not_ready=("payment",))
    Autopilot(mode).run(tools, incident())
    assert tools.acts() == [] and "did nothing" in tools.submission()["summary"]


def test_a_change_that_made_things_worse_is_undone() -> None:
    tools = Tools(throttled=("orders-db",), failing=[1, 1, 2])  # one SLO failing before (twice asked), two after
    pilot = Autopilot("auto")
    pilot.verify_s = 0.5
    pilot.run(tools, incident())
    assert tools.acts() == [("set_limits", {"service": "orders-db", "clear": True}),
                            ("set_limits", {"service": "orders-db", "cpu": "35m"})]
