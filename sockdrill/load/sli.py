"""Client-side SLIs: the stable names, the per-second aggregation and the run summary.

What is measured (all from the simulated customer's side):
- a *journey* is one iteration of a user journey (e.g. one whole checkout); its latency is the wall time of
  the iteration, think time excluded. It fails when any of its steps failed (the iteration stops there).
- a *step* is one HTTP request of a journey, named ``journey:step`` (e.g. ``checkout:order``); it fails on a
  status the journey does not expect, a body that is not what a customer needs, a timeout or a refused
  connection.
- a *decline* is a checkout the shop answered with 406 "Payment declined": a business outcome, not an
  outage, so it is not a failure; it is counted on its own (``journey_declines_total``) so a fault that
  declines every payment is still visible.

Stable names (what the recorder receives each second; labels in brackets):
``journey_latency_seconds{journey,quantile}`` (0.5/0.95/0.99 of the iterations that ended that second),
``journey_requests_total{journey}`` / ``journey_failures_total{journey}`` / ``journey_declines_total{journey}``
(cumulative iterations), ``journey_rps{journey}`` (iterations per second), ``journey_error_ratio{journey}``
(failed / ended iterations that second), ``step_latency_seconds{journey,step,quantile}``,
``step_requests_total{journey,step}``, ``step_failures_total{journey,step}``, ``load_users`` (simulated
users running) and ``load_rps`` (HTTP requests per second, all journeys).

This module is pure Python (no locust, no gevent) so it can be imported anywhere.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

JOURNEY_LATENCY = "journey_latency_seconds"
JOURNEY_REQUESTS = "journey_requests_total"
JOURNEY_FAILURES = "journey_failures_total"
JOURNEY_DECLINES = "journey_declines_total"
JOURNEY_RPS = "journey_rps"
JOURNEY_ERROR_RATIO = "journey_error_ratio"
STEP_LATENCY = "step_latency_seconds"
STEP_REQUESTS = "step_requests_total"
STEP_FAILURES = "step_failures_total"
LOAD_USERS = "load_users"
LOAD_RPS = "load_rps"
QUANTILES = (0.5, 0.95, 0.99)

# Journey names, in the order tables list them. journeys.py implements exactly these (a test checks).
JOURNEYS = ("browse", "login", "cart", "checkout", "order-status", "classic", "return-visit", "profile-edit",
            "checkout-page", "search", "shipping-quote")
DEFAULT_MIX = {"browse": 5, "cart": 2, "login": 1, "checkout": 1, "order-status": 1}


def step_name(journey: str, step: str) -> str:
    return f"{journey}:{step}"


def split_step(name: str) -> tuple[str, str] | None:
    journey, sep, step = name.partition(":")
    return (journey, step) if sep and journey and step else None


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an already sorted list (NaN when empty)."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _bucket(ms: float) -> float:
    """Round a latency to ~2 significant figures (like Locust) so a run's histogram stays small."""
    ms = max(0.0, ms)
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return round(ms, -1)
    if ms < 10000:
        return round(ms, -2)
    return round(ms, -3)


