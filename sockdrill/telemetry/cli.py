"""CLI verbs over the flight recorder: ``metrics query|names|promql``, ``traces``, ``export``.

Registered in ``sockdrill/cli.py`` by :func:`register`. Which run: ``--run-dir``, else the running shop's
(``runtime.json`` of ``--data-dir``), else the newest run under ``DATA_DIR/runs``. Metric, log and trace
queries read the run's store directly (SQLite WAL: safe while the recorder writes); PromQL goes through
the recorder, which proxies to its Prometheus.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)

metrics_app = typer.Typer(help="Recorded metrics: structured queries, metric names, PromQL.", no_args_is_help=True)

RunDir = Annotated[Path | None, typer.Option("--run-dir", help="a run directory (default: the running shop's run, "
                                             "else the newest under DATA_DIR/runs)")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="the runtime's data dir (default: "
                                              "$SOCKDRILL_DATA_DIR, /var/lib/sockdrill as root)")]
JsonOut = Annotated[bool, typer.Option("--json", help="print JSON")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def find_run(run_dir: Path | None = None, data_dir: Path | None = None) -> tuple[Path, str | None]:
    """(run dir, recorder URL if one is live) for the CLI's ``--run-dir`` / ``--data-dir`` choice."""
    from sockdrill.telemetry.query import recorder_info
    from sockdrill.telemetry.store import db_path

    if run_dir is not None:
        if not db_path(run_dir).exists():
            raise _fail(f"{run_dir} has no recorded telemetry ({db_path(run_dir)} is missing)")
        info = recorder_info(run_dir)
        return run_dir, info["url"] if info else None
    from sockdrill.cluster.client import RuntimeClient, default_data_dir

    root = data_dir or default_data_dir()
    rc = RuntimeClient.find(root)
    if rc is not None and rc.record.get("run_dir"):
        path = Path(rc.record["run_dir"])
        if db_path(path).exists():
            return path, rc.record.get("recorder_url")
    runs = sorted((p.parent.parent for p in (root / "runs").glob("*/telemetry/telemetry.db")),
                  key=lambda p: db_path(p).stat().st_mtime)
    if not runs:
        raise _fail(f"no recorded run under {root / 'runs'} (is the shop up? give --run-dir)")
    info = recorder_info(runs[-1])
    return runs[-1], info["url"] if info else None


def _telemetry_token(data_dir: Path | None) -> str | None:
    """The running shop's telemetry token, which its recorder asks for (the operator may read it)."""
    from sockdrill.cluster.client import RuntimeClient, default_data_dir

    rc = RuntimeClient.find(data_dir or default_data_dir())
    return None if rc is None else rc.record.get("telemetry_token")


def _open(run_dir: Path | None, data_dir: Path | None) -> Any:
    from sockdrill.telemetry.query import Query

    path, _ = find_run(run_dir, data_dir)
    return Query.open(path)


def _fmt_time(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def _fmt_num(v: float) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.4g}"


@metrics_app.command("query")
def metrics_query(
    name: Annotated[str, typer.Argument(help="metric name, e.g. http_request_duration_seconds_count")],
    label: Annotated[list[str], typer.Option("--label", "-l", help="k=v, k!=v, k=~regex (repeatable)")] = [],  # noqa: B006
    since: Annotated[str, typer.Option(help="how far back, e.g. 5m, 30s, 1h")] = "5m",
    fn: Annotated[str, typer.Option(help="raw | rate | increase | p50 | p90 | p95 | p99")] = "raw",
    by: Annotated[str | None, typer.Option(help="aggregate by these labels (comma-separated)")] = None,
    op: Annotated[str | None, typer.Option(help="sum | avg | min | max | count (with --by or alone)")] = None,
    window: Annotated[str | None, typer.Option(help="rate/quantile window (default 1m)")] = None,
    step: Annotated[str | None, typer.Option(help="time between points (default: the scrape interval)")] = None,
    run_dir: RunDir = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
) -> None:
    """Metric series by name and labels over a time range, raw or as rate/quantiles, optionally summed."""
    from sockdrill.telemetry.query import QueryError

    q = _open(run_dir, data_dir)
    try:
        result = q.metric(name, label, fn=fn, op=op, by=by or (), since=since, window=window, step=step)
    except QueryError as exc:
        raise _fail(str(exc), 2) from None
    finally:
        q.close()
    if json_out:
        print(json.dumps(result, separators=(",", ":")))
        return
    if not result:
        raise _fail(f"no data for {name} {' '.join(label)} in the last {since} "
                    "(see 'sockdrill metrics names')")
    _print_series(result)


def _print_series(result: list[dict[str, Any]]) -> None:
    keys = sorted({k for r in result for k in r["labels"]})
    # Labels every series shares say nothing: show only those that differ.
    varying = [k for k in keys if len({r["labels"].get(k) for r in result}) > 1] or keys[:3]
    table = Table()
    for col in ("series", "last", "min", "avg", "max", "points", "at"):
        table.add_column(col, justify="left" if col == "series" else "right")
    for r in result:
        vals = [v for _, v in r["points"]]
        label = ",".join(f"{k}={r['labels'].get(k, '')}" for k in varying) or "{}"
        table.add_row(label, _fmt_num(vals[-1]), _fmt_num(min(vals)), _fmt_num(sum(vals) / len(vals)),
                      _fmt_num(max(vals)), str(len(vals)), _fmt_time(r["points"][-1][0]))
    console.print(table)


@metrics_app.command("names")
def metrics_names(run_dir: RunDir = None, data_dir: DataDir = None, json_out: JsonOut = False) -> None:
    """Every metric name recorded in the run."""
    q = _open(run_dir, data_dir)
    try:
        names = q.names()
    finally:
        q.close()
    print(json.dumps(names) if json_out else "\n".join(names))


