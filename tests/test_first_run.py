"""A newcomer's first run: the README's commands exactly as shown (from the checkout, default flags,
relative paths), and the ways a run must fail loudly rather than quietly.

These are the commands that were broken while every test passed absolute temporary paths.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sockdrill.errors import ScenarioError
from sockdrill.load.runner import LoadError
from tests.conftest import Shop

CHECKOUT = Path(__file__).resolve().parents[1]
SOCKDRILL = str(Path(sys.executable).parent / "sockdrill")

# A fault whose symptom cannot appear (nobody waits 1000 s for a page): the run must be invalid.
NEVER_SYMPTOM = """
id: never-symptom
version: 1
title: A fault too small to notice
journey: browse
impact: Nothing anyone would notice.
slo: [{journey: browse, sli: latency_p95, below: 2.0}]
symptom: {any: [{journey: browse, sli: latency_p95, above: 1000.0}]}
load: {journeys: {browse: 1}, users: 2, spawn_rate: 10}
variants:
  - id: tiny-delay
    title: one millisecond on the catalogue edge
    cause: a delay far below anything a shopper sees
    faults: [{kind: network.delay, target: front-end->catalogue, params: {latency_ms: 1}, duration: 10m}]
    ground_truth: {root_cause: [catalogue], category: network_latency, propagation: [catalogue, front-end]}
    remediation: [{tool: restart, args: {service: catalogue}, wait_s: 1}]
"""


def sockdrill(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The CLI from the checkout, as a user types it (the venv's entry point, relative paths)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCKDRILL_")}
    return subprocess.run([SOCKDRILL, *args], cwd=CHECKOUT, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def new_run_dirs(before: set[Path]) -> list[Path]:
    return sorted(set((CHECKOUT / "runs").glob("*")) - before) if (CHECKOUT / "runs").exists() else []


@pytest.fixture
def runs_dir() -> Iterator[set[Path]]:
    """The run directories that exist before the test; the test's own are removed afterwards."""
    before = set((CHECKOUT / "runs").glob("*")) if (CHECKOUT / "runs").exists() else set()
    yield before
    for path in new_run_dirs(before):
        shutil.rmtree(path, ignore_errors=True)


def test_readme_run_command_is_valid_with_default_out(runs_dir: set[Path]) -> None:
    """`sockdrill run login-latency/frontend-user-delay --agent baseline --profile fast`, from the checkout:
    a fresh shop, the default relative `runs/`; the run is valid, carries its own telemetry, and
    `export` and `report` work on it after the shop is gone."""
    proc = sockdrill("run", "login-latency/frontend-user-delay", "--agent", "baseline", "--profile", "fast")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    dirs = new_run_dirs(runs_dir)
    assert len(dirs) == 1, dirs
    run_dir = dirs[0]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["valid"], result.get("invalid_reason")
    records = [json.loads(line) for line in (run_dir / "load.jsonl").read_text().splitlines() if line.strip()]
    assert sum(sum(w.get("count", 0) for w in r["journeys"].values()) for r in records) > 50
    # Every phase was shown as it happened, with its elapsed time (piped: plain lines).
    for phase in ("bringing a fresh shop up", "baseline", "injecting the fault", "on call", "scoring"):
        assert phase in proc.stdout, phase
    assert (run_dir / "telemetry" / "telemetry.db").exists()
    rel = run_dir.relative_to(CHECKOUT)
    exported = sockdrill("export", str(rel))
    assert exported.returncode == 0, exported.stderr
    csv = run_dir / "export" / "rcaeval.csv"
    header, *rows = csv.read_text().splitlines()
    assert "time" in header and len(rows) > 5
    report = sockdrill("report", str(rel))
    assert report.returncode == 0, report.stderr
    md = (run_dir / "report.md").read_text()
    assert "relative to the fault's onset" in md


def test_demo_exits_non_zero_on_an_invalid_run(runs_dir: set[Path], tmp_path: Path) -> None:
    """`make demo`'s command fails loudly, with the reason, when its run is invalid."""
    fault = tmp_path / "never.yaml"
    fault.write_text(NEVER_SYMPTOM)
    proc = sockdrill("demo", "--fault", str(fault), "--scenario", "never-symptom/tiny-delay", "--agent", "noop")
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "invalid" in proc.stderr and "symptom did not appear" in proc.stderr
    dirs = new_run_dirs(runs_dir)
    assert len(dirs) == 1
    result = json.loads((dirs[0] / "result.json").read_text())
    assert result["valid"] is False
    journal = json.loads((dirs[0] / "journal.json").read_text())
    assert any("injected again" in n for n in journal["meta"]["notes"])


def test_a_run_that_never_got_to_its_agent_has_a_meaningful_timeline(tmp_path: Path) -> None:
    """No epoch seconds in the report when there was no onset and no agent."""
    from sockdrill.evaluate.journal import Journal
    from sockdrill.evaluate.report import write_report
    from sockdrill.evaluate.score import score

    t0 = time.time()
    j = Journal(scenario="s", variant="v", agent="noop", seed=1, profile="fast", control=False, slos=[],
                recovery_window_s=6)
    j.mark("run_start", t0)
    j.mark("end", t0 + 12.5)
    j.meta = {"invalid_reason": "run error: the shop was not ready"}
    write_report(j, score(j), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "relative to the run's start" in md
    assert "12.5" in md and str(int(t0)) not in md


def test_a_dead_load_generator_is_a_run_error_with_its_log(shop: Shop, tmp_path: Path) -> None:
    """Locust dying mid-run is reported as what it is, never as 'the SLO did not hold'."""
    from sockdrill.scenarios import load_catalogue
    from sockdrill.scenarios.runner import Run, RunOptions

    catalogue = load_catalogue()
    sc, variants = catalogue.get("control-login/steady")
    run = Run(sc, variants[0], RunOptions(agent="noop", out=tmp_path, data_dir=shop.data_dir), {})
    run.bring_up()
    run.load_run = run.start_load(sc.load_for(variants[0]), "load.jsonl")
    try:
        run.wait_until(1.0)  # alive: nothing raised
        os.kill(run.load_run.proc.pid, signal.SIGKILL)
        run.load_run.proc.wait(timeout=10)
        with pytest.raises(ScenarioError, match=r"Locust\) exited with code -9"):
            run.wait_until(2.0)
    finally:
        run.load_run.stop()
        with pytest.raises(LoadError, match="without a summary"):
            run.load_run.wait()  # a killed Locust wrote none; the wait still reaps it and removes its folder
    assert not run.load_run.workdir.exists()
