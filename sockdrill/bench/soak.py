"""``sockdrill bench soak``: a healthy shop under long load must fail nothing and keep its memory flat.

Two levels, each on a fresh default shop (``sockdrill up`` with no options) for ``SOCKDRILL_SOAK_S``
seconds each (default 600): 20 simulated users with the default journey mix, then the highest load
any catalogue scenario drives (the scenario's own load plus its surge, at once). Reported per level:
requests, failed requests, failed journeys by name, and the summed resident memory of every pod
process, sampled once a minute (first, last, and the largest rise between two samples).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from sockdrill.cluster import client
from sockdrill.cluster.ports import free_port
from sockdrill.cluster.state import read_json, state_dir
from sockdrill.load.runner import start_load


def pods_rss(data_dir: Path) -> int:
    """Resident bytes of every pod process and its children."""
    total = 0
    pods = read_json(state_dir(data_dir) / "pods.json") or {}
    for rec in (pods.values() if isinstance(pods, dict) else []):
        pid = rec.get("pid") if isinstance(rec, dict) else None
        if not pid:
            continue
        try:
            proc = psutil.Process(int(pid))
            for p in [proc, *proc.children(recursive=True)]:
                total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def heaviest_scenario_load() -> list[dict[str, Any]]:
    """The loads (main + surge) of the catalogue variant with the most simulated users."""
    from sockdrill.scenarios.catalogue_loader import load_catalogue

    best: list[dict[str, Any]] = []
    best_users = -1
    for sc in load_catalogue().scenarios.values():
        for var in sc.variants:
            loads = [sc.load_for(var)] + ([var.surge] if var.surge is not None else [])
            users = sum(ld.users for ld in loads)
            if users > best_users:
                best_users = users
                best = [{"journeys": dict(ld.journeys), "users": ld.users, "spawn_rate": ld.spawn_rate,
                         "think": tuple(ld.think_s), "variant": f"{sc.id}/{var.id}"} for ld in loads]
    return best


def soak_level(loads: list[dict[str, Any]], seconds: float, out: Path) -> dict[str, Any]:
    from sockdrill.shop.manifest import shop_deployments

    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-soak-"))
    data_dir.chmod(0o711)
    try:
        client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=180)
        runs = [start_load(None, ld["journeys"], users=ld["users"], spawn_rate=ld["spawn_rate"],
                           duration=seconds, seed=9 + i, data_dir=data_dir, think=ld["think"],
                           stats_path=out / f"soak-{i}.jsonl") for i, ld in enumerate(loads)]
        memory = [pods_rss(data_dir)]
        end = time.time() + seconds
        while time.time() < end:
            time.sleep(min(60.0, max(0.0, end - time.time())))
            memory.append(pods_rss(data_dir))
        summaries = [r.wait() for r in runs]
    finally:
        client.down(data_dir, purge=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    failed: dict[str, int] = {}
    for s in summaries:
        for name, j in s.journeys.items():
            if j["failures"]:
                failed[name] = failed.get(name, 0) + int(j["failures"])
    mib = [round(m / 2**20, 1) for m in memory]
    return {"users": sum(ld["users"] for ld in loads), "seconds": seconds,
            "requests": sum(s.requests for s in summaries),
            "failed_requests": sum(s.request_failures for s in summaries),
            "failed_journeys": failed,
            "errors": dict(sum((Counter(s.errors) for s in summaries), Counter()).most_common(10)),
            "rss_mib_first": mib[0], "rss_mib_last": mib[-1],
            "rss_mib_max_rise_per_min": max((b - a for a, b in itertools.pairwise(mib)), default=0.0),
            "rss_mib_per_min": mib}


def bench_soak(_duration: float) -> dict[str, Any]:
    seconds = float(os.environ.get("SOCKDRILL_SOAK_S", "600"))
    out = Path(tempfile.mkdtemp(prefix="sockdrill-soak-stats-"))
    try:
        default = [{"journeys": None, "users": 20, "spawn_rate": 20, "think": (0.5, 1.5)}]
        heavy = heaviest_scenario_load()
        return {"users_20": soak_level(default, seconds, out),
                "heaviest_scenario_load": {"variant": heavy[0]["variant"] if heavy else None,
                                           **soak_level(heavy, seconds, out)},
                "goal": "0 failed journeys, memory flat"}
    finally:
        shutil.rmtree(out, ignore_errors=True)
