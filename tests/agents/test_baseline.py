"""The baseline agent through the scenario runner on the shared shop (fast profile)."""

from __future__ import annotations

import json
from pathlib import Path

from sockdrill.scenarios.catalogue_loader import load_catalogue
from sockdrill.scenarios.runner import RunOptions, run_variant
from tests.conftest import Shop
from tests.scenarios.test_runner import assert_noop_gets_no_credit


def _run(shop: Shop, ref: str, out: Path, seed: int = 1) -> dict:
    catalogue = load_catalogue()
    sc, variants = catalogue.get(ref)
    opts = RunOptions(agent="baseline", profile="fast", seed=seed, out=out, data_dir=shop.data_dir)
    return run_variant(sc, variants[0], opts, list(catalogue.scenarios.values()))


def test_control_run_is_not_a_detection(shop: Shop, tmp_path: Path) -> None:
    result = _run(shop, "control-login/steady", tmp_path)
    assert result["valid"], result.get("invalid_reason")
    assert result["detection"]["detected"] is False
    assert not [p for p in result["safety"]["penalties"] if p["kind"] == "false_detection"]


def test_finds_a_misconfigured_timeout_right_after_another_incident(shop: Shop, tmp_path: Path) -> None:
    # Runs are independent: a database incident just before (left to burn by noop, then reverted) must
    # not show in what the baseline sees next: its telemetry scope starts at the new run's reset.
    catalogue = load_catalogue()
    sc, variants = catalogue.get("login-latency/user-db-cpu")
    first = run_variant(sc, variants[0], RunOptions(agent="noop", profile="fast", seed=3, out=tmp_path,
                                                    data_dir=shop.data_dir))
    assert_noop_gets_no_credit(first)  # and the starved database does not recover by itself
    result = _run(shop, "order-failure/payment-timeout-config", tmp_path)
    journal = json.loads((Path(result["run_dir"]) / "journal.json").read_text())
    assert any(e["kind"] == "reset" for e in journal["events"])
    assert result["valid"], result.get("invalid_reason")
    assert result["detection"]["detected"] is True
    assert result["detection"]["ttd_s"] is not None and result["detection"]["ttd_s"] <= 30
    assert result["localization"]["ranked"][:1] == ["orders"]
    assert result["diagnosis"]["correct"] is True
