"""Exports of a recorded run: RCAEval's CSV layout and the raw series as Parquet/JSON, read back.

The run is written through the recorder's own store API with known values, so every exported number
can be checked exactly.
"""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path

import pytest

from sockdrill.telemetry.export import export, read_rcaeval
from sockdrill.telemetry.query import Query
from sockdrill.telemetry.store import Store, db_path

T0 = 1_700_000_000.0
STEP = 5.0
N = 25  # two minutes of scrapes
BUCKETS = ("0.01", "0.05", "0.1", "0.5", "+Inf")


def _write_run(run_dir: Path) -> None:
    """catalogue: 0.5 cores, 100 MB, 10 req/s (all in the 0.01–0.05 s bucket), 2 of them 5xx;
    catalogue-db: 0.25 cores, 50 MB (no HTTP)."""
    store = Store(db_path(run_dir))
    store.set_meta(interval=STEP)
    runtime = store.target_id("sockdrill-runtime", "supervisor")
    svc = store.target_id("catalogue", "catalogue-0")
    for i in range(N):
        t = T0 + i * STEP
        sids, vals = array("i"), array("d")
        for container, cores, mem in (("catalogue", 0.5, 100e6), ("catalogue-db", 0.25, 50e6)):
            base = {"container": container, "pod": f"{container}-0", "job": "sockdrill-runtime"}
            sids.append(store.series_id("container_cpu_usage_seconds_total", base, runtime))
            vals.append(cores * i * STEP)
            sids.append(store.series_id("container_memory_working_set_bytes", base, runtime))
            vals.append(mem)
        store.add_chunk(runtime, int(t * 1000), store.layout_id(runtime, sids), vals)
        sids, vals = array("i"), array("d")
        for code, per_s in (("200", 8.0), ("500", 2.0)):
            labels = {"job": "catalogue", "pod": "catalogue-0", "path": "/catalogue", "status_code": code}
            count = per_s * i * STEP
            for le in BUCKETS:
                sids.append(store.series_id("http_request_duration_seconds_bucket", {**labels, "le": le}, svc))
                vals.append(0.0 if le == "0.01" else count)
            sids.append(store.series_id("http_request_duration_seconds_count", labels, svc))
            vals.append(count)
        store.add_chunk(svc, int(t * 1000), store.layout_id(svc, sids), vals)
    store.add_logs([(T0 + 1, "catalogue", "catalogue-0", "error", 40, "ab" * 16, "db timeout", '{"ms": 5}')])
    store.add_spans([("ab" * 16, "cd" * 8, "", "catalogue", "catalogue-0", "GET /catalogue", 2, T0 + 1, 12.5, 1,
                      "boom", '{"http.route": "/catalogue"}')])
    store.commit()
    store.close()


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    _write_run(tmp_path)
    return tmp_path


def test_rcaeval_csv_round_trips(run_dir: Path) -> None:
    [path] = export(run_dir, "rcaeval")
    assert path == run_dir / "export" / "rcaeval.csv"
    header, rows = read_rcaeval(path)
    assert header[0] == "time"
    for metric in ("cpu", "mem", "latency-50", "latency-90", "request", "error"):
        assert f"catalogue_{metric}" in header
    assert "catalogue-db_cpu" in header and "catalogue-db_mem" in header
    assert "catalogue-db_request" not in header  # a datastore has no HTTP series
    assert len(rows) == N  # one row per scrape interval
    times = [r[0] for r in rows]
    assert times == sorted(times) and all(t == int(t) for t in times)
    assert times[-1] == T0 + (N - 1) * STEP
    col = {name: i for i, name in enumerate(header)}
    last = rows[-1]
    assert last[col["catalogue_cpu"]] == pytest.approx(0.5)
    assert last[col["catalogue-db_cpu"]] == pytest.approx(0.25)
    assert last[col["catalogue_mem"]] == pytest.approx(100e6)
    assert last[col["catalogue_request"]] == pytest.approx(10.0)
    assert last[col["catalogue_error"]] == pytest.approx(2.0)
    # Every request fell in (0.01, 0.05]: the median interpolates to the middle of that bucket.
    assert last[col["catalogue_latency-50"]] == pytest.approx(0.03)
    assert last[col["catalogue_latency-90"]] == pytest.approx(0.046)
    # The very first row has no earlier sample to take a rate from: empty, read back as NaN.
    assert math.isnan(rows[0][col["catalogue_request"]])


def test_rcaeval_step_and_output_path(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "data.csv"
    [path] = export(run_dir, "rcaeval", out, step="10s")
    assert path == out
    _, rows = read_rcaeval(out)
    assert len(rows) == (N - 1) * STEP // 10 + 1


def test_parquet_round_trips(run_dir: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    paths = export(run_dir, "parquet")
    assert [p.name for p in paths] == ["metrics.parquet", "logs.parquet", "spans.parquet"]
    table = pq.read_table(paths[0]).to_pylist()
    q = Query.open(run_dir)
    try:
        expected = sum(len(s["points"]) for name in q.names()
                       for s in q.series(name, start=0, end=2e9, limit=10_000))
        cpu = q.series("container_cpu_usage_seconds_total", {"container": "catalogue"}, start=0, end=2e9)
    finally:
        q.close()
    assert len(table) == expected == N * (4 + 12)
    got = sorted((r["time"], r["value"]) for r in table if r["name"] == "container_cpu_usage_seconds_total"
                 and json.loads(r["labels"])["container"] == "catalogue")
    assert got == [tuple(p) for p in cpu[0]["points"]]
    assert {r["job"] for r in table} == {"sockdrill-runtime", "catalogue"}
    [log] = pq.read_table(paths[1]).to_pylist()
    assert log["message"] == "db timeout" and log["level"] == "error"
    [span] = pq.read_table(paths[2]).to_pylist()
    assert span["error"] is True and span["duration_ms"] == 12.5 and span["name"] == "GET /catalogue"


def test_json_round_trips(run_dir: Path, tmp_path: Path) -> None:
    paths = export(run_dir, "json", tmp_path / "out")
    lines = [json.loads(line) for line in paths[0].read_text().splitlines()]
    assert len(lines) == 16
    mem = next(s for s in lines if s["name"] == "container_memory_working_set_bytes"
               and s["labels"]["container"] == "catalogue-db")
    assert len(mem["points"]) == N and {v for _, v in mem["points"]} == {50e6}
    spans = [json.loads(line) for line in paths[2].read_text().splitlines()]
    assert spans[0]["attributes"] == {"http.route": "/catalogue"}


def test_export_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        export(tmp_path / "nothing", "rcaeval")
    _write_run(tmp_path)
    with pytest.raises(ValueError):
        export(tmp_path, "xlsx")


def test_export_cli(run_dir: Path) -> None:
    from typer.testing import CliRunner

    from sockdrill.cli import app

    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "rcaeval"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "export" / "rcaeval.csv").exists()
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "nope"])
    assert result.exit_code == 2