class Series:
    """Observations of one journey or step: this second's latencies plus run-wide counts and histogram."""

    __slots__ = ("count", "declines", "failures", "hist", "sum_s", "win_declines", "win_failures", "window")

    def __init__(self) -> None:
        self.window: list[float] = []
        self.win_failures = 0
        self.win_declines = 0
        self.count = 0
        self.failures = 0
        self.declines = 0
        self.sum_s = 0.0
        self.hist: dict[float, int] = {}

    def add(self, seconds: float, ok: bool, declined: bool = False) -> None:
        self.window.append(seconds)
        self.count += 1
        self.sum_s += seconds
        b = _bucket(seconds * 1000)
        self.hist[b] = self.hist.get(b, 0) + 1
        if not ok:
            self.failures += 1
            self.win_failures += 1
        if declined:
            self.declines += 1
            self.win_declines += 1

    def take_window(self, interval: float) -> dict[str, Any]:
        values = sorted(self.window)
        n = len(values)
        out: dict[str, Any] = {"count": n, "failures": self.win_failures, "declines": self.win_declines,
                                "rps": round(n / interval, 3) if interval > 0 else 0.0,
                                "error_ratio": round(self.win_failures / n, 4) if n else 0.0,
                                "total": self.count, "failures_total": self.failures, "declines_total": self.declines}
        for q in QUANTILES:
            out[f"p{round(q * 100)}"] = round(quantile(values, q), 6) if n else None
        self.window = []
        self.win_failures = self.win_declines = 0
        return out

    def hist_quantile(self, q: float) -> float:
        """Run-wide quantile in ms from the histogram."""
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for bucket in sorted(self.hist):
            seen += self.hist[bucket]
            if seen >= rank:
                return float(bucket)
        return float(max(self.hist))


# Why requests failed, kept as a tally so a summary can say it (ids and numbers masked so that one cause is
# one line); at most this many kinds, so a storm of distinct messages cannot grow the generator.
MAX_ERROR_KINDS = 50
_MASK = re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4,})+\b|\b[0-9a-f]{8,}\b|\b\d+(\.\d+)?\b")


class Aggregator:
    """Collects journey and step observations; ``flush`` turns the last second into one record."""

    def __init__(self) -> None:
        self.journeys: dict[str, Series] = {}
        self.steps: dict[str, Series] = {}
        self.requests = 0
        self.request_failures = 0
        self.errors: dict[str, int] = {}  # "step: problem" (ids and numbers masked) → count
        self._win_requests = 0
        self.peak_users = 0
        # Data checks dated by when the data was left: step → departure second → [checks, failures].
        self._dated: dict[str, dict[int, list[int]]] = {}

    def journey(self, name: str, seconds: float, ok: bool, declined: bool = False) -> None:
        self.journeys.setdefault(name, Series()).add(seconds, ok, declined)

    def request(self, name: str, seconds: float, ok: bool, error: str | None = None) -> None:
        self.requests += 1
        self._win_requests += 1
        if not ok:
            self.request_failures += 1
            key = f"{name}: {_MASK.sub('#', error or 'failed')[:160]}"
            if key in self.errors or len(self.errors) < MAX_ERROR_KINDS:
                self.errors[key] = self.errors.get(key, 0) + 1
        if split_step(name) is not None:
            self.steps.setdefault(name, Series()).add(seconds, ok)

    def check(self, name: str, ok: bool, error: str | None = None) -> None:
        """A step that is a comparison the customer makes, not a request (e.g. two views of one order)."""
        self.steps.setdefault(name, Series()).add(0.0, ok)
        if not ok:
            key = f"{name}: {_MASK.sub('#', error or 'failed')[:160]}"
            if key in self.errors or len(self.errors) < MAX_ERROR_KINDS:
                self.errors[key] = self.errors.get(key, 0) + 1

    def dated_check(self, name: str, left_at: float, ok: bool) -> None:
        cell = self._dated.setdefault(name, {}).setdefault(int(left_at), [0, 0])
        cell[0] += 1
        cell[1] += 0 if ok else 1

    def flush(self, now: float, elapsed: float, users: int, interval: float = 1.0) -> dict[str, Any]:
        """One per-second record (the JSON line the stream file gets and the recorder is fed from)."""
        self.peak_users = max(self.peak_users, users)
        record = {
            "time": round(now, 3), "elapsed": round(elapsed, 3), "users": users,
            "requests": {"count": self._win_requests, "rps": round(self._win_requests / interval, 3),
                         "total": self.requests, "failures_total": self.request_failures},
            "journeys": {name: s.take_window(interval) for name, s in self.journeys.items()},
            "steps": {name: s.take_window(interval) for name, s in self.steps.items()},
        }
        if self._dated:  # checks made this second, by the second their data was left: {step: {left: [n, failed]}}
            record["left"] = {name: {str(sec): cell for sec, cell in by.items()} for name, by in self._dated.items()}
            self._dated = {}
        self._win_requests = 0
        return record

    def summary(self, duration_s: float) -> dict[str, Any]:
        def stats(s: Series) -> dict[str, Any]:
            return {"count": s.count, "failures": s.failures, "declines": s.declines,
                    "error_rate": round(s.failures / s.count, 4) if s.count else 0.0,
                    "rate": round(s.count / duration_s, 3) if duration_s > 0 else 0.0,
                    "mean_ms": round(s.sum_s / s.count * 1000, 2) if s.count else None,
                    **{f"p{round(q * 100)}_ms": (s.hist_quantile(q) if s.count else None) for q in QUANTILES}}

        return {"duration_s": round(duration_s, 3), "peak_users": self.peak_users,
                "requests": self.requests, "request_failures": self.request_failures,
                "rps": round(self.requests / duration_s, 3) if duration_s > 0 else 0.0,
                "journeys": {n: stats(s) for n, s in sorted(self.journeys.items(), key=_journey_order)},
                "steps": {n: stats(s) for n, s in sorted(self.steps.items())},
                "errors": dict(sorted(self.errors.items(), key=lambda kv: -kv[1]))}


