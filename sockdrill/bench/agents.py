"""``sockdrill bench agents``: how well an agent localizes, categorises and detects, and what gaming earns.

One shop (1 s scrapes, as the fast profile's own shops) runs, for each seed in ``SOCKDRILL_BENCH_SEEDS``
(default 1,2,3): every variant of the catalogue, the held-out fault files below (targets and kinds the
catalogue does not use; the baseline is never tuned on them) and the control variants
``SOCKDRILL_BENCH_CONTROLS`` times each (default 2: 2 variants x 2 x 3 seeds = 12 control runs), with
the agent ``SOCKDRILL_BENCH_AGENT`` (default baseline), fast profile.

Figures, per seed and as mean ± sd over the seeds: AC@1 / AC@3 and category accuracy over valid fault
runs (catalogue and held-out separately), mean score over fault runs, false-positive rate on control runs.
With ``SOCKDRILL_BENCH_GAMING=1`` each gaming strategy (``agents/gaming.py``) also runs on every catalogue
variant (seed 1) and the highest score each reached is reported: all must stay under 0.35.
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
    # Kinds the catalogue never uses (HTTP aborts, a frozen pod; CPU stress only since seed 7's runaway process
    # in the front-end's pods, 2026-12-06), on yet other targets. Only their symptoms were checked to appear (the
    # fault must hurt); no agent was ever tuned on them.
    """
id: held-carts-aborts
version: 1
title: Carts answer errors
journey: cart
impact: Adding to the basket fails for many shoppers.
slo: [{journey: cart, sli: error_rate, below: 0.01}]
symptom: {any: [{journey: cart, sli: error_rate, above: 0.05}]}
load: {journeys: {cart: 4, browse: 2}, users: 8, spawn_rate: 20}
variants:
  - id: carts-http-503
    title: half of the calls to carts get a 503
    cause: carts answers 503 to half of its requests
    faults: [{kind: http.abort, target: front-end->carts, params: {code: 503, probability: 0.5}, duration: 10m}]
    ground_truth: {root_cause: [carts], category: dependency_failure, propagation: [carts, front-end]}
    remediation: [{tool: restart, args: {service: carts}, wait_s: 2}]
""",
    """
id: held-catalogue-cpu
version: 1
title: Browsing is slow
journey: browse
impact: Product pages take seconds to load.
slo: [{journey: browse, sli: latency_p95, below: 1.0}]
symptom: {any: [{journey: browse, sli: latency_p95, above: 1.5}]}
load: {journeys: {browse: 4, login: 1}, users: 8, spawn_rate: 20}
variants:
  - id: catalogue-cpu-hog
    title: a CPU hog inside the catalogue pod, under a small CPU limit
    cause: CPU-bound work inside the catalogue pod takes its CPU allowance
    faults:
      - {kind: resource.limit, target: catalogue, params: {cpu: 150m}, duration: 10m}
      - {kind: stress.cpu, target: catalogue, params: {workers: 2, load: 100}, duration: 10m}
    ground_truth: {root_cause: [catalogue], category: resource_saturation, propagation: [catalogue, front-end]}
    remediation: [{tool: restart, args: {service: catalogue}, wait_s: 2},
                  {tool: set_limits, args: {service: catalogue, clear: true}, wait_s: 2}]
""",
    """
id: held-orders-frozen
version: 1
title: Checkout hangs
journey: checkout
impact: Placing an order times out.
slo: [{journey: checkout, sli: error_rate, below: 0.01}]
symptom: {any: [{journey: checkout, sli: error_rate, above: 0.05}, {journey: checkout, sli: latency_p95, above: 3.0}]}
load: {journeys: {checkout: 3, browse: 2}, users: 8, spawn_rate: 20}
variants:
  - id: orders-paused
    title: the orders pod is frozen
    cause: every process of the orders pod stopped (SIGSTOP) and answers nothing
    faults: [{kind: pod.pause, target: orders, duration: 10m}]
    ground_truth: {root_cause: [orders], category: process_crash, propagation: [orders, front-end]}
    remediation: [{tool: restart, args: {service: orders}, wait_s: 3}]
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
            "slo_restored": sum(bool(r["mitigation"].get("slo_restored")) for r in valid),
            **_paging(valid)}


