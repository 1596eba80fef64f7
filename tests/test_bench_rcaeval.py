"""The RCAEval reference bench's own logic (no RCAEval needed): rankings by service, AC@k by part."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sockdrill.bench.rcaeval import service_ranking, summarise
from sockdrill.cli import app


def test_columns_rank_services_at_their_best_place() -> None:
    assert service_ranking(["carts_cpu", "user_latency-90", "carts_mem", "payment-gateway_error", "time"]) == [
        "carts", "user", "payment-gateway"]


def test_summary_counts_a_failed_method_as_a_miss_and_keeps_held_out_apart() -> None:
    rows = [
        {"held_out": False, "baro": {"ac1": True, "ac3": True}, "nsigma": {"error": "ValueError: x"}},
        {"held_out": False, "baro": {"ac1": False, "ac3": True}, "nsigma": {"ac1": True, "ac3": True}},
        {"held_out": True, "baro": {"ac1": False, "ac3": False}, "nsigma": {"ac1": False, "ac3": True}},
    ]
    s = summarise(rows)
    assert s["catalogue"] == {"runs": 2, "baro": {"ac1": 0.5, "ac3": 1.0, "failed": 0},
                              "nsigma": {"ac1": 0.5, "ac3": 0.5, "failed": 1}}
    assert s["held_out"]["runs"] == 1 and s["held_out"]["nsigma"] == {"ac1": 0.0, "ac3": 1.0, "failed": 0}


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "rcaeval"])
    assert res.exit_code == 2 and "needs run directories and --python" in " ".join(res.output.split())
    res = runner.invoke(app, ["bench", "rcaeval", str(tmp_path), "--python", "python3"])
    assert res.exit_code == 2 and "no journal.json" in " ".join(res.output.split())
    (tmp_path / "journal.json").write_text("{}")
    res = runner.invoke(app, ["bench", "rcaeval", str(tmp_path), "--python", str(tmp_path / "no-python")])
    assert res.exit_code == 1 and "cannot run it" in " ".join(res.output.split())  # (the console wraps it)
