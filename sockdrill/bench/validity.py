"""``sockdrill bench validity``: the share of runs that are valid, and why the others were not.

A run is *invalid* when the harness could not set up a fair test (the SLO did not hold before the
fault, the symptom never appeared, a run error): it measures nothing about the agent, so a benchmark
whose runs are often invalid is not one. This runs the noop agent (it changes nothing, so validity
is the harness's alone) over every variant of the catalogue, control included:

- on one reused shop (reset between runs), once per seed in ``SOCKDRILL_BENCH_SEEDS`` (default 1,2);
- on a fresh shop per run (``sockdrill run``'s default), for every fault variant, with the seed after those.

and reports valid/total, the share, and every invalid run's reason (grouped by its kind).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sockdrill.cluster import client
from sockdrill.cluster.ports import free_port
from sockdrill.scenarios.catalogue_loader import load_catalogue
from sockdrill.scenarios.runner import BASE_USERS, RunOptions, run_variant


def reason_kind(reason: str | None) -> str:
    """The kind of an invalid reason, without its run-specific details."""
    if not reason:
        return "valid"
    return reason.split(":", 1)[0].split(" (", 1)[0].strip()


def bench_validity(_duration: float) -> dict[str, Any]:
    from sockdrill.shop.manifest import shop_deployments

    seeds = [int(s) for s in os.environ.get("SOCKDRILL_BENCH_SEEDS", "1,2").split(",") if s.strip()]
    catalogue = load_catalogue()
    scenarios = list(catalogue.scenarios.values())
    pairs = [(sc, v) for sc in scenarios for v in sc.variants]
    out = Path(tempfile.mkdtemp(prefix="sockdrill-bench-validity-"))
    rows: list[dict[str, Any]] = []

    def one(sc: Any, var: Any, seed: int, data_dir: Path | None, shop: str) -> None:
        t = time.perf_counter()
        r = run_variant(sc, var, RunOptions(agent="noop", profile="fast", seed=seed, out=out, data_dir=data_dir),
                        scenarios)
        notes = (r.get("notes") or [])
        rows.append({"variant": f"{sc.id}/{var.id}", "seed": seed, "shop": shop, "valid": r["valid"],
                     "wall_s": round(time.perf_counter() - t, 1), "invalid_reason": r.get("invalid_reason"),
                     "reinjected": any("injected again" in n for n in notes)})

    started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-"))
    data_dir.chmod(0o711)
    try:
        client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=180,
                  pod_env={"SOCKDRILL_DATA_USERS": str(BASE_USERS), "SOCKDRILL_SCRAPE_INTERVAL": "1"})
        for seed in seeds:
            for sc, var in pairs:
                one(sc, var, seed, data_dir, "reused")
    finally:
        client.down(data_dir, purge=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    fresh_seed = max(seeds, default=0) + 1
    try:
        for sc, var in pairs:
            if not sc.control:
                one(sc, var, fresh_seed, None, "fresh")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    valid = sum(1 for r in rows if r["valid"])
    reasons = Counter(reason_kind(r["invalid_reason"]) for r in rows if not r["valid"])
    return {"runs": len(rows), "valid": valid, "valid_share": round(valid / len(rows), 3) if rows else None,
            "reinjected": sum(1 for r in rows if r["reinjected"]),
            "invalid_by_reason": dict(reasons), "total_s": round(time.perf_counter() - started, 1),
            "goal": ">= 0.95 valid", "detail": rows}
