"""Multi-window, multi-burn-rate alerts: scaled windows, firing, timelines."""

from __future__ import annotations

import pytest

from sockdrill.errors import OracleError
from sockdrill.slo import PROFILES, SLO, SliSample, alert_timeline, firing, first_alert, rules_for
from sockdrill.slo.alerts import WORKBOOK_RULES, BurnRateRule

CHECKOUT = SLO("checkout", "error_rate", 0.01)
LOGIN = SLO("login", "latency_p95", 1.0)


def test_workbook_rules_and_scaling() -> None:
    assert [(r.long_window_s, r.short_window_s, r.burn_rate) for r in WORKBOOK_RULES] == [
        (3600, 300, 14.4), (21600, 1800, 6.0), (259200, 21600, 1.0)]
    fast = rules_for(PROFILES["fast"])
    assert [(r.long_window_s, r.short_window_s) for r in fast] == [(5.0, 1.0), (30.0, 2.5), (360.0, 30.0)]
    standard = rules_for(PROFILES["standard"])
    assert [(r.long_window_s, r.short_window_s) for r in standard] == [(300.0, 25.0), (1800.0, 150.0),
                                                                       (21600.0, 1800.0)]
    assert [r.burn_rate for r in fast] == [14.4, 6.0, 1.0]
    with pytest.raises(OracleError, match="short window"):
        BurnRateRule("bad", 10, 20, 1.0)
    with pytest.raises(OracleError, match="scale"):
        rules_for(0)


def test_fast_page_fires_when_both_windows_burn() -> None:
    rows = [SliSample(t, "checkout", 10, 2 if t >= 10 else 0) for t in range(30)]   # 20 % errors: burn 20
    page = rules_for(1 / 720)[0]
    assert not firing(CHECKOUT, rows, 12, page)   # 5 s window: 4/50 = 8 %, burn 8
    assert firing(CHECKOUT, rows, 14, page)       # 8/50 = 16 %, burn 16 >= 14.4, short window 20 %
    assert firing(CHECKOUT, rows, 25, page)


def test_timeline_starts_and_stops() -> None:
    rows = [SliSample(t, "checkout", 10, 2 if 10 <= t < 20 else 0) for t in range(40)]
    alerts = alert_timeline(CHECKOUT, rows, rules_for(1 / 720))
    page = [a for a in alerts if a.rule == "page-1h"]
    assert [(a.start, a.end) for a in page] == [(14.0, 21.0)]   # short window clears one second after
    assert all(a.slo == CHECKOUT.label for a in alerts)
    # Still firing at the end of the data: an open alert.
    ongoing = [SliSample(t, "checkout", 10, 2 if t >= 10 else 0) for t in range(40)]
    last = [a for a in alert_timeline(CHECKOUT, ongoing, rules_for(1 / 720)) if a.rule == "page-1h"]
    assert last[-1].end is None


def test_slow_burn_tickets_but_does_not_page() -> None:
    # 2 % errors (burn 2) for a long time: below both page rates, above the ticket's 1.
    rows = [SliSample(t, "checkout", 100, 2) for t in range(400)]
    alerts = alert_timeline(CHECKOUT, rows, rules_for(1 / 720))
    assert {a.rule for a in alerts} == {"ticket-3d"}
    assert first_alert(CHECKOUT, rows, rules_for(1 / 720)) is None           # no page
    ticket = first_alert(CHECKOUT, rows, rules_for(1 / 720), severity="ticket")
    assert ticket is not None and ticket.start == 1.0


def test_latency_slo_alerts_and_no_data_never_fires() -> None:
    rows = [SliSample(t, "login", 5, 0, p95=3.0 if t >= 20 else 0.2) for t in range(40)]
    a = first_alert(LOGIN, rows, rules_for(1 / 720), after=0)
    assert a is not None and a.start == 21.0   # one bad second of 1-s and 5-s windows: burn 20 and 100
    silent = [SliSample(t, "login", 0, 0) for t in range(40)]
    assert alert_timeline(LOGIN, silent, rules_for(1 / 720)) == []
    assert alert_timeline(LOGIN, [], rules_for(1 / 720)) == []
