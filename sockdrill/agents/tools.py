"""The tools an agent has: what an on-call engineer sees and may do, never the fault or the grader.

One implementation; the Python API passes a ``Tools`` object to agents, ``sockdrill mcp`` serves the
same registry over MCP and ``sockdrill agent`` over the CLI. Every call is checked against the registry,
bounded by the step budget and written to the run's audit log. Results are compact JSON-able dicts.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sockdrill.agents.registry import TOOLS, check_args, tool
from sockdrill.errors import SockdrillError, ToolError, did_you_mean

MAX_REPLICAS = 8
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(value: str, what: str) -> str:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ToolError(f"{what} must be a plain SQL identifier (lower-case letters, digits, _), got {value!r}")
    return value


QUEUE_GROUP = "queue-master"
DLQ_SUFFIX = ".dlq"
_DROP_LABELS = ("job", "namespace", "container", "instance", "datname", "schemaname")


def _paging(offset: int, limit: int, cap: int) -> tuple[int, int]:
    if offset < 0:
        raise ToolError(f"offset must be 0 or more, got {offset}")
    if limit < 1:
        raise ToolError(f"limit must be at least 1, got {limit}")
    return int(offset), min(int(limit), cap)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _num(v: float) -> float:
    """Four significant digits: enough to compare, short in an LLM's context."""
    if not math.isfinite(v) or v == 0:
        return 0.0 if not math.isfinite(v) else v
    return float(f"{v:.4g}")


def _clean_labels(labels: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in labels.items()
            if k not in _DROP_LABELS and not (k == "pod" and v == "supervisor") and k != "__name__"}


def _matchers(labels: dict[str, Any] | None) -> list[str]:
    out = []
    for k, v in (labels or {}).items():
        if not isinstance(k, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k):
            raise ToolError(f"label names are identifiers, got {k!r}")
        text = str(v)
        out.append(f"{k}=~{text[1:]}" if text.startswith("~") else f"{k}={text}")
    return out


_NOISE = re.compile(r"\b[0-9a-f]{8,}\b|\b\d+(\.\d+)?\b")


def _normalise_message(msg: str) -> str:
    """Group messages that differ only in ids and numbers."""
    return _short(_NOISE.sub("#", msg), 160)


def _compact_line(line: str) -> str:
    """A JSON log line as 'time level pod: message {fields}', cut to 400 characters."""
    try:
        rec = json.loads(line)
    except ValueError:
        return _short(line, 400)
    if not isinstance(rec, dict):
        return _short(line, 400)
    ts = str(rec.get("ts", rec.get("time", "")))[11:23]
    fields = rec.get("fields") or {}
    extra = f" {json.dumps(fields, separators=(',', ':'))}" if fields and fields.get("kind") != "access" else ""
    return _short(f"{ts} {rec.get('level', '')} {rec.get('pod', '')}: {rec.get('message', '')}{extra}", 400)


def _queue_name() -> str:
    from sockdrill.shop.queue import queue_name

    return queue_name()


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Submission:
    time: float
    detected: bool
    root_causes: list[str]
    category: str | None
    summary: str


@dataclass
class ToolContext:
    """What the tools need from the run: the runtime, where to audit, and the SLI source."""

    data_dir: Path
    audit_path: Path | None = None
    max_steps: int = 200
    slo_status: Callable[[], dict[str, Any]] | None = None
    alerts: Callable[[], list[dict[str, Any]]] | None = None
    runbooks: dict[str, str] = field(default_factory=dict)  # id → markdown
    # The run's own telemetry begins here (its reset): nothing older is shown, so an earlier run's
    # fault on a reused shop cannot look like this one's.
    scope_start: float | None = None


