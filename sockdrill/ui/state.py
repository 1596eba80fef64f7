"""What the control room shows of one run, live or finished, as one JSON-able dict.

A run in progress is a private ``.run-*`` folder with ``live.json`` (the phase; see the runner) and the load
generators' per-second records; a finished run has ``journal.json`` and ``result.json`` besides. Both give:

- each journey's SLIs per second (p95 latency, error ratio, requests) and each SLO's error budget spent so
  far (the dashboard's SLOs: the same two for every journey the traffic drives);
- the burn-rate alerts those SLOs raise (the built-in evaluator, the same rules Prometheus runs);
- the topology with each call edge's health over the last ``EDGE_WINDOW_S`` (the mesh's metrics);
- the agent's actions.

Only a finished run adds what the scenario was: the fault's onset and revert, the ground truth, the score.
While a run is in progress nothing here names the scenario, the variant or the fault.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from sockdrill.cluster.state import read_json
from sockdrill.evaluate.journal import Topology
from sockdrill.scenarios.alert_rules import runbook_for
from sockdrill.scenarios.guards import journey_slos
from sockdrill.scenarios.runner import IN_PROGRESS_PREFIX, LIVE_FILE, samples_from_records
from sockdrill.slo.alerts import ALERT_OBJECTIVE, alert_timeline, alerting_slo, rules_for
from sockdrill.slo.sli import SliSample
from sockdrill.slo.slo import SLO, budget_burned, get_profile

EDGE_WINDOW_S = 10.0
LOAD_FILES = ("load.jsonl", "surge.jsonl")
SLOW_EDGE_S = 0.5       # an edge whose p95 is over this is drawn slow
FAILING_EDGE = 0.05     # ... and one that fails more than this share of its requests, failing
FINISHED_MARKS = ("warmup_start", "fault_onset", "symptom_verified", "agent_start", "submit", "recovery_verified",
                  "fault_revert", "end")


class RunNotFound(LookupError):
    """No run of that name under the runs folder."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """The load generator's per-second records; a line still being written is skipped."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "time" in rec:
            out.append(rec)
    return out


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Runs under ``root``, newest first: finished ones by name, those in progress as 'live'."""
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for path in root.iterdir():
        if not path.is_dir():
            continue
        if (path / LIVE_FILE).exists():
            live = read_json(path / LIVE_FILE) or {}
            out.append({"id": path.name, "live": True, "started": live.get("started"), "phase": live.get("phase")})
        elif (path / "result.json").exists() and not path.name.startswith(IN_PROGRESS_PREFIX):
            result = read_json(path / "result.json") or {}
            out.append({"id": path.name, "live": False, "started": path.stat().st_mtime,
                        "valid": result.get("valid"), "score": result.get("score")})
    return sorted(out, key=lambda r: (not r["live"], -(r.get("started") or 0)))


def run_path(root: Path, run_id: str) -> Path:
    """The folder of ``run_id``: a direct child of ``root`` and nothing else (no paths through the API)."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        raise RunNotFound(f"no run named {run_id!r}")
    path = root / run_id
    finished = (path / "result.json").exists() and not run_id.startswith(IN_PROGRESS_PREFIX)
    if not path.is_dir() or not ((path / LIVE_FILE).exists() or finished):
        raise RunNotFound(f"no run named {run_id!r} under {root}")
    return path


def runbook_text(runbook_id: str) -> str:
    """One alert's runbook (Markdown), by the id the alert rules link to."""
    from sockdrill.scenarios.runner import RUNBOOK_DIR

    known = {p.stem: p for p in RUNBOOK_DIR.glob("*.md")}
    if runbook_id not in known:
        raise RunNotFound(f"no runbook named {runbook_id!r}")
    return known[runbook_id].read_text()


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)


def journey_series(records: list[dict[str, Any]]) -> dict[str, list[list[float | None]]]:
    """journey → [[time, p95, error ratio, requests], ...] per second, both load generators merged."""
    per: dict[str, dict[float, list[float]]] = {}
    for rec in records:
        t = round(float(rec["time"]), 1)
        for journey, w in rec.get("journeys", {}).items():
            acc = per.setdefault(journey, {}).setdefault(t, [0.0, 0.0, 0.0])
            count = float(w.get("count") or 0)
            acc[0] = max(acc[0], float(w.get("p95") or 0.0))  # the worse of the two generators' p95
            acc[1] += float(w.get("failures") or 0)
            acc[2] += count
    out: dict[str, list[list[float | None]]] = {}
    for journey, rows in sorted(per.items()):
        out[journey] = [[t, _num(v[0]) if v[2] else None, _num(v[1] / v[2]) if v[2] else None, v[2]]
                        for t, v in sorted(rows.items())]
    return out