def _paging(valid: list[dict[str, Any]]) -> dict[str, Any]:
    """Alert quality over these runs: the first page's delay after the onset (mean over the runs that paged)
    and the false pages, from the built-in evaluator and from what Alertmanager delivered (where it ran)."""
    out: dict[str, Any] = {}
    for name, get in (("pages", lambda r: r["alerting"]),
                      ("alertmanager_pages", lambda r: r["alerting"].get("alertmanager"))):
        figures = [get(r) for r in valid if get(r) is not None]
        if not figures:
            continue
        firsts = [f["first_page_s"] for f in figures if f.get("first_page_s") is not None]
        out[name] = {"runs": len(figures), "paged": len(firsts),
                     "first_page_mean_s": round(statistics.mean(firsts), 2) if firsts else None,
                     "false_pages": sum(int(f.get("false_pages") or 0) for f in figures)}
    return out


def mutations(run_dir: Path) -> list[str]:
    """The changing tool calls of a run, as ``tool service`` (from its journal)."""
    import json

    try:
        events = json.loads((run_dir / "journal.json").read_text()).get("events", [])
    except (OSError, ValueError):
        return []
    return [f"{e.get('tool')} {(e.get('args') or {}).get('service', '')}".strip() for e in events
            if e.get("kind") == "action" and e.get("mutating") and e.get("ok")]


def _rate(rows: list[dict[str, Any]], pred: Any) -> float | None:
    valid = [r for r in rows if r["valid"]]
    return round(sum(1 for r in valid if pred(r)) / len(valid), 3) if valid else None


def _mean_sd(values: list[float | None]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None}
    return {"mean": round(statistics.mean(vals), 3), "sd": round(statistics.stdev(vals), 3) if len(vals) > 1 else 0.0}


