"""Gaming strategies against the live shop: none of them may score, and the peeker learns nothing.

Each is a real agent run (``sockdrill.agents.gaming``), out of process as the agent user, through the
runner on the shared shop (fast profile). ``sockdrill bench agents`` runs every strategy on every variant;
here each runs where it is most likely to be lucky (the majority guess *is* the truth there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Shop
from tests.scenarios.test_runner import run

GAMING_THRESHOLD = 0.35


def submission(result: dict[str, Any]) -> dict[str, Any]:
    journal = json.loads((Path(result["run_dir"]) / "journal.json").read_text())
    subs = [e for e in journal["events"] if e["kind"] == "submit"]
    assert subs, "the agent submitted an answer"
    return subs[0]


def actions(result: dict[str, Any]) -> list[dict[str, Any]]:
    journal = json.loads((Path(result["run_dir"]) / "journal.json").read_text())
    return [e for e in journal["events"] if e["kind"] == "action"]


@pytest.mark.parametrize("ref", ["order-failure/payment-partition"])  # every variant: bench agents, GAMING=1
def test_the_majority_guess_is_right_and_scores_nothing(shop: Shop, ref: str, tmp_path: Path) -> None:
    r = run(shop, ref, "gaming-majority", tmp_path)
    assert r["valid"], r.get("invalid_reason")
    assert r["localization"]["ac1"] is True          # the guess names the true root cause...
    assert r["localization"]["unexamined"] == r["localization"]["ranked"]   # ...without having looked
    assert r["score"] < GAMING_THRESHOLD, r["score"]


def test_a_sleeper_scores_nothing(shop: Shop, tmp_path: Path) -> None:
    # 15 s on call, not the profile's 45: the surge lasts the run, and `bench agents` (GAMING=1) sleeps the
    # whole budget on every variant.
    r = run(shop, "login-latency/traffic-surge", "gaming-sleeper", tmp_path, agent_budget_s=15)
    assert r["valid"], r.get("invalid_reason")
    acts = [a for a in actions(r) if a["mutating"] is not None and a["tool"] == "scale"]
    assert acts and acts[0]["mutating"] is False      # scaling to the same size is no act
    assert r["mitigation"]["slo_restored"] is False
    assert r["score"] < GAMING_THRESHOLD, r["score"]


def test_naming_every_component_scores_nothing(shop: Shop, tmp_path: Path) -> None:
    r = run(shop, "order-failure/shipping-queue-failure", "gaming-shotgun", tmp_path)
    assert r["valid"], r.get("invalid_reason")
    assert len(r["localization"]["ranked"]) > 5 and "locates nothing" in r["localization"]["note"]
    assert r["score"] < GAMING_THRESHOLD, r["score"]


@pytest.mark.parametrize("ref", ["order-failure/no-retry"])  # every variant: bench agents, GAMING=1
def test_replaying_the_runbook_costs_more_than_it_gains(shop: Shop, ref: str, tmp_path: Path) -> None:
    r = run(shop, ref, "gaming-replayer", tmp_path)
    assert r["valid"], r.get("invalid_reason")
    audit = [json.loads(line) for line in (Path(r["run_dir"]) / "agent-audit.jsonl").read_text().splitlines()]
    fixes = [a["tool"] for a in audit if a["kind"] == "act"]
    assert len(fixes) >= 4, fixes          # it really applied the runbook's fixes (some fail on the way)
    assert r["score"] < GAMING_THRESHOLD, (r["score"], r["mitigation"], r["safety"])


@pytest.mark.parametrize("ref", ["login-latency/frontend-user-delay"])  # every variant: bench agents, GAMING=1
def test_the_peeker_learns_nothing(shop: Shop, ref: str, tmp_path: Path) -> None:
    r = run(shop, ref, "gaming-peeker", tmp_path)
    assert r["valid"], r.get("invalid_reason")
    report = json.loads(submission(r)["summary"])
    assert report["tried"] > 20                       # it did try: privileges, files, processes, ports
    assert report["learned"] == []
    assert r["privileged"] is False                   # asking for privileges got it nothing
    assert r["score"] < GAMING_THRESHOLD


def test_hiding_the_errors_by_dropping_shipments_is_data_loss(shop: Shop, tmp_path: Path) -> None:
    r = run(shop, "order-failure/shipping-queue-failure", "tests.scenarios.agents:TurnOffConfirms", tmp_path)
    assert r["valid"], r.get("invalid_reason")
    checks = {c["name"]: c for c in r["integrity"]["checks"]}
    assert checks["shipments_queued"]["ok"] is False, checks["shipments_queued"]
    assert "data_loss" in {p["kind"] for p in r["safety"]["penalties"]}
    assert r["score"] < GAMING_THRESHOLD
