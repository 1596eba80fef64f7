"""``sockdrill run --agent rca``: the baseline's loop (detect, submit, remediate, verify) with its diagnosis
replaced by the statistical ranking of ``rca.py``: every component's metrics read through the tools as
time series, one onset for the whole system, robust z-scores against each metric's own healthy past, and
symptoms discounted where a callee explains them. No family of signals is matched to a fault by hand;
the category is the meaning of the winning metric's family.

It sits beside the hand-tuned ``baseline`` so that ``sockdrill bench agents`` can hold the two side by
side, on the catalogue and on held-out faults, before either becomes the default.

What it reads (each one ``metrics`` call over the last ``span_s`` seconds, at the scrape interval):
services' p95 latency, 5xx share and, at the entry point, request rate; each call's client-side p95 and
failure share against the callee's own (a gap is time or answers lost on the way: an edge fault); CPU
use, CPU throttling and working-set memory of every pod; PostgreSQL rows read by sequential scans per
table and busy sessions; Redis memory against its maximum and evictions; queue depth. Configuration that
changed during the incident (``describe``'s revision) and restarts (``pods``) count as evidence too.
"""

from __future__ import annotations

import math
import time
from typing import Any

from sockdrill.agents.baseline import Baseline, Diagnosis, Evidence
from sockdrill.agents.rca import Metric, Point, rank

MIN_Z = 3.0


def _series(tools: Any, span_s: float, end: float, by: str, **query: Any) -> dict[tuple[str, ...], list[Point]]:
    """One ``metrics`` call: label tuple (in ``by``'s order) → points."""
    args = {"since_s": span_s, "end": end, "points": True, "limit": 100, "by": by, **query}
    if args.get("fn", "raw") in ("raw", "rate", "increase") and "op" not in args:
        args["op"] = "sum"
    res = tools.call("metrics", **args)
    if not res.get("ok"):
        return {}
    keys = [k.strip() for k in by.split(",")]
    out: dict[tuple[str, ...], list[Point]] = {}
    for s in res["result"].get("series", []):
        labels = s.get("labels") or {}
        key = tuple(str(labels.get(k, "")) for k in keys)
        out[key] = [(float(t), float(v)) for t, v in (s.get("points") or []) if v is not None]
    return out


def _ratio(num: list[Point], den: list[Point], min_den: float = 1e-9) -> list[Point]:
    """Point-wise num/den on the times both have (0 where the denominator is ~0)."""
    d = dict(den)
    return [(t, (v / d[t]) if d[t] > min_den else 0.0) for t, v in num if t in d]


def _minus(a: list[Point], b: list[Point]) -> list[Point]:
    d = dict(b)
    return [(t, v - d[t]) for t, v in a if t in d]


