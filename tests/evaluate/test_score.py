"""The composite: correct agents score high, sanity floors low, bounds hold, result.json has its shape."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sockdrill.evaluate.journal import IntegrityCheck
from sockdrill.evaluate.oracles import MitigationResult
from sockdrill.evaluate.score import WEIGHTS, mitigation_credit, score

from .journalkit import build, noop_run, oracle_run, restart_all_run

RESULT_KEYS = {
    "scenario", "variant", "agent", "seed", "profile", "mode", "privileged", "control", "valid", "detection",
    "localization", "diagnosis",
    "mitigation", "integrity", "safety", "efficiency", "alerting", "score",
}
SUB_KEYS = {
    "detection": {"detected", "ttd_s", "false_positive", "scored"},
    "localization": {"ranked", "truth", "ac1", "ac3", "score", "unexamined", "note"},
    "diagnosis": {"category", "truth", "correct"},
    "mitigation": {"slo_restored", "ttm_s", "violation_s", "failed_requests", "error_budget_burned"},
    "integrity": {"ok", "checks"},
    "safety": {"penalties"},
    "efficiency": {"steps", "wall_s", "tokens"},
    "alerting": {"first_page_s", "pages", "false_pages", "alertmanager"},
}


def test_weights_sum_to_one() -> None:
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)


def test_result_json_has_exactly_the_documented_shape(tmp_path: Path) -> None:
    result = score(oracle_run())
    data = json.loads(result.save(tmp_path / "result.json").read_text())
    assert set(data) == RESULT_KEYS
    for key, fields in SUB_KEYS.items():
        assert set(data[key]) == fields, key
    assert (data["scenario"], data["variant"], data["agent"], data["seed"], data["profile"]) == \
        ("login-slow", "no-index", "oracle", 7, "fast")


def test_a_correct_agent_scores_high() -> None:
    r = score(oracle_run())
    assert r.valid and r.detection.detected and r.localization.ac1 and r.diagnosis.correct
    assert r.mitigation.slo_restored and r.integrity.ok and not r.safety.penalties
    # investigation mode: detection is not scored, the rest scaled by 1 / 0.9:
    # (0.25 + 0.10 + 0.55 × (0.7 + 0.3 × 0.5)) / 0.9
    assert r.score == pytest.approx(0.908333)
    j = oracle_run()
    j.mode = "detection"   # told nothing: the detection is a finding, and all four weigh
    assert score(j).score == pytest.approx(0.10 + 0.25 + 0.10 + 0.55 * 0.85)


def test_sanity_floors_score_low() -> None:
    noop = score(noop_run())
    assert noop.score == 0.0                           # nothing found, nothing fixed: nothing for free
    restart_all = score(restart_all_run())
    assert restart_all.score == 0.0                    # restarts everything: penalties cap at 1


def test_control_runs() -> None:
    calm = score(build("noop", control=True, submit={"t": 50, "detected": False}))
    assert calm.valid and calm.score == 1.0
    jumpy = score(build("jumpy", control=True, submit={"t": 50, "detected": True, "ranked": ["user"]}))
    assert jumpy.score == 0.5
    assert [p.kind for p in jumpy.safety.penalties] == ["false_detection"]


def test_invalid_runs_are_not_scored() -> None:
    no_symptom = build(markers=("warmup_start", "slo_verified", "fault_onset", "agent_start", "end"))
    r = score(no_symptom)
    assert not r.valid and r.score is None
    no_baseline = build(markers=("warmup_start", "fault_onset", "symptom_verified", "agent_start", "end"))
    assert score(no_baseline).score is None


def test_partial_answers_get_partial_credit() -> None:
    look = [{"t": 41, "tool": "describe", "args": {"service": "user"}},
            {"t": 42, "tool": "logs", "args": {"service": "user-db"}}]
    neighbour = build(broken_until=48, actions=[*look, {"t": 46, "tool": "create_index", "args": {"store": "user-db"}}],
                      submit={"t": 47, "ranked": ["user"], "category": "resource_saturation"})
    r = score(neighbour)
    assert r.localization.score == 0.5 and not r.diagnosis.correct
    assert r.score == pytest.approx((0.25 * 0.5 + 0.55 * 0.85) / 0.9)
    lost = build(broken_until=48, actions=[*look, {"t": 46, "tool": "create_index", "args": {"store": "user-db"}}],
                 submit={"t": 47, "ranked": ["user-db"], "category": "query_inefficiency"},
                 integrity=[IntegrityCheck(name="carts_survive", ok=False), IntegrityCheck(name="orders", ok=True)])
    assert score(lost).score == pytest.approx(0.908333 - 0.25)


def test_mitigation_credit() -> None:
    assert mitigation_credit(MitigationResult(slo_restored=True, error_budget_burned=0.0, acted=True)) == 1.0
    assert mitigation_credit(MitigationResult(slo_restored=True, error_budget_burned=3.0, acted=True)) == 0.7
    assert mitigation_credit(MitigationResult(slo_restored=False, acted=True)) == 0.0


def test_composite_stays_in_bounds() -> None:
    rng = random.Random(1234)
    tools = ["restart", "get_metrics", "scale", "flush_cache", "create_index", "drop_table", "run_sql"]
    names = ["user", "user-db", "carts", "session-db", "front-end", "catalogue"]
    for _ in range(60):
        actions = [{"t": 36 + rng.random() * 60, "tool": rng.choice(tools),
                    "args": {"name": rng.choice(names), "replicas": rng.choice([0, 1, 2]),
                             "sql": rng.choice(["SELECT 1", "DROP TABLE customers"])}}
                   for _ in range(rng.randint(0, 12))]
        j = build(rng.choice(["a", "b"]), control=rng.random() < 0.2,
                  broken_until=rng.choice([None, 40, 48, 70, 95]), actions=actions,
                  submit={"t": 30 + rng.random() * 60, "detected": rng.random() < 0.7,
                          "ranked": rng.sample(names, rng.randint(0, 3)), "category": rng.choice(
                              ["query_inefficiency", "misconfiguration", None])},
                  collateral=rng.choice([None, ("browse", 40, 80)]))
        r = score(j)
        assert r.score is not None and 0.0 <= r.score <= 1.0
