"""``sockdrill bench load``: how much journey load this machine can generate against the shop.

A fresh shop (with generated accounts) gets the default journey mix with no think time, at doubling user
counts, each level for ``duration`` seconds. Reported: every level's journey rate, request rate, error
rate, journey p99 and the generator's CPU; the highest journey rate sustained (error rate < 1 %), and the
generator's CPU per 100 requests/s, so a scenario can size its load to the machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

LEVELS = (2, 4, 8, 16, 32)
MAX_ERROR_RATE = 0.01


def _p99(summary: Any) -> float | None:
    values = [j["p99_ms"] for j in summary.journeys.values() if j["p99_ms"] is not None]
    return max(values) if values else None


def bench_load(duration: float) -> dict[str, Any]:
    from sockdrill.cluster import client
    from sockdrill.cluster.ports import free_port
    from sockdrill.load.runner import run_load
    from sockdrill.shop.manifest import shop_deployments

    seconds = max(duration, 5.0)
    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-"))
    os.chmod(data_dir, 0o711)  # PostgreSQL runs as its own user when we are root
    levels: list[dict[str, Any]] = []
    try:
        rc, _ = client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=120,
                          pod_env={"SOCKDRILL_DATA_USERS": str(max(LEVELS))})
        host = rc.record["front_end_url"]
        best_rate = 0.0
        for users in LEVELS:
            s = run_load(host, None, users=users, spawn_rate=float(users * 4), duration=seconds, seed=1,
                         think=(0.0, 0.0), accounts=max(LEVELS), data_seed=1)
            journeys = sum(j["count"] for j in s.journeys.values())
            failed = sum(j["failures"] for j in s.journeys.values())
            error_rate = failed / journeys if journeys else 1.0
            cpu_cores = s.generator_cpu_s / s.duration_s if s.duration_s else 0.0
            levels.append({
                "users": users, "journeys_per_s": round(s.journey_rate, 1), "requests_per_s": round(s.rps, 1),
                "error_rate": round(error_rate, 4), "journey_p99_ms": _p99(s),
                "generator_cpu_cores": round(cpu_cores, 3),
                "generator_cpu_per_100rps": round(cpu_cores / (s.rps / 100), 3) if s.rps else None,
            })
            if error_rate >= MAX_ERROR_RATE:
                break
            if best_rate and s.journey_rate < best_rate * 1.1:
                break  # saturated: more users no longer buy more journeys
            best_rate = max(best_rate, s.journey_rate)
    finally:
        client.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    ok = [lv for lv in levels if lv["error_rate"] < MAX_ERROR_RATE]
    top = max(ok, key=lambda lv: lv["journeys_per_s"]) if ok else None
    per_100 = [lv["generator_cpu_per_100rps"] for lv in levels if lv["generator_cpu_per_100rps"] is not None]
    return {
        "duration_s_per_level": seconds, "mix": "default (browse:5,cart:2,login:1,checkout:1,order-status:1)",
        "max_journeys_per_s": top["journeys_per_s"] if top else 0.0,
        "at_users": top["users"] if top else None,
        "requests_per_s_at_max": top["requests_per_s"] if top else 0.0,
        "generator_cpu_cores_per_100rps": round(sum(per_100) / len(per_100), 3) if per_100 else None,
        "levels": {str(lv["users"]): lv for lv in levels},
    }
