"""Prometheus recording and alerting rules for journey SLOs: the same multi-window, multi-burn-rate alerts as
``alerts.py``, written for a real Prometheus (``promtool check rules`` passes on them).

Inputs are the load generator's series as the recorder serves them: ``journey_requests_total`` and
``journey_failures_total`` (counters per journey) and ``journey_latency_seconds{quantile}`` (the quantiles
of each second). For every SLO and every window the burn rules use, one recording rule gives the SLO's
*bad fraction* over that window, labelled ``journey`` and ``slo``:

- error rate (an event SLO): failed / all journeys that ended in the window (``increase`` of the counters);
- latency (a time-slice SLO): the share of the window's samples whose quantile was over the threshold
  (a subquery at ``step``).

Each alert is ``bad fraction over the long window > burn rate x budget`` AND the same over the short window,
labelled ``severity`` (page or ticket), ``journey``, ``slo`` and ``window`` (the workbook rule it scales), with
a summary and, when the SLO's alert has one, a ``runbook_url``. Windows are the workbook's, scaled by the
profile, and never shorter than ``min_window_s``: a rate needs at least two scrapes in its window.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from sockdrill.errors import OracleError
from sockdrill.slo.alerts import rules_for
from sockdrill.slo.slo import SLO, Profile

QUANTILE = {"latency_p50": "0.5", "latency_p95": "0.95", "latency_p99": "0.99"}


def window_text(seconds: float) -> str:
    """A PromQL duration: 5s, 90s, 2m, 6h (whole seconds, the largest exact unit).

    >>> [window_text(s) for s in (5, 90, 120, 21600, 0.4)]
    ['5s', '90s', '2m', '6h', '1s']
    """
    s = max(1, round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def alert_name(slo: SLO) -> str:
    """``login`` / ``latency_p95`` → ``LoginLatencyP95Burn``."""
    words = re.split(r"[^A-Za-z0-9]+", f"{slo.journey} {slo.sli}")
    return "".join(w[:1].upper() + w[1:] for w in words if w) + "Burn"


def bad_fraction_expr(slo: SLO, window: str, step: str) -> str:
    journey = _quote(slo.journey)
    if slo.sli == "error_rate":
        return (f"sum(increase(journey_failures_total{{journey={journey}}}[{window}])) / "
                f"sum(increase(journey_requests_total{{journey={journey}}}[{window}]))")
    if slo.sli in QUANTILE:
        series = f'max(journey_latency_seconds{{journey={journey},quantile="{QUANTILE[slo.sli]}"}})'
        return f"avg_over_time(({series} > bool {slo.threshold:g})[{window}:{step}])"
    raise OracleError(f"SLO {slo.label}: {slo.sli} SLOs have no Prometheus rule (error rate and latency do)")


def prometheus_rules(slos: Sequence[SLO], profile: Profile, *, min_window_s: float = 10.0,
                     runbook_url: Callable[[SLO], str | None] | None = None) -> dict[str, Any]:
    """The rule file (as a dict, ready for YAML) for these SLOs under ``profile``."""
    rules = []
    for r in rules_for(profile):
        long_s, short_s = max(r.long_window_s, min_window_s), max(r.short_window_s, min_window_s)
        rules.append((r, window_text(long_s), window_text(short_s)))
    recording: list[dict[str, Any]] = []
    alerting: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for slo in slos:
        labels = {"journey": slo.journey, "slo": slo.label}
        for window in sorted({w for _r, lw, sw in rules for w in (lw, sw)}, key=_seconds):
            if (slo.label, window) in seen:
                continue
            seen.add((slo.label, window))
            # About a hundred points per window (never finer than a fifth of the shortest window).
            step = window_text(max(1.0, min_window_s / 5, _seconds(window) / 120))
            recording.append({"record": f"slo:bad_fraction:{window}", "expr": bad_fraction_expr(slo, window, step),
                              "labels": dict(labels)})
        budget = slo.budget_fraction
        for rule, long_w, short_w in rules:
            limit = f"{rule.burn_rate * budget:.6g}"
            match = f"{{slo={_quote(slo.label)}}}"
            annotations = {
                "summary": f"{slo.label}: the error budget burns {rule.burn_rate:g}x too fast "
                           f"({long_w} and {short_w} windows)",
                "description": f"Over the last {long_w} and {short_w}, more than {float(limit):.3g} of "
                               + ("the journeys failed." if slo.sli == "error_rate" else
                                  f"the samples had {slo.sli} over {slo.threshold:g} s."),
            }
            url = runbook_url(slo) if runbook_url else None
            if url:
                annotations["runbook_url"] = url
            alerting.append({
                "alert": alert_name(slo),
                "expr": f"slo:bad_fraction:{long_w}{match} > {limit} and slo:bad_fraction:{short_w}{match} > {limit}",
                "labels": {"severity": rule.severity, "window": rule.name, **labels},
                "annotations": annotations,
            })
    return {"groups": [
        {"name": f"sockdrill-slo-{profile.name}-sli", "rules": recording},
        {"name": f"sockdrill-slo-{profile.name}-alerts", "rules": alerting},
    ]}


def _seconds(window: str) -> float:
    return float(window[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[window[-1]]


__all__ = ["alert_name", "bad_fraction_expr", "prometheus_rules", "window_text"]
