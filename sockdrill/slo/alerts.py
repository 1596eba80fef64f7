"""Multi-window, multi-burn-rate SLO alerts (the pattern of the Google SRE workbook, ch. 5).

An alert fires when the budget burns at least ``burn_rate`` times too fast over a long window AND
over a short one: the long window makes it significant, the short one makes it stop soon after the
burn stops. The workbook's three rules for a 30-day budget:

=========  ===========  ============  =========  ====================================
rule       long window  short window  burn rate  meaning
=========  ===========  ============  =========  ====================================
page-1h    1 h          5 min         14.4       2 % of the 30-day budget in 1 hour
page-6h    6 h          30 min        6          5 % of the budget in 6 hours
ticket-3d  3 days       6 h           1          10 % of the budget in 3 days
=========  ===========  ============  =========  ====================================

Profiles multiply every window by their ``scale`` (never below 1 s): fast (1/720) turns 1 h/5 min
into 5 s/1 s, standard (1/12) into 5 min/25 s. Burn rates are unchanged, so the budget fractions in
the table still hold for the scaled period.

Burn over a window is the SLO's bad fraction there (failures/requests for error-rate SLOs, bad
intervals / intervals with data for the others) divided by its budget fraction; a window with no
data does not fire. At time ``at`` only intervals that have ended by ``at`` count.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from sockdrill.errors import OracleError
from sockdrill.slo.sli import SliSample
from sockdrill.slo.slo import SLO, Profile, journey_samples


@dataclass(frozen=True)
class BurnRateRule:
    name: str
    long_window_s: float
    short_window_s: float
    burn_rate: float
    severity: str = "page"

    def __post_init__(self) -> None:
        if not 0 < self.short_window_s <= self.long_window_s:
            raise OracleError(f"burn-rate rule {self.name!r}: need 0 < short window <= long window, got "
                              f"{self.short_window_s} and {self.long_window_s}")
        if self.burn_rate <= 0:
            raise OracleError(f"burn-rate rule {self.name!r}: burn rate must be > 0, got {self.burn_rate}")


WORKBOOK_RULES: tuple[BurnRateRule, ...] = (
    BurnRateRule("page-1h", 3600, 300, 14.4, "page"),
    BurnRateRule("page-6h", 6 * 3600, 1800, 6.0, "page"),
    BurnRateRule("ticket-3d", 3 * 86400, 6 * 3600, 1.0, "ticket"),
)


# Alerts burn the budget of the SLO as published (99 % of intervals good), in every profile. A run's windows
# judge "the SLO holds" with a looser share (the fast profile's 0.8: a few seconds of noise must not fail a
# window), but that share must not set the budget the alerts burn: with a 20 % budget a page's 14.4x burn
# needs more than all of the intervals bad, so no latency SLO could ever page.
ALERT_OBJECTIVE = 0.99


def alerting_slo(slo: SLO) -> SLO:
    """``slo`` as the alerts see it: the published objective (error-rate SLOs do not use it)."""
    return replace(slo, objective=ALERT_OBJECTIVE)


def rules_for(profile: Profile | float) -> tuple[BurnRateRule, ...]:
    """The workbook rules with windows scaled by a profile (or a bare scale factor), at least 1 s.

    >>> [(r.long_window_s, r.short_window_s) for r in rules_for(1 / 720)]
    [(5.0, 1.0), (30.0, 2.5), (360.0, 30.0)]
    """
    scale = profile.scale if isinstance(profile, Profile) else float(profile)
    if scale <= 0:
        raise OracleError(f"profile scale must be > 0, got {scale}")
    return tuple(BurnRateRule(r.name, max(1.0, round(r.long_window_s * scale, 6)),
                              max(1.0, round(r.short_window_s * scale, 6)), r.burn_rate, r.severity)
                 for r in WORKBOOK_RULES)


class _Series:
    """One journey's samples with prefix sums, so any window's bad fraction costs two bisects."""

    def __init__(self, slo: SLO, samples: Iterable[SliSample]) -> None:
        self.slo = slo
        rows = journey_samples(slo, samples)
        self.ends = [s.end for s in rows]
        self.good = [0.0]
        self.bad = [0.0]
        self.req = [0]
        self.fail = [0]
        for s in rows:
            v = slo.is_good(s)
            self.good.append(self.good[-1] + (s.interval_s if v else 0.0))
            self.bad.append(self.bad[-1] + (s.interval_s if v is False else 0.0))
            self.req.append(self.req[-1] + s.requests)
            self.fail.append(self.fail[-1] + s.failures)

    def burn(self, start: float, end: float) -> float | None:
        """Burn rate over intervals that ended in ``(start, end]``."""
        i = bisect.bisect_right(self.ends, start)
        j = bisect.bisect_right(self.ends, end)
        if self.slo.sli == "error_rate":
            req = self.req[j] - self.req[i]
            if req == 0:
                return None
            bad = (self.fail[j] - self.fail[i]) / req
        else:
            judged = (self.good[j] - self.good[i]) + (self.bad[j] - self.bad[i])
            if judged == 0:
                return None
            bad = (self.bad[j] - self.bad[i]) / judged
        return bad / self.slo.budget_fraction


def firing(slo: SLO, samples: Iterable[SliSample], at: float, rule: BurnRateRule) -> bool:
    """Whether the rule fires at ``at``: both windows burn at least ``rule.burn_rate``.

    Worked example, checkout error rate < 1 %, fast page rule (5 s / 1 s, 14.4x): 10 req/s with
    2 failures/s from t = 10 is a 20 % error rate, burn 20; at t = 12 the 5 s window holds 3 clean and
    2 bad seconds (8 %, burn 8) and does not fire; at t = 15 it is all bad (burn 20) and fires.

    >>> rows = [SliSample(t, "checkout", 10, 2 if t >= 10 else 0) for t in range(30)]
    >>> rule = rules_for(1 / 720)[0]
    >>> slo = SLO("checkout", "error_rate", 0.01)
    >>> firing(slo, rows, 12, rule), firing(slo, rows, 15, rule)
    (False, True)
    """
    return _firing(_Series(slo, samples), at, rule)


def _firing(series: _Series, at: float, rule: BurnRateRule) -> bool:
    long = series.burn(at - rule.long_window_s, at)
    short = series.burn(at - rule.short_window_s, at)
    return long is not None and short is not None and long >= rule.burn_rate and short >= rule.burn_rate


@dataclass(frozen=True)
class Alert:
    """One firing period of one rule for one SLO; ``end`` is None while still firing at the end."""

    slo: str
    rule: str
    severity: str
    start: float
    end: float | None


def alert_timeline(slo: SLO, samples: Sequence[SliSample], rules: Sequence[BurnRateRule],
                   start: float | None = None, end: float | None = None, step_s: float = 1.0) -> list[Alert]:
    """Evaluate every rule each ``step_s`` over ``[start, end]`` and return the firing periods.

    Worked example: 20 % errors (burn 20) for t = 10..19, fast page rule (5 s / 1 s, 14.4x). At 14 the
    long window holds 4 bad seconds of 5 (16 %, burn 16) and the short one is bad: it fires. At 21 the
    short window holds the clean second 20 (burn 0): it stops.

    >>> rows = [SliSample(t, "checkout", 10, 2 if 10 <= t < 20 else 0) for t in range(40)]
    >>> alerts = alert_timeline(SLO("checkout", "error_rate", 0.01), rows, rules_for(1 / 720)[:1])
    >>> [(a.rule, a.start, a.end) for a in alerts]
    [('page-1h', 14.0, 21.0)]
    """
    if step_s <= 0:
        raise OracleError(f"alert evaluation step must be > 0 s, got {step_s}")
    series = _Series(slo, samples)
    if not series.ends:
        return []
    t = series.ends[0] if start is None else start
    stop = series.ends[-1] if end is None else end
    open_at: dict[str, float] = {}
    out: list[Alert] = []
    by_name = {r.name: r for r in rules}
    while t <= stop + 1e-9:
        for rule in rules:
            on = _firing(series, t, rule)
            if on and rule.name not in open_at:
                open_at[rule.name] = t
            elif not on and rule.name in open_at:
                out.append(Alert(slo.label, rule.name, rule.severity, open_at.pop(rule.name), t))
        t = round(t + step_s, 9)
    out.extend(Alert(slo.label, name, by_name[name].severity, began, None) for name, began in open_at.items())
    return sorted(out, key=lambda a: (a.start, a.rule))


def first_alert(slo: SLO, samples: Sequence[SliSample], rules: Sequence[BurnRateRule],
                after: float | None = None, end: float | None = None, severity: str | None = "page"
                ) -> Alert | None:
    """The first alert (of ``severity``, or any when None) that starts at or after ``after``."""
    for alert in alert_timeline(slo, samples, rules, after, end):
        if severity is None or alert.severity == severity:
            return alert
    return None


__all__ = ["ALERT_OBJECTIVE", "WORKBOOK_RULES", "Alert", "BurnRateRule", "alert_timeline", "alerting_slo", "firing",
           "first_alert", "rules_for"]
