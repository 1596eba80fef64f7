"""The local runtime against real processes: readiness, restarts, back-off, scaling through the mesh,
datastore persistence, cgroup limits, and a clean teardown even after SIGKILL of the supervisor."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
import pytest
import redis

from sockdrill.cluster import client
from sockdrill.cluster.spec import DeploymentSpec
from sockdrill.cluster.state import read_json, state_dir
from sockdrill.errors import ClusterError
from tests.conftest import Shop, make_data_dir, wait_for


def pod_of(shop: Shop, dep: str, index: int = 0) -> dict[str, Any]:
    return shop.describe(dep)["pods"][index]


def test_up_all_ready_with_addresses(shop: Shop) -> None:
    status = shop.status()
    assert status["ready"] is True
    names = {d["name"] for d in status["deployments"]}
    assert {"front-end", "catalogue", "carts", "orders", "payment", "shipping", "queue-master", "user",
            "catalogue-db", "carts-db", "orders-db", "user-db", "session-db", "queue"} <= names
    for dep in status["deployments"]:
        assert dep["address"], dep["name"]
        for pod in dep["pods"]:
            assert pod["ready"] and pod["pid"] and psutil.pid_exists(pod["pid"]), pod


def test_second_up_says_already_up(shop: Shop) -> None:
    from sockdrill.shop.manifest import shop_deployments

    rc, already = client.up(shop_deployments(front_end_port=1), data_dir=shop.data_dir)
    assert already is True and rc.record["front_end_url"] == shop.url


def test_sigkill_pod_is_restarted(shop: Shop) -> None:
    before = pod_of(shop, "payment")
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_for(lambda: (p := pod_of(shop, "payment"))["ready"] and p["pid"] != before["pid"] and p)
    assert after["restarts"] == before["restarts"] + 1
    assert after["last_exit_code"] == -signal.SIGKILL


def _host_port(url: str) -> tuple[str, int]:
    hostport = url.split("//", 1)[1].split("/", 1)[0].split("@")[-1]
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def test_scale_to_two_both_pods_get_traffic_through_mesh(shop: Shop) -> None:
    shop.post("/v1/scale", {"deployment": "catalogue", "replicas": 2})
    try:
        wait_for(lambda: shop.describe("catalogue")["ready_replicas"] == 2)

        async def burst() -> None:
            async with aiohttp.ClientSession() as s:
                async def one() -> None:
                    async with s.get(f"{shop.url}/catalogue?size=3") as r:
                        assert r.status == 200
                        await r.read()
                for _ in range(5):
                    await asyncio.gather(*(one() for _ in range(16)))
                # New connections straight through the catalogue's own ingress edge too.
                for _ in range(8):
                    async with aiohttp.ClientSession() as fresh, \
                            fresh.get(shop.addresses["catalogue"] + "/catalogue") as r:
                        assert r.status == 200

        asyncio.run(burst())
        counts = []
        for pod in shop.describe("catalogue")["pods"]:
            text = _get_text(f"http://127.0.0.1:{pod['port']}/metrics", shop.telemetry)
            counts.append(_sum_metric(text, "http_request_duration_seconds_count", 'path="/catalogue"'))
        assert len(counts) == 2 and all(c > 0 for c in counts), counts
    finally:
        shop.post("/v1/scale", {"deployment": "catalogue", "replicas": 1})
    assert shop.describe("catalogue")["replicas"] == 1


def _get_text(url: str, headers: dict[str, str] | None = None) -> str:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
        return resp.read().decode()


def _sum_metric(text: str, name: str, must_contain: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and must_contain in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_restarted_datastores_keep_their_data(shop: Shop) -> None:
    marker = f"m{int(time.time() * 1000)}"
    pg_stores = ["catalogue-db", "carts-db", "orders-db", "user-db"]
    redis_stores = ["session-db", "queue"]

    async def pg_write(url: str) -> None:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE IF NOT EXISTS persist_check (v text)")
        await conn.execute("INSERT INTO persist_check VALUES ($1)", marker)
        await conn.close()

    async def pg_read(url: str) -> list[str]:
        conn = await asyncpg.connect(url)
        rows = await conn.fetch("SELECT v FROM persist_check")
        # A copy of the template of 1 MB WAL segments (stores.PG_TEMPLATE_LAYOUT: less to copy per new store)
        assert await conn.fetchval("SHOW wal_segment_size") == "1MB"
        await conn.close()
        return [r["v"] for r in rows]

    for name in pg_stores:
        asyncio.run(pg_write(shop.addresses[name]))
    for name in redis_stores:
        redis.Redis.from_url(shop.addresses[name]).set("persist_check", marker)
    for name in pg_stores + redis_stores:
        old_pid = pod_of(shop, name)["pid"]
        shop.post("/v1/restart", {"deployment": name})
        wait_for(lambda n=name, o=old_pid: (p := pod_of(shop, n))["ready"] and p["pid"] != o)
    for name in pg_stores:
        assert marker in asyncio.run(pg_read(shop.addresses[name])), name
    for name in redis_stores:
        assert redis.Redis.from_url(shop.addresses[name]).get("persist_check") == marker.encode(), name
    wait_for(lambda: shop.status()["ready"], timeout=60)


def test_cpu_limit_holds_a_busy_pod(shop: Shop) -> None:
    if shop.status()["cgroups"]["version"] == 0:
        pytest.skip("no writable cgroups on this host: " + shop.status()["cgroups"]["reason"])
    shop.post("/v1/limits", {"deployment": "catalogue", "cpu": "100m"})
    try:
        url = shop.addresses["catalogue"] + "/catalogue?size=50"

        async def hammer(seconds: float) -> int:
            done = 0
            stop = time.monotonic() + seconds
            async with aiohttp.ClientSession() as s:
                async def worker() -> None:
                    nonlocal done
                    while time.monotonic() < stop:
                        try:
                            async with s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                                await r.read()
                                done += 1
                        except (aiohttp.ClientError, TimeoutError):
                            pass
                await asyncio.gather(*(worker() for _ in range(16)))
            return done

        async def measure() -> tuple[float, int, dict[str, float]]:
            task = asyncio.ensure_future(hammer(5.0))
            await asyncio.sleep(1.0)  # let the load build up
            p0 = pod_of(shop, "catalogue")
            t0 = time.monotonic()
            await asyncio.sleep(3.0)
            p1 = pod_of(shop, "catalogue")
            t1 = time.monotonic()
            done = await task
            return (p1["cpu_seconds"] - p0["cpu_seconds"]) / (t1 - t0), done, p1["throttling"]

        cores, done, throttling = asyncio.run(measure())
        assert done > 0
        assert cores <= 0.12, f"catalogue used {cores:.3f} cores under a 100m limit"
        assert throttling.get("nr_throttled", 0) > 0, throttling
        assert shop.describe("catalogue")["limits"]["cpu_millicores"] == 100
    finally:
        shop.post("/v1/limits", {"deployment": "catalogue", "clear": True})
    assert shop.describe("catalogue")["limits"]["cpu_millicores"] == 1000  # clear: back to the manifest's


def test_mesh_delay_toxic_adds_the_delay(shop: Shop) -> None:
    url = shop.addresses["payment"] + "/health"

    async def p50(n: int = 15) -> float:
        times = []
        async with aiohttp.ClientSession() as s:
            for _ in range(n):
                t0 = time.perf_counter()
                async with s.get(url) as r:
                    await r.read()
                times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]

    base = asyncio.run(p50())
    added = shop.post("/v1/toxics", {"source": "host", "destination": "payment", "kind": "delay",
                                     "latency_ms": 200})
    try:
        slow = asyncio.run(p50())
    finally:
        shop.post("/v1/toxics/remove", {"source": "host", "destination": "payment", "id": added["id"]})
    after = asyncio.run(p50())
    assert 0.19 <= slow - base <= 0.35, (base, slow)
    assert after < base + 0.05, (base, after)


def test_unknown_service_and_bad_values_are_clear_errors(shop: Shop) -> None:
    with pytest.raises(ClusterError, match="did you mean 'catalogue'"):
        shop.post("/v1/scale", {"deployment": "catalog", "replicas": 2})
    with pytest.raises(ClusterError, match="replicas"):
        shop.post("/v1/scale", {"deployment": "catalogue", "replicas": "two"})
    with pytest.raises(ClusterError, match="datastore"):
        shop.post("/v1/scale", {"deployment": "user-db", "replicas": 2})
    with pytest.raises(ClusterError, match="CPU quantity"):
        shop.post("/v1/limits", {"deployment": "catalogue", "cpu": "lots"})
    with pytest.raises(ClusterError, match="'connection' or 'request'"):
        shop.post("/v1/balancing", {"deployment": "catalogue", "policy": "random"})
    with pytest.raises(ClusterError, match="not a service"):
        shop.post("/v1/balancing", {"deployment": "user-db", "policy": "request"})


def test_per_request_balancing_spreads_one_client_connection_over_both_pods(shop: Shop) -> None:
    """Two catalogue pods balanced per request: one keep-alive connection's requests reach both."""
    shop.post("/v1/scale", {"deployment": "catalogue", "replicas": 2})
    shop.post("/v1/balancing", {"deployment": "catalogue", "policy": "request"})
    try:
        wait_for(lambda: shop.describe("catalogue")["ready_replicas"] == 2)
        before = _per_pod(shop)

        async def one_connection() -> None:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
                for _ in range(8):
                    async with s.get(shop.addresses["catalogue"] + "/catalogue?size=2") as r:
                        assert r.status == 200
                        await r.read()

        asyncio.run(one_connection())
        after = _per_pod(shop)
        assert sorted(after) == sorted(before) and all(after[p] - before[p] == 4 for p in after), (before, after)
    finally:
        shop.post("/v1/balancing", {"deployment": "catalogue", "policy": "connection"})
        shop.post("/v1/scale", {"deployment": "catalogue", "replicas": 1})


