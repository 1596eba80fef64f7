"""Stress inside the pod's cgroup raises the pod's own CPU/memory; a CPU limit throttles it; all revert."""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest

from tests.chaos.conftest import active, inject, wait_for
from tests.conftest import Shop


def _pod(shop: Shop, name: str = "payment") -> dict[str, Any]:
    return shop.describe(name)["pods"][0]


def _cpu_rate(shop: Shop, seconds: float = 1.0) -> float:
    a = _pod(shop)["cpu_seconds"]
    t0 = time.monotonic()
    time.sleep(seconds)
    return (_pod(shop)["cpu_seconds"] - a) / (time.monotonic() - t0)


@pytest.fixture
def cgroups(shop: Shop) -> None:
    if shop.status()["cgroups"]["version"] == 0:
        pytest.skip("no writable cgroups: " + shop.status()["cgroups"]["reason"])


def _workers(shop: Shop) -> list[psutil.Process]:
    """This shop's fault workers: its supervisor's descendants only (another shop on the machine, a
    benchmark or a second test run, has workers of its own)."""
    pid = _pod(shop)["pid"]
    supervisor = psutil.Process(int(shop.client.record["supervisor"]["pid"]))
    out = []
    for p in supervisor.children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if "sockdrill.chaos.worker" in cmd and p.pid != pid:
            out.append(p)
    return out


def test_cpu_stress_counts_in_the_pod(shop: Shop, chaos: Any, cgroups: None) -> None:
    idle = _cpu_rate(shop, 0.5)
    inject(chaos, "stress.cpu", "payment", duration=2.5, params={"workers": 1})
    time.sleep(0.3)
    (worker,) = _workers(shop)
    w0, p0 = sum(worker.cpu_times()[:2]), _pod(shop)["cpu_seconds"]
    busy = _cpu_rate(shop, 1.0)
    w1, p1 = sum(worker.cpu_times()[:2]), _pod(shop)["cpu_seconds"]
    # The machine may be shared: ask for a clear rise, and that the worker's CPU is the pod's CPU.
    assert busy > idle + 0.15, (idle, busy)
    assert p1 - p0 >= 0.8 * (w1 - w0) > 0, (p1 - p0, w1 - w0)
    wait_for(lambda: not active(chaos), timeout=5)
    wait_for(lambda: not _workers(shop), timeout=5)


def test_memory_stress_counts_in_the_pod(shop: Shop, chaos: Any, cgroups: None) -> None:
    before = _pod(shop)["memory_working_set_bytes"]
    inject(chaos, "stress.memory", "payment", duration=3, params={"size": "96MB"})
    grown = wait_for(lambda: (m := _pod(shop)["memory_working_set_bytes"]) > before + 80e6 and m, timeout=5)
    assert grown
    wait_for(lambda: not active(chaos), timeout=6)
    wait_for(lambda: _pod(shop)["memory_working_set_bytes"] < before + 30e6, timeout=5)


def test_cpu_limit_throttles_then_is_lifted(shop: Shop, chaos: Any, cgroups: None) -> None:
    inject(chaos, "resource.limit", "payment", duration=4, params={"cpu": "100m"})
    inject(chaos, "stress.cpu", "payment", duration=4, params={"workers": 1})
    assert shop.describe("payment")["limits"]["cpu_millicores"] == 100
    time.sleep(0.5)
    t0 = _pod(shop)["throttling"].get("nr_throttled", 0)
    cores = _cpu_rate(shop, 2.0)
    assert cores <= 0.12, cores
    assert _pod(shop)["throttling"].get("nr_throttled", 0) > t0
    wait_for(lambda: not active(chaos), timeout=6)
    assert shop.describe("payment")["limits"]["cpu_millicores"] == 1000     # the manifest's limit again


def test_limit_restores_the_pre_fault_value(shop: Shop, chaos: Any, cgroups: None) -> None:
    shop.post("/v1/limits", {"deployment": "payment", "memory": "512Mi"})
    try:
        fault = inject(chaos, "resource.limit", "payment", duration=30, params={"memory": "256Mi", "cpu": "500m"})
        assert shop.describe("payment")["limits"] == {"cpu_millicores": 500, "memory_bytes": 256 << 20}
        chaos.post("/v1/chaos/clear", {"id": fault["id"]})
        assert shop.describe("payment")["limits"] == {"cpu_millicores": 1000, "memory_bytes": 512 << 20}
    finally:
        shop.post("/v1/limits", {"deployment": "payment", "clear": True})
