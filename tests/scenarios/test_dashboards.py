"""Dashboards as code: well-formed Grafana JSON whose every query promtool accepts (no shop needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sockdrill.cli import app
from sockdrill.scenarios.dashboards import all_dashboards, panel_queries
from sockdrill.scenarios.guards import JOURNEY_TARGETS


def test_one_dashboard_per_journey_and_one_for_the_platform(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["scenarios", "dashboards", "--out", str(tmp_path / "boards")])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "boards").glob("*.json"))
    assert files == sorted([f"journey-{j}.json" for j in JOURNEY_TARGETS] + ["platform.json"])
    boards = [json.loads((tmp_path / "boards" / f).read_text()) for f in files]
    assert len({b["uid"] for b in boards}) == len(boards)
    for board in boards:
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and all(p["targets"] for p in board["panels"])
        assert all(t["datasource"]["uid"] == "${datasource}" for p in board["panels"] for t in p["targets"])
    login = json.loads((tmp_path / "boards" / "journey-login.json").read_text())
    assert login["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 1.0  # the SLO


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (apt-get install -y prometheus)")
def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    queries = [q for board in all_dashboards().values() for q in panel_queries(board)]
    rules = {"groups": [{"name": "panels", "rules": [{"record": f"panel:query:{i}", "expr": q}
                                                      for i, q in enumerate(queries)]}]}
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(rules, sort_keys=False, width=10_000))
    checked = subprocess.run(["promtool", "check", "rules", str(tmp_path / "panels.yml")], capture_output=True,
                             text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
