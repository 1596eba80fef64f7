"""Agents that only tests use (run out of process like any ``module:Class`` agent)."""

from __future__ import annotations

from typing import Any


class TurnOffConfirms:
    """Turns off shipping's publisher confirms: checkout "recovers" while every shipment the full queue refuses
    is silently dropped. (The set-up's confirms are how shipping is deployed, not a change: rollback_config finds
    nothing to undo.)"""

    def run(self, tools: Any, incident: Any) -> None:
        tools.call("describe", service="shipping")
        tools.call("rollback_config", service="shipping")  # refused: nothing to undo
        tools.call("set_config", service="shipping", knobs={"require_publish": False})
        tools.call("submit", detected=True, root_causes=["shipping"], category="misconfiguration",
                   summary="turned off shipping's publisher confirms")
        tools.call("mitigation_done")
