"""What customers saw go missing, read from the load's per-second records (no shop needed)."""

from __future__ import annotations

from sockdrill.scenarios.integrity_setup import customers_saw


def _rec(t: float, **steps: tuple[int, int]) -> dict:
    return {"time": t, "steps": {name.replace("__", ":").replace("_", "-"): {"count": c, "failures": f}
                                 for name, (c, f) in steps.items()}}


def test_returning_shoppers_and_profile_checks_count_what_customers_saw() -> None:
    records = [
        _rec(5.0, return_visit__kept=(3, 3)),                     # before the run's start: not counted
        _rec(11.0, return_visit__kept=(2, 0), return_visit__merged=(2, 0)),
        _rec(12.0, return_visit__kept=(1, 1), profile_edit__verify=(4, 0)),
    ]
    checks = {c.name: c for c in customers_saw(records, since=10.0)}
    carts = checks["carts_kept_between_visits"]
    assert carts.ok is False and carts.violations == [{"kind": "seen_missing", "checks": 5, "failed": 1}]
    assert "1 found data missing" in carts.detail
    profile = checks["profile_changes_kept"]
    assert profile.ok is True and profile.violations == []


def test_no_such_journey_no_check() -> None:
    assert customers_saw([_rec(11.0, cart__view=(5, 0))], since=10.0) == []


def test_only_what_customers_lose_after_the_hand_back_counts_against_the_agent() -> None:
    """Losses during the incident are its symptom; losses after the agent handed back are the agent's."""
    records = [_rec(11.0, return_visit__kept=(4, 4)),             # while the fault ran
               _rec(20.0, return_visit__kept=(3, 0)),             # after the fix
               _rec(21.0, profile_edit__verify=(2, 0))]
    checks = {c.name: c for c in customers_saw(records, since=10.0, handed_back=15.0)}
    carts = checks["carts_kept_between_visits"]
    assert carts.ok is True and "7 checks" in carts.detail and "4 found data missing" in carts.detail
    assert "of data left after the hand-back 3 checks, all kept" in carts.detail
    still = {c.name: c for c in customers_saw([*records, _rec(22.0, return_visit__kept=(2, 1))], since=10.0,
                                              handed_back=15.0)}["carts_kept_between_visits"]
    assert still.ok is False and still.violations == [{"kind": "seen_missing", "checks": 5, "failed": 1}]
    none_after = customers_saw([_rec(11.0, return_visit__kept=(4, 4))], since=10.0, handed_back=15.0)
    assert none_after[0].ok is None                               # nothing to judge: no credit, no penalty


def test_a_cart_left_during_the_incident_is_the_incident_s_however_late_its_shopper_returns() -> None:
    """A returning shopper may come back long after the hand-back: the loss is dated by when the cart was left."""
    records = [
        {**_rec(30.0, return_visit__kept=(3, 1)),
         "left": {"return-visit:kept": {"12": [1, 1], "20": [2, 0]}}},   # left at 12 (incident) and 20 (after)
        {**_rec(31.0, return_visit__merged=(1, 0)), "left": {"return-visit:merged": {"21": [1, 0]}}},
    ]
    carts = {c.name: c for c in customers_saw(records, since=10.0, handed_back=15.0)}["carts_kept_between_visits"]
    assert carts.ok is True, carts.detail
    assert "4 checks" in carts.detail and "1 found data missing" in carts.detail
    assert "of data left after the hand-back 3 checks, all kept" in carts.detail
    lost_late = [{**_rec(30.0, return_visit__kept=(1, 1)), "left": {"return-visit:kept": {"16": [1, 1]}}}]
    late = customers_saw(lost_late, since=10.0, handed_back=15.0)[0]
    assert late.ok is False and late.violations == [{"kind": "seen_missing", "checks": 1, "failed": 1}]


def test_the_load_dates_a_check_by_when_its_data_was_left() -> None:
    from sockdrill.load.sli import Aggregator

    agg = Aggregator()
    agg.dated_check("return-visit:kept", 100.4, True)
    agg.dated_check("return-visit:kept", 100.9, False)
    agg.dated_check("return-visit:kept", 107.0, True)
    record = agg.flush(now=120.0, elapsed=20.0, users=1)
    assert record["left"] == {"return-visit:kept": {"100": [2, 1], "107": [1, 0]}}
    assert "left" not in agg.flush(now=121.0, elapsed=21.0, users=1)   # one second's checks, once
