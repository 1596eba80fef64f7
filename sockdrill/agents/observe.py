"""The observe room: what an on-call engineer reads (topology, configuration, SLOs, alerts, runbooks,
logs, metrics, PromQL, traces, mesh edges, the queue). Nothing here changes the system."""

from __future__ import annotations

import json
import math
import time
from typing import Any, Literal

from sockdrill.agents.registry import tool
from sockdrill.agents.toolkit import (
    DLQ_SUFFIX,
    ToolsBase,
    _clean_labels,
    _compact_line,
    _matchers,
    _normalise_message,
    _num,
    _paging,
    _redis_errors,
    _s,
    _stream_and_group,
    _streams,
)
from sockdrill.errors import SockdrillError, ToolError, did_you_mean


class ObserveRoom(ToolsBase):
    # ---- observe -----------------------------------------------------------------------------
    @tool("observe")
    def topology(self) -> dict[str, Any]:
        """The system's components (services and datastores), their replicas and who calls whom."""
        return self.client.get("/v1/topology")

    @tool("observe")
    def describe(self, service: str) -> dict[str, Any]:
        """One deployment in detail: pods (status, ready, restarts, CPU/memory use), requests and limits,
        its configuration (every setting with its current value) and config revision (changes so far).

        Args:
        service: the deployment name, e.g. user or user-db
        """
        d = self.client.get(f"/v1/describe/{service}")
        for pod in d.get("pods", []):
            pod.pop("pid", None)
        # What kubectl would show: no "set by someone" marks (knobs, defaults), no environment.
        out = {k: v for k, v in d.items() if k not in ("env", "knobs", "default_limits",
                                                                 "default_replicas", "default_knobs", "optional")}
        if d.get("kind") == "service":
            if self._third_party(d):
                out["config"] = "a third-party service: its configuration is not ours to see"
            else:
                cfg = self.client.get(f"/v1/config/{service}")
                out["config"] = cfg.get("config", {})
                out["config_revision"] = cfg.get("revision", 0)
                out["config_changed_at"] = cfg.get("changed_at")
                jobs = self._jobs(service)
                if jobs:
                    out["jobs"] = jobs
        return out

    def _jobs(self, service: str) -> dict[str, str]:
        """The maintenance jobs a service offers (run_job runs one); none when no pod is ready to say."""
        try:
            return dict(self.client.post("/v1/job", {"deployment": service}).get("jobs", {}))
        except SockdrillError:
            return {}

    @tool("observe")
    def pods(self) -> list[dict[str, Any]]:
        """Every pod with its status, readiness and restart count (like kubectl get pods)."""
        status = self.client.get("/v1/status")
        return [{"pod": p["name"], "deployment": d["name"], "status": p["status"], "ready": p["ready"],
                 "restarts": p["restarts"]} for d in status["deployments"] for p in d["pods"]]

    @tool("observe")
    def slo_status(self) -> dict[str, Any]:
        """Each user journey's SLOs with the current value, whether it holds, and error budget burn."""
        if self.ctx.slo_status is None:
            raise ToolError("no SLO source in this session")
        return self.ctx.slo_status()

    @tool("observe")
    def alerts(self) -> list[dict[str, Any]]:
        """Active burn-rate alerts computed from the journey SLOs."""
        if self.ctx.alerts is None:
            return []
        return self.ctx.alerts()

    @tool("observe")
    def runbooks(self) -> list[dict[str, str]]:
        """The runbooks available (id and title); read one with read_runbook."""
        out = []
        for rid, text in sorted(self.ctx.runbooks.items()):
            title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), rid)
            out.append({"id": rid, "title": title})
        return out

    @tool("observe")
    def read_runbook(self, runbook_id: str) -> str:
        """The full text of one runbook.

        Args:
        runbook_id: an id from runbooks
        """
        if runbook_id not in self.ctx.runbooks:
            raise ToolError(f"no runbook '{runbook_id}'" + did_you_mean(runbook_id, self.ctx.runbooks))
        return self.ctx.runbooks[runbook_id]

    @tool("observe")
    def logs(self, service: str, grep: str = "", level: str = "", since_s: float = 300.0,
             offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """Recent log lines of a deployment's pods, newest last, filtered by text and level (paged).

        Args:
        service: the deployment name
        grep: only lines containing this text
        level: only this level or worse: info, warning or error
        since_s: only the last this many seconds
        offset: skip this many of the newest matching lines (next page: next_offset)
        limit: at most this many lines (max 200)
        """
        from sockdrill.cluster.logfiles import LogFilter, pod_log_files, read_lines

        offset, limit = _paging(offset, limit, 200)
        files = pod_log_files(self.client.data_dir, service)
        if not files:
            self._address(service)  # unknown-service error with a suggestion
            return {"lines": [], "offset": offset, "next_offset": None}
        filt = LogFilter.build(grep=grep or None, level=level or None, since=f"{self._since(since_s)}s")
        lines = read_lines(files, filt, offset + limit + 1)
        more = len(lines) > offset + limit
        page = lines[max(0, len(lines) - offset - limit):len(lines) - offset] if offset < len(lines) else []
        return {"lines": [_compact_line(ln) for ln in page], "offset": offset,
                "next_offset": offset + limit if more else None}

    @tool("observe")
    def log_stats(self, since_s: float = 60.0, level: str = "warning", top: int = 5) -> dict[str, Any]:
        """Warning/error log lines per deployment over a recent window, with each one's most frequent messages.

        Args:
        since_s: the window, counted back from now
        level: count lines at this level or worse: warning or error
        top: how many of the most frequent messages to show per deployment
        """
        if level not in ("warning", "error"):
            raise ToolError(f"level must be warning or error, got {level!r}")
        rq = self._recorder()
        rows = rq.logs(level=level, since=f"{self._since(since_s)}s", limit=5000)
        deployments = {d["name"] for d in self.client.get("/v1/topology")["deployments"]}
        counts: dict[str, dict[str, int]] = {}
        for r in rows:
            svc = str(r.get("service") or "")
            if svc not in deployments:  # the runtime's own logs are not the shop's
                continue
            msg = _normalise_message(str(r.get("message", "")))
            per = counts.setdefault(svc, {})
            per[msg] = per.get(msg, 0) + 1
        out: list[dict[str, Any]] = [{"service": svc, "lines": sum(per.values()),
                "top": [{"message": m, "count": n}
                        for m, n in sorted(per.items(), key=lambda kv: -kv[1])[:max(1, min(int(top), 20))]]}
               for svc, per in counts.items()]
        out.sort(key=lambda e: -e["lines"])
        return {"since_s": since_s, "level": level, "services": out, "truncated": len(rows) >= 5000}

    # ---- telemetry (the flight recorder) -------------------------------------------------------
    def _recorder_url(self) -> str:
        url = self.client.record.get("recorder_url")
        if not url:  # the record is read once at connect; the telemetry plugin may have added it since
            from sockdrill.cluster.state import read_json, state_dir

            fresh = read_json(state_dir(self.client.data_dir) / "runtime.json")
            if isinstance(fresh, dict):
                url = fresh.get("recorder_url")
                if url:
                    self.client.record["recorder_url"] = url
        if not url:
            raise ToolError("no flight recorder runs with this shop, so metrics, traces and promql are "
                            "unavailable; use describe, pods, edges and logs")
        return str(url)

    def _recorder(self) -> Any:
        from sockdrill.telemetry.query import RemoteQuery

        return RemoteQuery(self._recorder_url(), timeout=20.0, token=self.client.record.get("telemetry_token"))

    def _scrape_interval(self) -> float:
        if self._interval is None:
            import urllib.request

            from sockdrill.cluster.admin import telemetry_headers

            req = urllib.request.Request(self._recorder_url() + "/health",
                                         headers=telemetry_headers(self.client.record.get("telemetry_token")))
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    self._interval = float(json.loads(resp.read()).get("interval") or 5.0)
            except (OSError, ValueError):
                return 5.0
        return self._interval

    @tool("observe")
    def metrics(self, name: str = "", labels: dict | None = None,  # type: ignore[type-arg]
                fn: Literal["raw", "rate", "increase", "p50", "p90", "p95", "p99"] = "raw",
                op: Literal["", "sum", "avg", "min", "max", "count"] = "", by: str = "",
                since_s: float = 60.0, end: float = 0.0, window_s: float = 0.0, step_s: float = 0.0,
                points: bool = False, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        """Query recorded metrics: each matching series (or group) summarised as last/min/max/mean over a window.

        Without a name (or with a name ending in *), lists the metric names. Counters end in _total; use
        fn=rate for per-second rates and fn=p95 (etc.) on a histogram's base name for quantiles, e.g.
        name=http_request_duration_seconds fn=p95 by=service. Series are sorted by their last value,
        largest first, and paged.

        Args:
        name: the metric name (empty or a prefix ending in * to list names)
        labels: label filters, e.g. {"service": "user"}; a value starting with ~ is a regular expression
        fn: raw values, rate or increase of counters, or a histogram quantile
        op: aggregate the series with this operator (grouped by 'by')
        by: comma-separated labels to group by (with op or a quantile)
        since_s: the window length in seconds, counted back from end
        end: the window end as unix seconds (0: now)
        window_s: the rate/quantile window (0: about 5 scrape intervals)
        step_s: seconds between points (0: the scrape interval)
        points: also return the points (at most 60 per series)
        offset: skip this many series (paging)
        limit: at most this many series (max 100)
        """
        offset, limit = _paging(offset, limit, 100)
        rq = self._recorder()
        if not name or name.endswith("*"):
            prefix = name.rstrip("*")
            names = [n for n in rq.names() if n.startswith(prefix)]
            return {"names": names[offset:offset + limit], "total": len(names), "offset": offset,
                    "next_offset": offset + limit if offset + limit < len(names) else None}
        interval = self._scrape_interval()
        t_end = float(end) if end else time.time()
        if self.ctx.scope_start is not None and t_end <= self.ctx.scope_start:
            raise ToolError("end is before this incident's telemetry begins")
        since = max(self._since(since_s, t_end), interval)
        window = float(window_s) if window_s else max(5 * interval, 5.0)
        kw: dict[str, Any] = {"fn": fn, "start": t_end - since, "end": t_end,
                              "window": f"{window}s", "step": f"{float(step_s) or interval}s"}
        if op:
            kw["op"] = op
        if by:
            kw["by"] = by
        rows = rq.metric(name, _matchers(labels), **kw)
        series = []
        for row in rows:
            vals = [v for _, v in row.get("points", []) if isinstance(v, int | float) and math.isfinite(v)]
            if not vals:
                continue
            entry: dict[str, Any] = {"labels": _clean_labels(row.get("labels", {})), "last": _num(vals[-1]),
                                     "min": _num(min(vals)), "max": _num(max(vals)),
                                     "mean": _num(sum(vals) / len(vals)), "n": len(vals)}
            if points:
                pts = row["points"]
                stride = max(1, math.ceil(len(pts) / 60))
                entry["points"] = [[round(t, 1), _num(v)] for t, v in pts[::-1][::stride][::-1]]
            series.append(entry)
        series.sort(key=lambda e: -e["last"])
        return {"name": name, "fn": fn, "window": [round(t_end - since, 1), round(t_end, 1)],
                "scrape_interval_s": interval, "total": len(series), "offset": offset,
                "next_offset": offset + limit if offset + limit < len(series) else None,
                "series": series[offset:offset + limit]}

    @tool("observe")
    def promql(self, query: str, since_s: float = 0.0, step_s: float = 0.0, limit: int = 20) -> dict[str, Any]:
        """Run a PromQL query on the Prometheus beside the recorder (only where Prometheus runs).

        Args:
        query: the PromQL expression
        since_s: 0 for an instant query; else a range query over the last this many seconds
        step_s: the range query step (0: about 60 points)
        limit: at most this many series (max 100)
        """
        _, limit = _paging(0, limit, 100)
        rq = self._recorder()
        kw: dict[str, Any] = {}
        if since_s:
            now = time.time()
            since = self._since(since_s)
            kw = {"start": now - since, "end": now, "step": float(step_s) or max(1.0, since / 60)}
        try:
            data = rq.promql(query, **kw)
        except ConnectionError as exc:
            raise ToolError(str(exc)) from None
        result = data.get("result", data) if isinstance(data, dict) else data
        rows = result if isinstance(result, list) else []
        out = []
        for row in rows[:limit]:
            metric = _clean_labels(row.get("metric", {})) if isinstance(row, dict) else {}
            if "values" in row:
                vals = [float(v) for _, v in row["values"]]
                out.append({"labels": metric, "last": _num(vals[-1]) if vals else None,
                            "min": _num(min(vals)) if vals else None, "max": _num(max(vals)) if vals else None,
                            "n": len(vals)})
            elif "value" in row:
                out.append({"labels": metric, "value": _num(float(row["value"][1]))})
        return {"query": query, "total": len(rows), "series": out,
                "result_type": data.get("resultType") if isinstance(data, dict) else None}

    @tool("observe")
    def traces(self, service: str = "", operation: str = "", min_ms: float = 0.0, errors: bool = False,
               since_s: float = 120.0, offset: int = 0, limit: int = 10) -> dict[str, Any]:
        """Recent traces with at least one span matching the filters, newest first, summarised (paged).

        Args:
        service: only traces with a span of this service
        operation: only traces with a span whose name contains this text
        min_ms: only traces with such a span at least this long
        errors: only traces with such a span in error
        since_s: the window, counted back from now
        offset: skip this many traces (paging)
        limit: at most this many traces (max 50)
        """
        offset, limit = _paging(offset, limit, 50)
        rq = self._recorder()
        rows = rq.traces(service=service or None, operation=operation or None, min_ms=min_ms or None,
                         errors=errors, since=f"{self._since(since_s)}s", limit=offset + limit + 1)
        page = rows[offset:offset + limit]
        return {"traces": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in t.items()} for t in page],
                "offset": offset, "next_offset": offset + limit if len(rows) > offset + limit else None}

    @tool("observe")
    def trace(self, trace_id: str, limit: int = 40) -> dict[str, Any]:
        """One trace's spans in start order: service, operation, duration, error and depth.

        Args:
        trace_id: an id from traces
        limit: at most this many spans (max 200)
        """
        _, limit = _paging(0, limit, 200)
        data = self._recorder().trace(trace_id)
        spans = data.get("spans", [])
        keep = ("status", "http.status_code", "http.route", "http.method", "db.system", "error.type")
        out = [{"service": s["service"], "pod": s.get("pod"), "name": s["name"], "depth": s.get("depth", 0),
                "start": round(s["start"], 3), "duration_ms": round(s["duration_ms"], 2), "error": s["error"],
                **{k: v for k, v in (s.get("attributes") or {}).items() if k in keep}} for s in spans[:limit]]
        summary = {k: v for k, v in data.items() if k != "spans"}
        return {**summary, "spans": out, "truncated": len(spans) > limit}

    @tool("observe")
    def edges(self, source: str = "", destination: str = "", since_s: float = 30.0, offset: int = 0,
              limit: int = 30) -> dict[str, Any]:
        """The service mesh's edges (who calls whom): connections per backend pod, requests, errors and
        latency, over a recent window when the recorder runs and since start otherwise (paged).

        Args:
        source: only edges from this deployment (host: traffic from outside)
        destination: only edges to this deployment
        since_s: the window for rates and latency, counted back from now
        offset: skip this many edges (paging)
        limit: at most this many edges (max 100)
        """
        offset, limit = _paging(offset, limit, 100)
        raw = self.client.get("/v1/edges")
        rows = []
        for _key, e in sorted(raw.items()):
            if (source and e.get("source") != source) or (destination and e.get("destination") != destination):
                continue
            # Only what the mesh measured: nothing about faults on the edge.
            lat = e.get("request_duration_seconds") or {}
            rows.append({"source": e.get("source"), "destination": e.get("destination"),
                         "protocol": e.get("protocol"), "backends": e.get("backends", []),
                         "connections_total": e.get("connections_total"),
                         "active_connections": e.get("active_connections"),
                         "connections_by_pod": e.get("connections_by_pod", {}),
                         "requests_total": e.get("requests", {}), "errors_total": e.get("errors", {}),
                         "mean_latency_s": _num(lat["sum"] / lat["count"]) if lat.get("count") else None})
        window = None
        try:
            window = self._edge_window(self._since(since_s))
        except (ToolError, OSError, ValueError):
            pass
        if window is not None:
            for r in rows:
                r["window"] = window.get((r["source"], r["destination"]), {})
        return {"edges": rows[offset:offset + limit], "total": len(rows), "offset": offset,
                "window_s": since_s if window is not None else None,
                "next_offset": offset + limit if offset + limit < len(rows) else None}

    def _edge_window(self, since_s: float) -> dict[tuple[str, str], dict[str, Any]]:
        rq = self._recorder()
        interval = self._scrape_interval()
        now = time.time()
        since = max(since_s, 2 * interval)
        kw = {"start": now - since, "end": now, "window": f"{since}s", "step": f"{since}s"}
        out: dict[tuple[str, str], dict[str, Any]] = {}

        def last(rows: list[dict[str, Any]], key: str, group: str = "") -> None:
            for row in rows:
                lab = row.get("labels", {})
                pts = [v for _, v in row.get("points", []) if math.isfinite(v)]
                if not pts:
                    continue
                slot = out.setdefault((lab.get("source", ""), lab.get("destination", "")), {})
                if group:
                    slot.setdefault(key, {})[lab.get(group, "")] = _num(pts[-1])
                else:
                    slot[key] = _num(pts[-1])

        last(rq.metric("mesh_edge_requests_total", fn="rate", op="sum", by="source,destination,code_class", **kw),
             "requests_per_s", "code_class")
        last(rq.metric("mesh_edge_errors_total", fn="rate", op="sum", by="source,destination,kind", **kw),
             "errors_per_s", "kind")
        last(rq.metric("mesh_edge_request_duration_seconds", fn="p95", by="source,destination", **kw), "p95_s")
        return out

    @tool("observe")
    def cache_stats(self, service: str, sample: int = 500) -> dict[str, Any]:
        """A Redis datastore's memory and keys: used and limit, eviction policy, keys evicted and expired, reads
        that hit or missed, clients, and which key prefixes hold the memory (a sample of keys; MEMORY USAGE).

        Args:
        service: the Redis deployment, e.g. carts-cache or session-db
        sample: how many keys to sample for the prefixes (max 2000)
        """
        _, sample = _paging(0, sample, 2000)
        r = self._redis(service)
        try:
            info = r.info()
            policy = _s(r.config_get("maxmemory-policy").get("maxmemory-policy", ""))
            by_prefix: dict[str, list[int]] = {}
            seen = 0
            for key in r.scan_iter(count=500):
                if seen >= sample:
                    break
                seen += 1
                name = _s(key)
                head = name.split(":", 1)[0] + ":" if ":" in name else name[:24]
                size = r.memory_usage(key) or 0
                entry = by_prefix.setdefault(head, [0, 0])
                entry[0] += 1
                entry[1] += int(size)
        except _redis_errors() as exc:
            raise ToolError(f"cannot read {service}: {exc}") from None
        total = sum(b for _, b in by_prefix.values()) or 1
        prefixes = [{"prefix": p, "keys_sampled": n, "bytes_sampled": b, "share_of_sampled_bytes": round(b / total, 3)}
                    for p, (n, b) in sorted(by_prefix.items(), key=lambda kv: -kv[1][1])[:20]]
        hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
        ratio = round(hits / (hits + misses), 3) if hits + misses else None
        return {"used_memory_bytes": int(info.get("used_memory", 0)), "maxmemory_bytes": int(info.get("maxmemory", 0)),
                "maxmemory_policy": policy, "keys": int(r.dbsize()),
                "evicted_keys": int(info.get("evicted_keys", 0)), "expired_keys": int(info.get("expired_keys", 0)),
                "hits": hits, "misses": misses, "hit_ratio": ratio,
                "connected_clients": int(info.get("connected_clients", 0)), "sampled_keys": seen,
                "prefixes": prefixes}

    @tool("observe")
    def db_sessions(self, service: str, limit: int = 20) -> dict[str, Any]:
        """A PostgreSQL datastore's sessions (pg_stat_activity): how many it has of max_connections, and who holds
        them, by role, application and state, with the oldest session and transaction of each group.

        Args:
        service: the PostgreSQL deployment, e.g. carts-db
        limit: at most this many groups (max 100)
        """
        _, limit = _paging(0, limit, 100)

        async def go(conn: Any) -> dict[str, Any]:
            rows = await conn.fetch(
                "SELECT coalesce(usename, '') AS role, coalesce(application_name, '') AS application, "
                "coalesce(state, '') AS state, count(*) AS sessions, "
                "coalesce(max(extract(epoch FROM now() - backend_start)), 0) AS oldest_session_s, "
                "coalesce(max(extract(epoch FROM now() - xact_start)), 0) AS oldest_transaction_s "
                "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
                "GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3")
            settings = {r["name"]: int(r["setting"]) for r in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('max_connections', 'superuser_reserved_connections', 'reserved_connections')")}
            limits = {r["rolname"]: int(r["rolconnlimit"]) for r in await conn.fetch(
                "SELECT rolname, rolconnlimit FROM pg_roles WHERE rolcanlogin AND rolname NOT LIKE 'pg\\_%'")}
            return {"max_connections": settings.get("max_connections"),
                    "reserved_for_superusers": settings.get("superuser_reserved_connections", 0)
                    + settings.get("reserved_connections", 0),
                    "sessions": sum(int(r["sessions"]) for r in rows),
                    "groups": [{"role": r["role"], "application": r["application"], "state": r["state"],
                                "sessions": int(r["sessions"]),
                                "oldest_session_s": round(float(r["oldest_session_s"]), 1),
                                "oldest_transaction_s": round(float(r["oldest_transaction_s"]), 1),
                                "role_connection_limit": limits.get(r["role"])} for r in rows[:limit]]}

        return self._pg(service, go)

    @tool("observe")
    def queue_status(self, service: str = "queue", limit: int = 5, queue: str = "") -> dict[str, Any]:
        """A queue's stream (the shipping queue unless named): backlog, messages delivered but never
        acknowledged (oldest first), consumers, its dead-letter stream, and every stream on the store.

        Args:
        service: the queue deployment
        limit: at most this many pending messages to list (max 50)
        queue: the stream to look at (one of streams); empty for the shipping queue
        """
        _, limit = _paging(0, limit, 50)
        r = self._redis(service)
        name, group_name = _stream_and_group(r, queue)
        try:
            length = r.xlen(name)
            groups = r.xinfo_groups(name) if r.exists(name) else []
            streams = [{"stream": s, "length": r.xlen(s)} for s in _streams(r)][:50]
        except _redis_errors() as exc:
            raise ToolError(f"cannot read the stream '{name}' on {service}: {exc}") from None
        group = next((g for g in groups if _s(g.get("name")) == group_name), None)
        pending = []
        if group is not None:
            for p in r.xpending_range(name, group_name, "-", "+", limit):
                pending.append({"message_id": _s(p["message_id"]), "consumer": _s(p["consumer"]),
                                "idle_s": round(p["time_since_delivered"] / 1000, 1),
                                "deliveries": p["times_delivered"]})
        return {"stream": name, "length": length, "pending": int(group["pending"]) if group else 0,
                "consumers": int(group["consumers"]) if group else 0, "oldest_pending": pending,
                "dead_letter_stream": name + DLQ_SUFFIX, "dead_letters": r.xlen(name + DLQ_SUFFIX),
                "streams": streams}
