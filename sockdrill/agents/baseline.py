"""The baseline agent: statistics over telemetry through the agent tools only, nothing scenario-specific.

1. Detect: an SLO that does not hold or a burn-rate alert, corroborated by an anomaly in the telemetry
   (without an SLO source, a strong anomaly alone).
2. Measure every component now (the last few seconds) against its recent past (a low quantile of the
   last minute, i.e. how it was before things went wrong): RED (p95, 5xx share) per service; the client
   side of each call (p95, timeouts/errors) against the callee's own server side (a gap is time or
   answers lost on the way); CPU throttling; datastores (rows read by sequential scans, active
   sessions, memory against its maximum); warning/error logs; configuration that differs from the
   defaults.
3. Localize: symptoms move down the call graph to the callee that explains them (a caller inherits its
   callee's latency and errors); hard evidence on a component (saturation, a full store, scans) beats a
   changed configuration, which beats a network gap, which beats a bare symptom.
4. Categorise by the signal family that moved most, and remediate with a generic action for that
   family (restart behind a bad edge, lift limits or scale, cancel runaway queries, index the scanned
   column, roll back configuration, give a full store memory back, reconcile payments after checkout
   errors). After each action the SLOs are checked again; an action that made things worse is undone.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from sockdrill.agents.base import Incident, failing_slos, settle

LAT_FLOOR = 0.1       # seconds: p95s below this are noise, whatever their ratio
GAP_MIN = 0.25        # seconds a call may lose on the way before it counts
ERR_MIN = 0.02        # share of failed requests that counts as a symptom


def _q(values: list[float], q: float) -> float | None:
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vals:
        return None
    return vals[min(len(vals) - 1, max(0, int(q * (len(vals) - 1) + 0.5)))]


@dataclass
class Evidence:
    component: str
    family: str       # latency | errors | network_latency | network_partition | resource | capacity | scan
                      # | sessions | store_full | config
    score: float
    detail: str


@dataclass
class Diagnosis:
    ranked: list[str]
    category: str | None
    evidence: list[Evidence] = field(default_factory=list)
    scan_table: tuple[str, str] | None = None  # (datastore, table) with growing sequential scans


class Signals:
    """Current-vs-past values of one metric query, keyed by a label tuple."""

    def __init__(self, tools: Any, t0: float, span: float, cur_s: float) -> None:
        self.tools, self.t0, self.span, self.cur_s = tools, t0, span, cur_s

    def get(self, name: str, by: str, fn: str = "raw", op: str = "sum", labels: dict[str, str] | None = None,
            window_s: float = 0.0) -> dict[tuple[str, ...], tuple[float | None, float | None]]:
        args: dict[str, Any] = {"name": name, "fn": fn, "by": by, "since_s": self.span, "end": self.t0,
                                "points": True, "limit": 100}
        if fn in ("raw", "rate", "increase"):
            args["op"] = op
        if labels:
            args["labels"] = labels
        if window_s:
            args["window_s"] = window_s
        res = self.tools.call("metrics", **args)
        if not res.get("ok"):
            return {}
        keys = [k.strip() for k in by.split(",")]
        out = {}
        self.busy_past: dict[tuple[str, ...], float | None] = {}
        for s in res["result"]["series"]:
            pts = s.get("points") or []
            cur = [v for t, v in pts if t >= self.t0 - self.cur_s]
            past = [v for t, v in pts if t < self.t0 - self.cur_s]
            # Now: the mean (rates of rare events are spiky); before: a low quantile (how it was when well).
            fin = [v for v in cur if math.isfinite(v)]
            key = tuple(str(s["labels"].get(k, "")) for k in keys)
            out[key] = (sum(fin) / len(fin) if fin else None, _q(past, 0.25))
            self.busy_past[key] = _q([v for v in past if v > 0], 0.25)  # before, while there was traffic
        return out


class Baseline:
    """``sockdrill run --agent baseline``."""

    def __init__(self, span_s: float = 60.0, verify_s: float = 12.0, patience_s: float = 15.0) -> None:
        self.span_s = span_s
        self.patience_s = patience_s
        self.interval: float | None = None
        self.verify_s = verify_s
        self.log: list[str] = []

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self, tools: Any, incident: Incident) -> None:
        t0 = time.time()
        topo = self._ok(tools.call("topology")) or {"deployments": [], "edges": []}
        kinds = {d["name"]: d["kind"] for d in topo["deployments"]}
        roles = {d["name"]: str(d.get("role", "")) for d in topo["deployments"]}
        calls: dict[str, list[str]] = {}
        for e in topo["edges"]:
            if e["source"] in kinds:
                calls.setdefault(e["source"], []).append(e["destination"])
        start = t0
        per_round = 20  # tool calls one diagnosis takes at most
        while True:
            hard, soft, known = self._slo_state(tools)
            diag = self.diagnose(tools, t0, kinds, roles, calls)
            top = diag.evidence[0].score if diag.evidence else 0.0
            specific = diag.category is not None
            if specific and ((known and hard and top >= 1.0) or (top >= 2.0 and (soft or not known))):
                detected = True
                break
            # Users hurt (or about to be) but the telemetry does not show why yet: scrapes lag; look again.
            out_of_time = time.time() - start > self.patience_s or incident.time_left() < 15
            if out_of_time or getattr(tools, "steps", 0) + per_round + 10 > incident.budget_steps:
                detected = known and hard and top >= 0.5
                break
            time.sleep(2.0)
            t0 = time.time()
        if not detected:
            tools.call("submit", detected=False, root_causes=[], category="",
                       summary="SLOs hold and no component deviates from its recent past")
            return
        summary = "; ".join(f"{e.component}: {e.detail}" for e in diag.evidence[:4])
        for suspect in diag.ranked[:3]:  # confirm each suspect before naming it (pods, limits, config)
            tools.call("describe", service=suspect)
        tools.call("submit", detected=True, root_causes=diag.ranked[:5], category=diag.category or "",
                   summary=summary[:1500])
        if incident.time_left() > 5:
            self.remediate(tools, incident, diag, kinds, roles, calls)

    @staticmethod
    def _ok(res: dict[str, Any]) -> Any:
        return res.get("result") if res.get("ok") else None

    def _slo_state(self, tools: Any) -> tuple[bool, bool, bool]:
        """(an SLO fails or an alert fires, an SLI is past its threshold right now, an SLO source exists)."""
        status = self._ok(tools.call("slo_status"))
        alerts = self._ok(tools.call("alerts")) or []
        if status is None:
            return bool(alerts), bool(alerts), bool(alerts)
        slos = status.get("slos", [])
        hard = any(not s.get("holds", True) for s in slos) or bool(alerts)
        soft = any(s.get("current") is not None and s.get("threshold") is not None
                   and s["current"] > s["threshold"] for s in slos)
        return hard, soft, True

    def _failing(self, tools: Any) -> int | None:
        return failing_slos(tools)

    # ---- diagnosis --------------------------------------------------------------------------------
    def diagnose(self, tools: Any, t0: float, kinds: dict[str, str], roles: dict[str, str],
                 calls: dict[str, list[str]]) -> Diagnosis:
        if self.interval is None:
            probe = self._ok(tools.call("metrics", name="up", since_s=5, limit=1)) or {}
            self.interval = float(probe.get("scrape_interval_s") or 5.0)
        interval = self.interval
        win = max(3 * interval, 3.0)
        cur_s = max(2 * win, 6.0)
        sig = Signals(tools, t0, max(self.span_s, 4 * cur_s), cur_s)
        services = [n for n, k in kinds.items() if k == "service"]
        ev: list[Evidence] = []

        p95 = sig.get("http_request_duration_seconds", "service", fn="p95", window_s=win)
        total = sig.get("http_request_duration_seconds_count", "service", fn="rate", window_s=win)
        busy = dict(sig.busy_past)
        bad = sig.get("http_request_duration_seconds_count", "service", fn="rate", window_s=win,
                      labels={"status_code": "~5.."})
        cp95 = sig.get("http_client_request_duration_seconds", "service,destination", fn="p95", window_s=win)
        crate = sig.get("http_client_request_duration_seconds_count", "service,destination", fn="rate",
                        window_s=win)
        cerr = sig.get("http_client_errors_total", "service,destination", fn="rate", window_s=win)

        def share(num: float | None, den: float | None) -> float:
            return (num or 0.0) / den if den else 0.0

        symptom: dict[str, float] = {}
        for s in services:
            cur, past = p95.get((s,), (None, None))
            lat = 0.0
            if cur is not None and cur > 2 * LAT_FLOOR:
                lat = max(0.0, math.log2(cur / max(past or LAT_FLOOR, LAT_FLOOR)) - 1.0)
            rc, rp = total.get((s,), (None, None))
            bc, bp = bad.get((s,), (None, None))
            err = share(bc, rc) - share(bp, rp)
            err = err if err >= ERR_MIN else 0.0
            symptom[s] = lat + 8 * err
            if lat:
                ev.append(Evidence(s, "latency", lat, f"p95 {cur:.3g}s (was {past or 0:.3g}s)"))
            if err:
                ev.append(Evidence(s, "errors", 8 * err, f"{err:.0%} of requests fail"))

        # Calls: client side against the callee's server side.
        for (src, dst), (ccur, _cpast) in cp95.items():
            if dst not in kinds or src not in kinds:
                continue
            server = p95.get((dst,), (None, None))[0] or 0.0
            if ccur is not None and ccur > 2 * LAT_FLOOR and ccur - server > GAP_MIN and ccur > 2 * server:
                ev.append(Evidence(dst, "network_latency", 1.0 + math.log2(ccur / max(server, LAT_FLOOR)),
                                   f"{src} waits {ccur:.3g}s for {dst}, which answers in {server:.3g}s"))
        for (src, dst), (rc, rp) in crate.items():
            # http_client_errors_total counts timeouts too (kind="timeout").
            fails = cerr.get((src, dst), (0.0, 0.0))[0] or 0.0
            past_fails = cerr.get((src, dst), (0.0, 0.0))[1] or 0.0
            lost = share(fails, rc) - share(past_fails, rp)
            dst_err = share(bad.get((dst,), (None, None))[0], total.get((dst,), (None, None))[0])
            if lost < ERR_MIN or dst not in kinds or dst_err >= lost / 2:
                continue
            ccur = cp95.get((src, dst), (None, None))[0] or 0.0
            server = p95.get((dst,), (None, None))[0] or 0.0
            if ccur >= 2 * max(server, LAT_FLOOR):
                ev.append(Evidence(dst, "network_partition", 1.5 + 8 * min(lost, 1.0),
                                   f"{lost:.0%} of {src}'s calls to {dst} get no answer in {ccur:.3g}s; "
                                   f"{dst} itself fails {dst_err:.0%} and answers in {server:.3g}s"))
            else:
                # The caller gives up before the callee would normally have answered: its own settings.
                ev.append(Evidence(src, "gives_up", 1.5 + 8 * min(lost, 1.0),
                                   f"{lost:.0%} of calls to {dst} abandoned after {ccur:.3g}s, while {dst} "
                                   f"answers in {server:.3g}s"))

        # Resources: CPU throttling share per component.
        thr = sig.get("container_cpu_cfs_throttled_periods_total", "service", fn="rate", window_s=win)
        per = sig.get("container_cpu_cfs_periods_total", "service", fn="rate", window_s=win)
        for (svc,), (tc, tp) in thr.items():
            pc, pp = per.get((svc,), (None, None))
            now_share, past_share = share(tc, pc), share(tp, pp)
            if now_share >= 0.25:
                ev.append(Evidence(svc, "resource", 1.0 + 3 * now_share + max(0.0, now_share - past_share),
                                   f"CPU throttled in {now_share:.0%} of periods (was {past_share:.0%})"))

        # Datastores: sequential-scan reads, active sessions, memory against the maximum.
        seq = sig.get("pg_stat_user_tables_seq_tup_read", "service,relname", fn="rate", window_s=win)
        scan_best: tuple[float, tuple[str, str] | None] = (0.0, None)
        for (db, rel), (cur, past) in seq.items():
            if cur is None or cur < 5_000:
                continue
            ratio = cur / max(past or 0.0, 1000.0)
            if ratio >= 4:
                score = 1.0 + math.log2(ratio) / 2
                ev.append(Evidence(db, "scan", score, f"{cur:.3g} rows/s read by sequential scans of {rel} "
                                                      f"(was {past or 0:.3g})"))
                if score > scan_best[0]:
                    scan_best = (score, (db, rel))
        active = sig.get("pg_stat_activity_count", "service", labels={"state": "active"})
        for (db,), (cur, past) in active.items():
            if cur is not None and cur >= 3 and cur >= 2 * (past or 0) + 2:
                ev.append(Evidence(db, "sessions", 1.0 + math.log2(cur / max(past or 1.0, 1.0)) / 2,
                                   f"{cur:.0f} sessions busy (was {past or 0:.0f})"))
        used = sig.get("redis_memory_used_bytes", "service")
        cap = sig.get("redis_memory_max_bytes", "service")
        for (r,), (ucur, _up) in used.items():
            mcur = cap.get((r,), (None, None))[0]
            if ucur and mcur and ucur >= 0.9 * mcur:
                ev.append(Evidence(r, "store_full", 3.0, f"memory {ucur:.3g} B of its {mcur:.3g} B maximum"))

        # Demand: traffic at the edge of the system against its recent past.
        ingress = [s for s in services if not any(s in c for c in calls.values())]
        for s in ingress:
            rc, _ = total.get((s,), (None, None))
            rp = busy.get((s,))  # before: while there was traffic at all
            if rc and rp and rc / rp >= 1.8:
                ev.append(Evidence(s, "demand", math.log2(rc / rp), f"{rc / rp:.1f}x the requests of before"))

        # Configuration that differs from the defaults, on symptomatic services only.
        for s in sorted(symptom, key=lambda k: -symptom[k])[:3]:
            if symptom[s] <= 0:
                continue
            d = self._ok(tools.call("describe", service=s)) or {}
            if d.get("config_revision"):  # its rollout history: the configuration was changed lately
                ev.append(Evidence(s, "config", 1.0 + symptom[s] / 4,
                                   f"configuration changed {d['config_revision']} time(s) lately"))
        return self._localize(ev, symptom, kinds, roles, calls, scan_best[1])

    def _localize(self, ev: list[Evidence], symptom: dict[str, float], kinds: dict[str, str],
                  roles: dict[str, str], calls: dict[str, list[str]], scan: tuple[str, str] | None) -> Diagnosis:
        fams: dict[str, dict[str, float]] = {}
        for e in ev:
            slot = fams.setdefault(e.component, {})
            slot[e.family] = max(slot.get(e.family, 0.0), e.score)
        # A caller's symptoms are explained by a callee that is symptomatic or has evidence of its own.
        def explained(s: str) -> bool:
            return any((symptom.get(d, 0) >= 0.5 * symptom.get(s, 0) and symptom.get(d, 0) > 0)
                       or any(f in fams.get(d, {}) for f in ("network_latency", "network_partition", "resource",
                                                              "scan", "sessions", "store_full"))
                       for d in calls.get(s, []))

        hard = ("resource", "scan", "sessions", "store_full", "gives_up")
        score: dict[str, float] = {}
        for comp, f in fams.items():
            base = sum(v for k, v in f.items() if k in ("latency", "errors"))
            own = sum(v for k, v in f.items() if k not in ("latency", "errors", "config", "demand"))
            s = own + (0.3 if explained(comp) else 1.0) * base
            if any(k in f for k in hard):
                s += 4.0
            if "config" in f:
                # Resilience settings (timeouts, retries, breakers) live in callers: among symptomatic
                # services with changed config, the one closest to the users is the likeliest.
                depth = self._depth(comp, calls)
                s += 2.0 + 0.5 * depth
                # A caller with changed settings passing on its callee's failures (it should absorb them).
                s += sum(fams.get(d, {}).get("errors", 0.0) for d in calls.get(comp, []))
                if any(k in fams.get(c, {}) for c in calls.get(comp, []) for k in hard):
                    s -= 2.5  # a callee with hard evidence explains it better
            score[comp] = s
        ranked = sorted(score, key=lambda c: -score[c])
        if not ranked:
            return Diagnosis([], None, ev)
        top = ranked[0]
        f = fams[top]
        category = self._category(top, f, fams, kinds, roles)
        ev.sort(key=lambda e: (e.component != top, -e.score))
        return Diagnosis(ranked, category, ev, scan if scan and scan[0] == top else None)

    @staticmethod
    def _depth(comp: str, calls: dict[str, list[str]]) -> int:
        """How many callers stand between the users and this component (0: the entry point)."""
        callers: dict[str, set[str]] = {}
        for s, ds in calls.items():
            for d in ds:
                callers.setdefault(d, set()).add(s)
        # Depth counts up from the component: fewer hops to the entry point → larger value.
        hops, frontier, seen = 0, {comp}, {comp}
        while frontier and hops < 10:
            nxt = {c for x in frontier for c in callers.get(x, ()) if c not in seen}
            if not nxt:
                break
            seen |= nxt
            frontier = nxt
            hops += 1
        return max(0, 4 - hops)

    @staticmethod
    def _category(top: str, f: dict[str, float], fams: dict[str, dict[str, float]], kinds: dict[str, str],
                  roles: dict[str, str]) -> str | None:
        if "gives_up" in f:
            return "misconfiguration"
        if "store_full" in f:
            return "message_queue_failure" if "queue" in roles.get(top, "") else "cache_eviction"
        if "config" in f and f["config"] >= max((v for k, v in f.items() if k not in ("config",)), default=0) / 2:
            return "misconfiguration"
        if "resource" in f:
            surged = any("demand" in x for x in fams.values())
            return "capacity_overload" if surged and kinds.get(top) == "service" else "resource_saturation"
        if "sessions" in f and f.get("sessions", 0) >= f.get("scan", 0):
            return "resource_saturation"
        if "scan" in f:
            return "query_inefficiency"
        if "network_partition" in f:
            return "network_partition"
        if "network_latency" in f:
            return "network_latency"
        if "config" in f:
            return "misconfiguration"
        if "errors" in f and "latency" not in f:
            return "dependency_failure"
        return None

    # ---- remediation ------------------------------------------------------------------------------
    def remediate(self, tools: Any, incident: Incident, diag: Diagnosis, kinds: dict[str, str],
                  roles: dict[str, str], calls: dict[str, list[str]]) -> None:
        if not diag.ranked:
            return
        top, cat = diag.ranked[0], diag.category
        # The runbooks are read for the record (an LLM would follow them); the actions below are generic.
        tools.call("runbooks")
        plan: list[tuple[str, dict[str, Any], tuple[str, dict[str, Any]] | None]] = []
        if cat in ("network_latency", "network_partition"):
            plan.append(("restart", {"service": top}, None))
        elif cat == "capacity_overload":
            d = self._ok(tools.call("describe", service=top)) or {}
            n = int(d.get("replicas", 1))
            plan.append(("scale", {"service": top, "replicas": min(8, n + 2)},
                         ("scale", {"service": top, "replicas": n})))
        elif cat == "resource_saturation":
            if kinds.get(top) == "postgres":
                self._stop_runaway_queries(tools, incident, top)
            plan.append(("set_limits", {"service": top, "clear": True}, None))
        elif cat == "query_inefficiency" and kinds.get(top) == "postgres":
            col = self._scanned_column(tools, top, diag.scan_table[1] if diag.scan_table else None)
            if col is not None:
                table, column = col
                plan.append(("create_index", {"service": top, "table": table, "columns": [column]}, None))
        elif cat == "misconfiguration":
            plan.append(("rollback_config", {"service": top}, None))
        elif cat in ("message_queue_failure", "cache_eviction") and kinds.get(top) == "redis":
            plan.append(("resize_cache", {"service": top, "maxmemory": "0"}, None))
        for name, args, undo in plan:
            if incident.time_left() < 3:
                break
            before = self._failing(tools)
            res = tools.call(name, **args)
            if not res.get("ok"):
                continue
            after = self._settle(tools, incident)
            if undo is not None and before is not None and after is not None and after > before:
                tools.call(undo[0], **undo[1])  # it made things worse
        if cat == "misconfiguration":
            # Roll back further while the configuration still differs and the SLOs still fail.
            for _ in range(3):
                if not self._failing(tools) or incident.time_left() < 3:
                    break
                res = self._ok(tools.call("rollback_config", service=top)) or {}
                if not res.get("changed"):
                    break  # nothing older to go back to
                self._settle(tools, incident)
        chain = set(diag.ranked[:3])
        if any("payment" in roles.get(c, "") or "order" in roles.get(c, "") for c in chain | {top}) \
                and incident.time_left() > 2:
            tools.call("reconcile_payments", older_than_s=0)
        if self._failing(tools) == 0:
            tools.call("mitigation_done")

    def _stop_runaway_queries(self, tools: Any, incident: Incident, db: str) -> None:
        """End the long queries; if the same role sends them again a few seconds later, it is a client that
        retries: block that role (and lift the block again if the SLOs got worse, e.g. it was the shop's)."""
        first = self._ok(tools.call("cancel_queries", service=db, min_duration_s=0.2)) or {}
        seen = first.get("by_role") or {}
        if not seen or incident.time_left() < 10:
            return
        time.sleep(4.0)
        again = self._ok(tools.call("cancel_queries", service=db, min_duration_s=0.2)) or {}
        back = {r: n for r, n in (again.get("by_role") or {}).items() if r in seen}
        if not back:
            return
        role = max(back, key=lambda r: back[r])
        before = self._failing(tools)
        res = tools.call("limit_db_role", service=db, role=role, connections=0, end_sessions=True)
        if not res.get("ok"):
            return
        after = self._settle(tools, incident)
        if before is not None and after is not None and after > before:
            tools.call("limit_db_role", service=db, role=role, connections=-1)

    def _settle(self, tools: Any, incident: Incident) -> int | None:
        """Wait until the SLOs hold (or the verify time passes); the number still failing."""
        return settle(tools, incident, self.verify_s)

    def _scanned_column(self, tools: Any, db: str, table: str | None) -> tuple[str, str] | None:
        """The (table, column) of the busiest statement's equality filter on the scanned table."""
        res = self._ok(tools.call("metrics", name="pg_stat_statements_seconds_total", fn="rate",
                                  labels={"service": db}, since_s=30, limit=10)) or {}
        for s in res.get("series", []):
            query = str(s["labels"].get("query", ""))
            m = re.search(r"\bFROM\s+([a-z_][a-z0-9_]*)\b.*?\bWHERE\s+(?:[a-z_]+\.)?([a-z_][a-z0-9_]*)\s*=",
                          query, re.IGNORECASE | re.DOTALL)
            if m and (table is None or m.group(1).lower() == table):
                return m.group(1).lower(), m.group(2).lower()
        return None
