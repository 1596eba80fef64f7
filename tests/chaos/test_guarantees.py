"""The guarantees, on a small runtime of their own: faults revert on clear, on ``down``, when the
process that injected them is SIGKILLed, and after a SIGKILL of the supervisor itself (its workers stop
by themselves; the next start reverts what the ledger lists, e.g. recreates a dropped index).
Every injection and revert is in the audit journal, which nothing the runtime serves mentions."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest

from sockdrill.cluster import client
from sockdrill.cluster.spec import DeploymentSpec
from sockdrill.cluster.state import read_json, state_dir
from tests.chaos.conftest import active, get_ms, inject, wait_for
from tests.conftest import make_data_dir

SOCKDRILL = str(Path(sys.executable).parent / "sockdrill")
SPECS = [DeploymentSpec(name="mini-db", kind="postgres"), DeploymentSpec(name="mini-cache", kind="redis"),
         DeploymentSpec(name="payment", kind="service", module="payment")]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = make_data_dir("sockdrill-chaos-")
    try:
        yield path
    finally:
        client.down(path)
        shutil.rmtree(path, ignore_errors=True)


def _up(data_dir: Path) -> Any:
    rc, _ = client.up(SPECS, data_dir=data_dir, timeout=90)
    return rc


def _sql(rc: Any, query: str, script: bool = False) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(rc.record["addresses"]["mini-db"])
        try:
            return await (conn.execute(query) if script else conn.fetchval(query))
        finally:
            await conn.close()

    return asyncio.run(run())


def _make_table(rc: Any) -> None:
    _sql(rc, "CREATE TABLE IF NOT EXISTS t (id int, name text); "
             "INSERT INTO t SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 2000) g; "
             "CREATE INDEX IF NOT EXISTS t_name_idx ON t (name)", script=True)


def _has_index(rc: Any) -> bool:
    return bool(_sql(rc, "SELECT count(*) FROM pg_indexes WHERE indexname = 't_name_idx'"))


def _audit(data_dir: Path) -> list[dict[str, Any]]:
    path = state_dir(data_dir) / "chaos-audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _ledger(data_dir: Path) -> dict[str, Any]:
    return (read_json(state_dir(data_dir) / "chaos-ledger.json") or {}).get("faults", {})


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _worker_pids(data_dir: Path) -> list[int]:
    return [w["pid"] for f in _ledger(data_dir).values() for w in f["state"].get("workers", [])]


def _drop(rc: Any, duration: float) -> dict[str, Any]:
    return inject(rc, "datastore.drop_index", "mini-db", duration=duration,
                  params={"table": "t", "index": "t_name_idx"})


def test_sigkill_of_the_injector_leaves_nothing(data_dir: Path) -> None:
    rc = _up(data_dir)
    url = rc.record["addresses"]["payment"] + "/health"
    # The CLI prints the id and returns; the supervisor owns the deadline.
    out = subprocess.run([SOCKDRILL, "chaos", "inject", "network.delay", "--target", "host->payment",
                          "-p", "latency_ms=300", "--duration", "1.5s", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    fault_id = out.stdout.strip()
    assert [f["id"] for f in active(rc)] == [fault_id]
    # A scenario runner that injects and is then SIGKILLed.
    script = textwrap.dedent(f"""
        from pathlib import Path
        import time
        from sockdrill.cluster.client import RuntimeClient
        rc = RuntimeClient.connect(Path({str(data_dir)!r}))
        rc.post("/v1/chaos/inject", {{"kind": "pod.pause", "target": "mini-cache", "duration": "2s"}})
        print("injected", flush=True)
        time.sleep(600)
    """)
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None and runner.stdout.readline().strip() == "injected"
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    assert get_ms(url) >= 290
    cache_pid = rc.get("/v1/describe/mini-cache")["pods"][0]["pid"]
    assert psutil.Process(cache_pid).status() == psutil.STATUS_STOPPED
    wait_for(lambda: not active(rc), timeout=6)
    assert get_ms(url) < 200
    assert psutil.Process(cache_pid).status() != psutil.STATUS_STOPPED
    reverts = [a for a in _audit(data_dir) if a["event"] == "revert"]
    assert {a["reason"] for a in reverts} == {"expiry"} and len(reverts) == 2


def test_clear_status_and_audit(data_dir: Path) -> None:
    rc = _up(data_dir)
    _make_table(rc)
    ids = {inject(rc, "network.delay", "payment", duration=60, params={"latency_ms": 50})["id"],
           _drop(rc, 60)["id"],
           inject(rc, "stress.cpu", "payment", duration=60)["id"],
           inject(rc, "pod.pause", "mini-cache", duration=60)["id"]}
    assert not _has_index(rc)
    status = subprocess.run([SOCKDRILL, "chaos", "status", "--json", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=60)
    assert {f["id"] for f in json.loads(status.stdout)} == ids
    workers = _worker_pids(data_dir)
    assert workers and all(_alive(p) for p in workers)
    # Isolation: nothing the runtime serves to others names a fault.
    served = json.dumps([rc.get("/v1/status"), rc.get("/v1/edges"), rc.get("/v1/events"), rc.get("/v1/topology"),
                         rc.get("/v1/describe/payment")])
    for word in [*ids, "network.delay", "stress", "drop_index", "pause", "toxic"]:
        assert word not in served, word
    out = subprocess.run([SOCKDRILL, "chaos", "clear", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "reverted 4" in out.stdout, out
    assert _has_index(rc) and active(rc) == [] and _ledger(data_dir) == {}
    assert not any(_alive(p) for p in workers)
    journal = _audit(data_dir)
    for fid in ids:
        (inj,) = [a for a in journal if a["id"] == fid and a["event"] == "inject"]
        (rev,) = [a for a in journal if a["id"] == fid and a["event"] == "revert"]
        assert inj["requested_at"] <= inj["onset"] <= rev["reverted_at"] and rev["reason"] == "clear"
    mode = stat.S_IMODE((state_dir(data_dir) / "chaos-audit.jsonl").stat().st_mode)
    assert mode == 0o600


def test_down_reverts_everything(data_dir: Path) -> None:
    rc = _up(data_dir)
    _make_table(rc)
    _drop(rc, 300)
    inject(rc, "stress.cpu", "payment", duration=300)
    inject(rc, "datastore.query_storm", "mini-db", duration=300, params={"table": "t", "column": "name",
                                                                         "concurrency": 2})
    workers = _worker_pids(data_dir)
    assert len(workers) == 2
    client.down(data_dir)
    assert not any(_alive(p) for p in workers)
    assert _ledger(data_dir) == {}
    assert [a["reason"] for a in _audit(data_dir) if a["event"] == "revert"] == ["down"] * 3
    rc = _up(data_dir)  # the index was recreated before the store stopped: nothing left to do
    assert _has_index(rc)
    assert not [a for a in _audit(data_dir) if a.get("reason") == "leftover"]


def test_supervisor_sigkill_workers_stop_and_restart_reverts_leftovers(data_dir: Path) -> None:
    rc = _up(data_dir)
    _make_table(rc)
    _drop(rc, 300)
    inject(rc, "stress.cpu", "payment", duration=300)
    inject(rc, "datastore.query_storm", "mini-db", duration=300, params={"table": "t", "column": "name"})
    workers = _worker_pids(data_dir)
    sup = rc.record["supervisor"]["pid"]
    os.kill(sup, signal.SIGKILL)
    # Dead-man's switch: the workers notice their supervisor is gone and stop by themselves.
    wait_for(lambda: not any(_alive(p) for p in workers), timeout=5)
    assert len(_ledger(data_dir)) == 3
    client.down(data_dir)
    assert len(_ledger(data_dir)) == 3  # the dropped index is still gone, in the data directory
    rc = _up(data_dir)
    assert _has_index(rc)
    assert _ledger(data_dir) == {}
    leftovers = [a for a in _audit(data_dir) if a.get("reason") == "leftover"]
    assert sorted(a["kind"] for a in leftovers) == ["datastore.drop_index", "datastore.query_storm", "stress.cpu"]
    assert time.time() - leftovers[0]["reverted_at"] < 60
