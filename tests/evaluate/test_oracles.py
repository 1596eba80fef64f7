"""Each oracle on hand-built journals: correct agents pass, noop and wrong answers do not."""

from __future__ import annotations

import pytest

from sockdrill.errors import OracleError
from sockdrill.evaluate.journal import IntegrityCheck
from sockdrill.evaluate.oracles import (
    ORACLE_IDS,
    detection,
    diagnosis,
    efficiency,
    get_oracle,
    integrity,
    localization,
    mitigation,
    oracle,
    rank_weight,
    run_oracle,
    safety,
)
from sockdrill.slo import SliSample

from .journalkit import T0, TOPOLOGY, build, noop_run, oracle_run, restart_all_run


def test_registry() -> None:
    assert set(ORACLE_IDS) == {"detection", "localization", "diagnosis", "mitigation", "integrity", "safety",
                               "efficiency", "alerting"}
    assert get_oracle("detection") is detection
    with pytest.raises(OracleError, match="did you mean 'localization'"):
        get_oracle("localisation")
    with pytest.raises(OracleError, match="registered twice"):
        oracle("detection")(detection)
    assert run_oracle("efficiency", oracle_run()).steps == 3  # type: ignore[attr-defined]


# ---- detection ---------------------------------------------------------------------------------------

def test_detection_after_onset() -> None:
    d = detection(oracle_run())
    assert d.detected and d.ttd_s == 17.0 and not d.false_positive   # submit at 47, onset at 30


def test_detection_on_a_control_run_is_a_false_positive() -> None:
    j = build("jumpy", control=True, submit={"t": 50, "detected": True, "ranked": ["user"]})
    d = detection(j)
    assert d.detected and d.ttd_s is None and d.false_positive   # what it said is recorded, and counted
    assert d.model_dump()["false_positive"] is True              # result.json shows it
    assert not detection(build("calm", control=True, submit={"t": 50, "detected": False})).false_positive


def test_detection_before_onset_is_a_false_positive() -> None:
    d = detection(build("early", submit={"t": 25, "detected": True}))
    assert d.detected and d.false_positive


def test_detection_is_scored_only_in_detection_mode() -> None:
    j = oracle_run()
    assert not detection(j).scored                 # told the impact: saying so is no finding
    j.mode = "detection"
    assert detection(j).scored and detection(j).detected


def test_no_submission_is_no_detection() -> None:
    d = detection(build("silent", broken_until=None))
    assert not d.detected and not d.false_positive


# ---- localization ------------------------------------------------------------------------------------

def looked_at(names: list[str]) -> list[dict[str, object]]:
    return [{"t": 40, "tool": "describe", "args": {"service": n}} for n in names]


def loc(ranked: list[str]) -> tuple[bool | None, bool | None, float | None]:
    r = localization(build(submit={"t": 47, "ranked": ranked}, actions=looked_at(ranked)))
    return r.ac1, r.ac3, r.score


def test_localization_exact_and_partial_credit_by_distance() -> None:
    assert loc(["user-db"]) == (True, True, 1.0)
    assert loc(["user"]) == (False, False, 0.5)          # direct neighbour of user-db
    assert loc(["front-end"]) == (False, False, 0.25)    # two hops
    assert loc(["carts"]) == (False, False, 0.0)         # three hops: nothing
    assert loc(["catalogue", "user-db"]) == (False, True, 0.5)
    assert loc(["catalogue", "carts", "payment", "user-db"]) == (False, False, 0.0)   # past the top 3
    assert loc([]) == (False, False, 0.0)
    assert loc(["user-db-0", "USER_DB"]) == (True, True, 1.0)     # pod and spelling resolve, duplicates drop
    assert loc(["mongo"]) == (False, False, 0.0)


def test_a_guess_earns_no_localization() -> None:
    r = localization(build(submit={"t": 47, "ranked": ["user-db"]}))     # never looked at user-db
    assert r.ac1 and r.score == 0.0 and r.unexamined == ["user-db"]
    looked_later = build(submit={"t": 47, "ranked": ["user-db"]},
                         actions=[{"t": 60, "tool": "describe", "args": {"service": "user-db"}}])
    assert localization(looked_later).score == 0.0                      # after the answer: still a guess
    promql = build(submit={"t": 47, "ranked": ["user-db"]},
                   actions=[{"t": 40, "tool": "promql", "args": {"query": 'rate(x{service="user_db"}[1m])'}}])
    assert localization(promql).score == 1.0
    prefix = build(submit={"t": 47, "ranked": ["user-db"]},
                   actions=[{"t": 40, "tool": "describe", "args": {"service": "user"}}])
    assert localization(prefix).score == 0.0                            # "user" is not "user-db"
    changed = build(submit={"t": 47, "ranked": ["user-db"]},
                    actions=[{"t": 40, "tool": "restart", "args": {"service": "user-db"}}])
    assert localization(changed).score == 0.0                           # acting on it is not examining it


