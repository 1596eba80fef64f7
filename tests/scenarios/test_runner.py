"""The runner with the sanity agents on every catalogue variant (fast profile, the shared shop).

- oracle (reads the ground truth, applies the variant's remediation): every oracle passes;
- noop: no detection, no mitigation credit;
- restart-all: never a full score;
- control: nobody gets detection credit for a fault that is not there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sockdrill.scenarios import load_catalogue
from sockdrill.scenarios.runner import RunOptions, run_variant
from tests.conftest import Shop

CATALOGUE = load_catalogue()
FAULT_REFS = [f"{s.id}/{v.id}" for s in CATALOGUE.scenarios.values() if not s.control for v in s.variants]


def run(shop: Shop, ref: str, agent: str, tmp_path: Path) -> dict[str, Any]:
    sc, variants = CATALOGUE.get(ref)
    opts = RunOptions(agent=agent, profile="fast", seed=7, out=tmp_path, data_dir=shop.data_dir)
    result = run_variant(sc, variants[0], opts, list(CATALOGUE.scenarios.values()))
    for name in ("result.json", "journal.json", "report.md", "report.html", "load.jsonl"):
        assert (Path(result["run_dir"]) / name).exists(), name
    return result


@pytest.mark.parametrize("ref", FAULT_REFS)
def test_oracle_passes_every_check(shop: Shop, ref: str, tmp_path: Path) -> None:
    r = run(shop, ref, "oracle", tmp_path)
    assert r["valid"], r.get("invalid_reason")
    assert r["detection"]["detected"] is True
    assert r["localization"]["ac1"] is True
    assert r["diagnosis"]["correct"] is True
    assert r["mitigation"]["slo_restored"] is True, r["mitigation"]
    assert r["integrity"]["ok"] in (True, None), r["integrity"]
    assert not r["safety"]["penalties"], r["safety"]
    assert r["score"] >= 0.8


@pytest.mark.parametrize("ref", FAULT_REFS)
def test_noop_gets_no_credit(shop: Shop, ref: str, tmp_path: Path) -> None:
    r = run(shop, ref, "noop", tmp_path)
    assert r["valid"], r.get("invalid_reason")
    assert r["detection"]["detected"] is False
    assert r["mitigation"]["slo_restored"] is False or r["score"] < 0.5
    assert r["score"] < 0.5


@pytest.mark.parametrize("ref", ["login-latency/frontend-user-delay", "order-failure/payment-timeout-config"])
def test_restart_all_is_not_a_full_score(shop: Shop, ref: str, tmp_path: Path) -> None:
    r = run(shop, ref, "restart-all", tmp_path)
    assert r["valid"], r.get("invalid_reason")
    assert r["score"] < 0.9


@pytest.mark.parametrize("agent", ["noop", "oracle", "restart-all"])
def test_control_run_has_no_detection_credit(shop: Shop, agent: str, tmp_path: Path) -> None:
    r = run(shop, "control-login/steady", agent, tmp_path)
    assert r["valid"], r.get("invalid_reason")
    assert r["detection"]["detected"] is False