def budget_series(slo: SLO, samples: list[SliSample], start: float, period_s: float,
                  step_s: float = 1.0) -> list[list[float]]:
    """[[time, share of the period's error budget spent since ``start``], ...]."""
    mine = [s for s in samples if s.journey == slo.journey]
    if not mine:
        return []
    end = max(s.time for s in mine) + 1.0
    out, t = [], start + step_s
    while t <= end + 1e-9:
        out.append([round(t, 1), round(budget_burned(slo, mine, start, t, period_s), 4)])
        t += step_s
    return out


def _edges(query: Any, at: float, topology: Topology) -> list[dict[str, Any]]:
    """Each call edge's requests per second, error share and p95 over ``EDGE_WINDOW_S`` before ``at``."""
    start, end = at - EDGE_WINDOW_S, at
    kw = {"start": start, "end": end, "step": EDGE_WINDOW_S, "window": EDGE_WINDOW_S}
    rps: dict[tuple[str, str], float] = {}
    bad: dict[tuple[str, str], float] = {}

    def last(points: list[list[float]]) -> float:
        vals = [p[1] for p in points if p[1] is not None and not math.isnan(p[1])]
        return vals[-1] if vals else 0.0

    for row in query.rate("mesh_edge_requests_total", **kw):
        key = (row["labels"].get("source", ""), row["labels"].get("destination", ""))
        v = last(row["points"])
        rps[key] = rps.get(key, 0.0) + v
        if row["labels"].get("code_class") == "5xx":
            bad[key] = bad.get(key, 0.0) + v
    for row in query.rate("mesh_edge_errors_total", **kw):
        key = (row["labels"].get("source", ""), row["labels"].get("destination", ""))
        bad[key] = bad.get(key, 0.0) + last(row["points"])
    moving: dict[tuple[str, str], float] = {}  # bytes per second: a datastore edge carries no HTTP requests
    for row in query.rate("mesh_edge_bytes_total", **kw):
        key = (row["labels"].get("source", ""), row["labels"].get("destination", ""))
        moving[key] = moving.get(key, 0.0) + last(row["points"])
    p95: dict[tuple[str, str], float] = {}
    for row in query.quantile(0.95, "mesh_edge_request_duration_seconds", by=["source", "destination"], **kw):
        key = (row["labels"].get("source", ""), row["labels"].get("destination", ""))
        p95[key] = last(row["points"])
    out = []
    for source, dest in topology.edges:
        key = (source, dest)
        r, b, q = rps.get(key, 0.0), bad.get(key, 0.0), p95.get(key)
        share = b / r if r > 0 else (1.0 if b > 0 else 0.0)
        idle = r <= 0 and moving.get(key, 0.0) <= 0
        health = ("failing" if share > FAILING_EDGE else "slow" if q is not None and q > SLOW_EDGE_S
                  else "idle" if idle else "ok")
        out.append({"source": source, "destination": dest, "rps": round(r, 2), "error_share": round(share, 4),
                    "p95": _num(q), "bytes_per_s": round(moving.get(key, 0.0), 1), "health": health})
    return out


def _live_query(data_dir: str | None) -> Any:
    """The running shop's recorder, with the operator's telemetry token; None when there is none."""
    if not data_dir:
        return None
    from sockdrill.cluster.client import RuntimeClient
    from sockdrill.cluster.state import state_dir
    from sockdrill.telemetry.query import RemoteQuery

    client = RuntimeClient.find(Path(data_dir))
    if client is None:
        return None
    record = read_json(state_dir(client.data_dir) / "runtime.json")
    url = (record or {}).get("recorder_url") or client.record.get("recorder_url")
    return RemoteQuery(url, timeout=5.0, token=client.record.get("telemetry_token")) if url else None


def _finished_query(run_dir: Path) -> Any:
    from sockdrill.telemetry.query import Query
    from sockdrill.telemetry.store import db_path

    return Query.open(run_dir) if db_path(run_dir).exists() else None


def _actions_from_audit(path: Path) -> list[dict[str, Any]]:
    """The agent's calls so far; what it submitted stays hidden until the run is over (an answer is not
    for the room while the incident is still being worked, and the oracle's would be the ground truth)."""
    return [{"time": r["time"], "tool": r.get("tool"), "kind": r.get("kind"),
             "args": {} if r.get("kind") == "submit" else r.get("args"), "ok": r.get("ok")}
            for r in read_records(path)]


