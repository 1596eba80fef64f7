"""``sockdrill bench headroom``: what the platform itself costs on this machine (issue 19's unmeasured rows).

On a fresh default shop (``sockdrill up`` with no options: every pod, the mesh, the flight recorder):

- **idle**: CPU of every process of the shop over ``SOCKDRILL_HEADROOM_IDLE_S`` seconds (default 30) with
  no traffic at all, as a share of one core, split by who spends it (each pod with its children, e.g. a
  PostgreSQL server's backends; the recorder; the runtime: supervisor and mesh);
- **checkout**: the load generator's ``checkout`` journey (log in, empty cart, browse, add, basket,
  address, card, ``POST /orders``, clear) with 4 simulated users for ``SOCKDRILL_HEADROOM_LOAD_S``
  seconds (default 30); the shop's CPU during it, less its idle share, per completed checkout, with
  the same split; the load generator's own CPU is reported beside it, not in it.

CPU is read from ``/proc`` (psutil) for each process tree: a process's own time plus what its reaped
children spent, summed over the tree at the start and end of a window, so processes that come and go
inside the window (PostgreSQL backends) are counted too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import psutil

from sockdrill.cluster import client
from sockdrill.cluster.ports import free_port
from sockdrill.cluster.state import read_json, state_dir
from sockdrill.load.runner import start_load

SETTLE_S = 5.0  # after all-ready: start-up work (schema checks, first scrapes) is not idle cost
RUNTIME = "runtime (supervisor, mesh)"
RECORDER = "flight recorder"


def _process_cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _deployment(pod: str) -> str:
    """``catalogue-db-0`` → ``catalogue-db``."""
    name, _, ordinal = pod.rpartition("-")
    return name if ordinal.isdigit() else pod


def cpu_by_owner(data_dir: Path) -> dict[str, float]:
    """CPU seconds so far of every process of the shop in ``data_dir``, by owner (a deployment, the recorder,
    the runtime). A process belongs to the nearest ancestor that is a pod or the recorder."""
    record = read_json(state_dir(data_dir) / "runtime.json") or {}
    pods = read_json(state_dir(data_dir) / "pods.json") or {}
    owners: dict[int, str] = {}
    for pod, rec in (pods.items() if isinstance(pods, dict) else []):
        if isinstance(rec, dict) and rec.get("pid"):
            owners[int(rec["pid"])] = _deployment(pod)
    recorder = (record.get("recorder") or {}).get("pid")
    if recorder:
        owners[int(recorder)] = RECORDER
    sup = (record.get("supervisor") or {}).get("pid")
    if not sup:
        raise RuntimeError(f"no supervisor recorded in {data_dir}: is the shop up?")
    totals: dict[str, float] = defaultdict(float)
    try:
        root = psutil.Process(int(sup))
        procs = [root, *root.children(recursive=True)]
    except psutil.Error as exc:
        raise RuntimeError(f"the shop's supervisor is gone: {exc}") from None
    # Pods and the recorder are normally the supervisor's children; count them even if they are not.
    known = {p.pid for p in procs}
    for pid in owners:
        if pid not in known:
            try:
                extra = psutil.Process(pid)
                procs += [extra, *extra.children(recursive=True)]
            except psutil.Error:
                continue
    for proc in procs:
        try:
            owner, walk = RUNTIME, cast(psutil.Process | None, proc)
            while walk is not None:
                if walk.pid in owners:
                    owner = owners[walk.pid]
                    break
                if walk.pid == int(sup):
                    break
                walk = walk.parent()
            totals[owner] += _process_cpu(proc)
        except psutil.Error:
            continue  # ended meanwhile: its time shows in its parent's reaped-children time next sample
    return dict(totals)


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in set(before) | set(after)}


def _shares(spent: dict[str, float], seconds: float, top: int = 8) -> dict[str, float]:
    """Share of one core per owner, biggest first; the rest summed as ``others``."""
    ranked = sorted(spent.items(), key=lambda kv: -kv[1])
    out = {k: round(v / seconds, 4) for k, v in ranked[:top]}
    rest = sum(v for _k, v in ranked[top:])
    if rest:
        out["others"] = round(rest / seconds, 4)
    return out


def measure_idle(data_dir: Path, seconds: float) -> tuple[dict[str, Any], dict[str, float]]:
    """The report, and each owner's idle rate (cores) for :func:`measure_checkouts` to subtract."""
    t0, before = time.monotonic(), cpu_by_owner(data_dir)
    time.sleep(seconds)
    spent = cpu_delta(before, cpu_by_owner(data_dir))
    elapsed = time.monotonic() - t0
    report = {"seconds": round(elapsed, 1), "cores": round(sum(spent.values()) / elapsed, 4),
              "by_owner_cores": _shares(spent, elapsed), "goal": "<= 0.05 cores"}
    return report, {k: v / elapsed for k, v in spent.items()}


def measure_checkouts(data_dir: Path, seconds: float, idle_cores: dict[str, float], users: int = 4
                      ) -> dict[str, Any]:
    t0, before = time.monotonic(), cpu_by_owner(data_dir)
    run = start_load(None, {"checkout": 1}, users=users, spawn_rate=users, duration=seconds, seed=7,
                     data_dir=data_dir, think=(0.0, 0.0))
    summary = run.wait()
    spent = cpu_delta(before, cpu_by_owner(data_dir))
    elapsed = time.monotonic() - t0
    journey = summary.journeys.get("checkout", {})
    done = int(journey.get("count", 0)) - int(journey.get("failures", 0))
    if done <= 0:
        raise RuntimeError(f"no checkout completed in {seconds:.0f} s: {summary.errors}")
    # What the shop would have spent anyway (the idle rate over this window) is not the checkouts' cost.
    busy = {k: max(0.0, v - idle_cores.get(k, 0.0) * elapsed) for k, v in spent.items()}
    per = sorted(((k, v / done * 1000) for k, v in busy.items()), key=lambda kv: -kv[1])
    return {"users": users, "seconds": round(elapsed, 1), "checkouts": done,
            "failed": int(journey.get("failures", 0)), "checkouts_per_s": round(done / elapsed, 2),
            "requests": summary.requests, "shop_cores": round(sum(spent.values()) / elapsed, 3),
            "cpu_ms_per_checkout": round(sum(busy.values()) / done * 1000, 1),
            "by_owner_cpu_ms": {k: round(v, 1) for k, v in per[:10]},
            "load_generator_cpu_ms_per_checkout": round(summary.generator_cpu_s / done * 1000, 1),
            "goal": "reported, then halved"}


def bench_headroom(_duration: float) -> dict[str, Any]:
    from sockdrill.shop.manifest import shop_deployments

    idle_s = float(os.environ.get("SOCKDRILL_HEADROOM_IDLE_S", "30"))
    load_s = float(os.environ.get("SOCKDRILL_HEADROOM_LOAD_S", "30"))
    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-headroom-"))
    data_dir.chmod(0o711)
    try:
        client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=180)
        time.sleep(SETTLE_S)
        idle, idle_rates = measure_idle(data_dir, idle_s)
        return {"idle": idle, "checkout": measure_checkouts(data_dir, load_s, idle_rates)}
    finally:
        client.down(data_dir, purge=True)
        shutil.rmtree(data_dir, ignore_errors=True)