def _journey_order(item: tuple[str, Any]) -> tuple[int, str]:
    name = item[0]
    return (JOURNEYS.index(name) if name in JOURNEYS else len(JOURNEYS), name)


def to_samples(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A per-second record as recorder samples (``POST /v1/ingest`` body's ``samples``)."""
    t = record["time"]
    out: list[dict[str, Any]] = [
        {"name": LOAD_USERS, "labels": {}, "value": float(record["users"]), "time": t},
        {"name": LOAD_RPS, "labels": {}, "value": float(record["requests"]["rps"]), "time": t},
    ]

    def add(name: str, labels: dict[str, str], value: float | None) -> None:
        if value is not None:
            out.append({"name": name, "labels": labels, "value": float(value), "time": t})

    for journey, w in record["journeys"].items():
        labels = {"journey": journey}
        add(JOURNEY_REQUESTS, labels, w["total"])
        add(JOURNEY_FAILURES, labels, w["failures_total"])
        add(JOURNEY_DECLINES, labels, w["declines_total"])
        add(JOURNEY_RPS, labels, w["rps"])
        if w["count"]:
            add(JOURNEY_ERROR_RATIO, labels, w["error_ratio"])
        for q in QUANTILES:
            add(JOURNEY_LATENCY, {**labels, "quantile": str(q)}, w[f"p{round(q * 100)}"])
    for name, w in record["steps"].items():
        parts = split_step(name)
        if parts is None:
            continue
        labels = {"journey": parts[0], "step": parts[1]}
        add(STEP_REQUESTS, labels, w["total"])
        add(STEP_FAILURES, labels, w["failures_total"])
        for q in QUANTILES:
            add(STEP_LATENCY, {**labels, "quantile": str(q)}, w[f"p{round(q * 100)}"])
    return out


@dataclass
class LoadSummary:
    """What a load run did, from the customers' side. Latencies in ms; ``rate`` = per second."""

    host: str
    seed: int
    shape: str
    journeys: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0
    peak_users: int = 0
    requests: int = 0
    request_failures: int = 0
    rps: float = 0.0
    generator_cpu_s: float = 0.0
    stopped_early: bool = False
    stop_reason: str = ""
    stats_path: str | None = None
    errors: dict[str, int] = field(default_factory=dict)  # why requests failed: "step: problem" → count

    @property
    def failures(self) -> int:
        return sum(int(j["failures"]) for j in self.journeys.values())

    @property
    def journey_rate(self) -> float:
        return sum(float(j["rate"]) for j in self.journeys.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadSummary:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})
