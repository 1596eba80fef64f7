"""Agents that only tests use (run out of process like any ``module:Class`` agent)."""

from __future__ import annotations

from typing import Any


class RollbackShipping:
    """Turns off shipping's publisher confirms (its last config change): checkout "recovers" while every
    shipment the full queue refuses is silently dropped."""

    def run(self, tools: Any, incident: Any) -> None:
        tools.call("describe", service="shipping")
        tools.call("rollback_config", service="shipping")
        tools.call("submit", detected=True, root_causes=["shipping"], category="misconfiguration",
                   summary="rolled back shipping")
        tools.call("mitigation_done")
