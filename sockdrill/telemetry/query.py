"""Queries over a run's telemetry: metric series (raw, rate, histogram quantiles, sum/avg by label), log
search and trace search.

Two faces with the same methods and the same JSON-able results:
- :class:`Query` reads a run directory's store in-process (works while the recorder writes, and after);
- :class:`RemoteQuery` asks a running recorder's HTTP API (``/api/...``), e.g. from an agent's sandbox.
:func:`dispatch` maps HTTP query parameters onto :class:`Query` so both stay the same API.

Semantics, close to PromQL's:
- times are unix seconds; ``since`` ("5m", "30s" or seconds) counts back from ``end``; ``end`` defaults
  to now while the run is being recorded, else to the last recorded sample;
- ``rate`` at time T is the increase over the samples in (T-window, T] (counter resets handled) divided
  by the time between the first and last of them — no extrapolation to the window's edges;
- ``quantile`` is ``histogram_quantile(q, sum by (le, BY...) (rate(NAME_bucket[window])))``;
- ``aggregate`` applies sum/avg/min/max/count by labels to raw values (last sample within a lookback of
  ~2.5 scrape intervals) or to rates.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sockdrill.cluster.admin import telemetry_headers
from sockdrill.telemetry.store import LEVELS, Matcher, Store, db_path, parse_matcher

DEFAULT_SINCE = 300.0
DEFAULT_WINDOW = 60.0
MAX_POINTS = 11000
QUANTILE_FNS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "median": 0.5}
FNS = ("raw", "rate", "increase", *QUANTILE_FNS)
AGG_OPS = ("sum", "avg", "min", "max", "count")


class QueryError(ValueError):
    """A bad query (→ HTTP 400)."""


def parse_duration(value: str | float | int | None, what: str = "duration") -> float | None:
    """'30s' → 30, '5m' → 300, '2h' → 7200, '1d' → 86400, 1.5 → 1.5; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(value))
        if not m:
            raise QueryError(f"{what} {value!r} is not like 30s, 5m or 1h")
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]
    if seconds < 0 or not math.isfinite(seconds):
        raise QueryError(f"{what} must be a positive duration")
    return seconds


def _matchers(labels: Mapping[str, str] | Sequence[str] | None) -> list[Matcher]:
    if not labels:
        return []
    if isinstance(labels, Mapping):
        return [(str(k), "=", str(v)) for k, v in labels.items()]
    out = []
    for item in labels:
        try:
            out.append(parse_matcher(item))
        except ValueError as exc:
            raise QueryError(str(exc)) from None
    return out


def _points(ts: Sequence[float], vs: Sequence[float]) -> list[list[float]]:
    return [[round(t, 3), v] for t, v in zip(ts, vs, strict=False) if v is not None and math.isfinite(v)]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus's interpolation over cumulative ``(upper_bound, count)`` buckets (sorted or not)."""
    if not buckets or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bs = sorted(buckets)
    if not math.isinf(bs[-1][0]):
        return math.nan
    # Cumulative counts should be monotonic; rates of separate series can wobble, so force it.
    counts: list[float] = []
    for _, c in bs:
        counts.append(max(c, counts[-1]) if counts else c)
    total = counts[-1]
    if total <= 0 or len(bs) < 2:
        return math.nan
    rank = q * total
    i = bisect.bisect_left(counts, rank)
    if i >= len(bs) - 1:
        return bs[-2][0]
    upper = bs[i][0]
    lower = 0.0
    below = 0.0
    if i > 0:
        lower = bs[i - 1][0]
        below = counts[i - 1]
    elif upper <= 0:
        return upper
    in_bucket = counts[i] - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