class Tools:
    """The agent's whole tool set. Call tools as methods, or by name with ``call(name, **args)``."""

    def __init__(self, ctx: ToolContext) -> None:
        from sockdrill.cluster.client import RuntimeClient

        self.ctx = ctx
        self.client = RuntimeClient.connect(ctx.data_dir)
        self.steps = 0
        self.submission: Submission | None = None
        self.mitigation_done_at: float | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.deadline: float | None = None  # unix time after which calls are refused (set by the runner)
        self.actions: list[dict[str, Any]] = []
        self.audit_records: list[dict[str, Any]] = []
        self._interval: float | None = None

    # ---- dispatch ---------------------------------------------------------------------------
    def specs(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "kind": s.kind, "description": s.description, "parameters": s.parameters}
                for s in TOOLS.values()]

    def call(self, name: str, /, **args: Any) -> dict[str, Any]:
        """Run a tool by name; errors come back as ``{"ok": false, "error": ...}`` (one step spent)."""
        started = time.time()
        spec = TOOLS.get(name)
        if spec is None:
            result: dict[str, Any] = {"ok": False, "error": f"no tool '{name}'" + did_you_mean(name, TOOLS)}
        elif self.steps >= self.ctx.max_steps:
            result = {"ok": False, "error": f"step budget of {self.ctx.max_steps} exhausted"}
        elif self.deadline is not None and started > self.deadline:
            result = {"ok": False, "error": "time budget exhausted"}
        else:
            problems = check_args(spec, args)
            if problems:
                result = {"ok": False, "error": "; ".join(problems)}
            else:
                try:
                    out = getattr(self, spec.func_name)(**args)
                    result = {"ok": True, "result": out}
                except SockdrillError as exc:
                    result = {"ok": False, "error": str(exc)}
                except Exception as exc:  # any failure is the agent's answer, and audited, never a crash
                    result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.steps += 1
        self._audit(name, args, result, started, spec.kind if spec else "unknown")
        return result

    def _audit(self, name: str, args: dict[str, Any], result: dict[str, Any], started: float, kind: str) -> None:
        rec = {"time": started, "tool": name, "kind": kind, "args": args, "ok": result.get("ok", False),
               "error": result.get("error"), "elapsed_s": round(time.time() - started, 4)}
        if kind == "act":
            rec["result"] = result.get("result")
            # Only a call that changed the system counts as acting (no dry run, no value set to itself).
            out = result.get("result")
            rec["changed"] = bool(result.get("ok")) and not (isinstance(out, dict) and out.get("changed") is False)
            self.actions.append(rec)
        self.audit_records.append(rec)
        if self.ctx.audit_path is not None:
            self.ctx.audit_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.ctx.audit_path, "a") as fh:
                fh.write(json.dumps(rec, default=str) + "\n")

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(path, body)

    def _address(self, service: str) -> str:
        addresses = self.client.record.get("addresses") or {}
        if service not in addresses:
            raise ToolError(f"unknown service '{service}'" + did_you_mean(service, addresses))
        return str(addresses[service])

    def _kind_of(self, service: str) -> str:
        return str(self.client.get(f"/v1/describe/{service}")["kind"])

    def _since(self, since_s: float, end: float | None = None) -> float:
        """A look-back window (seconds before ``end``, default now) cut at the run's scope start."""
        since = max(1.0, float(since_s))
        if self.ctx.scope_start is not None:
            since = min(since, max(1.0, (end or time.time()) - self.ctx.scope_start))
        return since

    def count_tokens(self, prompt: int, completion: int) -> None:
        """LLM agents report what each model call cost; it lands in the run's efficiency score."""
        self.tokens_in += int(prompt)
        self.tokens_out += int(completion)

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
        out = {k: v for k, v in d.items() if k not in ("env", "knobs", "default_limits")}
        if d.get("kind") == "service":
            if self._third_party(d):
                out["config"] = "a third-party service: its configuration is not ours to see"
            else:
                cfg = self.client.get(f"/v1/config/{service}")
                out["config"] = cfg.get("config", {})
                out["config_revision"] = cfg.get("revision", 0)
                out["config_changed_at"] = cfg.get("changed_at")
        return out

    @staticmethod
    def _third_party(described: dict[str, Any]) -> bool:
        return "third-party" in str(described.get("role", ""))

    def _own_service(self, service: str) -> None:
        """Config tools work on the shop's services, not on a third party's (the payment gateway)."""
        if self._third_party(self.client.get(f"/v1/describe/{service}")):
            raise ToolError(f"'{service}' is a third-party service: its configuration is not ours to change")

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
    def queue_status(self, service: str = "queue", limit: int = 5) -> dict[str, Any]:
        """The shipping queue: backlog, messages delivered but never acknowledged (oldest first), consumers,
        and the dead-letter stream.

        Args:
        service: the queue deployment
        limit: at most this many pending messages to list (max 50)
        """
        _, limit = _paging(0, limit, 50)
        r = self._redis(service)
        name = _queue_name()
        try:
            length = r.xlen(name)
            groups = r.xinfo_groups(name)
        except _redis_errors() as exc:
            raise ToolError(f"cannot read the stream '{name}' on {service}: {exc}") from None
        group = next((g for g in groups if _s(g.get("name")) == QUEUE_GROUP), None)
        pending = []
        if group is not None:
            for p in r.xpending_range(name, QUEUE_GROUP, "-", "+", limit):
                pending.append({"message_id": _s(p["message_id"]), "consumer": _s(p["consumer"]),
                                "idle_s": round(p["time_since_delivered"] / 1000, 1),
                                "deliveries": p["times_delivered"]})
        return {"stream": name, "length": length, "pending": int(group["pending"]) if group else 0,
                "consumers": int(group["consumers"]) if group else 0, "oldest_pending": pending,
                "dead_letter_stream": name + DLQ_SUFFIX, "dead_letters": r.xlen(name + DLQ_SUFFIX)}

    # ---- act --------------------------------------------------------------------------------
    @tool("act")
    def restart(self, service: str, pod: str = "") -> dict[str, Any]:
        """Replace a pod of a deployment, or roll every pod of it (one at a time) when no pod is given.

        Args:
        service: the deployment name
        pod: one pod name from pods(); empty for all pods
        """
        body: dict[str, Any] = {"deployment": service}
        if pod:
            body["pod"] = pod
        out = self._post("/v1/restart", body)
        return {**out, "changed": bool(out.get("restarted"))}

    @tool("act")
    def scale(self, service: str, replicas: int) -> dict[str, Any]:
        """Set the number of pods of a service (0 to 8; scaling to 0 takes the service down).

        Args:
        service: the deployment name
        replicas: the new number of pods
        """
        if not 0 <= replicas <= MAX_REPLICAS:
            raise ToolError(f"replicas must be between 0 and {MAX_REPLICAS}, got {replicas}")
        out = self._post("/v1/scale", {"deployment": service, "replicas": replicas})
        return {**out, "changed": out.get("before") != out.get("replicas")}

    @tool("act")
    def set_limits(self, service: str, cpu: str = "", memory: str = "", clear: bool = False) -> dict[str, Any]:
        """Set (or clear) the CPU/memory limits of every pod of a deployment.

        Args:
        service: the deployment name
        cpu: CPU limit like 500m or 1
        memory: memory limit like 256Mi
        clear: put both limits back to the deployment's standard ones
        """
        out = self._post("/v1/limits", {"deployment": service, "cpu": cpu or None, "memory": memory or None,
                                        "clear": clear})
        return {**out, "changed": out.get("before") != out.get("limits")}

    @tool("act")
    def set_config(self, service: str, knobs: dict) -> dict[str, Any]:  # type: ignore[type-arg]
        """Change configuration knobs of a service live (see describe for the knobs it has).

        Args:
        service: the service deployment
        knobs: an object of knob name to new value
        """
        self._own_service(service)
        out = self._post("/v1/config", {"deployment": service, "knobs": knobs})
        # The answer says what this call did, not what others set before it.
        return {"deployment": service, "set": knobs, "pods": out.get("pods", []), "changed": bool(out.get("changed"))}

    @tool("act")
    def rollback_config(self, service: str) -> dict[str, Any]:
        """Undo the last configuration change of a service.

        Args:
        service: the service deployment
        """
        self._own_service(service)
        out = self._post("/v1/config/rollback", {"deployment": service})
        return {"deployment": service, "restored": out.get("restored", {}), "changed": bool(out.get("restored"))}

    def _pg(self, service: str, fn: Callable[[Any], Any]) -> Any:
        import asyncpg

        if self._kind_of(service) != "postgres":
            raise ToolError(f"'{service}' is not a PostgreSQL datastore")
        url = self._address(service)

        async def run() -> Any:
            conn = await asyncpg.connect(url, timeout=5)
            try:
                return await fn(conn)
            finally:
                await conn.close()

        return asyncio.run(run())

    @tool("act")
    def create_index(self, service: str, table: str, columns: list[str], name: str = "",
                     unique: bool = False) -> dict[str, Any]:
        """Create a btree index on a table of a PostgreSQL datastore.

        Args:
        service: the database deployment, e.g. user-db
        table: the table
        columns: the indexed columns, in order
        name: the index name (default: table_col_idx)
        unique: a unique index
        """
        _ident(table, "table")
        if not columns:
            raise ToolError("columns must name at least one column")
        cols = [_ident(c, "column") for c in columns]
        index = _ident(name or f"{table}_{'_'.join(cols)}_idx", "name")
        sql = (f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {index} ON {table} ({', '.join(cols)})")

        async def go(conn: Any) -> dict[str, Any]:
            if await conn.fetchval("SELECT 1 FROM pg_indexes WHERE indexname = $1", index):
                return {"created": None, "exists": index, "changed": False}
            started = time.perf_counter()
            await conn.execute(sql)
            await conn.execute(f"ANALYZE {table}")
            return {"created": index, "seconds": round(time.perf_counter() - started, 3), "changed": True}

        return self._pg(service, go)

    @tool("act")
    def drop_index(self, service: str, name: str) -> dict[str, Any]:
        """Drop an index of a PostgreSQL datastore.

        Args:
        service: the database deployment
        name: the index name
        """
        index = _ident(name, "name")

        async def go(conn: Any) -> dict[str, Any]:
            existed = bool(await conn.fetchval("SELECT 1 FROM pg_indexes WHERE indexname = $1", index))
            await conn.execute(f"DROP INDEX IF EXISTS {index}")
            return {"dropped": index if existed else None, "changed": existed}

        return self._pg(service, go)

    @tool("act")
    def cancel_queries(self, service: str, min_duration_s: float = 5.0) -> dict[str, Any]:
        """Terminate the database sessions whose current query has run longer than a threshold.

        Args:
        service: the database deployment
        min_duration_s: only queries running at least this long
        """
        async def go(conn: Any) -> dict[str, Any]:
            rows = await conn.fetch(
                "SELECT pid, left(query, 120) AS query, now() - query_start AS age FROM pg_stat_activity "
                "WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "AND now() - query_start > make_interval(secs => $1)", float(min_duration_s))
            killed = [r["pid"] for r in rows if await conn.fetchval("SELECT pg_terminate_backend($1)", r["pid"])]
            return {"terminated": len(killed), "queries": sorted({r["query"] for r in rows})[:5],
                    "changed": bool(killed)}

        return self._pg(service, go)

    def _redis(self, service: str) -> Any:
        import redis

        if self._kind_of(service) != "redis":
            raise ToolError(f"'{service}' is not a Redis datastore")
        return redis.Redis.from_url(self._address(service), socket_timeout=5)

    @tool("act")
    def flush_cache(self, service: str) -> dict[str, Any]:
        """Delete every key of a Redis datastore (sessions, carts, queues in it are lost).

        Args:
        service: the Redis deployment
        """
        r = self._redis(service)
        keys = r.dbsize()
        r.flushdb()
        return {"flushed_keys": keys, "changed": bool(keys)}

    @tool("act")
    def resize_cache(self, service: str, maxmemory: str, policy: str = "") -> dict[str, Any]:
        """Set a Redis datastore's memory limit (e.g. 256mb, 0 for none) and optionally its eviction policy.

        Args:
        service: the Redis deployment
        maxmemory: the new limit, e.g. 64mb; 0 removes it
        policy: noeviction, allkeys-lru, allkeys-lfu, volatile-lru, ...
        """
        r = self._redis(service)
        if not re.fullmatch(r"\d+(b|kb|mb|gb)?", maxmemory.strip().lower()):
            raise ToolError(f"maxmemory must look like 64mb or 0, got {maxmemory!r}")

        def current() -> tuple[str, str]:
            policy_now = r.config_get("maxmemory-policy")["maxmemory-policy"]
            return _s(r.config_get("maxmemory")["maxmemory"]), _s(policy_now)

        before = current()
        r.config_set("maxmemory", maxmemory.strip().lower())
        if policy:
            r.config_set("maxmemory-policy", policy)
        after = current()
        return {"maxmemory": after[0], "policy": after[1], "changed": after != before}

    @tool("act")
    def reconcile_payments(self, older_than_s: float = 30.0, dry_run: bool = False) -> dict[str, Any]:
        """Void payment charges that have no order (customers charged for orders that failed).

        Args:
        older_than_s: only charges older than this (leave orders in flight alone)
        dry_run: only report what would be voided
        """
        from sockdrill.shop.reconcile import reconcile_payments

        gateway = self._address("payment-gateway")
        orders_db = self._address("orders-db")  # carries the runtime's login: never in what the agent sees
        try:
            out = asyncio.run(reconcile_payments(gateway, orders_db, older_than_s=older_than_s, dry_run=dry_run))
            return {**out, "changed": not dry_run and bool(out.get("voided"))}
        except SockdrillError as exc:
            raise ToolError(str(exc).replace(orders_db, "orders-db")) from None

    @tool("act")
    def dead_letter(self, message_id: str = "", min_idle_s: float = 30.0, count: int = 10,
                    service: str = "queue") -> dict[str, Any]:
        """Move messages that were delivered but never acknowledged (e.g. a poison message) off the shipping
        queue into its dead-letter stream, where they wait for requeue.

        Args:
        message_id: one message id from queue_status; empty for the oldest pending ones
        min_idle_s: without a message_id, only messages pending at least this long
        count: without a message_id, at most this many messages (max 100)
        service: the queue deployment
        """
        r = self._redis(service)
        name = _queue_name()
        if message_id:
            ids = [message_id]
        else:
            _, count = _paging(0, count, 100)
            try:
                rows = r.xpending_range(name, QUEUE_GROUP, "-", "+", count, idle=int(float(min_idle_s) * 1000))
            except _redis_errors() as exc:
                raise ToolError(f"cannot read pending messages of '{name}': {exc}") from None
            ids = [_s(p["message_id"]) for p in rows]
        moved, missing = [], []
        for mid in ids:
            try:
                # Claim it so no consumer gets it meanwhile, copy it, then settle and delete the original.
                claimed = r.xclaim(name, QUEUE_GROUP, "sockdrill-agent", 0, [mid])
            except _redis_errors() as exc:
                raise ToolError(f"cannot claim message {mid!r}: {exc}") from None
            fields = claimed[0][1] if claimed and claimed[0][1] else None
            if fields is None:
                fields_rows = r.xrange(name, mid, mid)
                fields = fields_rows[0][1] if fields_rows else None
            if fields is None:
                missing.append(mid)
                r.xack(name, QUEUE_GROUP, mid)
                continue
            r.xadd(name + DLQ_SUFFIX, {**fields, "dead_lettered_from": mid, "dead_lettered_at": str(time.time())})
            r.xack(name, QUEUE_GROUP, mid)
            r.xdel(name, mid)
            moved.append(mid)
        if message_id and missing:
            raise ToolError(f"no message {message_id!r} in the stream '{name}'")
        return {"dead_lettered": moved, "not_found": missing, "dead_letter_stream": name + DLQ_SUFFIX,
                "changed": bool(moved)}

    @tool("act")
    def requeue(self, message_id: str = "", count: int = 10, service: str = "queue") -> dict[str, Any]:
        """Put dead-lettered messages back on the shipping queue (they are delivered again).

        Args:
        message_id: one id from the dead-letter stream; empty for the oldest ones
        count: without a message_id, at most this many messages (max 100)
        service: the queue deployment
        """
        r = self._redis(service)
        name = _queue_name()
        dlq = name + DLQ_SUFFIX
        _, count = _paging(0, count, 100)
        try:
            rows = r.xrange(dlq, message_id, message_id) if message_id else r.xrange(dlq, "-", "+", count)
        except _redis_errors() as exc:
            raise ToolError(f"cannot read the dead-letter stream '{dlq}': {exc}") from None
        if message_id and not rows:
            raise ToolError(f"no message {message_id!r} in the dead-letter stream '{dlq}'")
        out = []
        for mid, fields in rows:
            body = {k: v for k, v in fields.items() if _s(k) in ("body", "headers")}
            new_id = r.xadd(name, body)
            r.xdel(dlq, mid)
            out.append({"from": _s(mid), "to": _s(new_id)})
        return {"requeued": out, "left_in_dead_letter": r.xlen(dlq), "changed": bool(out)}

    def _pod_knobs(self, service: str, knobs: dict[str, Any]) -> list[dict[str, Any]]:
        """Set knobs on every ready pod through the runtime, outside the config history (a momentary
        change such as a breaker reset is not a config push to roll back)."""
        out = self._post("/v1/config", {"deployment": service, "knobs": knobs, "record": False})
        return [{"pod": p} for p in out.get("pods", [])]

    def _breaker_reset(self) -> dict[str, Any]:
        current = self.client.get("/v1/config/payment").get("config", {}).get("breaker_enabled", True)
        # Turning the breaker off closes it and forgets its failures; then it goes back to how it was.
        self._pod_knobs("payment", {"breaker_enabled": False})
        pods = self._pod_knobs("payment", {"breaker_enabled": bool(current)})
        return {"breaker": "closed", "pods": [p["pod"] for p in pods]}

    @tool("act")
    def reset_gateway(self) -> dict[str, Any]:
        """Reset payment's circuit breaker on the payment gateway: closed again, failure count cleared, so
        payments are attempted at once instead of waiting for the breaker's probe."""
        return self._breaker_reset()

    @tool("act")
    def failover_gateway(self) -> dict[str, Any]:
        """Fail the payment gateway over to fresh instances (its pods are replaced one at a time; charges
        are kept in its ledger), then reset payment's circuit breaker so traffic moves to them at once."""
        restarted = self._post("/v1/restart", {"deployment": "payment-gateway"})
        return {"gateway": restarted, **self._breaker_reset()}

    # ---- submit -------------------------------------------------------------------------------
    @tool("submit")
    def submit(self, detected: bool, root_causes: list[str], category: str = "", summary: str = "") -> dict[str, Any]:
        """Report your conclusion, once: is something wrong, the components most likely at fault (best
        first), the category of the cause, and a short summary. A second submit is refused.

        Args:
        detected: true if users are being hurt by a problem
        root_causes: component names ranked from most to least likely
        category: one of the diagnosis categories (see categories)
        summary: what you found and did
        """
        if self.submission is not None:
            raise ToolError("an answer was already submitted; a run takes one submission")
        self.submission = Submission(time.time(), bool(detected), [str(c) for c in root_causes][:10],
                                     category or None, summary[:4000])
        return {"accepted": True}

    @tool("submit")
    def mitigation_done(self) -> dict[str, Any]:
        """Say that you believe the problem is mitigated (the run then checks that users are served again)."""
        self.mitigation_done_at = time.time()
        return {"accepted": True}

    @tool("observe")
    def categories(self) -> list[dict[str, str]]:
        """The diagnosis categories submit accepts, with what each means."""
        from sockdrill.evaluate.taxonomy import CATEGORIES

        return [{"id": c.id, "description": c.description} for c in CATEGORIES.values()]
