"""``sockdrill bench chaos``: how exact and how quick the faults are, on a small runtime of its own.

- precision: an injected delay d ∈ {50 ms, 500 ms, 2 s} on the host → payment edge adds d ± (5 % + 2 ms)
  at p50 (p50 with the fault minus p50 without, same client, same path);
- command → effect: from the start of the inject call to the first request that sees the delay
  (and for a pause: to the first request that hangs); revert → recovery: from the start of the clear
  call to the first request that is fast again;
- a 100m CPU limit (``resource.limit``) holds a pod busy with ``stress.cpu`` to ≤ 0.12 cores.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sockdrill.cluster import client
from sockdrill.cluster.spec import DeploymentSpec

DELAYS_MS = (50.0, 500.0, 2000.0)


def _get_ms(url: str, timeout: float = 10.0) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        resp.read()
    return (time.perf_counter() - t0) * 1000


def _p50(url: str, n: int) -> float:
    return statistics.median(_get_ms(url) for _ in range(n))


def _inject(rc: Any, kind: str, target: str, duration: float, **params: Any) -> str:
    return rc.post("/v1/chaos/inject", {"kind": kind, "target": target, "params": params,
                                        "duration": duration})["id"]


def bench_chaos(duration: float = 5.0) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-chaos-"))
    os.chmod(data_dir, 0o711)
    specs = [DeploymentSpec(name="payment", kind="service", module="payment")]
    out: dict[str, Any] = {}
    try:
        rc, _ = client.up(specs, data_dir=data_dir, timeout=120)
        url = rc.record["addresses"]["payment"] + "/health"
        for _ in range(20):  # warm up connections and the pod
            _get_ms(url)
        base = _p50(url, 41)
        precision: dict[str, Any] = {"baseline_p50_ms": round(base, 3)}
        ok = True
        for d in DELAYS_MS:
            n = 61 if d <= 100 else (11 if d <= 1000 else 5)
            # The baseline is taken right before and after (a shared machine drifts), same sample count.
            before = _p50(url, max(n, 21))
            fid = _inject(rc, "network.delay", "host->payment", 600, latency_ms=d)
            with_fault = _p50(url, n)
            rc.post("/v1/chaos/clear", {"id": fid})
            added = with_fault - (before + _p50(url, max(n, 21))) / 2
            tol = 0.05 * d + 2
            ok = ok and abs(added - d) <= tol
            precision[f"{int(d)}ms"] = {"added_p50_ms": round(added, 2), "error_ms": round(added - d, 2),
                                        "tolerance_ms": round(tol, 2), "samples": n}
        precision["within_tolerance"] = ok
        out["delay_precision"] = precision

        # command → effect and revert → recovery (delay 500 ms)
        effects, recoveries = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            fid = _inject(rc, "network.delay", "host->payment", 600, latency_ms=500)
            while True:
                start = time.perf_counter()
                if _get_ms(url) >= 450:
                    effects.append((start - t0) * 1000)
                    break
            t0 = time.perf_counter()
            rc.post("/v1/chaos/clear", {"id": fid})
            while True:
                start = time.perf_counter()
                if _get_ms(url) < base + 50:
                    recoveries.append((start - t0) * 1000)
                    break
        out["network_delay"] = {"command_to_effect_ms": round(statistics.median(effects), 2),
                                "revert_to_recovery_ms": round(statistics.median(recoveries), 2), "runs": 5}

        # a pause: the first request that hangs, and the first that answers after the clear
        t0 = time.perf_counter()
        fid = _inject(rc, "pod.pause", "payment", 600)
        effect = None
        while effect is None:
            start = time.perf_counter()
            try:
                _get_ms(url, timeout=0.3)
            except OSError:
                effect = (start - t0) * 1000
        t0 = time.perf_counter()
        rc.post("/v1/chaos/clear", {"id": fid})
        recovery = None
        while recovery is None:
            try:
                _get_ms(url, timeout=1)
                recovery = (time.perf_counter() - t0) * 1000
            except OSError:
                time.sleep(0.01)
        out["pod_pause"] = {"command_to_effect_ms": round(effect, 2), "revert_to_recovery_ms": round(recovery, 2)}

        # a 100m CPU limit against a busy pod
        status = rc.get("/v1/status")
        if status["cgroups"]["version"] == 0:
            out["cpu_limit"] = {"skipped": status["cgroups"]["reason"]}
        else:
            _inject(rc, "resource.limit", "payment", 600, cpu="100m")
            _inject(rc, "stress.cpu", "payment", 600, workers=2)
            time.sleep(1.0)
            pod0 = rc.get("/v1/describe/payment")["pods"][0]
            t0 = time.monotonic()
            time.sleep(max(2.0, duration))
            pod1 = rc.get("/v1/describe/payment")["pods"][0]
            cores = (pod1["cpu_seconds"] - pod0["cpu_seconds"]) / (time.monotonic() - t0)
            thr = pod1["throttling"].get("nr_throttled", 0) - pod0["throttling"].get("nr_throttled", 0)
            rc.post("/v1/chaos/clear", {})
            out["cpu_limit"] = {"limit": "100m", "stress_workers": 2, "cores_used": round(cores, 4),
                                "throttled_periods": thr, "goal": "<= 0.12 cores", "ok": cores <= 0.12}
    finally:
        client.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    return out
