"""Service level indicators over per-second, client-side journey samples.

The load generator writes one record per journey per interval (normally one second)::

    {"time": 1700000000.0, "journey": "login", "requests": 12, "failures": 1,
     "p50": 0.08, "p95": 0.21, "p99": 0.40}

``time`` is the start of the interval (Unix seconds); latencies are in seconds (``p95_ms`` style keys
in milliseconds are accepted too). ``SliSample`` is that record, typed and checked. An interval in
which no request completed has ``requests == 0`` and no latencies: it carries no evidence either way.

Aggregating quantiles: per-interval quantiles cannot be merged exactly; over several intervals
``latency_quantile`` takes the request-weighted mean of the per-interval values (an approximation the
exact, histogram-based SLIs of telemetry/ can replace). SLO judgements are made per interval, where
the values are exact client-side quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sockdrill.errors import OracleError, did_you_mean

SliKind = Literal["latency_p50", "latency_p95", "latency_p99", "error_rate", "throughput"]
SLI_KINDS: tuple[str, ...] = ("latency_p50", "latency_p95", "latency_p99", "error_rate", "throughput")
LATENCY_KINDS: tuple[str, ...] = ("latency_p50", "latency_p95", "latency_p99")


@dataclass(frozen=True)
class SliSample:
    """One journey's client-side figures for one interval ``[time, time + interval_s)``."""

    time: float
    journey: str
    requests: int
    failures: int
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    interval_s: float = 1.0

    def __post_init__(self) -> None:
        # Frozen, but normalise numbers once so JSON round-trips and reprs are stable.
        object.__setattr__(self, "time", float(self.time))
        object.__setattr__(self, "interval_s", float(self.interval_s))
        where = f"SLI sample of journey {self.journey!r} at t={self.time}"
        if not self.journey:
            raise OracleError(f"SLI sample at t={self.time}: journey must be a non-empty string")
        if not math.isfinite(self.time):
            raise OracleError(f"{where}: time must be finite")
        if self.requests < 0 or self.failures < 0 or self.failures > self.requests:
            raise OracleError(f"{where}: need 0 <= failures <= requests, got failures={self.failures}, "
                              f"requests={self.requests}")
        if not self.interval_s > 0:
            raise OracleError(f"{where}: interval_s must be > 0, got {self.interval_s}")
        for name in ("p50", "p95", "p99"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise OracleError(f"{where}: {name} must be a finite number >= 0 seconds, got {value}")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SliSample:
        """Build from a load-generator record; ``p95_ms`` (milliseconds) is accepted for ``p95``.

        >>> SliSample.from_record({"time": 10, "journey": "login", "requests": 4, "failures": 0,
        ...                        "p50_ms": 80, "p95_ms": 210}).p95
        0.21
        """
        try:
            lat: dict[str, float | None] = {}
            for name in ("p50", "p95", "p99"):
                if record.get(name) is not None:
                    lat[name] = float(record[name])
                elif record.get(f"{name}_ms") is not None:
                    lat[name] = float(record[f"{name}_ms"]) / 1000.0
                else:
                    lat[name] = None
            return cls(time=float(record["time"]), journey=str(record["journey"]),
                       requests=int(record.get("requests", 0)), failures=int(record.get("failures", 0)),
                       interval_s=float(record.get("interval_s", 1.0)), **lat)
        except KeyError as exc:
            raise OracleError(f"SLI record {dict(record)!r} lacks field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise OracleError(f"SLI record {dict(record)!r} has a bad value: {exc}") from None

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def end(self) -> float:
        return self.time + self.interval_s

    @property
    def has_data(self) -> bool:
        return self.requests > 0

    def value(self, kind: str) -> float | None:
        """This interval's value of one SLI kind, or None when the interval has no data.

        >>> s = SliSample(0, "cart", requests=20, failures=1, p95=0.3)
        >>> s.value("error_rate"), s.value("latency_p95"), s.value("throughput")
        (0.05, 0.3, 20.0)
        """
        check_kind(kind)
        if kind == "throughput":
            return self.requests / self.interval_s
        if not self.has_data:
            return None
        if kind == "error_rate":
            return self.failures / self.requests
        return getattr(self, "p" + kind.removeprefix("latency_p"))


def check_kind(kind: str) -> str:
    if kind not in SLI_KINDS:
        raise OracleError(f"unknown SLI kind {kind!r}{did_you_mean(kind, SLI_KINDS)}")
    return kind


def in_window(samples: Iterable[SliSample], start: float | None = None, end: float | None = None
              ) -> list[SliSample]:
    """Samples whose interval starts in ``[start, end)``, sorted by time (None = unbounded)."""
    lo = -math.inf if start is None else start
    hi = math.inf if end is None else end
    return sorted((s for s in samples if lo <= s.time < hi), key=lambda s: s.time)


def by_journey(samples: Iterable[SliSample]) -> dict[str, list[SliSample]]:
    out: dict[str, list[SliSample]] = {}
    for s in samples:
        out.setdefault(s.journey, []).append(s)
    for rows in out.values():
        rows.sort(key=lambda s: s.time)
    return out


def error_rate(samples: Sequence[SliSample]) -> float | None:
    """Failed requests over all requests; None without requests.

    >>> error_rate([SliSample(0, "checkout", 100, 1), SliSample(1, "checkout", 100, 3)])
    0.02
    """
    requests = sum(s.requests for s in samples)
    return None if requests == 0 else sum(s.failures for s in samples) / requests


def throughput(samples: Sequence[SliSample]) -> float | None:
    """Completed requests per second over the covered intervals; None without samples.

    >>> throughput([SliSample(0, "browse", 30, 0), SliSample(1, "browse", 10, 0)])
    20.0
    """
    covered = sum(s.interval_s for s in samples)
    return None if covered == 0 else sum(s.requests for s in samples) / covered


def latency_quantile(samples: Sequence[SliSample], kind: str = "latency_p95") -> float | None:
    """Request-weighted mean of the per-interval quantiles (an approximation; see the module doc).

    >>> latency_quantile([SliSample(0, "login", 30, 0, p95=0.2), SliSample(1, "login", 10, 0, p95=1.0)])
    0.4
    """
    if kind not in LATENCY_KINDS:
        raise OracleError(f"{kind!r} is not a latency SLI{did_you_mean(kind, LATENCY_KINDS)}")
    weighted = [(s.value(kind), s.requests) for s in samples if s.has_data and s.value(kind) is not None]
    total = sum(w for _, w in weighted)
    if total == 0:
        return None
    return round(sum(v * w for v, w in weighted if v is not None) / total, 9)


def aggregate(samples: Sequence[SliSample], kind: str) -> float | None:
    """One SLI kind over several intervals (error rate and throughput exactly, quantiles approximately)."""
    check_kind(kind)
    if kind == "error_rate":
        return error_rate(samples)
    if kind == "throughput":
        return throughput(samples)
    return latency_quantile(samples, kind)


def failed_requests(samples: Iterable[SliSample], start: float | None = None, end: float | None = None) -> int:
    """Failures in intervals starting in ``[start, end)``."""
    return sum(s.failures for s in in_window(samples, start, end))