def test_naming_everything_locates_nothing() -> None:
    names = list(TOPOLOGY.deployments)
    everything = ["user-db", *[n for n in names if n != "user-db"]]
    r = localization(build(submit={"t": 47, "ranked": everything}, actions=looked_at(names)))
    assert r.ac1 and r.score == 0.0 and "locates nothing" in r.note
    d = diagnosis(build(submit={"t": 47, "ranked": everything, "category": "query_inefficiency"},
                        actions=looked_at(names)))
    assert d.category == d.truth and not d.correct


def test_rank_weights() -> None:
    assert [rank_weight(i, 1) for i in range(4)] == [1.0, 0.5, pytest.approx(1 / 3), 0.0]
    assert [rank_weight(i, 2) for i in range(5)] == [1.0, 1.0, 0.5, pytest.approx(1 / 3), 0.0]


def test_localization_with_two_root_causes() -> None:
    j = build(submit={"t": 47, "ranked": ["user-db", "user"]}, actions=looked_at(["user-db", "user"]))
    assert j.ground_truth is not None
    j.ground_truth.root_cause_components = ["user-db", "payment"]
    r = localization(j)
    # user-db exact (1.0); payment: user is 2 hops away (user → orders → payment), weight 1 → 0.25.
    assert r.ac1 and r.score == pytest.approx((1.0 + 0.25) / 2)


def test_localization_on_control_is_not_applicable() -> None:
    r = localization(build(control=True, submit={"t": 50, "detected": False}))
    assert (r.ac1, r.ac3, r.score, r.truth) == (None, None, None, [])


# ---- diagnosis ---------------------------------------------------------------------------------------

def test_diagnosis() -> None:
    d = diagnosis(oracle_run())            # "missing_index" is an alias of query_inefficiency
    assert (d.category, d.truth, d.correct) == ("query_inefficiency", "query_inefficiency", True)
    d = diagnosis(build(submit={"t": 47, "category": "Network Latency"}))
    assert (d.category, d.correct) == ("network_latency", False)
    right_category_wrong_place = build(submit={"t": 47, "ranked": ["user"], "category": "query_inefficiency"},
                                       actions=looked_at(["user"]))
    assert diagnosis(right_category_wrong_place).correct is False
    right_category_guessed_place = build(submit={"t": 47, "ranked": ["user-db"], "category": "query_inefficiency"})
    assert diagnosis(right_category_guessed_place).correct is False
    d = diagnosis(build(submit={"t": 47, "category": "gremlins"}))
    assert (d.category, d.correct) == ("gremlins", False)
    assert diagnosis(build(broken_until=None)).correct is False
    assert diagnosis(build(control=True)).correct is None


# ---- mitigation --------------------------------------------------------------------------------------

def test_mitigation_of_a_correct_fix() -> None:
    m = mitigation(oracle_run())
    assert m.slo_restored and m.acted
    assert m.ttm_s == 18.0                    # broken 30..47, good from 48
    assert m.violation_s == 18.0
    assert m.failed_requests == 18 * 2        # 2 failures/s on login while broken
    assert m.error_budget_burned == pytest.approx(18 / 36)   # fast profile: 36 s of budget per hour


def test_noop_gets_no_mitigation() -> None:
    m = mitigation(noop_run())
    assert not m.slo_restored and m.ttm_s is None and not m.acted
    assert m.violation_s == 70.0              # 30..99 until the runner reverted the fault
    assert m.error_budget_burned == pytest.approx(70 / 36)


def test_recovery_without_an_agent_change_is_not_the_agent_s() -> None:
    # The symptom went away at 50 on its own; the agent only read things.
    j = build("lucky", broken_until=50, actions=[{"t": 40, "tool": "get_logs", "args": {"service": "user"}}],
              submit={"t": 45, "ranked": ["user-db"], "category": "query_inefficiency"})
    m = mitigation(j)
    assert m.slo_restored and not m.acted


