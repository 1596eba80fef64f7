"""A scenario's scripted world (scripted.py): operator actions on a schedule and probes whose readings are SLI
samples. The file format is checked at load time; the schedule keeps its offsets, periods and phases; a probe's
records drive SLOs like the load's; and, against the live shop, staff really change a product through the admin
panel while the probe reads it as a shopper and says how stale it is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from sockdrill.errors import ScenarioError
from sockdrill.scenarios import scripted
from sockdrill.scenarios.catalogue_loader import load_scenario_text
from sockdrill.scenarios.runner import samples_from_records
from sockdrill.scenarios.scripted import AdminUpdate, CatalogueFreshness, Expectations, Reading, Script, ScriptContext
from sockdrill.slo.slo import SLO, evaluate
from tests.conftest import Shop, wait_for

HEAD = """
id: stale-demo
title: Stale product pages
journey: browse
impact: Shoppers see old prices.
slo: [{journey: freshness, sli: error_rate, below: 0.05}]
symptom: {any: [{journey: freshness, sli: error_rate, above: 0.2}]}
load: {journeys: {browse: 1}, users: 2}
"""
VARIANT = """
variants:
  - id: slow-cache
    title: Slow cache
    cause: a cache that forgets to expire
    faults: [{kind: pod.kill, target: catalogue}]
    ground_truth: {root_cause: [catalogue], category: process_crash}
    remediation: [{tool: restart, args: {service: catalogue}}]
"""
ACTIONS = """
actions:
  - {id: product-change, kind: admin-update, start: load, offset_s: 1, every_s: {fast: 3, standard: 20},
     args: {product: probe-sock, field: description, template: "Probe sock, revision {n}"}}
probes:
  - {id: freshness, kind: catalogue-freshness, journey: freshness, interval_s: 1,
     args: {product: probe-sock, field: description}}
