"""SLO judgement, windows that hold, error budgets, burn rates and time to restore: worked numbers."""

from __future__ import annotations

import pytest

from sockdrill.errors import OracleError
from sockdrill.slo import (
    PROFILES,
    SEED_SLOS,
    SLO,
    SliSample,
    budget_burned,
    burn_rate,
    error_budget,
    evaluate,
    get_profile,
    time_to_restore,
    violation_seconds,
)

LOGIN = SLO("login", "latency_p95", 1.0)
CHECKOUT = SLO("checkout", "error_rate", 0.01)


def login(t: float, p95: float | None, requests: int = 5) -> SliSample:
    return SliSample(t, "login", requests if p95 is not None else 0, 0, p95=p95)


def test_parse_and_labels() -> None:
    assert SLO.parse("login p95 < 1s") == LOGIN
    assert SLO.parse("checkout error_rate < 1%") == CHECKOUT
    assert SLO.parse("payment latency_p95 < 3000ms").threshold == 3.0
    assert SLO.parse("browse throughput >= 5").sli == "throughput"
    assert LOGIN.label == "login latency_p95 < 1s" and CHECKOUT.label == "checkout error_rate < 1%"
    with pytest.raises(OracleError, match="use '<'"):
        SLO.parse("login p95 >= 1s")
    with pytest.raises(OracleError, match="is not like"):
        SLO.parse("login is fast")
    with pytest.raises(OracleError, match="did you mean"):
        SLO.parse("login latency_p96 < 1s")


def test_invalid_slos_are_refused() -> None:
    with pytest.raises(OracleError, match="threshold must be > 0"):
        SLO("login", "latency_p95", 0)
    with pytest.raises(OracleError, match="fraction < 1"):
        SLO("checkout", "error_rate", 1.0)
    with pytest.raises(OracleError, match="objective"):
        SLO("login", "latency_p95", 1.0, objective=1.0)


def test_seed_examples() -> None:
    assert SEED_SLOS["login-latency"].threshold == 1.0 and SEED_SLOS["login-latency"].sli == "latency_p95"
    assert SEED_SLOS["checkout-errors"].threshold == 0.01
    assert SEED_SLOS["payment-latency"].threshold == 3.0


def test_interval_judgement() -> None:
    assert LOGIN.is_good(login(0, 0.999)) is True
    assert LOGIN.is_good(login(0, 1.0)) is False        # "< 1 s" is strict
    assert LOGIN.is_good(login(0, None)) is None        # no requests: no evidence
    assert CHECKOUT.is_good(SliSample(0, "checkout", 200, 1)) is True    # 0.5 %
    assert CHECKOUT.is_good(SliSample(0, "checkout", 100, 1)) is False   # 1 %
    slow = SLO("browse", "throughput", 5.0)
    assert slow.is_good(SliSample(0, "browse", 0, 0)) is False  # nothing completed is zero throughput


def test_evaluate_worked_example() -> None:
    rows = [login(0, 0.2), login(1, 1.5), login(2, None), login(3, 0.3), SliSample(2, "browse", 9, 9)]
    ev = evaluate(LOGIN, rows, 0, 4)
    assert (ev.good_s, ev.bad_s, ev.no_data_s) == (2.0, 1.0, 1.0)
    assert ev.compliance == pytest.approx(2 / 3) and ev.coverage == 0.75
    assert ev.slices == [(0.0, True), (1.0, False), (2.0, None), (3.0, True)]
    assert not ev.holds()                                   # 66.7 % < 99 %
    assert evaluate(LOGIN, rows, 3, 4).holds()
    assert not evaluate(LOGIN, rows, 2, 3).holds()          # no data is not a pass


def test_error_rate_window_holds_on_aggregate() -> None:
    # One bad second (2 %) among 9 clean ones: the window's rate is 0.2 % < 1 %.
    rows = [SliSample(t, "checkout", 100, 2 if t == 4 else 0) for t in range(10)]
    ev = evaluate(CHECKOUT, rows, 0, 10)
    assert ev.bad_s == 1.0 and ev.bad_fraction == pytest.approx(0.002) and ev.holds()