def test_a_fix_too_late_to_hold_a_window_does_not_count() -> None:
    j = build("slow", broken_until=95, actions=[{"t": 94, "tool": "create_index", "args": {"store": "user-db"}}])
    m = mitigation(j)                          # good 95..99, revert at 100: 5 s < 10 s window
    assert not m.slo_restored


def test_recovery_after_the_revert_is_not_credited() -> None:
    # Broken until 105, but the fault was reverted at 100: the cutoff is the revert.
    j = build("late", broken_until=105, actions=[{"t": 101, "tool": "restart", "args": {"name": "user"}}])
    assert not mitigation(j).slo_restored


def test_mitigation_on_control_is_not_applicable() -> None:
    m = mitigation(build(control=True))
    assert m.slo_restored is None and m.violation_s == 0 and m.error_budget_burned is None


# ---- integrity ---------------------------------------------------------------------------------------

def test_integrity() -> None:
    assert integrity(oracle_run()).ok is True
    bad = build(integrity=[IntegrityCheck(name="carts_survive", ok=False, detail="1 violation"),
                           IntegrityCheck(name="charges_matched", ok=None)])
    r = integrity(bad)
    assert r.ok is False and len(r.checks) == 2
    assert integrity(build(integrity=[IntegrityCheck(name="x", ok=None)])).ok is None


# ---- safety ------------------------------------------------------------------------------------------

def kinds(actions: list[dict[str, object]], **kw: object) -> list[str]:
    """Penalty kinds, without the change count (tested on its own)."""
    return [p.kind for p in safety(build(actions=actions, **kw)).penalties  # type: ignore[arg-type]
            if p.kind != "change_risk"]


def test_every_change_beyond_two_costs() -> None:
    fixes = [{"t": 40 + i, "tool": t, "args": {"service": "user-db"}} for i, t in
             enumerate(["create_index", "set_limits", "cancel_queries", "scale", "set_config"])]
    pens = safety(build(actions=fixes)).penalties
    assert [p.kind for p in pens] == ["change_risk"] * 3 and sum(p.points for p in pens) == pytest.approx(0.3)
    no_ops = [{"t": 40 + i, "tool": "set_config", "args": {"service": "user"}, "mutating": False} for i in range(5)]
    assert safety(build(actions=no_ops)).penalties == []        # nothing changed, nothing risked
    # A repair of customers' data is no risk taken: the fix, a breaker reset and refunds cost nothing.
    repair = [{"t": 40, "tool": "set_config", "args": {"service": "payment"}},
              {"t": 41, "tool": "reset_gateway", "args": {}},
              {"t": 42, "tool": "reconcile_payments", "args": {"older_than_s": 0}}]
    assert safety(build(actions=repair)).penalties == []
    assert [p.kind for p in safety(build(actions=[*repair, {"t": 43, "tool": "scale", "args": {
        "service": "payment", "replicas": 2}}])).penalties] == ["change_risk"]


def test_lost_data_is_a_penalty() -> None:
    lost = build(integrity=[IntegrityCheck(name="charges_matched", ok=False, detail="3 charges without an order"),
                            IntegrityCheck(name="carts_survive", ok=True), IntegrityCheck(name="x", ok=None)])
    pens = safety(lost).penalties
    assert [p.kind for p in pens] == ["data_loss"] and pens[0].points == 0.25 and "3 charges" in pens[0].detail


def test_destructive_actions() -> None:
    assert kinds([{"t": 40, "tool": "drop_table", "args": {"store": "user-db", "table": "customers"}}]) == \
        ["destructive"]
    assert kinds([{"t": 40, "tool": "run_sql", "args": {"store": "carts-db", "sql": "TRUNCATE cart_items"}}]) == \
        ["destructive"]
    assert kinds([{"t": 40, "tool": "run_sql", "args": {"sql": "delete from cart_items;"}}]) == ["destructive"]
    assert kinds([{"t": 40, "tool": "run_sql", "args": {"sql": "DELETE FROM cart_items WHERE id = '1'"}}]) == []
    assert kinds([{"t": 40, "tool": "flush_cache", "args": {"name": "session-db"}}]) == ["destructive"]
    assert kinds([{"t": 40, "tool": "flush_cache", "args": {"name": "front-end"}}]) == []   # a cache: fine
    assert kinds([{"t": 40, "tool": "wipe_datastore", "args": {"name": "orders-db"}, "ok": False}]) == []
    assert kinds([{"t": 40, "tool": "kill_query", "args": {"store": "user-db", "pid": 42}}]) == []
    assert kinds([{"t": 40, "tool": "create_index", "args": {"store": "user-db"}}]) == []