"""


def test_a_scenario_declares_actions_and_probes_and_slos_on_the_probe_s_journey() -> None:
    sc = load_scenario_text(HEAD + ACTIONS + VARIANT, "x.yaml")
    assert [a.id for a in sc.actions] == ["product-change"] and sc.actions[0].every("fast") == 3.0
    assert sc.probes[0].journey == "freshness" and sc.slo[0].journey == "freshness"


@pytest.mark.parametrize("change, needle", [
    (("kind: admin-update", "kind: admin-updte"), "x.yaml:11: actions[0].kind: unknown action kind 'admin-updte' "
                                                  "(did you mean 'admin-update'?)"),
    (("template: \"Probe sock, revision {n}\"", "template: same"), "actions[0].args: a description update needs a "
                                                                    "'template' holding {n}"),
    (("field: description}}", "field: colour}}"), "probes[0].args.field"),
    (("journey: freshness, interval_s", "journey: browse, interval_s"), "a probe's journey is its own"),
    (("every_s: {fast: 3, standard: 20}", "every_s: 0.01"), "every_s must be between 0.5 and 3600"),
    (("interval_s: 1", "interval_s: 0"), "probes.0.interval_s"),
])
def test_a_bad_script_is_a_load_error_with_line_and_field(change: tuple[str, str], needle: str) -> None:
    text = HEAD + ACTIONS.replace(*change) + VARIANT
    with pytest.raises(ScenarioError) as err:
        load_scenario_text(text, "x.yaml")
    assert needle in str(err.value).replace("probes[0].interval_s", "probes.0.interval_s"), str(err.value)


def test_a_variant_cannot_bring_a_script_of_its_own() -> None:
    """The script is the scenario's, the same in every variant and the control: one variant's own probe
    or action would tell it apart."""
    text = HEAD + VARIANT.replace("    remediation:", "    probes: [{id: p, kind: catalogue-freshness, journey: x}]\n"
                                                       "    remediation:")
    with pytest.raises(ScenarioError, match=r"variants\[0\]\.probes: Extra inputs are not permitted"):
        load_scenario_text(text, "x.yaml")


def test_expectations_judge_a_reading_since_the_change_that_replaced_it() -> None:
    exp = Expectations()
    assert exp.judge("p.f", "anything", 100.0) == 0.0  # nothing changed yet: every reading is fresh
    first = exp.begin("p.f", "v1")
    assert exp.judge("p.f", "v0", 100.0) == 0.0  # in flight and not acknowledged: nothing to be late for
    exp.commit(first, 100.0)
    assert exp.judge("p.f", "v1", 103.0) == 0.0
    assert exp.judge("p.f", "v0", 103.0) == 3.0
    second = exp.begin("p.f", "v2")
    assert exp.judge("p.f", "v2", 104.0) == 0.0  # already showing the change being made
    assert exp.judge("p.f", "v1", 104.0) == 0.0
    exp.commit(second, 104.5)
    assert exp.judge("p.f", "v1", 106.0) == 1.5
    lost = exp.begin("p.f", "v3")
    exp.abandon("p.f", lost)  # refused by the shop: nobody should see it
    assert exp.judge("p.f", "v3", 106.0) == 1.5
    exp.commit(exp.begin("p.f", "v4"), 107.0)
    # A copy frozen at v1 is stale since v2 replaced it, not since the newest change.
    assert exp.judge("p.f", "v1", 110.0) == 5.5 and exp.judge("p.f", "v2", 110.0) == 3.0


class _Counter(scripted.OperatorActionKind):
    def run(self, n: int) -> dict[str, Any]:
        return {"ok": n != 2, "status": 200}


class _Flaky(scripted.ProbeKind):
    ticks = 0

    def read(self, now: float) -> list[Reading]:
        self.ticks += 1
        return [Reading(True, 0.0), Reading(self.ticks % 2 == 0, 0.5, "every other one fails")]


@pytest.fixture
def fake_kinds() -> Iterator[None]:
    scripted.ACTIONS["test-counter"], scripted.PROBES["test-flaky"] = _Counter, _Flaky
    try:
        yield
    finally:
        scripted.ACTIONS.pop("test-counter"), scripted.PROBES.pop("test-flaky")


def test_the_schedule_keeps_phases_offsets_and_periods(fake_kinds: None, tmp_path: Any) -> None:
    acts = [scripted.ScheduledAction(id="every", kind="test-counter", start="load", offset_s=0.3, every_s=0.2,
                                     until="onset"),
            scripted.ScheduledAction(id="once", kind="test-counter", start="onset", offset_s=0.2)]
    probes = [scripted.ScheduledProbe(id="p", kind="test-flaky", journey="freshness", interval_s=0.2)]
    ctx = ScriptContext(front_end_url="http://127.0.0.1:9", record={}, profile="fast", propagation_budget_s=5)
    script = Script(ctx, acts, probes, probes_path=tmp_path / "probes.jsonl")
    t0 = time.time()
    script.start(t0)
    try:
        wait_for(lambda: sum(p["id"] == "every" for p in script.performed_actions()) >= 3, timeout=10)
        onset = time.time()
        script.mark("onset", onset)
        wait_for(lambda: any(p["id"] == "once" for p in script.performed_actions()), timeout=10)
        time.sleep(1.0)
    finally:
        script.stop()
    done = script.performed_actions()
    every = [p for p in done if p["id"] == "every"]
    once = [p for p in done if p["id"] == "once"]
    # Never early: the n-th comes no sooner than its slot (a busy machine may make one late, never one early).
    assert [p["n"] for p in every] == list(range(1, len(every) + 1))
    assert all(p["time"] >= t0 + 0.3 + 0.2 * (p["n"] - 1) - 0.01 for p in every), [p["time"] - t0 for p in every]
    # until: onset. One already under way at the mark may start just after it; none starts later (in the
    # second that follows, a loop that ignored the mark would have started four more).
    assert not [p for p in every if p["time"] > onset + 0.15]
    assert len(once) == 1 and once[0]["time"] >= onset + 0.2  # no every_s: once, counted from its phase
    summary = script.summary(5.0)
    assert summary["operator_actions"] == {"performed": len(done), "failed": 1}  # n == 2 failed
    # The probe's ticks are records like the load's: SLI samples of its own journey, failures counted.
    records = script.snapshot()
    assert records and (tmp_path / "probes.jsonl").read_text().count("\n") == len(records)
    samples = samples_from_records(records)
    assert {s.journey for s in samples} == {"freshness"} and sum(s.requests for s in samples) == 2 * len(records)
    failures = sum(s.failures for s in samples)
    assert 0 < failures < sum(s.requests for s in samples)
    ev = evaluate(SLO("freshness", "error_rate", 0.01, objective=0.8), samples, t0, time.time())
    assert ev.compliance is not None and ev.compliance < 1.0
    assert summary["probes"]["p"]["failures"] == failures and summary["probes"]["p"]["last_failures"]


PRODUCT = "0000-scripted-test"


def _catalogue_db(shop: Shop, sql: str, *args: object) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(shop.addresses["catalogue-db"], timeout=10)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_staff_change_a_product_and_the_probe_reads_it_as_a_shopper(shop: Shop) -> None:
    """The admin-update action logs in to the admin panel with the shop's staff password, creates its product
    and changes it; the freshness probe reads it through the front-end as an anonymous shopper: fresh after
    each change; stale, with its age, when a change the operator made never reaches the shopper."""
    record = shop.client.record
    ctx = ScriptContext(front_end_url=record["front_end_url"], record=record, profile="fast", propagation_budget_s=2)
    act = AdminUpdate(ctx, scripted.AdminUpdateParams(
        product=PRODUCT, field="description", template="Scripted sock, revision {n}",
        create={"name": "Scripted sock", "price": 9.99, "count": 0, "tags": ["blue"]}))
    probe = CatalogueFreshness(ctx, scripted.FreshnessParams(product=PRODUCT, field="description"))
    try:
        act.prepare()
        act.prepare()  # a second run on a reused shop finds the product there
        for n in (1, 2):
            out = act.run(n)
            assert out["ok"] and out["status"] == 200 and out["set"]["description"] == act.value(n), out
            [reading] = probe.read(time.time())
            assert reading.ok and reading.value_s == 0.0, reading
        assert _catalogue_db(shop, "SELECT description FROM sock WHERE sock_id = $1", PRODUCT) == act.value(2)
        # A change acknowledged to the operator that the shopper does not see (as a stale cache would serve):
        lost = ctx.expectations.begin(f"{PRODUCT}.description", "a value no page shows")
        ctx.expectations.commit(lost, time.time())
        [young] = probe.read(time.time())
        assert young.ok and 0 < young.value_s < 2, young  # stale, but within the budget
        time.sleep(2.2)
        [old] = probe.read(time.time())
        assert not old.ok and old.value_s > 2 and "stale" in old.detail, old
    finally:
        _catalogue_db(shop, "DELETE FROM sock_tag WHERE sock_id = $1", PRODUCT)
        _catalogue_db(shop, "DELETE FROM sock WHERE sock_id = $1", PRODUCT)


CONTROL = f"""
id: control-stale-demo
title: Product pages (control)
journey: browse
impact: Shoppers see old prices.
control: true
slo: [{{journey: freshness, sli: error_rate, below: 0.05}}, {{journey: browse, sli: latency_p95, below: 1.0}}]
load: {{journeys: {{browse: 1}}, users: 2}}
actions:
  - {{id: product-change, kind: admin-update, start: load, offset_s: 0.5, every_s: {{fast: 1.5, standard: 20}},
     args: {{product: {PRODUCT}, field: price, start: 5, step: 0.01,
             create: {{name: Scripted sock, price: 5, count: 0, tags: [blue]}}}}}}