def test_violation_seconds_and_burn_rate() -> None:
    rows = [SliSample(t, "checkout", 10, f) for t, f in enumerate([0, 1, 2, 0, 0])]
    assert violation_seconds(CHECKOUT, rows) == 2.0
    assert burn_rate(CHECKOUT, rows, 0, 5) == pytest.approx(6.0)      # 3/50 = 6 % over a 1 % budget
    lat = [login(t, 2.0 if t < 2 else 0.1) for t in range(10)]
    assert burn_rate(LOGIN, lat, 0, 10) == pytest.approx(20.0)        # 2/10 bad over a 1 % budget
    assert burn_rate(LOGIN, [], 0, 10) is None


def test_error_budget_and_burn() -> None:
    assert error_budget(LOGIN, 3600) == 36.0
    assert error_budget(CHECKOUT, 3600, rps=10) == 360.0
    with pytest.raises(OracleError, match="request rate"):
        error_budget(CHECKOUT, 3600)
    lat = [login(t, 2.0 if t < 18 else 0.1) for t in range(100)]
    assert budget_burned(LOGIN, lat, 0, 100, period_s=3600) == 0.5           # 18 of 36 bad seconds
    rows = [SliSample(t, "checkout", 10, 9 if t < 10 else 0) for t in range(360)]
    assert budget_burned(CHECKOUT, rows, 0, 360, period_s=3600) == 0.25      # 90 of 360 failures
    assert budget_burned(CHECKOUT, rows, 0, 360, period_s=3600, rps=20) == 0.125


def test_profiles() -> None:
    assert PROFILES["fast"].period_s == 3600.0 and PROFILES["standard"].period_s == 216000.0
    assert get_profile("fast").recovery_window_s == 10.0
    with pytest.raises(OracleError, match="did you mean 'fast'"):
        get_profile("fats")


def test_time_to_restore() -> None:
    rows = [login(t, 2.0 if t < 5 else 0.2) for t in range(20)]
    r = time_to_restore(LOGIN, rows, since=0, until=20, window_s=10)
    assert (r.restored, r.at, r.ttr_s) == (True, 5.0, 5.0)
    assert not time_to_restore(LOGIN, rows, since=0, until=12, window_s=10).restored   # window does not fit
    with pytest.raises(OracleError, match="recovery window"):
        time_to_restore(LOGIN, rows, 0, 20, 0)


def test_restore_must_stay_restored() -> None:
    # Good 5..9, bad again 10..11 (a relapse), good from 12: restoration counts from 12.
    rows = [login(t, 2.0 if t < 5 or 10 <= t < 12 else 0.2) for t in range(30)]
    r = time_to_restore(LOGIN, rows, since=0, until=30, window_s=10)
    assert (r.restored, r.at) == (True, 12.0)
    # Still bad at the end: never restored.
    rows = [login(t, 2.0 if t < 5 or t >= 25 else 0.2) for t in range(30)]
    assert not time_to_restore(LOGIN, rows, since=0, until=30, window_s=10).restored


def test_restore_needs_data() -> None:
    # Load stopped (no requests) from 5: silence is not a recovery.
    rows = [login(t, 2.0 if t < 5 else None) for t in range(30)]
    assert not time_to_restore(LOGIN, rows, since=0, until=30, window_s=10).restored
    # Sparse but good data (every second interval) still covers half of each window.
    rows = [login(t, 2.0 if t < 5 else (0.2 if t % 2 else None)) for t in range(30)]
    assert time_to_restore(LOGIN, rows, since=0, until=30, window_s=10).restored


def test_restore_error_rate_tolerates_a_blip() -> None:
    rows = [SliSample(t, "checkout", 100, 50 if t < 5 else (2 if t == 15 else 0)) for t in range(40)]
    r = time_to_restore(CHECKOUT, rows, since=0, until=40, window_s=10)
    assert r.restored and r.at == 5.0   # one 2 % second inside a 0.2 % window still holds
