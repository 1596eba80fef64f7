"""``sockdrill bench scenarios``: wall time of every catalogue variant in the fast profile, and the
score of each built-in agent on it, on one shop brought up for the benchmark (reset between runs).

Set ``SOCKDRILL_BENCH_AGENTS`` (comma list) to choose the agents; default noop, restart-all, oracle,
baseline (those that import)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sockdrill.cluster import client
from sockdrill.cluster.ports import free_port
from sockdrill.scenarios.catalogue_loader import load_catalogue
from sockdrill.scenarios.runner import BASE_USERS, RunOptions, run_variant

AGENTS = ("noop", "restart-all", "oracle", "baseline")


def bench_scenarios(_duration: float) -> dict[str, Any]:
    from sockdrill.agents.base import AgentError, load_agent
    from sockdrill.shop.manifest import shop_deployments

    agents = [a for a in os.environ.get("SOCKDRILL_BENCH_AGENTS", ",".join(AGENTS)).split(",") if a]
    usable = []
    for name in agents:
        try:
            load_agent(name)
            usable.append(name)
        except AgentError:
            pass
    catalogue = load_catalogue()
    scenarios = list(catalogue.scenarios.values())
    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-"))
    data_dir.chmod(0o711)
    out = Path(tempfile.mkdtemp(prefix="sockdrill-bench-runs-"))
    rows: list[dict[str, Any]] = []
    started_all = time.perf_counter()
    try:
        t0 = time.perf_counter()
        client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=180,
                  pod_env={"SOCKDRILL_DATA_USERS": str(BASE_USERS), "SOCKDRILL_SCRAPE_INTERVAL": "1"})
        up_s = time.perf_counter() - t0
        for sc in scenarios:
            for var in sc.variants:
                for agent in usable:
                    t = time.perf_counter()
                    r = run_variant(sc, var, RunOptions(agent=agent, profile="fast", seed=1, out=out,
                                                        data_dir=data_dir), scenarios)
                    wall = round(time.perf_counter() - t, 1)
                    rows.append({"variant": f"{sc.id}/{var.id}", "agent": agent, "wall_s": wall,
                                 "valid": r["valid"], "detected": r["detection"].get("detected"),
                                 "ac1": r["localization"].get("ac1"), "category_ok": r["diagnosis"].get("correct"),
                                 "restored": r["mitigation"].get("slo_restored"),
                                 "integrity": r["integrity"].get("ok"), "score": r.get("score"),
                                 "invalid_reason": r.get("invalid_reason")})
    finally:
        client.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    per_variant: dict[str, float] = {}
    for row in rows:
        per_variant.setdefault(row["variant"], 0.0)
        per_variant[row["variant"]] = max(per_variant[row["variant"]], row["wall_s"])
    means = {}
    for agent in usable:
        scores = [r["score"] for r in rows if r["agent"] == agent and r["score"] is not None]
        means[agent] = round(sum(scores) / len(scores), 3) if scores else None
    return {"shop_up_s": round(up_s, 1), "total_s": round(time.perf_counter() - started_all, 1),
            "max_wall_s_per_variant": per_variant, "mean_score": means, "runs": rows,
            "goal": "<= 60 s per variant (fast profile)"}
