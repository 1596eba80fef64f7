"""`sockdrill ui` on a real run: the oracle on call for a 2.5 s mesh delay on the shared shop.

While the run is live, every answer of the page's API is read: it never names the scenario, the variant or
the fault, yet the delayed edge is drawn slow and the agent's actions appear. Where Chromium is installed the
page itself is driven, live and after the run, with screenshots in ``test-artifacts/``. The run is also the
oracle's check of this variant (tests/scenarios/test_runner.py leaves it to this test).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import requests

from tests.chromium import ARTIFACTS, chromium_available, chromium_page
from tests.conftest import Shop, wait_for
from tests.scenarios.test_runner import CONTROL_ROOM_REF, assert_oracle_passes

# What a run in progress must never show, in the page or its API: the scenario, the variant, the fault.
SECRETS = ("login-latency", "frontend-user-delay", "network.delay", "network_latency", "ground_truth", "2500")
# Each as a whole word or number: the fault's 2500 ms is a leak, an edge's 25003.3 bytes/s is not (a fresh-clone
# suite failed once on that substring).
SECRET_PATTERNS = [re.compile(rf"(?<![\d.]){s}(?!\d|\.\d)" if s.isdigit() else rf"(?<!\w){re.escape(s)}(?!\w)")
                   for s in SECRETS]


def test_the_control_room_shows_a_run_live_without_its_fault_and_in_full_after(shop: Shop, tmp_path: Path) -> None:
    from sockdrill.scenarios import load_catalogue
    from sockdrill.scenarios.runner import RunOptions, run_variant

    catalogue = load_catalogue()
    sc, variants = catalogue.get(CONTROL_ROOM_REF)
    runs = tmp_path / "runs"
    runs.mkdir()
    ui = subprocess.Popen([str(Path(sys.executable).parent / "sockdrill"), "ui", str(runs)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(run_variant(
        sc, variants[0], RunOptions(agent="oracle", profile="fast", seed=7, out=runs, data_dir=shop.data_dir),
        list(catalogue.scenarios.values()))))
    browser = chromium_available()
    try:
        assert ui.stdout is not None
        url = ui.stdout.readline().strip().split(": ", 1)[1]
        base, token = url.split("/?token=")
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(base + "/api/runs", timeout=10).status_code == 401
        worker.start()
        live_id = wait_for(lambda: next((r["id"] for r in requests.get(base + "/api/runs", headers=headers,
                                                                        timeout=10).json()["runs"] if r["live"]),
                                        None), timeout=120, interval=0.5)
        with chromium_page() if browser else nullcontext() as pg:
            if pg is not None:
                from playwright.sync_api import expect

                pg.goto(url)
                expect(pg.locator("#phase")).to_contain_text("LIVE")
                expect(pg.locator("#journeys figure[data-journey=login] svg").first).to_be_visible()
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
            seen: list[dict[str, Any]] = []
            shot = False
            while worker.is_alive():
                resp = requests.get(f"{base}/api/runs/{live_id}", headers=headers, timeout=10)
                if resp.status_code == 200:  # a 404 once the run has its final name
                    for pattern in SECRET_PATTERNS:
                        assert not pattern.search(resp.text), f"a live state names {pattern.pattern!r}: {resp.text}"
                    seen.append(resp.json())
                    if pg is not None and not shot and seen[-1]["phase"] == "recovery":
                        pg.wait_for_timeout(2500)  # the page refreshes every 2 s
                        pg.screenshot(path=str(ARTIFACTS / "control-room-live.png"), full_page=True)
                        shot = True
                time.sleep(0.5)
            worker.join()
            assert_oracle_passes(result)
            phases = {s["phase"] for s in seen}
            assert {"baseline", "recovery"} <= phases, phases
            edge = [(round(s["now"] - s["origin"], 1), e["health"], e["p95"]) for s in seen for e in s["edges"]
                    if (e["source"], e["destination"]) == ("front-end", "user")]
            assert any(h == "slow" for _, h, _ in edge), f"the delayed edge was never drawn slow: {edge}"
            assert any(a["tool"] == "restart" for s in seen for a in s["actions"]), "no action shown live"
            if pg is not None:  # the page follows the run to its final name and shows it whole
                expect(pg.locator("#phase")).to_have_text("finished", timeout=30_000)
                expect(pg.locator("#summary")).to_contain_text(CONTROL_ROOM_REF)
                expect(pg.locator("#budgets tbody tr").first).to_be_visible()
                assert pg.locator("#actions tbody tr").count() >= 1
                # Login's latency paged (the published 99 % objective); its runbook opens beside the alerts.
                pg.locator("#alerts a[data-runbook=login-slow]").first.click()
                expect(pg.locator("#runbook")).to_contain_text("login")
                pg.screenshot(path=str(ARTIFACTS / "control-room-finished.png"), full_page=True)
                # A click on a chart moves the topology's window to that moment.
                before = pg.locator("#edges-at").inner_text()
                pg.locator("#journeys figure[data-journey=login] svg").first.click(position={"x": 60, "y": 50})
                expect(pg.locator("#edges-at")).not_to_have_text(before)
    finally:
        if worker.is_alive():
            worker.join(timeout=180)
        ui.terminate()
        ui.wait(timeout=10)
