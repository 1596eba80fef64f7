"""``sockdrill bench scale``: how the shop's browse throughput and latency change with 1, 2 and 4 replicas of
front-end and catalogue (issue 19's "how cost grows").

One fresh default shop; for each replica count both deployments are scaled, every pod is waited ready, then the
same browse load as ``bench shop`` (the catalogue list and each sock, fixed concurrency, the load generator in its
own process) runs for the benchmark's duration. Beside each row: the CPU every process of the shop spent (read
from ``/proc`` as ``bench headroom`` does) and so the requests served per core-second. On a 2-core machine more
replicas cannot add CPU; the row says what they cost instead (more processes, more context switches), which is
what a user sizing a game day on a bigger machine needs to extrapolate from.

Environment: ``SOCKDRILL_SCALE_REPLICAS`` (comma list, default ``1,2,4``), ``SOCKDRILL_SCALE_CONCURRENCY``
(default 32).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sockdrill.cluster import client
from sockdrill.cluster.ports import free_port

SCALED = ("front-end", "catalogue")
WARM_UP_S = 3.0  # new pods open their pools and connections on their first requests


def _wait_ready(rc: client.RuntimeClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rc.get("/v1/ready").get("ready"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the shop was not ready {timeout:.0f} s after scaling {', '.join(SCALED)}")


def measure(rc: client.RuntimeClient, data_dir: Path, replicas: int, urls: list[str], concurrency: int,
            duration: float) -> dict[str, Any]:
    from sockdrill.bench import load, load_with_cpu

    for name in SCALED:
        rc.post("/v1/scale", {"deployment": name, "replicas": replicas})
    _wait_ready(rc)
    load(urls, concurrency, WARM_UP_S)
    figures = load_with_cpu(data_dir, urls, concurrency, duration)
    us = figures["cpu"]["shop_us_per_request"]
    return {"replicas": replicas, "rps": round(figures["rps"], 1), "p50_ms": round(figures["p50_ms"], 1),
            "p99_ms": round(figures["p99_ms"], 1), "errors": figures["errors"],
            "shop_cores": figures["cpu"]["shop_cores"], "requests_per_core_s": round(1e6 / us, 1) if us else None,
            "by_owner_us_per_request": figures["cpu"]["by_owner_us_per_request"]}


def bench_scale(duration: float) -> dict[str, Any]:
    from sockdrill.shop.manifest import shop_deployments

    counts = [int(x) for x in os.environ.get("SOCKDRILL_SCALE_REPLICAS", "1,2,4").split(",") if x.strip()]
    concurrency = int(os.environ.get("SOCKDRILL_SCALE_CONCURRENCY", "32"))
    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-scale-"))
    data_dir.chmod(0o711)
    try:
        rc, _ = client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=180)
        from sockdrill.bench import browse_urls

        urls = browse_urls(rc.record["front_end_url"])
        rows = [measure(rc, data_dir, n, urls, concurrency, duration) for n in counts]
        return {"scaled": "+".join(SCALED), "concurrency": concurrency, "duration_s": duration,
                "by_replicas": {str(r["replicas"]): {k: v for k, v in r.items() if k != "replicas"} for r in rows},
                "goal": "reported"}
    finally:
        client.down(data_dir, purge=True)
        shutil.rmtree(data_dir, ignore_errors=True)
