"""The baseline agent through the scenario runner on the shared shop (fast profile)."""

from __future__ import annotations

from pathlib import Path

from sockdrill.scenarios.catalogue_loader import load_catalogue
from sockdrill.scenarios.runner import RunOptions, run_variant
from tests.conftest import Shop


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


def test_finds_a_misconfigured_timeout(shop: Shop, tmp_path: Path) -> None:
    result = _run(shop, "order-failure/payment-timeout-config", tmp_path)
    assert result["valid"], result.get("invalid_reason")
    assert result["detection"]["detected"] is True
    assert result["detection"]["ttd_s"] is not None and result["detection"]["ttd_s"] <= 30
    assert result["localization"]["ranked"][:1] == ["orders"]
    assert result["diagnosis"]["correct"] is True
