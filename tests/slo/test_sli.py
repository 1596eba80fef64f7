"""SLIs from per-second load-generator records: parsing, per-interval values, aggregation."""

from __future__ import annotations

import pytest

from sockdrill.errors import OracleError
from sockdrill.slo.sli import (
    SliSample,
    aggregate,
    by_journey,
    error_rate,
    failed_requests,
    in_window,
    latency_quantile,
    throughput,
)


def test_record_in_seconds_and_milliseconds() -> None:
    a = SliSample.from_record({"time": 100, "journey": "login", "requests": 12, "failures": 1,
                               "p50": 0.08, "p95": 0.21, "p99": 0.4})
    b = SliSample.from_record({"time": 100, "journey": "login", "requests": 12, "failures": 1,
                               "p50_ms": 80, "p95_ms": 210, "p99_ms": 400})
    assert a == b
    assert a.time == 100.0 and a.end == 101.0 and a.p95 == 0.21
    assert SliSample.from_record(a.to_record()) == a


def test_bad_records_name_the_problem() -> None:
    with pytest.raises(OracleError, match="lacks field 'journey'"):
        SliSample.from_record({"time": 1, "requests": 1})
    with pytest.raises(OracleError, match="failures <= requests"):
        SliSample(0, "login", requests=1, failures=2)
    with pytest.raises(OracleError, match="p95 must be"):
        SliSample(0, "login", 1, 0, p95=-1)
    with pytest.raises(OracleError, match="bad value"):
        SliSample.from_record({"time": "soon", "journey": "login"})


def test_values_per_kind() -> None:
    s = SliSample(0, "cart", requests=20, failures=1, p50=0.1, p95=0.3, p99=0.9)
    assert s.value("error_rate") == 0.05
    assert (s.value("latency_p50"), s.value("latency_p95"), s.value("latency_p99")) == (0.1, 0.3, 0.9)
    assert s.value("throughput") == 20.0
    empty = SliSample(1, "cart", 0, 0)
    assert empty.value("error_rate") is None and empty.value("latency_p95") is None
    assert empty.value("throughput") == 0.0
    with pytest.raises(OracleError, match="did you mean 'latency_p95'"):
        s.value("latency_95")


def test_aggregates_worked_numbers() -> None:
    rows = [SliSample(0, "checkout", 100, 1, p95=0.2), SliSample(1, "checkout", 100, 3, p95=0.6),
            SliSample(2, "checkout", 0, 0)]
    assert error_rate(rows) == 0.02                      # 4 / 200
    assert throughput(rows) == pytest.approx(200 / 3)    # 200 requests over 3 s
    assert latency_quantile(rows, "latency_p95") == 0.4  # (100*0.2 + 100*0.6) / 200
    assert aggregate(rows, "error_rate") == 0.02
    assert error_rate([]) is None and throughput([]) is None and latency_quantile([]) is None
    with pytest.raises(OracleError, match="not a latency SLI"):
        latency_quantile(rows, "error_rate")


def test_windows_and_grouping() -> None:
    rows = [SliSample(t, j, 10, t % 2) for t in range(5) for j in ("a", "b")]
    assert [s.time for s in in_window(rows, 1, 3) if s.journey == "a"] == [1.0, 2.0]
    groups = by_journey(rows)
    assert set(groups) == {"a", "b"} and len(groups["a"]) == 5
    assert failed_requests(rows, 0, 5) == 4   # t = 1 and 3, two journeys each