class StatisticalBaseline(Baseline):
    """The baseline with a statistical diagnosis (``rca.py``)."""

    def __init__(self, span_s: float = 90.0, **kw: Any) -> None:
        super().__init__(span_s=span_s, **kw)

    def collect(self, tools: Any, t0: float, kinds: dict[str, str], calls: dict[str, list[str]]) -> list[Metric]:
        span, interval = self.span_s, self.interval or 5.0
        win = max(3 * interval, 3.0)
        services = [n for n, k in kinds.items() if k == "service"]
        callers = {d for ds in calls.values() for d in ds}
        metrics: list[Metric] = []

        def add(component: str, name: str, family: str, points: list[Point], direction: int = 1) -> None:
            if component in kinds and len(points) >= 4:
                metrics.append(Metric(component, name, family, tuple(points), direction))

        q = _series(tools, span, t0, "service", name="http_request_duration_seconds", fn="p95", window_s=win)
        p95 = {k[0]: v for k, v in q.items()}
        total = {k[0]: v for k, v in _series(tools, span, t0, "service", name="http_request_duration_seconds_count",
                                              fn="rate", window_s=win).items()}
        bad = {k[0]: v for k, v in _series(tools, span, t0, "service", name="http_request_duration_seconds_count",
                                            fn="rate", window_s=win, labels={"status_code": "~5.."}).items()}
        for s in services:
            add(s, "p95", "latency", p95.get(s, []))
            if s in total:
                add(s, "error_share", "errors", _ratio(bad.get(s, [(t, 0.0) for t, _ in total[s]]), total[s]))
            if s not in callers:  # the entry point: more requests than before is demand
                add(s, "requests", "demand", total.get(s, []))

        cp95 = _series(tools, span, t0, "service,destination", name="http_client_request_duration_seconds",
                       fn="p95", window_s=win)
        crate = _series(tools, span, t0, "service,destination", name="http_client_request_duration_seconds_count",
                        fn="rate", window_s=win)
        cerr = _series(tools, span, t0, "service,destination", name="http_client_errors_total", fn="rate",
                       window_s=win)
        for (src, dst), pts in cp95.items():
            if dst in kinds and dst in p95:  # time lost between the caller and the callee's own answer
                add(dst, f"gap_from:{src}", "edge_latency", _minus(pts, p95[dst]))
        for (src, dst), pts in crate.items():
            lost = _ratio(cerr.get((src, dst), [(t, 0.0) for t, _ in pts]), pts)
            if dst in total:  # answers lost on the way, beyond what the callee itself fails
                own = _ratio(bad.get(dst, [(t, 0.0) for t, _ in total[dst]]), total[dst])
                lost = _minus(lost, own)
            add(dst, f"lost_from:{src}", "edge_loss", lost)

        for (svc,), pts in _series(tools, span, t0, "service", name="container_cpu_usage_seconds_total",
                                   fn="rate", window_s=win).items():
            add(svc, "cpu", "cpu", pts)
        thr = _series(tools, span, t0, "service", name="container_cpu_cfs_throttled_periods_total", fn="rate",
                      window_s=win)
        per = _series(tools, span, t0, "service", name="container_cpu_cfs_periods_total", fn="rate", window_s=win)
        for key, pts in thr.items():
            add(key[0], "throttled_share", "throttling", _ratio(pts, per.get(key, [])))
        for (svc,), pts in _series(tools, span, t0, "service", name="container_memory_working_set_bytes").items():
            add(svc, "memory", "memory", pts)

        for (db, rel), pts in _series(tools, span, t0, "service,relname", name="pg_stat_user_tables_seq_tup_read",
                                      fn="rate", window_s=win).items():
            add(db, f"seq_tup_read:{rel}", "scan", pts)
        for (db,), pts in _series(tools, span, t0, "service", name="pg_stat_activity_count",
                                  labels={"state": "active"}).items():
            add(db, "active_sessions", "sessions", pts)
        used = _series(tools, span, t0, "service", name="redis_memory_used_bytes")
        cap = _series(tools, span, t0, "service", name="redis_memory_max_bytes")
        for key, pts in used.items():
            ceiling = [(t, v if v > 0 else math.inf) for t, v in cap.get(key, [])]
            add(key[0], "memory_of_max", "cache_memory", _ratio(pts, ceiling))
        for (r,), pts in _series(tools, span, t0, "service", name="redis_evicted_keys_total", fn="rate",
                                 window_s=win).items():
            add(r, "evictions", "evictions", pts)
        for (qname,), pts in _series(tools, span, t0, "service", name="rabbitmq_queue_messages_ready").items():
            add(qname, "ready", "queue", pts)
        return metrics

    def diagnose(self, tools: Any, t0: float, kinds: dict[str, str], roles: dict[str, str],
                 calls: dict[str, list[str]]) -> Diagnosis:
        if self.interval is None:
            probe = self._ok(tools.call("metrics", name="up", since_s=5, limit=1)) or {}
            self.interval = float(probe.get("scrape_interval_s") or 5.0)
        metrics = self.collect(tools, t0, kinds, calls)
        ranking = rank(metrics, calls, min_z=MIN_Z)
        scores: dict[str, float] = dict(ranking.components)
        category = ranking.category
        families: dict[str, str] = {}
        for comp, ev in ranking.evidence.items():
            families[comp] = ev[0].family if ev else ""
        # What changed lately, on the components users feel: a configuration change or restarts.
        symptomatic = [c for c, _ in ranking.components[:3] if kinds.get(c) == "service"]
        for comp in symptomatic:
            d = self._ok(tools.call("describe", service=comp)) or {}
            if d.get("config_revision") and all(s.family in ("latency", "errors", "edge_loss", "edge_latency")
                                                for s in ranking.evidence.get(comp, [])):
                scores[comp] = max(scores.get(comp, 0.0), max(scores.values(), default=0.0) + 1.0)
                families[comp] = "config"
        ranked = sorted(scores, key=lambda c: -scores[c])
        if ranked and families.get(ranked[0]) == "config":
            category = "misconfiguration"
        evidence: list[Evidence] = []
        for comp in ranked:
            for s in ranking.evidence.get(comp, [])[:3]:
                evidence.append(Evidence(comp, s.family, s.z / MIN_Z,
                                         f"{s.metric} {s.before:.3g} → {s.after:.3g} ({s.z:.1f} spreads)"
                                         if s.before is not None and s.after is not None else s.metric))
        evidence.sort(key=lambda e: (ranked.index(e.component), -e.score))
        scan = None
        if ranked and category == "query_inefficiency":
            best = next((s for s in ranking.evidence.get(ranked[0], []) if s.family == "scan"), None)
            if best is not None:
                scan = (ranked[0], best.metric.split(":", 1)[1])
        if ranked and category in ("resource_saturation",) and any(
                s.family == "demand" and s.z >= MIN_Z for ev in ranking.evidence.values() for s in ev) \
                and kinds.get(ranked[0]) == "service":
            category = "capacity_overload"  # the entry point's demand rose and a service saturated
        self.log.append(f"{time.strftime('%X')} onset {ranking.onset} ranked {ranked[:5]} category {category}")
        return Diagnosis(ranked, category, evidence, scan)