class Query:
    """Queries over one run's store (``RUN_DIR/telemetry/telemetry.db``), in this process."""

    def __init__(self, store: Store, interval: float | None = None) -> None:
        self.store = store
        meta = store.meta()
        self.interval = float(interval or meta.get("interval") or 5.0)

    @classmethod
    def open(cls, run_dir: Path | str) -> Query:
        return cls(Store(db_path(Path(run_dir)), readonly=True))

    def close(self) -> None:
        self.store.close()

    # ---- time ---------------------------------------------------------------------------------------
    def _range(self, start: float | None, end: float | None, since: Any) -> tuple[float, float]:
        if end is None:
            now = time.time()
            bounds = self.store.time_bounds()
            # A live run ends now; a finished one at its last sample.
            end = now if bounds is None or now - bounds[1] <= 3 * self.interval + 5 else bounds[1]
        if start is None:
            start = end - (parse_duration(since, "since") or DEFAULT_SINCE)
        if start > end:
            raise QueryError("start is after end")
        return float(start), float(end)

    def _grid(self, start: float, end: float, step: float | None) -> list[float]:
        step = step or self.interval
        if step <= 0:
            raise QueryError("step must be positive")
        if (end - start) / step > MAX_POINTS:
            step = (end - start) / MAX_POINTS
        n = int((end - start) / step)
        return [end - (n - k) * step for k in range(n + 1)]

    # ---- metrics ------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return self.store.names()

    def label_values(self, label: str, name: str | None = None) -> list[str]:
        return sorted({self.store.labels(s).get(label, "") for s in self.store.select(name)} - {""})

    def _select(self, name: str, labels: Any) -> list[int]:
        if not name:
            raise QueryError("give a metric name")
        return self.store.select(name, _matchers(labels))

    def series(self, name: str, labels: Any = None, start: float | None = None, end: float | None = None,
               since: Any = None, limit: int = 500) -> list[dict[str, Any]]:
        """Raw samples of every series named ``name`` matching ``labels``."""
        start, end = self._range(start, end, since)
        sids = self._select(name, labels)[:limit]
        data = self.store.read(sids, int(start * 1000), int(end * 1000))
        return [{"labels": self.store.labels(s), "points": _points(*data[s])} for s in sids if data[s][0]]

    def _rates(self, sids: list[int], grid: list[float], window: float, start: float, end: float,
               per_second: bool = True) -> dict[int, list[float]]:
        data = self.store.read(sids, int((start - window) * 1000), int(end * 1000))
        out: dict[int, list[float]] = {}
        for sid, (ts, vs) in data.items():
            if len(ts) < 2:
                continue
            # Reset-corrected running total: increase between i and j is acc[j] - acc[i].
            acc = [0.0] * len(vs)
            for i in range(1, len(vs)):
                d = vs[i] - vs[i - 1]
                acc[i] = acc[i - 1] + (d if d >= 0 else vs[i])
            row = []
            for t in grid:
                b = bisect.bisect_right(ts, t) - 1
                a = bisect.bisect_right(ts, t - window)
                if b - a < 1:
                    row.append(math.nan)
                    continue
                inc = acc[b] - acc[a]
                row.append(inc / (ts[b] - ts[a]) if per_second else inc * window / (ts[b] - ts[a]))
            out[sid] = row
        return out

    def _lasts(self, sids: list[int], grid: list[float], start: float, end: float) -> dict[int, list[float]]:
        lookback = max(2.5 * self.interval, grid[1] - grid[0] if len(grid) > 1 else 0)
        data = self.store.read(sids, int((start - lookback) * 1000), int(end * 1000))
        out = {}
        for sid, (ts, vs) in data.items():
            row = []
            for t in grid:
                b = bisect.bisect_right(ts, t) - 1
                row.append(vs[b] if b >= 0 and t - ts[b] <= lookback else math.nan)
            out[sid] = row
        return out

    def rate(self, name: str, labels: Any = None, start: float | None = None, end: float | None = None,
             since: Any = None, step: Any = None, window: Any = None, increase: bool = False,
             limit: int = 500) -> list[dict[str, Any]]:
        """Per-second rate (or increase over the window) of each matching counter series."""
        start, end = self._range(start, end, since)
        grid = self._grid(start, end, parse_duration(step, "step"))
        win = parse_duration(window, "window") or DEFAULT_WINDOW
        sids = self._select(name, labels)[:limit]
        rates = self._rates(sids, grid, win, start, end, per_second=not increase)
        return [{"labels": self.store.labels(s), "points": _points(grid, rates[s])} for s in sids if s in rates]

    def quantile(self, q: float, name: str, labels: Any = None, by: Sequence[str] | str = (),
                 start: float | None = None, end: float | None = None, since: Any = None, step: Any = None,
                 window: Any = None) -> list[dict[str, Any]]:
        """``histogram_quantile(q, sum by (le, BY) (rate(NAME_bucket{labels}[window])))`` over time."""
        q = float(q)
        if not 0 <= q <= 1:
            raise QueryError("q must be between 0 and 1")
        base = name[:-7] if name.endswith("_bucket") else name
        by = _split(by)
        start, end = self._range(start, end, since)
        grid = self._grid(start, end, parse_duration(step, "step"))
        win = parse_duration(window, "window") or DEFAULT_WINDOW
        sids = [s for s in self._select(base + "_bucket", labels) if "le" in self.store.labels(s)]
        rates = self._rates(sids, grid, win, start, end)
        groups: dict[tuple[str, ...], dict[float, list[float]]] = {}
        for sid, row in rates.items():
            lab = self.store.labels(sid)
            try:
                le = float(lab["le"])
            except ValueError:
                continue
            buckets = groups.setdefault(tuple(lab.get(k, "") for k in by), {})
            acc = buckets.setdefault(le, [0.0] * len(grid))
            for i, v in enumerate(row):
                if not math.isnan(v):
                    acc[i] += v
        out = []
        for key, buckets in sorted(groups.items()):
            values = [histogram_quantile(q, [(le, col[i]) for le, col in buckets.items()]) for i in range(len(grid))]
            pts = _points(grid, values)
            if pts:
                out.append({"labels": dict(zip(by, key, strict=True)), "points": pts})
        return out

    def aggregate(self, name: str, labels: Any = None, op: str = "sum", by: Sequence[str] | str = (),
                  fn: str = "raw", start: float | None = None, end: float | None = None, since: Any = None,
                  step: Any = None, window: Any = None) -> list[dict[str, Any]]:
        """``op by (BY) (fn(NAME{labels}))`` over time; fn is raw, rate or increase."""
        if op not in AGG_OPS:
            raise QueryError(f"op must be one of {', '.join(AGG_OPS)}, got {op!r}")
        if fn not in ("raw", "rate", "increase"):
            raise QueryError(f"fn must be raw, rate or increase for an aggregate, got {fn!r}")
        by = _split(by)
        start, end = self._range(start, end, since)
        grid = self._grid(start, end, parse_duration(step, "step"))
        sids = self._select(name, labels)
        if fn == "raw":
            rows = self._lasts(sids, grid, start, end)
        else:
            win = parse_duration(window, "window") or DEFAULT_WINDOW
            rows = self._rates(sids, grid, win, start, end, per_second=fn == "rate")
        groups: dict[tuple[str, ...], list[list[float]]] = {}
        for sid, row in rows.items():
            lab = self.store.labels(sid)
            groups.setdefault(tuple(lab.get(k, "") for k in by), []).append(row)
        out = []
        for key, members in sorted(groups.items()):
            values = []
            for i in range(len(grid)):
                col = [m[i] for m in members if not math.isnan(m[i])]
                values.append(_combine(op, col))
            pts = _points(grid, values)
            if pts:
                out.append({"labels": dict(zip(by, key, strict=True)), "points": pts})
        return out

    def metric(self, name: str, labels: Any = None, fn: str = "raw", op: str | None = None,
               by: Sequence[str] | str = (), **kw: Any) -> list[dict[str, Any]]:
        """One entry point for the CLI: raw/rate/increase/pNN, optionally aggregated."""
        if fn not in FNS:
            raise QueryError(f"fn must be one of {', '.join(FNS)}, got {fn!r}")
        if fn in QUANTILE_FNS:
            return self.quantile(QUANTILE_FNS[fn], name, labels, by=by, **kw)
        if op or by:
            return self.aggregate(name, labels, op=op or "sum", by=by, fn=fn, **kw)
        if fn == "raw":
            kw.pop("step", None)
            kw.pop("window", None)
            return self.series(name, labels, **kw)
        return self.rate(name, labels, increase=fn == "increase", **kw)

    # ---- logs ---------------------------------------------------------------------------------------
    def logs(self, service: str | None = None, pod: str | None = None, level: str | None = None,
             grep: str | None = None, trace_id: str | None = None, start: float | None = None,
             end: float | None = None, since: Any = None, limit: int = 200) -> list[dict[str, Any]]:
        """Log lines, oldest first (the newest ``limit`` of those that match)."""
        where: list[str] = []
        args: list[str | float] = []
        if service:
            where.append("service = ?")
            args.append(service)
        if pod:
            where.append("pod = ?")
            args.append(pod)
        if level:
            if level.lower() not in LEVELS:
                raise QueryError(f"level must be one of debug, info, warning, error, critical; got {level!r}")
            where.append("lvl >= ?")
            args.append(LEVELS[level.lower()])
        if grep:
            pat = "%" + grep.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(message LIKE ? ESCAPE '\\' OR extra LIKE ? ESCAPE '\\')")
            args += [pat, pat]
        if trace_id:
            where.append("trace_id = ?")
            args.append(trace_id.lower())
        if start is not None or end is not None or since is not None:
            lo, hi = self._log_range(start, end, since)
            where.append("t BETWEEN ? AND ?")
            args += [lo, hi]
        sql = "SELECT t, service, pod, level, trace_id, message, extra FROM logs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY t DESC, id DESC LIMIT ?"
        rows = self.store.db.execute(sql, (*args, _limit(limit))).fetchall()
        out = []
        for t, svc, pod_, lvl, tid, msg, extra in reversed(rows):
            rec: dict[str, Any] = {"time": t, "service": svc, "pod": pod_, "level": lvl, "message": msg}
            if tid:
                rec["trace_id"] = tid
            if extra:
                rec["extra"] = json.loads(extra)
            out.append(rec)
        return out

    def _log_range(self, start: float | None, end: float | None, since: Any) -> tuple[float, float]:
        end = time.time() if end is None else end
        start = end - (parse_duration(since, "since") or DEFAULT_SINCE) if start is None else start
        return float(start), float(end)

    # ---- traces -------------------------------------------------------------------------------------
    def traces(self, service: str | None = None, operation: str | None = None, min_ms: float | None = None,
               errors: bool = False, start: float | None = None, end: float | None = None, since: Any = None,
               limit: int = 50) -> list[dict[str, Any]]:
        """Traces with at least one span matching every filter, newest first, summarised."""
        where: list[str] = []
        args: list[str | float] = []
        if service:
            where.append("service = ?")
            args.append(service)
        if operation:
            where.append("name LIKE ?")
            args.append("%" + operation + "%")
        if min_ms is not None:
            where.append("dur_ms >= ?")
            args.append(float(min_ms))
        if errors:
            where.append("error = 1")
        if start is not None or end is not None or since is not None:
            lo, hi = self._log_range(start, end, since)
            where.append("start BETWEEN ? AND ?")
            args += [lo, hi]
        sql = "SELECT trace_id, max(start) AS s FROM spans"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " GROUP BY trace_id ORDER BY s DESC LIMIT ?"
        ids = [r[0] for r in self.store.db.execute(sql, (*args, _limit(limit)))]
        out = []
        for tid in ids:
            spans = self._spans(tid)
            if spans:
                out.append(_summary(tid, spans))
        return out

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """Every span of one trace (start order, with depth), or None when unknown."""
        tid = trace_id.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{1,32}", tid):
            raise QueryError(f"trace id {trace_id!r} is not hex")
        spans = self._spans(tid.rjust(32, "0"))
        if not spans:
            return None
        by_id = {s["span_id"]: s for s in spans}
        for s in spans:
            depth, cur, seen = 0, s, set()
            while cur["parent_id"] in by_id and cur["span_id"] not in seen:
                seen.add(cur["span_id"])
                cur = by_id[cur["parent_id"]]
                depth += 1
            s["depth"] = depth
        return {**_summary(tid, spans), "spans": spans}

    def _spans(self, trace_id: str) -> list[dict[str, Any]]:
        rows = self.store.db.execute(
            "SELECT span_id, parent_id, service, pod, name, kind, start, dur_ms, error, status, a.text "
            "FROM spans LEFT JOIN attrsets a ON a.id = spans.attrs WHERE trace_id = ? ORDER BY start",
            (trace_id,)).fetchall()
        return [{"span_id": r[0], "parent_id": r[1], "service": r[2], "pod": r[3], "name": r[4], "kind": r[5],
                 "start": r[6], "duration_ms": r[7], "error": bool(r[8]), "status": r[9],
                 "attributes": json.loads(r[10]) if r[10] else {}} for r in rows]