def _per_pod(shop: Shop) -> dict[str, float]:
    out = {}
    for pod in shop.describe("catalogue")["pods"]:
        text = _get_text(f"http://127.0.0.1:{pod['port']}/metrics", shop.telemetry)
        out[pod["name"]] = _sum_metric(text, "http_request_duration_seconds_count", 'path="/catalogue"')
    return out


# ---- a small runtime of its own for crash loops and teardown ---------------------------------------
def _mini_specs(extra: list[DeploymentSpec] | None = None) -> list[DeploymentSpec]:
    return [
        DeploymentSpec(name="mini-db", kind="postgres"),
        DeploymentSpec(name="mini-cache", kind="redis"),
        DeploymentSpec(name="payment", kind="service", module="payment"),
        *(extra or []),
    ]


def test_crash_loop_backs_off() -> None:
    data_dir = make_data_dir("sockdrill-crash-")
    specs = [DeploymentSpec(name="crasher", kind="service", module="no-such-service")]
    try:
        with pytest.raises(ClusterError):
            client.up(specs, data_dir=data_dir, timeout=0.5)
        # up() tears down on failure; start again and watch the back-off without waiting for readiness.
        import subprocess
        import sys

        from sockdrill.cluster.state import write_json

        write_json(state_dir(data_dir) / "config.json", {
            "deployments": [s.model_dump() for s in specs], "seed": 1, "cache_dir": str(data_dir / "cache"),
            "restart_policy": {"base_s": 0.2, "cap_s": 5.0}})
        proc = subprocess.Popen([sys.executable, "-m", "sockdrill.cluster.supervisor", str(data_dir)],
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rc = wait_for(lambda: client.RuntimeClient.find(data_dir))
            def crasher() -> dict[str, Any]:
                pods = rc.get("/v1/describe/crasher")["pods"]  # empty until the runtime has started
                return pods[0] if pods else {"restarts": 0}

            pod = wait_for(lambda: (p := crasher())["restarts"] >= 4 and p, timeout=30)
            assert pod["status"] == "CrashLoopBackOff"
            assert not pod["ready"]
            # The waits grow: the 4th restart came at least 0.2+0.4+0.8 s after the first exit.
            later = wait_for(lambda: (p := crasher()).get("restart_in_s") and p,
                             timeout=20, interval=0.05)
            assert later["restart_in_s"] > 0
        finally:
            client.down(data_dir)
            proc.wait(timeout=10)
    finally:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_down_after_sigkill_of_supervisor_leaves_nothing() -> None:
    data_dir = make_data_dir("sockdrill-down-")
    try:
        rc, _ = client.up(_mini_specs(), data_dir=data_dir, timeout=60)
        pods = read_json(state_dir(data_dir) / "pods.json")
        record = rc.record
        assert pods and len(pods) == 3
        pids = [int(p["pid"]) for p in pods.values()]
        cgroup_dirs = [Path(c) for p in pods.values() for c in p["cgroups"]]
        status = rc.get("/v1/status")
        ports = [pod["port"] for d in status["deployments"] for pod in d["pods"]]
        ports += [int(a.rsplit(":", 1)[1].split("/")[0]) for a in record["addresses"].values()]
        all_pids = set(pids)
        for pid in pids:
            all_pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        os.kill(record["supervisor"]["pid"], signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(record["supervisor"]["pid"])
                 or psutil.Process(record["supervisor"]["pid"]).status() == psutil.STATUS_ZOMBIE)
        assert any(psutil.pid_exists(p) for p in pids), "pods should outlive a killed supervisor until down"
        client.down(data_dir)
        for pid in all_pids:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
        for path in cgroup_dirs:
            assert not path.exists(), path
        for port in ports:
            assert not _port_open(port), port
        assert not (state_dir(data_dir) / "runtime.json").exists()
        assert not (state_dir(data_dir) / "pods.json").exists()
        assert not list(state_dir(data_dir).glob("*.tmp*"))
    finally:
        client.down(data_dir)
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


def test_down_when_nothing_runs_is_fine(tmp_path: Path) -> None:
    assert client.down(tmp_path) == []


def test_a_service_restart_is_a_rollout_that_never_leaves_it_without_a_ready_pod(shop: Shop) -> None:
    """restart(service) is `kubectl rollout restart` with Kubernetes' defaults: a one-pod Deployment gets its new
    pod ready before the old one goes, so catalogue answers every request of a burst sent meanwhile (a datastore,
    a StatefulSet, goes old pod first: test_restarted_datastores_keep_their_data)."""
    before = pod_of(shop, "catalogue")
    statuses: list[int] = []

    async def burst(done: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as s:
            while not done.is_set():
                async with s.get(f"{shop.url}/catalogue?size=3") as r:
                    statuses.append(r.status)
                    await r.read()

    async def main() -> dict[str, Any]:
        done = asyncio.Event()
        task = asyncio.ensure_future(burst(done))
        await asyncio.sleep(0.3)
        out = await asyncio.to_thread(shop.post, "/v1/restart", {"deployment": "catalogue"})
        await asyncio.sleep(0.3)
        done.set()
        await task
        return out

    out = asyncio.run(main())
    assert out["restarted"] == [before["name"]]
    after = pod_of(shop, "catalogue")
    assert after["name"] != before["name"] and after["ready"]
    assert len(statuses) > 10 and set(statuses) == {200}, sorted(set(statuses))
