"""Pod faults: kill raises the restart count, failure takes the pod away, pause freezes it (/proc shows
state T) — each recovers."""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import active, get_ms, inject, wait_for
from tests.conftest import Shop


def _pod(shop: Shop, name: str = "payment") -> dict[str, Any]:
    return shop.describe(name)["pods"][0]


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_kill_restarts_under_the_policy(shop: Shop, chaos: Any) -> None:
    before = _pod(shop)
    fault = inject(chaos, "pod.kill", "payment")
    assert fault["status"] == "done" and active(chaos) == []
    after = wait_for(lambda: (p := _pod(shop))["ready"] and p["pid"] != before["pid"] and p)
    assert after["restarts"] == before["restarts"] + 1


def test_pause_freezes_then_resumes(shop: Shop, chaos: Any) -> None:
    before = _pod(shop)
    url = shop.addresses["payment"] + "/health"
    inject(chaos, "pod.pause", "payment", duration=2.0)
    # SIGSTOP is delivered at once, but a busy machine may not have descheduled the process yet.
    wait_for(lambda: _proc_state(before["pid"]) == "T", timeout=1.0, interval=0.02)
    with pytest.raises((TimeoutError, urllib.error.URLError, OSError)):
        get_ms(url, timeout=0.5)
    wait_for(lambda: _proc_state(before["pid"]) != "T", timeout=5)
    wait_for(lambda: _pod(shop)["ready"], timeout=10)
    assert get_ms(url) < 1000
    assert _pod(shop)["pid"] == before["pid"]  # the same process, resumed


def test_failure_takes_the_pod_away_for_the_duration(shop: Shop, chaos: Any) -> None:
    before = _pod(shop)
    url = shop.addresses["payment"] + "/health"
    inject(chaos, "pod.failure", "payment", duration=2.0)
    pod = _pod(shop)
    assert not pod["ready"] and pod["pid"] is None
    with pytest.raises((urllib.error.URLError, OSError)):
        get_ms(url, timeout=1)
    after = wait_for(lambda: (p := _pod(shop))["ready"] and p, timeout=15)
    assert after["pid"] != before["pid"] and after["restarts"] == before["restarts"] + 1
    assert get_ms(url) < 1000


def test_a_restart_brings_back_a_pod_a_failure_took_down(shop: Shop, chaos: Any) -> None:
    """What an on-call engineer does about a pod that is down: restart it. The restarted pod runs, and the
    failure's end leaves it alone."""
    url = shop.addresses["payment"] + "/health"
    inject(chaos, "pod.failure", "payment", duration=30.0)
    assert not _pod(shop)["ready"]
    done = shop.post("/v1/restart", {"deployment": "payment"})
    assert len(done["restarted"]) == 1, done
    after = wait_for(lambda: (p := _pod(shop))["ready"] and p, timeout=15)
    assert get_ms(url) < 1000
    chaos.post("/v1/chaos/clear", {})  # the failure ends: the new pod is not relaunched under it
    time.sleep(1)
    assert _pod(shop)["pid"] == after["pid"] and _pod(shop)["ready"]
