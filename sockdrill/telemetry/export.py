"""Datasets out of a recorded run.

- ``rcaeval``: one CSV in the layout RCAEval's metric-based RCA methods read — a ``time`` column (unix
  seconds) then, per service, ``<svc>_cpu`` (cores), ``<svc>_mem`` (working-set bytes),
  ``<svc>_latency-50`` and ``<svc>_latency-90`` (seconds, server side), ``<svc>_request`` (requests/s)
  and ``<svc>_error`` (5xx responses/s); one row per scrape interval. Datastores have cpu and mem only.
  A cell without data (no request in the window, a pod not yet up) is empty: RCAEval's preprocessing
  fills those.
- ``parquet`` / ``json``: the raw series (every sample of every series: ``time, name, job, pod, labels,
  value`` rows in ``metrics.parquet``; one ``{"name", "labels", "points"}`` object per line in
  ``metrics.jsonl``), plus the logs and spans.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sockdrill.telemetry.query import Query, parse_duration
from sockdrill.telemetry.store import Store, db_path

FORMATS = ("rcaeval", "parquet", "json")
RCAEVAL_METRICS = ("cpu", "mem", "latency-50", "latency-90", "request", "error")
HTTP = "http_request_duration_seconds"
CPU = "container_cpu_usage_seconds_total"
MEM = "container_memory_working_set_bytes"


def _bounds(q: Query, start: float | None, end: float | None) -> tuple[float, float]:
    bounds = q.store.time_bounds()
    if bounds is None:
        raise ValueError("the run recorded no metrics")
    return (bounds[0] if start is None else start), (bounds[1] if end is None else end)


def rcaeval_frame(q: Query, start: float | None = None, end: float | None = None, step: Any = None,
                  window: Any = None) -> tuple[list[str], list[list[float]]]:
    """The RCAEval table: header and rows (NaN where there is no data)."""
    lo, hi = _bounds(q, start, end)
    step_s = parse_duration(step, "step") or q.interval
    # At least three scrapes per window so every rate has two samples even with some jitter.
    win = parse_duration(window, "window") or max(3 * q.interval, 15.0)
    grid = q._grid(lo, hi, step_s)
    cols: dict[tuple[str, str], dict[float, float]] = {}

    def put(metric: str, key: str, result: list[dict[str, Any]]) -> None:
        for item in result:
            svc = item["labels"].get(key, "")
            if svc:
                cols[(svc, metric)] = {round(t, 3): v for t, v in item["points"]}

    kw = {"start": lo, "end": hi, "step": step_s}
    put("cpu", "container", q.aggregate(CPU, op="sum", by="container", fn="rate", window=win, **kw))
    put("mem", "container", q.aggregate(MEM, op="sum", by="container", fn="raw", **kw))
    put("latency-50", "job", q.quantile(0.5, HTTP, by="job", window=win, **kw))
    put("latency-90", "job", q.quantile(0.9, HTTP, by="job", window=win, **kw))
    put("request", "job", q.aggregate(HTTP + "_count", op="sum", by="job", fn="rate", window=win, **kw))
    put("error", "job", q.aggregate(HTTP + "_count", ["status_code=~5.."], op="sum", by="job", fn="rate",
                                    window=win, **kw))
    services = sorted({svc for svc, _ in cols})
    http_services = {svc for svc, m in cols if m == "request"}
    header = ["time"]
    keys: list[tuple[str, str]] = []
    for svc in services:
        for metric in RCAEVAL_METRICS:
            if metric in ("cpu", "mem") or svc in http_services:
                keys.append((svc, metric))
                header.append(f"{svc}_{metric}")
    rows = []
    for t in grid:
        tk = round(t, 3)
        row = [t]
        for key in keys:
            value = cols.get(key, {}).get(tk, math.nan)
            if key[1] == "error" and math.isnan(value) and not math.isnan(cols.get((key[0], "request"), {}).get(
                    tk, math.nan)):
                value = 0.0  # requests but no 5xx series yet: zero errors, not unknown
            row.append(value)
        rows.append(row)
    return header, rows


def export_rcaeval(run_dir: Path, out: Path, **kw: Any) -> Path:
    q = Query.open(run_dir)
    try:
        header, rows = rcaeval_frame(q, **kw)
    finally:
        q.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Whole seconds (RCAEval's own files) unless the step is finer than a second.
    whole = len(rows) < 2 or rows[1][0] - rows[0][0] >= 1 - 1e-9
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            t = round(r[0]) if whole else round(r[0], 3)
            w.writerow([t, *("" if math.isnan(v) else repr(round(v, 9)) for v in r[1:])])
    return out


def read_rcaeval(path: Path) -> tuple[list[str], list[list[float]]]:
    """Read an RCAEval CSV back (empty cells → NaN)."""
    with open(path, newline="") as fh:
        r = csv.reader(fh)
        header = next(r)
        rows = [[float(c) if c != "" else math.nan for c in row] for row in r]
    return header, rows


# ---- raw series -----------------------------------------------------------------------------------------
def iter_series(store: Store, start_ms: int, end_ms: int) -> Iterator[tuple[str, dict[str, str], list[float],
                                                                             list[float]]]:
    """Every series with its samples, one target at a time (bounded memory)."""
    store.refresh()
    groups: dict[int | None, list[int]] = {}
    for sid, (_name, _labels, target) in store.series.items():
        groups.setdefault(target, []).append(sid)
    for _target, sids in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        data = store.read(sids, start_ms, end_ms)
        for sid in sids:
            ts, vs = data[sid]
            if ts:
                name, labels, _ = store.series[sid]
                yield name, labels, ts, vs


def export_raw(run_dir: Path, out_dir: Path, fmt: str = "parquet", start: float | None = None,
               end: float | None = None) -> list[Path]:
    if fmt not in ("parquet", "json"):
        raise ValueError(f"format must be parquet or json, got {fmt!r}")
    store = Store(db_path(run_dir), readonly=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    lo = int((start or 0) * 1000)
    hi = int((end or 1e13) * 1000)
    try:
        if fmt == "json":
            return _raw_json(store, out_dir, lo, hi)
        return _raw_parquet(store, out_dir, lo, hi)
    finally:
        store.close()


def _logs(store: Store, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    yield from store.db.execute("SELECT t, service, pod, level, trace_id, message, extra FROM logs "
                                "WHERE t BETWEEN ? AND ? ORDER BY t, id", (lo / 1000, hi / 1000))


def _spans(store: Store, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
    yield from store.db.execute("SELECT trace_id, span_id, parent_id, service, pod, name, kind, start, dur_ms, "
                                "error, status, a.text FROM spans LEFT JOIN attrsets a ON a.id = spans.attrs "
                                "WHERE start BETWEEN ? AND ? ORDER BY start, spans.id", (lo / 1000, hi / 1000))


LOG_COLS = ("time", "service", "pod", "level", "trace_id", "message", "extra")
SPAN_COLS = ("trace_id", "span_id", "parent_id", "service", "pod", "name", "kind", "start", "duration_ms",
             "error", "status", "attributes")


def _raw_json(store: Store, out_dir: Path, lo: int, hi: int) -> list[Path]:
    paths = [out_dir / "metrics.jsonl", out_dir / "logs.jsonl", out_dir / "spans.jsonl"]
    with open(paths[0], "w") as fh:
        for name, labels, ts, vs in iter_series(store, lo, hi):
            pts = [[round(t, 3), v if math.isfinite(v) else str(v)] for t, v in zip(ts, vs, strict=True)]
            fh.write(json.dumps({"name": name, "labels": labels, "points": pts}, separators=(",", ":")) + "\n")
    for path, rows, cols in ((paths[1], _logs(store, lo, hi), LOG_COLS), (paths[2], _spans(store, lo, hi), SPAN_COLS)):
        with open(path, "w") as fh:
            for row in rows:
                rec = dict(zip(cols, row, strict=True))
                for k in ("extra", "attributes"):
                    if rec.get(k):
                        rec[k] = json.loads(rec[k])
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return paths


def _raw_parquet(store: Store, out_dir: Path, lo: int, hi: int) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("time", pa.float64()), ("name", pa.string()), ("job", pa.string()), ("pod", pa.string()),
                        ("labels", pa.string()), ("value", pa.float64())])
    paths = [out_dir / "metrics.parquet", out_dir / "logs.parquet", out_dir / "spans.parquet"]
    with pq.ParquetWriter(paths[0], schema, compression="zstd") as writer:
        batch: dict[str, list[Any]] = {f: [] for f in schema.names}
        for name, labels, ts, vs in iter_series(store, lo, hi):
            n = len(ts)
            text = json.dumps(labels, sort_keys=True, separators=(",", ":"))
            batch["time"] += ts
            batch["name"] += [name] * n
            batch["job"] += [labels.get("job", "")] * n
            batch["pod"] += [labels.get("pod", "")] * n
            batch["labels"] += [text] * n
            batch["value"] += vs
            if len(batch["time"]) >= 200_000:
                writer.write_table(pa.table(batch, schema=schema))
                batch = {f: [] for f in schema.names}
        writer.write_table(pa.table(batch, schema=schema))
    log_schema = pa.schema([("time", pa.float64()), ("service", pa.string()), ("pod", pa.string()),
                            ("level", pa.string()), ("trace_id", pa.string()), ("message", pa.string()),
                            ("extra", pa.string())])
    span_schema = pa.schema([("trace_id", pa.string()), ("span_id", pa.string()), ("parent_id", pa.string()),
                             ("service", pa.string()), ("pod", pa.string()), ("name", pa.string()),
                             ("kind", pa.int32()), ("start", pa.float64()), ("duration_ms", pa.float64()),
                             ("error", pa.bool_()), ("status", pa.string()), ("attributes", pa.string())])
    for path, rows, sch in ((paths[1], _logs(store, lo, hi), log_schema),
                            (paths[2], _spans(store, lo, hi), span_schema)):
        with pq.ParquetWriter(path, sch, compression="zstd") as writer:
            while True:
                chunk = [r for _, r in zip(range(100_000), rows, strict=False)]
                cols: list[Sequence[Any]] = list(zip(*chunk, strict=True)) if chunk else [[] for _ in sch.names]
                data = {n: list(c) for n, c in zip(sch.names, cols, strict=True)}
                if "error" in data:
                    data["error"] = [bool(x) for x in data["error"]]
                writer.write_table(pa.table(data, schema=sch))
                if len(chunk) < 100_000:
                    break
    return paths


def export(run_dir: Path, fmt: str, out: Path | None = None, **kw: Any) -> list[Path]:
    """``sockdrill export``: returns the files written (default under RUN_DIR/export/)."""
    run_dir = Path(run_dir)
    if not db_path(run_dir).exists():
        raise FileNotFoundError(f"{run_dir} has no recorded telemetry ({db_path(run_dir)} is missing)")
    if fmt == "rcaeval":
        target = out or run_dir / "export" / "rcaeval.csv"
        if target.is_dir() or (out is not None and not target.suffix):
            target = target / "rcaeval.csv"
        return [export_rcaeval(run_dir, target, **kw)]
    if fmt in ("parquet", "json"):
        return export_raw(run_dir, out or run_dir / "export", fmt, kw.get("start"), kw.get("end"))
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
