"""``sockdrill bench scenarios``: every catalogue variant in the fast profile, each built-in agent's score on it and
its wall time, on one shop brought up for the benchmark (reset between runs), as a table for the README.

Environment: ``SOCKDRILL_BENCH_AGENTS`` (comma list; default noop, restart-all, oracle, baseline, those that
import), ``SOCKDRILL_BENCH_SCENARIOS`` (comma list of scenario ids or scenario/variant refs; default all) and
``SOCKDRILL_BENCH_LOG`` (a file each finished run is appended to as one JSON line, so a long bench that is stopped
keeps what it measured)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sockdrill.cluster import client
from sockdrill.cluster.ports import free_port
from sockdrill.errors import SockdrillError
from sockdrill.scenarios.catalogue_loader import load_catalogue
from sockdrill.scenarios.runner import BASE_USERS, RunOptions, run_variant

AGENTS = ("noop", "restart-all", "oracle", "baseline")


def _selected(catalogue: Any) -> list[tuple[Any, Any]]:
    wanted = [w.strip() for w in os.environ.get("SOCKDRILL_BENCH_SCENARIOS", "").split(",") if w.strip()]
    pairs = [(sc, var) for sc in catalogue.scenarios.values() for var in sc.variants]
    if not wanted:
        return pairs
    for w in wanted:
        catalogue.get(w)  # an unknown scenario or variant fails here, with suggestions
    return [(sc, var) for sc, var in pairs if sc.id in wanted or f"{sc.id}/{var.id}" in wanted]


def _row(ref: str, agent: str, wall: float, r: dict[str, Any]) -> dict[str, Any]:
    return {"variant": ref, "agent": agent, "wall_s": wall, "valid": r["valid"],
            "detected": r["detection"].get("detected"), "ac1": r["localization"].get("ac1"),
            "category_ok": r["diagnosis"].get("correct"), "restored": r["mitigation"].get("slo_restored"),
            "integrity": r["integrity"].get("ok"), "score": r.get("score"), "invalid_reason": r.get("invalid_reason")}


def markdown(rows: list[dict[str, Any]], agents: list[str]) -> str:
    """Variants down, agents across: each cell the score (``r`` where the SLO was restored), ``invalid`` where the
    run was, then the slowest run's wall time."""
    order: list[str] = list(dict.fromkeys(r["variant"] for r in rows))
    lines = ["| variant | " + " | ".join(agents) + " | slowest run |", "|---" * (len(agents) + 2) + "|"]
    for ref in order:
        cells = []
        mine = [r for r in rows if r["variant"] == ref]
        for agent in agents:
            runs = [r for r in mine if r["agent"] == agent]
            if not runs:
                cells.append("–")
            elif not runs[0]["valid"] or runs[0]["score"] is None:
                cells.append("invalid")
            else:
                cells.append(f"{runs[0]['score']:.2f}" + (" r" if runs[0]["restored"] else ""))
        lines.append(f"| `{ref}` | " + " | ".join(cells) + f" | {max(r['wall_s'] for r in mine):.0f} s |")
    return "\n".join(lines)


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
    pairs = _selected(catalogue)
    scenarios = list(catalogue.scenarios.values())
    log = os.environ.get("SOCKDRILL_BENCH_LOG")
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
        for sc, var in pairs:
            for agent in usable:
                t = time.perf_counter()
                ref = f"{sc.id}/{var.id}"
                try:
                    r = run_variant(sc, var, RunOptions(agent=agent, profile="fast", seed=1, out=out,
                                                        data_dir=data_dir), scenarios)
                    row = _row(ref, agent, round(time.perf_counter() - t, 1), r)
                except SockdrillError as exc:  # one broken run is a row of the table, not the end of the bench
                    row = {"variant": ref, "agent": agent, "wall_s": round(time.perf_counter() - t, 1),
                           "valid": False, "score": None, "restored": None, "invalid_reason": str(exc)}
                rows.append(row)
                if log:
                    with open(log, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
    finally:
        client.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    per_variant: dict[str, float] = {}
    for row in rows:
        per_variant[row["variant"]] = max(per_variant.get(row["variant"], 0.0), row["wall_s"])
    means = {}
    for agent in usable:
        scores = [r["score"] for r in rows if r["agent"] == agent and r["score"] is not None]
        means[agent] = round(sum(scores) / len(scores), 3) if scores else None
    return {"shop_up_s": round(up_s, 1), "total_s": round(time.perf_counter() - started_all, 1),
            "max_wall_s_per_variant": per_variant, "mean_score": means, "runs": rows,
            "invalid": sum(1 for r in rows if not r["valid"]), "markdown": markdown(rows, usable),
            "goal": "<= 60 s per variant (fast profile)"}
