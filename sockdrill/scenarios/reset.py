"""Putting a running shop back to a known state between runs, then applying a variant's set-up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sockdrill.cluster.client import RuntimeClient
from sockdrill.errors import ScenarioError, SockdrillError
from sockdrill.scenarios.schema import Setup

MIN_USERS = 2000


def _wait_ready(client: RuntimeClient, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/v1/status")["ready"]:
            return
        time.sleep(0.2)
    raise ScenarioError(f"the shop was not ready again within {timeout:.0f}s after the reset")


def reset_shop(client: RuntimeClient, setup: Setup) -> dict[str, Any]:
    done: dict[str, Any] = {}
    client.post("/v1/chaos/clear", {})
    client.post("/v1/toxics/reset", {})
    status = client.get("/v1/status")
    for dep in status["deployments"]:
        name = dep["name"]
        if dep["external"]:
            continue
        if dep["kind"] == "service":
            want = setup.replicas.get(name, 1)
            if dep["replicas"] != want:
                client.post("/v1/scale", {"deployment": name, "replicas": want})
                done.setdefault("scaled", {})[name] = want
            # Always: a run's config history (revisions) must not show in the next run.
            client.post("/v1/config/reset", {"deployment": name})
            if dep["knobs"]:
                done.setdefault("knobs_reset", []).append(name)
        if dep["limits"] != dep.get("default_limits", dep["limits"]) and name not in setup.limits:
            try:
                client.post("/v1/limits", {"deployment": name, "clear": True})
            except SockdrillError:
                pass
            done.setdefault("limits_cleared", []).append(name)
    _wait_ready(client)
    for name, lim in setup.limits.items():
        client.post("/v1/limits", {"deployment": name, "cpu": lim.get("cpu"), "memory": lim.get("memory"),
                                   "clear": True})
    for name, knobs in setup.knobs.items():
        client.post("/v1/config", {"deployment": name, "knobs": knobs})
    from sockdrill.shop.user import ensure_generated_users, generated_user_count

    url = client.record["addresses"]["user-db"]
    # Simulated shoppers log in as generated users: every run needs at least the base population.
    added = asyncio.run(ensure_generated_users(url, max(setup.users, MIN_USERS)))
    if added:
        done["users_added"] = added
    done["users"] = asyncio.run(generated_user_count(url))
    return done
