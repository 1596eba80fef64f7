"""Journey SLOs: good and bad intervals, windows that hold, error budgets, restoration.

An ``SLO`` names a journey, an SLI kind and a threshold: ``login latency_p95 < 1 s``,
``checkout error_rate < 1 %``. Each interval (one second of samples) is judged on its own: good when
its value meets the threshold, bad when it does not, and *no data* when no request completed in it.

Two kinds of budget, because the two kinds of SLO count different things:
- latency (and throughput) SLOs are *time-slice* SLOs: ``objective`` (default 0.99) is the fraction of
  intervals that must be good, so the budget is ``(1 - objective)`` of the time;
- error-rate SLOs are *event* SLOs: the threshold itself is the fraction of requests allowed to fail,
  so the budget is ``threshold`` of the requests (``objective`` is not used).

A window *holds* when its intervals meet the SLO as a whole: latency, good intervals / intervals with
data >= objective; error rate, failures / requests < threshold. A window whose intervals with data
cover less than ``min_coverage`` of it proves nothing and does not hold (a stopped load generator
must not look like a recovery).

Profiles scale every time constant (budget period, alert windows, recovery window) so that the fast
profile (seconds, for tests and CI) and the standard profile (minutes to hours) share this code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sockdrill.errors import OracleError, did_you_mean
from sockdrill.slo.sli import LATENCY_KINDS, SliKind, SliSample, check_kind, error_rate, in_window, throughput

THIRTY_DAYS_S = 30 * 24 * 3600.0
DEFAULT_MIN_COVERAGE = 0.5


@dataclass(frozen=True)
class Profile:
    """How fast a run goes: ``scale`` multiplies the workbook's time constants (30-day period, 1 h windows).

    >>> PROFILES["fast"].period_s, PROFILES["standard"].period_s
    (3600.0, 216000.0)
    """

    name: str
    scale: float
    recovery_window_s: float

    @property
    def period_s(self) -> float:
        """The error-budget period: 30 days, scaled."""
        return round(THIRTY_DAYS_S * self.scale, 6)


PROFILES: dict[str, Profile] = {
    # 1 h → 5 s, 6 h → 30 s, 30 days → 1 h: whole incidents in a minute or two.
    "fast": Profile("fast", scale=1 / 720, recovery_window_s=10.0),
    # 1 h → 5 min, 6 h → 30 min, 30 days → 2.5 days: game-day pace.
    "standard": Profile("standard", scale=1 / 12, recovery_window_s=300.0),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise OracleError(f"unknown profile {name!r}{did_you_mean(name, PROFILES)}") from None


@dataclass(frozen=True)
class SLO:
    """``journey sli < threshold`` (``>=`` for throughput); latencies in seconds, error rate as a fraction."""

    journey: str
    sli: SliKind
    threshold: float
    objective: float = 0.99
    name: str = ""

    def __post_init__(self) -> None:
        check_kind(self.sli)
        if not self.journey:
            raise OracleError("SLO journey must be a non-empty string")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise OracleError(f"SLO {self.label}: threshold must be > 0, got {self.threshold}")
        if self.sli == "error_rate" and self.threshold >= 1:
            raise OracleError(f"SLO {self.label}: an error-rate threshold is a fraction < 1, got {self.threshold}")
        if not 0 < self.objective < 1:
            raise OracleError(f"SLO {self.label}: objective must be in (0, 1), got {self.objective}")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        op = ">=" if self.sli == "throughput" else "<"
        if self.sli == "error_rate":
            value = f"{self.threshold * 100:g}%"
        elif self.sli == "throughput":
            value = f"{self.threshold:g} req/s"
        else:
            value = f"{self.threshold:g}s"
        return f"{self.journey} {self.sli} {op} {value}"

    @property
    def budget_fraction(self) -> float:
        """The allowed bad fraction: of requests (error rate) or of intervals (the others).

        >>> SLO("checkout", "error_rate", 0.01).budget_fraction, SLO("login", "latency_p95", 1.0).budget_fraction
        (0.01, 0.01)
        """
        return self.threshold if self.sli == "error_rate" else round(1 - self.objective, 12)

    def is_good(self, sample: SliSample) -> bool | None:
        """Judge one interval; None when it has no data.

        >>> slo = SLO("login", "latency_p95", 1.0)
        >>> slo.is_good(SliSample(0, "login", 5, 0, p95=0.4)), slo.is_good(SliSample(1, "login", 5, 0, p95=1.0))
        (True, False)
        """
        value = sample.value(self.sli)  # throughput is never None: an interval with nothing done is a 0
        if value is None:
            return None
        if self.sli == "throughput":
            return value >= self.threshold
        return value < self.threshold

    @classmethod
    def parse(cls, text: str, objective: float = 0.99, name: str = "") -> SLO:
        """Read ``"login p95 < 1s"``, ``"checkout error_rate < 1%"``, ``"browse throughput >= 5"``.

        >>> SLO.parse("login p95 < 1s")
        SLO(journey='login', sli='latency_p95', threshold=1.0, objective=0.99, name='')
        >>> SLO.parse("payment latency_p95 < 3000ms").threshold
        3.0
        """
        m = re.fullmatch(r"\s*([\w-]+)\s+([\w]+)\s*(<|>=)\s*([0-9.]+)\s*(ms|s|%|rps|req/s)?\s*", text)
        if not m:
            raise OracleError(f"SLO {text!r} is not like 'login p95 < 1s' or 'checkout error_rate < 1%'")
        journey, sli, op, number, unit = m.groups()
        aliases = {"p50": "latency_p50", "p95": "latency_p95", "p99": "latency_p99", "errors": "error_rate",
                   "error-rate": "error_rate", "rps": "throughput"}
        sli = aliases.get(sli, sli)
        check_kind(sli)
        value = float(number)
        if unit == "ms":
            value /= 1000.0
        elif unit == "%":
            value /= 100.0
        want = ">=" if sli == "throughput" else "<"
        if op != want:
            raise OracleError(f"SLO {text!r}: {sli} SLOs use '{want}', got '{op}'")
        return cls(journey=journey, sli=sli, threshold=value, objective=objective, name=name)  # type: ignore[arg-type]


# The seed's "Expected" lines as SLOs (scenario files choose their own; these are the examples).
SEED_SLOS: dict[str, SLO] = {
    "login-latency": SLO("login", "latency_p95", 1.0, name="login-latency"),                  # seed 1
    "checkout-errors": SLO("checkout", "error_rate", 0.01, name="checkout-errors"),          # seed 2
    "payment-latency": SLO("checkout", "latency_p95", 3.0, name="payment-latency"),          # seed 5
    "search-latency": SLO("search", "latency_p95", 1.0, name="search-latency"),              # seed 6
    "checkout-page-latency": SLO("checkout", "latency_p95", 2.0, name="checkout-page-latency"),  # seed 7
}


# ---- evaluation over a window --------------------------------------------------------------------------

@dataclass
class Evaluation:
    """Per-interval judgements of one SLO over ``[start, end)`` and what they add up to."""

    slo: SLO
    start: float
    end: float
    slices: list[tuple[float, bool | None]] = field(default_factory=list)
    good_s: float = 0.0
    bad_s: float = 0.0
    no_data_s: float = 0.0
    requests: int = 0
    failures: int = 0

    @property
    def coverage(self) -> float:
        """Fraction of the window covered by intervals with data."""
        span = self.end - self.start
        return 0.0 if span <= 0 else min(1.0, (self.good_s + self.bad_s) / span)

    @property
    def compliance(self) -> float | None:
        """Good time over time with data; None without data."""
        judged = self.good_s + self.bad_s
        return None if judged == 0 else self.good_s / judged

    @property
    def bad_fraction(self) -> float | None:
        """Failures/requests for an error-rate SLO, bad time/judged time otherwise."""
        if self.slo.sli == "error_rate":
            return None if self.requests == 0 else self.failures / self.requests
        c = self.compliance
        return None if c is None else 1 - c

    def holds(self, min_coverage: float = DEFAULT_MIN_COVERAGE) -> bool:
        """Whether the window as a whole meets the SLO (see the module doc); False on thin data."""
        if self.coverage < min_coverage:
            return False
        if self.slo.sli == "error_rate":
            rate = self.bad_fraction
            return rate is not None and rate < self.slo.threshold
        c = self.compliance
        return c is not None and c >= self.slo.objective - 1e-12


def journey_samples(slo: SLO, samples: Iterable[SliSample]) -> list[SliSample]:
    return sorted((s for s in samples if s.journey == slo.journey), key=lambda s: s.time)


def evaluate(slo: SLO, samples: Iterable[SliSample], start: float | None = None, end: float | None = None
             ) -> Evaluation:
    """Judge every interval of the SLO's journey starting in ``[start, end)``.

    Worked example, login p95 < 1 s over 4 s: p95s of 0.2, 1.5, (no requests), 0.3 give
    good 2 s, bad 1 s, no data 1 s, compliance 2/3, coverage 3/4.

    >>> rows = [SliSample(0, "login", 5, 0, p95=0.2), SliSample(1, "login", 5, 0, p95=1.5),
    ...         SliSample(2, "login", 0, 0), SliSample(3, "login", 5, 0, p95=0.3)]
    >>> ev = evaluate(SLO("login", "latency_p95", 1.0), rows, 0, 4)
    >>> ev.good_s, ev.bad_s, ev.no_data_s, round(ev.compliance, 3), ev.coverage
    (2.0, 1.0, 1.0, 0.667, 0.75)
    """
    rows = in_window(journey_samples(slo, samples), start, end)
    lo = start if start is not None else (rows[0].time if rows else 0.0)
    hi = end if end is not None else (rows[-1].end if rows else lo)
    ev = Evaluation(slo=slo, start=lo, end=hi)
    for s in rows:
        good = slo.is_good(s)
        ev.slices.append((s.time, good))
        if good is None:
            ev.no_data_s += s.interval_s
        elif good:
            ev.good_s += s.interval_s
        else:
            ev.bad_s += s.interval_s
        ev.requests += s.requests
        ev.failures += s.failures
    return ev


def violation_seconds(slo: SLO, samples: Iterable[SliSample], start: float | None = None,
                      end: float | None = None) -> float:
    """Seconds of bad intervals in ``[start, end)``.

    >>> rows = [SliSample(t, "checkout", 10, f) for t, f in enumerate([0, 1, 2, 0, 0])]
    >>> violation_seconds(SLO("checkout", "error_rate", 0.05), rows)
    2.0
    """
    return evaluate(slo, samples, start, end).bad_s


def burn_rate(slo: SLO, samples: Iterable[SliSample], start: float, end: float) -> float | None:
    """How many times faster than allowed the window spends the budget; None without data.

    Worked numbers: checkout error_rate < 1 %, 1000 requests with 50 failures → 0.05 / 0.01 = 5.0;
    login p95 < 1 s (objective 0.99), 2 bad intervals of 10 → 0.2 / 0.01 = 20.0.

    >>> rows = [SliSample(0, "checkout", 500, 20), SliSample(1, "checkout", 500, 30)]
    >>> burn_rate(SLO("checkout", "error_rate", 0.01), rows, 0, 2)
    5.0
    """
    bad = evaluate(slo, samples, start, end).bad_fraction
    return None if bad is None else round(bad / slo.budget_fraction, 9)


def error_budget(slo: SLO, period_s: float, rps: float | None = None) -> float:
    """The budget for a period: bad seconds (time-slice SLOs) or failed requests (error rate).

    Worked numbers: login p95 < 1 s at 99 % over 3600 s → 36 bad seconds; checkout error rate < 1 %
    at 10 req/s over 3600 s → 360 failed requests.

    >>> error_budget(SLO("login", "latency_p95", 1.0), 3600)
    36.0
    >>> error_budget(SLO("checkout", "error_rate", 0.01), 3600, rps=10)
    360.0
    """
    if period_s <= 0:
        raise OracleError(f"budget period must be > 0 s, got {period_s}")
    if slo.sli == "error_rate":
        if rps is None or rps <= 0:
            raise OracleError(f"SLO {slo.label}: an error-rate budget needs the request rate (> 0), got {rps}")
        return round(slo.threshold * rps * period_s, 9)
    return round(slo.budget_fraction * period_s, 9)


def budget_burned(slo: SLO, samples: Sequence[SliSample], start: float | None, end: float | None,
                  period_s: float, rps: float | None = None) -> float:
    """Fraction of the period's budget spent in ``[start, end)`` (1.0 = all of it; can exceed 1).

    ``rps`` defaults to the journey's request rate over all the samples given (baseline included),
    so that an outage that stops requests completing does not shrink its own budget.

    Worked numbers: 18 bad seconds against login's 36 s budget → 0.5; 90 failed checkouts against a
    360-request budget → 0.25.

    >>> rows = [SliSample(t, "checkout", 10, 9 if t < 10 else 0) for t in range(360)]
    >>> budget_burned(SLO("checkout", "error_rate", 0.01), rows, 0, 360, period_s=3600)
    0.25
    """
    if slo.sli == "error_rate":
        if rps is None:
            rps = throughput(journey_samples(slo, samples)) or 0.0
        if rps <= 0:
            return 0.0
        failed = evaluate(slo, samples, start, end).failures
        return round(failed / error_budget(slo, period_s, rps), 9)
    return round(violation_seconds(slo, samples, start, end) / error_budget(slo, period_s), 9)


# ---- restoration ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Restore:
    """When the SLO was restored for good: ``at`` starts a run of windows that all hold until ``until``."""

    restored: bool
    at: float | None = None
    ttr_s: float | None = None


def time_to_restore(slo: SLO, samples: Iterable[SliSample], since: float, until: float, window_s: float,
                    min_coverage: float = DEFAULT_MIN_COVERAGE) -> Restore:
    """The first time after which the SLO holds for every ``window_s`` window up to ``until``.

    Every window ``[t, t + window_s)`` that fits in ``[since, until)`` and starts at an interval is
    judged with ``Evaluation.holds``. Restoration is at the first good interval after the start of the
    last failing window, and counts only if a whole window fits between it and ``until``: the SLO must
    hold again for a recovery window *and stay held*. ``ttr_s = at - since``.

    Worked example, login p95 < 1 s, bad for t = 0..4, good from t = 5, observed until 20, window 10 s:
    the last failing window starts at 4, restoration at 5, ttr 5 s. Until 12 instead: no whole window
    fits after 5, so not restored.

    >>> rows = [SliSample(t, "login", 5, 0, p95=2.0 if t < 5 else 0.2) for t in range(20)]
    >>> slo = SLO("login", "latency_p95", 1.0)
    >>> time_to_restore(slo, rows, since=0, until=20, window_s=10)
    Restore(restored=True, at=5.0, ttr_s=5.0)
    >>> time_to_restore(slo, rows, since=0, until=12, window_s=10).restored
    False
    """
    if window_s <= 0:
        raise OracleError(f"recovery window must be > 0 s, got {window_s}")
    rows = in_window(journey_samples(slo, samples), since, until)
    if not rows:
        return Restore(False)
    n = len(rows)
    # Prefix sums make each window O(1): judged/good seconds, covered seconds, requests, failures.
    good_p, bad_p, req_p, fail_p = [0.0] * (n + 1), [0.0] * (n + 1), [0] * (n + 1), [0] * (n + 1)
    verdicts = [slo.is_good(s) for s in rows]
    for i, (s, v) in enumerate(zip(rows, verdicts, strict=True)):
        good_p[i + 1] = good_p[i] + (s.interval_s if v else 0.0)
        bad_p[i + 1] = bad_p[i] + (s.interval_s if v is False else 0.0)
        req_p[i + 1] = req_p[i] + s.requests
        fail_p[i + 1] = fail_p[i] + s.failures

    def window_holds(i: int, j: int) -> bool:
        good, bad = good_p[j] - good_p[i], bad_p[j] - bad_p[i]
        if (good + bad) / window_s < min_coverage:
            return False
        if slo.sli == "error_rate":
            req = req_p[j] - req_p[i]
            return req > 0 and (fail_p[j] - fail_p[i]) / req < slo.threshold
        return good / (good + bad) >= slo.objective - 1e-12

    last_fail: float | None = None
    j = 0
    for i, s in enumerate(rows):
        if s.time + window_s > until + 1e-9:
            break
        j = max(j, i)
        while j < n and rows[j].time < s.time + window_s:
            j += 1
        if not window_holds(i, j):
            last_fail = s.time
    for s, v in zip(rows, verdicts, strict=True):
        if (last_fail is None or s.time > last_fail) and v:
            if s.time + window_s <= until + 1e-9:
                return Restore(True, at=s.time, ttr_s=round(s.time - since, 6))
            break
    return Restore(False)


__all__ = [
    "LATENCY_KINDS", "PROFILES", "SEED_SLOS", "SLO", "Evaluation", "Profile", "Restore", "budget_burned",
    "burn_rate", "error_budget", "error_rate", "evaluate", "get_profile", "time_to_restore", "violation_seconds",
]