@metrics_app.command("promql")
def metrics_promql(
    expr: Annotated[str, typer.Argument(help="a PromQL expression")],
    since: Annotated[str | None, typer.Option(help="a range query over the last DURATION, not an instant")] = None,
    step: Annotated[str | None, typer.Option(help="range query step (default: ~250 points)")] = None,
    run_dir: RunDir = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
) -> None:
    """PromQL through the run's Prometheus (started with the recorder when the binary is installed)."""
    from sockdrill.telemetry.query import QueryError, RemoteQuery, parse_duration

    _path, url = find_run(run_dir, data_dir)
    if url is None:
        raise _fail("no live flight recorder for this run; PromQL needs the running shop with Prometheus")
    params: dict[str, Any] = {}
    try:
        if since:
            end = time.time()
            params = {"start": end - (parse_duration(since, "--since") or 300), "end": end}
            if step:
                params["step"] = parse_duration(step, "--step")
        data = RemoteQuery(url, token=_telemetry_token(data_dir)).promql(expr, **params)
    except QueryError as exc:
        raise _fail(str(exc), 2) from None
    except ConnectionError as exc:
        raise _fail(str(exc)) from None
    if json_out:
        print(json.dumps(data, separators=(",", ":")))
        return
    rtype = data.get("resultType")
    result = data.get("result")
    if rtype in ("scalar", "string"):
        console.print(f"{result[1]} @ {_fmt_time(float(result[0]))}")
        return
    if not result:
        console.print("(empty result)")
        return
    for item in result:
        metric = "{" + ", ".join(f'{k}="{v}"' for k, v in item.get("metric", {}).items()) + "}"
        if "value" in item:
            console.print(f"{metric} {item['value'][1]}", highlight=False)
        else:
            values = item.get("values", [])
            last = values[-1][1] if values else "-"
            console.print(f"{metric} {len(values)} points, last {last}", highlight=False)


def traces(
    service: Annotated[str | None, typer.Option(help="spans of this service")] = None,
    operation: Annotated[str | None, typer.Option(help="span name contains this, e.g. 'GET /login'")] = None,
    min_ms: Annotated[float | None, typer.Option("--min-ms", help="spans at least this long", min=0)] = None,
    errors: Annotated[bool, typer.Option("--errors", help="only spans with error status")] = False,
    since: Annotated[str, typer.Option(help="how far back, e.g. 5m")] = "15m",
    limit: Annotated[int, typer.Option(help="at most this many traces", min=1, max=10000)] = 20,
    trace_id: Annotated[str | None, typer.Option("--id", help="show one trace, span by span")] = None,
    run_dir: RunDir = None,
    data_dir: DataDir = None,
    json_out: JsonOut = False,
) -> None:
    """Search recorded traces (by service, operation, duration, errors) or show one by id."""
    from sockdrill.telemetry.query import QueryError

    q = _open(run_dir, data_dir)
    try:
        if trace_id:
            one = q.trace(trace_id)
            if one is None:
                raise _fail(f"no trace {trace_id}")
            if json_out:
                print(json.dumps(one, separators=(",", ":")))
                return
            console.print(f"trace {one['trace_id']}  {one['duration_ms']:.1f} ms  {one['spans_count']} spans  "
                          f"{one['errors']} errors", highlight=False)
            t0 = one["start"]
            for s in one["spans"]:
                mark = " [red]ERROR[/red]" if s["error"] else ""
                console.print(f"{'  ' * s['depth']}{s['service']}: {s['name']}  +{(s['start'] - t0) * 1000:.1f} ms  "
                              f"{s['duration_ms']:.1f} ms{mark}", highlight=False)
            return
        found = q.traces(service=service, operation=operation, min_ms=min_ms, errors=errors, since=since,
                         limit=limit)
    except QueryError as exc:
        raise _fail(str(exc), 2) from None
    finally:
        q.close()
    if json_out:
        print(json.dumps(found, separators=(",", ":")))
        return
    if not found:
        console.print("no matching traces")
        return
    table = Table()
    for col in ("trace id", "start", "ms", "spans", "errors", "root", "services"):
        table.add_column(col)
    for t in found:
        table.add_row(t["trace_id"], _fmt_time(t["start"]), f"{t['duration_ms']:.1f}", str(t["spans_count"]),
                      str(t["errors"]), f"{t['root_service']}: {t['root_name']}", ",".join(t["services"]))
    console.print(table)


def export(
    run_dir: Annotated[Path, typer.Argument(help="the run directory to export")],
    fmt: Annotated[str, typer.Option("--format", help="rcaeval (CSV) | parquet | json")] = "rcaeval",
    out: Annotated[Path | None, typer.Option(help="output file (rcaeval) or folder (default RUN_DIR/export)")] = None,
    step: Annotated[str | None, typer.Option(help="rcaeval row spacing (default: the scrape interval)")] = None,
    window: Annotated[str | None, typer.Option(help="rcaeval rate/latency window (default 3 intervals, ≥15s)")
                      ] = None,
) -> None:
    """Export a recorded run: RCAEval's CSV layout, or the raw series, logs and spans as Parquet/JSON."""
    from sockdrill.telemetry.export import FORMATS
    from sockdrill.telemetry.export import export as do_export
    from sockdrill.telemetry.query import QueryError

    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}", 2)
    try:
        kw = {"step": step, "window": window} if fmt == "rcaeval" else {}
        paths = do_export(run_dir, fmt, out, **kw)
    except (QueryError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    for p in paths:
        console.print(f"wrote {p} ({p.stat().st_size} bytes)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``metrics``, ``traces`` and ``export`` to the main CLI."""
    app.add_typer(metrics_app, name="metrics")
    app.command("traces")(traces)
    app.command("export")(export)