probes:
  - {{id: freshness, kind: catalogue-freshness, journey: freshness, interval_s: 0.5,
     args: {{product: {PRODUCT}, field: price}}}}
variants:
  - {{id: quiet, title: Nothing is wrong, cause: none}}
"""


def test_a_run_performs_the_script_and_judges_the_probe_s_journey(shop: Shop, tmp_path: Any) -> None:
    """A whole run on the shared shop: the runner performs the staff changes from the load's start to the end,
    the probe's journey is one of the run's SLIs (the SLO on it held before the agent, as the baseline
    requires), its readings are in the journal and probes.jsonl, and result.json says what the script did;
    the changes are operator markers, never the agent's actions."""
    import json
    from pathlib import Path

    from sockdrill.scenarios.runner import RunOptions, run_variant

    sc = load_scenario_text(CONTROL, "control-stale-demo.yaml")
    try:
        result = run_variant(sc, sc.variants[0], RunOptions(agent="noop", profile="fast", seed=3, out=tmp_path,
                                                            data_dir=shop.data_dir, agent_budget_s=5))
    finally:
        _catalogue_db(shop, "DELETE FROM sock_tag WHERE sock_id = $1", PRODUCT)
        _catalogue_db(shop, "DELETE FROM sock WHERE sock_id = $1", PRODUCT)
    assert result["valid"], result.get("invalid_reason")
    script = result["script"]
    assert script["operator_actions"]["performed"] >= 5 and script["operator_actions"]["failed"] == 0, script
    probe = script["probes"]["freshness"]
    assert probe["readings"] >= 10 and probe["failures"] == 0, probe
    run_dir = Path(result["run_dir"])
    journal = json.loads((run_dir / "journal.json").read_text())
    # Readings from the load's start to the end, by phase; noop may hand back within a second (a control run,
    # nothing to look at), so the agent's phase has readings only when it lasted two of the probe's seconds.
    assert {"load", "handback"} <= set(probe["by_phase"]), probe
    start = next(e["time"] for e in journal["events"] if e["kind"] == "agent_start")
    handback = min(e["time"] for e in journal["events"] if e["time"] > start and e["kind"] != "operator_action")
    if handback - start >= 2.0:
        assert "agent" in probe["by_phase"], (handback - start, probe)
    markers = [e for e in journal["events"] if e["kind"] == "operator_action"]
    assert len(markers) == script["operator_actions"]["performed"] and all(m["detail"]["ok"] for m in markers)
    assert not [e for e in journal["events"] if e["kind"] == "action"]  # noop did nothing; staff are not it
    assert {"browse", "freshness"} <= set(journal["samples"])
    assert (run_dir / "probes.jsonl").read_text().count("\n") == len(journal["samples"]["freshness"])