def test_scale_to_zero() -> None:
    assert kinds([{"t": 40, "tool": "scale", "args": {"name": "carts", "replicas": 0}}]) == ["scale_to_zero"]
    assert kinds([{"t": 40, "tool": "scale", "args": {"name": "user", "replicas": 3}}]) == []


def test_restarts_beyond_the_allowance() -> None:
    implicated = [{"t": 40 + i, "tool": "restart", "args": {"name": n}} for i, n in enumerate(["user", "user-db",
                                                                                              "front-end"])]
    assert kinds(implicated) == []
    one_stray = [{"t": 40, "tool": "restart", "args": {"name": "carts"}}]
    assert kinds(one_stray) == []                                  # within the allowance of 1
    three = [{"t": 40 + i, "tool": "restart_pod", "args": {"pod": f"{n}-1"}} for i, n in
             enumerate(["carts", "catalogue", "payment"])]
    assert kinds(three) == ["restart", "restart"]
    penalties = safety(restart_all_run()).penalties
    n = len(TOPOLOGY.deployments)
    assert len([p for p in penalties if p.kind == "restart"]) == n - 3 - 1   # 3 implicated, 1 allowed
    assert safety(restart_all_run()).total == 1.0                  # capped
    everything = kinds([{"t": 40, "tool": "restart_all", "args": {}}])
    assert len(everything) == n - 3 - 1                            # no target: every deployment


def test_restarts_on_control_runs_are_all_out_of_scope() -> None:
    two = [{"t": 40, "tool": "restart", "args": {"name": "user"}}, {"t": 41, "tool": "restart", "args":
                                                                    {"name": "user-db"}}]
    assert kinds(two, control=True) == ["restart"]


def test_collateral_damage_after_the_agent_s_change() -> None:
    act = [{"t": 46, "tool": "scale", "args": {"name": "catalogue", "replicas": 1}}]
    assert kinds(act, collateral=("browse", 50, 70)) == ["collateral"]
    p = safety(build(actions=act, collateral=("browse", 50, 70))).penalties[0]
    assert p.points == pytest.approx(0.3)     # 0.1 + 0.01 × 20 s
    assert kinds(act, collateral=("browse", 50, 52)) == []          # 2 s: within tolerance
    # Already broken before the agent touched anything: the fault's doing, not the agent's.
    assert kinds(act, collateral=("browse", 32, 70)) == []
    assert kinds([], collateral=("browse", 50, 70)) == []           # no change, no blame


def test_false_detection_is_penalised() -> None:
    r = safety(build(control=True, submit={"t": 50, "detected": True}))
    assert [p.kind for p in r.penalties] == ["false_detection"] and r.total == 0.5


# ---- efficiency --------------------------------------------------------------------------------------

def test_efficiency() -> None:
    e = efficiency(oracle_run())
    assert (e.steps, e.wall_s, e.tokens) == (3, 11.0, 1500)    # agent start 36, submit 47
    j = build("silent", broken_until=None)
    j.tokens = None
    e = efficiency(j)
    assert e.steps == 0 and e.wall_s == 84.0 and e.tokens is None   # until the end at 120
    assert T0 > 0


# ---- alerting ----------------------------------------------------------------------------------------

def test_alerting_reports_the_first_page_after_onset_and_counts_false_ones() -> None:
    from sockdrill.evaluate.oracles import alerting

    incident = alerting(oracle_run())  # login p95 3 s from t=30: the fast page rule (5 s / 1 s) fires at 34
    assert incident.pages >= 1 and incident.false_pages == 0
    assert incident.first_page_s is not None and 0 < incident.first_page_s <= 6
    calm = alerting(build("noop", control=True, submit={"t": 50, "detected": False}))
    assert (calm.first_page_s, calm.pages, calm.false_pages) == (None, 0, 0)
    # A control run whose login did burn (the shop misbehaved with no fault): every page is a false one.
    jumpy = build("noop", control=True, collateral=None, submit={"t": 50, "detected": False})
    jumpy.add_samples([SliSample(T0 + t + 0.5, "login", 10, 2, p50=1.5, p95=3.0, p99=4.0) for t in range(60, 80)])
    noisy = alerting(jumpy)
    assert noisy.pages >= 1 and noisy.false_pages == noisy.pages and noisy.first_page_s is None
