"""Dashboards as code: well-formed Grafana JSON whose every query promtool accepts, and whose panels answer
with data on a recorded run (the platform board: tests/telemetry/test_prometheus.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sockdrill.cli import app
from sockdrill.scenarios.dashboards import all_dashboards, panel_queries, probe_journeys
from sockdrill.scenarios.guards import JOURNEY_TARGETS
from sockdrill.scenarios.scripted import ScheduledProbe, Script, ScriptContext
from tests.conftest import Shop

HOLY = "03fef6ac-1896-4ce8-bd69-b798f85c6e0b"  # a sock of every shop's catalogue


def test_one_dashboard_per_journey_and_one_for_the_platform(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["scenarios", "dashboards", "--out", str(tmp_path / "boards")])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "boards").glob("*.json"))
    probed = probe_journeys()
    assert "freshness" in probed  # scenario 4's: a probe's journey, not the load's
    assert files == sorted([f"journey-{j}.json" for j in [*JOURNEY_TARGETS, *probed]] + ["platform.json"])
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


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs prometheus (apt-get install -y prometheus)")
def test_every_journey_dashboard_answers_on_a_recorded_run(shop: Shop, tmp_path: Path) -> None:
    """Traffic of every journey through the shop's own recorder and Prometheus, with the SLO rules a run
    installs: every panel of every journey's dashboard has data (a failing-steps panel only when a step
    failed: a rate of failures has no series before the first)."""
    from sockdrill.load.runner import run_load
    from sockdrill.scenarios.alert_rules import install_run_rules, shop_slos
    from sockdrill.slo.alerts import alerting_slo
    from sockdrill.slo.slo import get_profile
    from sockdrill.telemetry.query import RemoteQuery

    record = shop.client.record
    # The boards read the standard profile's recording rules (the burn-rate panel: slo:bad_fraction:5m).
    assert install_run_rules(record, [alerting_slo(s) for s in shop_slos()], get_profile("standard")) is None
    # A probe's journeys (freshness) come from a scenario's probe, pushed to the recorder as a run does: one
    # shopper reading a sock through the front-end every half second while the load runs.
    probes = [ScheduledProbe(id=j, kind="catalogue-freshness", journey=j, interval_s=0.5,
                             args={"product": HOLY, "field": "price"}) for j in probe_journeys()]
    script = Script(ScriptContext(shop.url, record, "fast", 5.0), [], probes,
                    recorder=(record["recorder_url"], record["telemetry_token"]))
    script.start(time.time())
    # As many shoppers as journeys, short thinking and a 2 s absence: every journey ends several times.
    try:
        summary = run_load(None, dict.fromkeys(JOURNEY_TARGETS, 1), users=len(JOURNEY_TARGETS), spawn_rate=20,
                           duration=20, seed=3, data_dir=shop.data_dir, stats_path=tmp_path / "stats.jsonl",
                           think=(0.2, 0.5), return_after=2.0)
    finally:
        script.stop()
    assert script.summary(5.0)["probes"]["freshness"]["readings"] >= 20
    short = {j: summary.journeys.get(j, {}).get("count", 0) for j in JOURNEY_TARGETS}
    assert all(short.values()), f"journeys that never ended in 20 s: {short}"
    recorder = RemoteQuery(record["recorder_url"], token=record["telemetry_token"])
    boards = {name: board for name, board in all_dashboards().items() if name.startswith("journey-")}
    assert len(boards) == len(JOURNEY_TARGETS) + len(probe_journeys())

    def empty() -> list[str]:
        return [f"{name}: {p['title']}" for name, board in boards.items() for p in board["panels"]
                if not p["title"].endswith(": failing steps")
                and not any(recorder.promql(t["expr"])["result"] for t in p["targets"])]

    # Rules are evaluated and rates need two samples: ask until every panel has answered, or 30 s.
    missing = wait_for_empty(empty, 30.0)
    assert missing == [], missing


def wait_for_empty(check: Any, timeout: float) -> list[str]:
    import time

    deadline = time.monotonic() + timeout
    left = check()
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = check()
    return left