def run_state(run_dir: Path, at: float | None = None) -> dict[str, Any]:
    """Everything the control room draws for ``run_dir`` (see the module's docstring)."""
    live_info = read_json(run_dir / LIVE_FILE)
    if live_info is None and run_dir.name.startswith(IN_PROGRESS_PREFIX):
        # Its agent is done and the runner is writing its result: it is shown whole only under its final name.
        raise RunNotFound(f"run {run_dir.name!r} is being finished")
    journal = None if live_info is not None else read_json(run_dir / "journal.json")
    if live_info is None and journal is None:
        raise RunNotFound(f"{run_dir} is neither a run in progress nor a finished run")
    records = [r for name in LOAD_FILES for r in read_records(run_dir / name)]
    samples = samples_from_records(records)
    journeys = journey_series(records)
    topology = Topology.from_manifest()
    state: dict[str, Any] = {"id": run_dir.name, "live": live_info is not None, "now": time.time(),
                             "deployments": topology.deployments}
    if live_info is not None:
        profile = get_profile(str(live_info.get("profile") or "fast"))
        slos = journey_slos(list(journeys), ALERT_OBJECTIVE)
        start = min((r["time"] for r in records), default=float(live_info.get("started") or time.time())) - 1.0
        state.update(phase=live_info.get("phase"), origin=start, marks=[],
                     actions=_actions_from_audit(run_dir / "agent-audit.jsonl"))
        query_at = at or time.time()
        try:
            query = _live_query(live_info.get("data_dir"))
        except (OSError, ValueError):
            query = None
    else:
        assert journal is not None
        profile = get_profile(str(journal.get("profile") or "fast"))
        slos = [SLO(s["journey"], s["sli"], s["threshold"], objective=s["objective"], name=s.get("name", ""))
                for s in [*journal.get("slos", []), *journal.get("guard_slos", [])]]
        events = journal.get("events", [])
        first = {e["kind"]: e["time"] for e in reversed(events)}
        start = first.get("warmup_start") or (min((r["time"] for r in records), default=0.0) - 1.0)
        origin = first.get("fault_onset") or start
        result = read_json(run_dir / "result.json") or {}
        state.update(phase="finished", origin=origin,
                     marks=[{"kind": k, "time": first[k]} for k in FINISHED_MARKS if k in first],
                     actions=[{"time": e["time"], "tool": e.get("tool"), "kind": "act" if e.get("mutating")
                               else "observe", "args": e.get("args"), "ok": e.get("ok")}
                              for e in events if e["kind"] == "action"],
                     result={"scenario": journal.get("scenario"), "variant": journal.get("variant"),
                             "agent": journal.get("agent"), "seed": journal.get("seed"),
                             "valid": result.get("valid"), "invalid_reason": result.get("invalid_reason"),
                             "score": result.get("score"), "ground_truth": journal.get("ground_truth")})
        # Edge health by default over the incident's last 10 s: up to the recovery (or the revert, or the end).
        query_at = at or first.get("recovery_verified") or first.get("fault_revert") or first.get("end") or time.time()
        query = _finished_query(run_dir)
    slos = [alerting_slo(s) for s in slos]  # budgets and alerts: the SLO as published, as the pager has it
    state["slos"] = [{"label": s.label, "journey": s.journey, "sli": s.sli, "threshold": s.threshold,
                      "budget": budget_series(s, samples, start, profile.period_s)} for s in slos]
    rules = rules_for(profile)
    state["alerts"] = [{"slo": a.slo, "rule": a.rule, "severity": a.severity, "start": a.start, "end": a.end,
                        "runbook": runbook_for(s)}
                       for s in slos for a in alert_timeline(s, samples, rules, start=start)]
    state["journeys"] = journeys
    state["edges_at"] = query_at
    state["edges"], state["edges_note"] = [], None
    if query is None:
        state["edges_note"] = "no telemetry for this run (no recorder, or the run kept none)"
    else:
        try:
            state["edges"] = _edges(query, query_at, topology)
        except (OSError, ValueError, ConnectionError) as exc:
            state["edges_note"] = f"edge health unavailable: {exc}"
        finally:
            close = getattr(query, "close", None)
            if close:
                close()
    return state


__all__ = ["RunNotFound", "budget_series", "journey_series", "list_runs", "read_records", "run_path", "run_state",
           "runbook_text"]
