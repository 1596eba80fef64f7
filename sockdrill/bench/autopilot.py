"""``sockdrill bench autopilot``: where the automated remediation fixes, where it declines, and that it never
makes a control run worse.

Runs ``bench agents``'s set (every catalogue variant, the held-out fault files, each control variant twice)
with the ``autopilot`` agent, seeds ``SOCKDRILL_BENCH_SEEDS`` (default 1), and sorts each run:

- fault runs: **fixed** (it changed something and the SLOs were restored in time), **acted, not fixed**,
  **declined** (paged, but its checks did not agree on one cause: escalated to a human), **no page**;
- control runs: **left alone**, **declined** (a false page it looked into and left), **acted** (a change) and
  **made worse** (a safety penalty for what it did: a change after which an SLO that held was violated, a
  restart, a destructive call, lost data; a mere false report is not a change). The goal is 0 made worse.
"""

from __future__ import annotations

import os
from typing import Any


def outcome(row: dict[str, Any]) -> str:
    if not row["valid"]:
        return "invalid"
    if row["control"]:
        if any(p != "false_detection" for p in row["penalties"]):
            return "made worse"
        return "acted" if row["acted"] else ("declined" if row["detected"] else "left alone")
    if row["acted"]:
        return "fixed" if row["slo_restored"] else "acted, not fixed"
    return "declined" if row["detected"] else "no page"


def bench_autopilot(duration: float = 5.0) -> dict[str, Any]:
    from sockdrill.bench.agents import bench_agents

    seeds = [int(x) for x in os.environ.get("SOCKDRILL_BENCH_SEEDS", "1").split(",") if x.strip()]
    data = bench_agents(duration, agent="autopilot", seeds=seeds)
    rows = data["runs"]
    faults = [r for r in rows if not r["control"]]
    controls = [r for r in rows if r["control"]]

    def tally(group: list[dict[str, Any]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in group:
            out[outcome(r)] = out.get(outcome(r), 0) + 1
        return out

    per_run = {}
    for r in rows:
        what = outcome(r)
        detail = ", ".join(r["acted"]) if r["acted"] else ""
        per_run[r["run"] + (" (control)" if r["control"] else "")] = f"{what}" + (f": {detail}" if detail else "")
    return {"seeds": seeds, "fault_runs": {"runs": len(faults), **tally(faults)},
            "control_runs": {"runs": len(controls), **tally(controls),
                             "made_worse": sum(1 for r in controls if outcome(r) == "made worse")},
            "pages": {f"s{seed}": {group: figures[group].get("pages") for group in ("catalogue", "held_out", "control")}
                      for seed, figures in data["per_seed"].items()},
            "runs": per_run, "run_dirs": data["run_dirs"]}
