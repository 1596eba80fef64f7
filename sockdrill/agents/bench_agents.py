"""``sockdrill bench agents``: how well the baseline agent localizes, categorises and detects.

One shop (1 s scrapes, as the fast profile's own shops) runs every variant of the catalogue, a few fault
files that are NOT in the catalogue (the baseline has never seen them), and control runs, with the
``baseline`` agent in the fast profile. Figures: AC@1 / AC@3 and category accuracy over valid fault runs
(catalogue and held-out separately), time to detect (submit − fault onset), and false detections on
control runs. Goals: AC@1 ≥ 0.8, no false detection, TTD ≤ 30 s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

# Fault files outside the catalogue: other services, other edges, other datastores.
HELD_OUT = [
    """
id: held-browse-delay
version: 1
title: Browsing is slow
journey: browse
impact: Product pages take seconds to load.
slo: [{journey: browse, sli: latency_p95, below: 1.0}]
symptom: {any: [{journey: browse, sli: latency_p95, above: 1.5}]}
load: {journeys: {browse: 4, login: 1, cart: 1}, users: 8, spawn_rate: 20}
variants:
  - id: catalogue-delay
    title: delay on the edge to the catalogue
    cause: network delay between front-end and catalogue
    faults: [{kind: network.delay, target: front-end->catalogue, params: {latency_ms: 1500}, duration: 10m}]
    ground_truth: {root_cause: [catalogue], category: network_latency, propagation: [catalogue, front-end]}
    remediation: [{tool: restart, args: {service: catalogue}, wait_s: 2}]
""",
    """
id: held-cart-partition
version: 1
title: Carts fail
journey: cart
impact: Adding to the basket fails for many shoppers.
slo: [{journey: cart, sli: error_rate, below: 0.01}]
symptom: {any: [{journey: cart, sli: error_rate, above: 0.05}]}
load: {journeys: {cart: 4, browse: 2}, users: 8, spawn_rate: 20}
variants:
  - id: carts-partition
    title: answers from carts are lost
    cause: network partition between front-end and carts
    faults: [{kind: network.partition, target: front-end->carts, params: {direction: downstream}, duration: 10m}]
    ground_truth: {root_cause: [carts], category: network_partition, propagation: [carts, front-end]}
    remediation: [{tool: restart, args: {service: carts}, wait_s: 2}]
""",
    """
id: held-catalogue-db-cpu
version: 1
title: Browsing is slow at the database
journey: browse
impact: Product pages take seconds to load.
slo: [{journey: browse, sli: latency_p95, below: 1.0}]
symptom: {any: [{journey: browse, sli: latency_p95, above: 1.5}]}
load: {journeys: {browse: 4, cart: 1}, users: 8, spawn_rate: 20}
variants:
  - id: catalogue-db-starved
    title: catalogue-db on a tiny CPU allowance
    cause: the catalogue database is starved of CPU
    faults: [{kind: resource.limit, target: catalogue-db, params: {cpu: 30m}, duration: 10m}]
    ground_truth: {root_cause: [catalogue-db], category: resource_saturation,
                   propagation: [catalogue-db, catalogue, front-end]}
    remediation: [{tool: set_limits, args: {service: catalogue-db, clear: true}, wait_s: 2}]
""",
]


def held_out() -> list[Any]:
    from sockdrill.scenarios.catalogue_loader import load_scenario_text

    return [load_scenario_text(text, f"held-out-{i}") for i, text in enumerate(HELD_OUT)]


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    valid = [r for r in rows if r["valid"]]
    if not valid:
        return {"runs": len(rows), "valid": 0}
    ttd = [r["detection"]["ttd_s"] for r in valid if r["detection"].get("ttd_s") is not None]
    return {"runs": len(rows), "valid": len(valid),
            "ac1": round(sum(bool(r["localization"].get("ac1")) for r in valid) / len(valid), 3),
            "ac3": round(sum(bool(r["localization"].get("ac3")) for r in valid) / len(valid), 3),
            "category_accuracy": round(sum(bool(r["diagnosis"].get("correct")) for r in valid) / len(valid), 3),
            "detected": sum(bool(r["detection"].get("detected")) for r in valid),
            "ttd_mean_s": round(statistics.mean(ttd), 2) if ttd else None,
            "ttd_max_s": round(max(ttd), 2) if ttd else None,
            "slo_restored": sum(bool(r["mitigation"].get("slo_restored")) for r in valid)}


def bench_agents(duration: float = 5.0, controls: int = 2, only: list[str] | None = None) -> dict[str, Any]:
    """``duration`` is ignored (each run takes the fast profile's windows)."""
    from sockdrill.cluster import client as cluster_client
    from sockdrill.cluster.ports import free_port
    from sockdrill.scenarios.catalogue_loader import load_catalogue
    from sockdrill.scenarios.runner import RunOptions, run_variant
    from sockdrill.shop.manifest import shop_deployments

    catalogue = list(load_catalogue().scenarios.values())
    extra = held_out()
    everything = catalogue + extra
    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-agents-"))
    data_dir.chmod(0o711)
    out = Path(tempfile.mkdtemp(prefix="sockdrill-bench-agents-runs-"))
    os.environ["SOCKDRILL_SCRAPE_INTERVAL"] = "1"  # inherited by the supervisor and its recorder
    rows: dict[str, list[dict[str, Any]]] = {"catalogue": [], "held_out": [], "control": []}
    per_run: list[dict[str, Any]] = []
    try:
        cluster_client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=240,
                          pod_env={"SOCKDRILL_DATA_USERS": "2000", "SOCKDRILL_SCRAPE_INTERVAL": "1"})
        plan: list[tuple[str, Any, Any, int]] = []
        for sc in everything:
            group = "control" if sc.control else ("held_out" if sc in extra else "catalogue")
            for var in sc.variants:
                ref = f"{sc.id}/{var.id}"
                if only and not any(ref.startswith(o) for o in only):
                    continue
                seeds = range(1, controls + 1) if sc.control else [1]
                plan.extend((group, sc, var, seed) for seed in seeds)
        for group, sc, var, seed in plan:
            opts = RunOptions(agent="baseline", profile="fast", seed=seed, out=out, data_dir=data_dir)
            result = run_variant(sc, var, opts, everything)
            rows[group].append(result)
            per_run.append({"run": f"{sc.id}/{var.id}#s{seed}", "valid": result["valid"],
                            "invalid_reason": result.get("invalid_reason"),
                            "ranked": result["localization"].get("ranked"),
                            "ac1": result["localization"].get("ac1"), "category": result["diagnosis"].get("correct"),
                            "ttd_s": result["detection"].get("ttd_s"),
                            "detected": result["detection"].get("detected")})
    finally:
        cluster_client.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    control_valid = [r for r in rows["control"] if r["valid"]]
    return {"catalogue": _summary(rows["catalogue"]), "held_out": _summary(rows["held_out"]),
            "control": {"runs": len(rows["control"]), "valid": len(control_valid),
                        "false_detections": sum(bool(r["detection"].get("detected")) for r in control_valid)},
            "runs": per_run, "run_dirs": str(out)}