def bench_agents(duration: float = 5.0, controls: int | None = None, only: list[str] | None = None,
                 agent: str | None = None, seeds: list[int] | None = None) -> dict[str, Any]:
    """``duration`` is ignored (each run takes the fast profile's windows); ``agent`` and ``seeds`` default to
    ``SOCKDRILL_BENCH_AGENT`` and ``SOCKDRILL_BENCH_SEEDS``."""
    from sockdrill.cluster import client as cluster_client
    from sockdrill.cluster.ports import free_port
    from sockdrill.scenarios.catalogue_loader import load_catalogue
    from sockdrill.scenarios.runner import BASE_USERS, RunOptions, run_variant
    from sockdrill.shop.manifest import shop_deployments

    agent = agent or os.environ.get("SOCKDRILL_BENCH_AGENT", "baseline")
    seeds = seeds or [int(x) for x in os.environ.get("SOCKDRILL_BENCH_SEEDS", "1,2,3").split(",") if x.strip()]
    controls = controls or int(os.environ.get("SOCKDRILL_BENCH_CONTROLS", "2"))
    gaming = os.environ.get("SOCKDRILL_BENCH_GAMING", "") == "1"
    catalogue = list(load_catalogue().scenarios.values())
    extra = held_out()
    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-agents-"))
    data_dir.chmod(0o711)
    out = Path(tempfile.mkdtemp(prefix="sockdrill-bench-agents-runs-"))
    os.environ["SOCKDRILL_SCRAPE_INTERVAL"] = "1"  # inherited by the supervisor and its recorder
    per_seed: dict[int, dict[str, list[dict[str, Any]]]] = {}
    per_run: list[dict[str, Any]] = []
    gaming_best: dict[str, dict[str, Any]] = {}

    def one(sc: Any, var: Any, who: str, seed: int) -> dict[str, Any]:
        opts = RunOptions(agent=who, profile="fast", seed=seed, out=out, data_dir=data_dir)
        result = run_variant(sc, var, opts)
        per_run.append({"run": f"{sc.id}/{var.id}#s{seed}", "agent": who, "valid": result["valid"],
                        "invalid_reason": result.get("invalid_reason"),
                        "ranked": result["localization"].get("ranked"), "ac1": result["localization"].get("ac1"),
                        "category": result["diagnosis"].get("correct"), "score": result.get("score"),
                        "false_positive": result["detection"].get("false_positive"),
                        "first_page_s": result["alerting"].get("first_page_s"),
                        "false_pages": result["alerting"].get("false_pages"),
                        "alertmanager": result["alerting"].get("alertmanager"), "control": sc.control,
                        "detected": result["detection"].get("detected"),
                        "slo_restored": result["mitigation"].get("slo_restored"),
                        "penalties": [p.get("kind") for p in result["safety"].get("penalties", [])],
                        "acted": mutations(Path(result["run_dir"]))})
        return result

    try:
        cluster_client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=240,
                          pod_env={"SOCKDRILL_DATA_USERS": str(BASE_USERS), "SOCKDRILL_SCRAPE_INTERVAL": "1"})
        for seed in seeds:
            rows: dict[str, list[dict[str, Any]]] = {"catalogue": [], "held_out": [], "control": []}
            for sc in catalogue + extra:
                group = "control" if sc.control else ("held_out" if sc in extra else "catalogue")
                for var in sc.variants:
                    if only and not any(f"{sc.id}/{var.id}".startswith(o) for o in only):
                        continue
                    for _ in range(controls if sc.control else 1):
                        rows[group].append(one(sc, var, agent, seed))
            per_seed[seed] = rows
        if gaming:
            from sockdrill.agents.base import BUILTIN

            for who in [a for a in BUILTIN if a.startswith("gaming-")]:
                for sc in catalogue:
                    for var in ([] if sc.control else sc.variants):
                        r = one(sc, var, who, 1)
                        best = gaming_best.get(who)
                        if r["valid"] and (best is None or (r["score"] or 0) > best["score"]):
                            gaming_best[who] = {"score": r["score"] or 0.0, "run": f"{sc.id}/{var.id}"}
    finally:
        cluster_client.down(data_dir, purge=True)
        shutil.rmtree(data_dir, ignore_errors=True)

    def figures(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        faults = [r["score"] for r in rows["catalogue"] + rows["held_out"] if r["valid"]]
        return {
            "catalogue": _summary(rows["catalogue"]), "held_out": _summary(rows["held_out"]),
            "fault_score_mean": _mean_sd(faults)["mean"],
            "control": {"runs": len(rows["control"]), "valid": sum(r["valid"] for r in rows["control"]),
                        "false_positive_rate": _rate(rows["control"],
                                                     lambda r: r["detection"].get("false_positive")),
                        **_paging([r for r in rows["control"] if r["valid"]])},
        }

    seeds_out = {s: figures(rows) for s, rows in per_seed.items()}
    spread: dict[str, Any] = {}
    for group in ("catalogue", "held_out"):
        for key in ("ac1", "ac3", "category_accuracy"):
            spread[f"{group}_{key}"] = _mean_sd([f[group].get(key) for f in seeds_out.values()])
    spread["fault_score"] = _mean_sd([f["fault_score_mean"] for f in seeds_out.values()])
    spread["control_false_positive_rate"] = _mean_sd([f["control"]["false_positive_rate"]
                                                      for f in seeds_out.values()])
    return {"agent": agent, "seeds": seeds, "over_seeds": spread, "per_seed": seeds_out,
            "control_runs": sum(f["control"]["runs"] for f in seeds_out.values()),
            "gaming_best": gaming_best or None, "runs": per_run, "run_dirs": str(out)}