def _summary(trace_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    ids = {s["span_id"] for s in spans}
    root = next((s for s in spans if s["parent_id"] not in ids), spans[0])
    t0 = min(s["start"] for s in spans)
    t1 = max(s["start"] + s["duration_ms"] / 1000 for s in spans)
    return {"trace_id": trace_id, "root_service": root["service"], "root_name": root["name"], "start": t0,
            "duration_ms": round((t1 - t0) * 1000, 3), "spans_count": len(spans),
            "errors": sum(1 for s in spans if s["error"]), "services": sorted({s["service"] for s in spans})}


def _combine(op: str, col: list[float]) -> float:
    if op == "count":
        return float(len(col))
    if not col:
        return math.nan
    if op == "sum":
        return math.fsum(col)
    if op == "avg":
        return math.fsum(col) / len(col)
    return min(col) if op == "min" else max(col)


def _split(by: Sequence[str] | str | None) -> list[str]:
    if not by:
        return []
    items = by.split(",") if isinstance(by, str) else [p for b in by for p in str(b).split(",")]
    return [b.strip() for b in items if b.strip()]


def _limit(value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise QueryError(f"limit must be an integer, got {value!r}") from None
    if not 1 <= n <= 100_000:
        raise QueryError("limit must be between 1 and 100000")
    return n


# ---- the HTTP face ------------------------------------------------------------------------------------
def _float(params: Mapping[str, Any], key: str) -> float | None:
    raw = params.get(key)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise QueryError(f"{key} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise QueryError(f"{key} must be finite")
    return value


def _bool(params: Mapping[str, Any], key: str) -> bool:
    return str(params.get(key, "")).lower() in ("1", "true", "yes", "on")


ROUTES = ("names", "series", "rate", "quantile", "aggregate", "metric", "logs", "traces", "trace")


def dispatch(q: Query, route: str, params: Mapping[str, Any], labels: Sequence[str] = ()) -> Any:
    """Run one ``/api/ROUTE`` call: ``params`` are single query values, ``labels`` the repeated ``label``."""
    times = {"start": _float(params, "start"), "end": _float(params, "end"), "since": params.get("since") or None}
    span = {"step": params.get("step") or None, "window": params.get("window") or None}
    name = str(params.get("name", ""))
    if route == "names":
        return q.names()
    if route == "series":
        return q.series(name, list(labels), **times, limit=_limit(params.get("limit", 500)))
    if route == "rate":
        return q.rate(name, list(labels), **times, **span, increase=_bool(params, "increase"),
                      limit=_limit(params.get("limit", 500)))
    if route == "quantile":
        qv = _float(params, "q")
        if qv is None:
            raise QueryError("give q, e.g. q=0.95")
        return q.quantile(qv, name, list(labels), by=str(params.get("by", "")), **times, **span)
    if route == "aggregate":
        return q.aggregate(name, list(labels), op=str(params.get("op", "sum")), by=str(params.get("by", "")),
                           fn=str(params.get("fn", "raw")), **times, **span)
    if route == "metric":
        return q.metric(name, list(labels), fn=str(params.get("fn", "raw")), op=params.get("op") or None,
                        by=str(params.get("by", "")), **times, **span)
    if route == "logs":
        return q.logs(service=params.get("service") or None, pod=params.get("pod") or None,
                      level=params.get("level") or None, grep=params.get("grep") or None,
                      trace_id=params.get("trace_id") or None, **times, limit=_limit(params.get("limit", 200)))
    if route == "traces":
        return q.traces(service=params.get("service") or None, operation=params.get("operation") or None,
                        min_ms=_float(params, "min_ms"), errors=_bool(params, "errors"), **times,
                        limit=_limit(params.get("limit", 50)))
    if route == "trace":
        return q.trace(str(params.get("trace_id", "")))
    raise QueryError(f"unknown route {route!r}; one of {', '.join(ROUTES)}")


class RemoteQuery:
    """The same queries through a running recorder's HTTP API."""

    def __init__(self, url: str, timeout: float = 30.0, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = telemetry_headers(token)  # the shop's telemetry token (sockdrill/cluster/admin.py)

    def _get(self, route: str, labels: Iterable[str] = (), **params: Any) -> Any:
        pairs = [(k, _param(v)) for k, v in params.items() if v is not None and v != "" and v != ()]
        pairs += [("label", m) for m in labels]
        url = f"{self.url}/api/{route}?{urllib.parse.urlencode(pairs)}"
        try:
            req = urllib.request.Request(url, headers=self.headers)
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            if exc.code == 400:
                raise QueryError(str(message)) from None
            raise ConnectionError(f"the recorder at {self.url} answered {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionError(f"the recorder does not answer at {self.url}: {exc}") from None

    def names(self) -> list[str]:
        return self._get("names")

    def series(self, name: str, labels: Any = None, **kw: Any) -> Any:
        return self._get("series", _labels(labels), name=name, **kw)

    def rate(self, name: str, labels: Any = None, increase: bool = False, **kw: Any) -> Any:
        return self._get("rate", _labels(labels), name=name, increase=increase or None, **kw)

    def quantile(self, q: float, name: str, labels: Any = None, **kw: Any) -> Any:
        return self._get("quantile", _labels(labels), q=q, name=name, **kw)

    def aggregate(self, name: str, labels: Any = None, **kw: Any) -> Any:
        return self._get("aggregate", _labels(labels), name=name, **kw)

    def metric(self, name: str, labels: Any = None, **kw: Any) -> Any:
        return self._get("metric", _labels(labels), name=name, **kw)

    def logs(self, **kw: Any) -> Any:
        return self._get("logs", **kw)

    def traces(self, errors: bool = False, **kw: Any) -> Any:
        return self._get("traces", errors=errors or None, **kw)

    def trace(self, trace_id: str) -> Any:
        return self._get("trace", trace_id=trace_id)

    def promql(self, query: str, **kw: Any) -> Any:
        return self._get("promql", query=query, **kw)

    def close(self) -> None:
        pass


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _labels(labels: Any) -> list[str]:
    if not labels:
        return []
    if isinstance(labels, Mapping):
        return [f"{k}={v}" for k, v in labels.items()]
    return [str(x) for x in labels]


def recorder_info(run_dir: Path | str) -> dict[str, Any] | None:
    """``RUN_DIR/telemetry/recorder.json`` when the recorder that wrote it is still alive."""
    import os

    path = Path(run_dir) / "telemetry" / "recorder.json"
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) and not info.get("stopped_at") else None
