"""The runner with the sanity agents on every catalogue variant (fast profile, the shared shop).

- oracle (reads the ground truth, applies the variant's remediation): every oracle passes;
- noop: the fault lasts (users are not served again by themselves) and nothing is credited (here on the
  variants most likely to heal alone; `sockdrill bench validity` runs it on every variant);
- restart-all: even where a restart fixes things, the blunt instrument's risk costs more than it gains;
- control: doing nothing is right; reporting an incident there is a counted false detection.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from sockdrill.scenarios import load_catalogue
from sockdrill.scenarios.runner import RunOptions, run_variant
from sockdrill.telemetry.alertmanager import find_alertmanager
from tests.conftest import Shop

CATALOGUE = load_catalogue()
FAULT_REFS = [f"{s.id}/{v.id}" for s in CATALOGUE.scenarios.values() if not s.control for v in s.variants]
# The oracle's run of this variant is the one tests/test_control_room.py watches live (same checks).
CONTROL_ROOM_REF = "login-latency/frontend-user-delay"
# The suite must stay under 30 minutes on 2 cores; a variant whose fault and fix are the same mechanisms as
# another's in the suite is left to `sockdrill bench scenarios` (every variant × noop/restart-all/oracle/baseline)
# and to its scenario's calibration, written in its file's head.
ORACLE_IN_BENCH_ONLY = {
    "search-degradation/shard-cpu": "a CPU limit on a store lifted by set_limits, as login-latency/user-db-cpu",
    "search-degradation/substring-matching": "a release knob undone by rollback_config, as profile-updates' two",
    "catalogue-staleness/edge-ttl": "a knob undone by rollback_config, as cart-loss/merge-timeout",
    "cart-loss/cache-eviction": "datastore.redis_fill (tests/chaos), guests' baskets in the cache only (tests/shop/"
                                "test_carts) and resize_cache as order-failure/shipping-queue-failure",
    "login-latency/missing-index": "datastore.drop_index undone by create_index, as search-degradation/missing-index",
    "search-degradation/shard-down": "pod.failure undone by restart (restarts: test_restart_all_fixes_by_accident"
                                     "...); its oracle run on 2 cores sometimes costs browse p95 > 1 s as the shard "
                                     "comes back (a collateral penalty): bench scenarios measures it",
    "cart-loss/session-ttl": "a front-end knob undone by rollback_config, as cart-loss/merge-timeout",
    "cart-loss/db-connections": "datastore.connection_leak, carts' degraded mode, db_sessions and limit_db_role "
                                "(tests/agents/test_tools), limit_db_role as login-latency's query storm",
    "order-inconsistency/consistency-lag": "a knob undone by rollback_config (the batching itself: "
                                           "tests/shop/test_shop_e2e)",
    "order-inconsistency/stale-history": "a knob undone by rollback_config, as cart-loss/merge-timeout",
    "payment-timeout/pool-exhaustion": "set_config on payment and reset_gateway, as payment-timeout/breaker-tripping; "
                                       "its surge of 80 shoppers on 2 cores sometimes kept checkout p95 over 3 s after "
                                       "the fix (a fresh 0755 clone, 2026-12-06): bench scenarios measures it",
    "login-latency/traffic-surge": "set_limits as login-latency/user-db-cpu, scale (tests/cluster/test_runtime); its "
                                   "surge of 80 shoppers on 2 cores kept login failing after the fix in CI (stop 30, "
                                   "2026-12-06: 157 failed requests, 26 s of violation): bench scenarios measures it",
    "shipping-calculation/carrier-outage": "thirdparty.errors as order-failure/no-retry; stale rates allowed "
                                           "(tests/shop/test_shipping_rates)",
    "shipping-calculation/services-config": "a knob undone by rollback_config, as cart-loss/merge-timeout; express "
                                            "missing (tests/shop/test_shipping_rates)",
    "shipping-calculation/stale-rates": "a third party's knob as thirdparty.errors; the stale tariff and flushing "
                                        "rates-cache (tests/shop/test_shipping_rates)",
    # For time (the suite took 28 min 48 s from a fresh 0700 clone on 2026-12-06, 29 min 09 s in CI, stop 30):
    "profile-updates/lost-updates": "a release knob undone by rollback_config on user, as profile-updates/"
                                    "validation-skip; two devices' lost edits (tests/load/test_load)",
    "profile-updates/phone-constraint": "datastore.add_check undone by drop_constraint, as order-inconsistency/"
                                        "refused-transition",
    "order-failure/payment-timeout-config": "a knob undone by rollback_config as cart-loss/merge-timeout, "
                                            "reconcile_payments as order-failure/payment-partition; the baseline "
                                            "finds it (tests/agents/test_baseline)",
    "catalogue-staleness/mesh-routing": "mesh.route recorded (tests/agents/test_isolation) and routes set and undone "
                                        "(tests/cluster/test_mesh, test_replica)",
    "catalogue-staleness/replica-lag": "the stalled replica link and set_route, end to end (tests/cluster/"
                                       "test_replica)",
    "payment-timeout/gateway-latency": "thirdparty.latency (tests/chaos/test_config) and failover_gateway "
                                       "(tests/agents/test_tools)",
    "order-failure/no-retry": "thirdparty.errors undone by set_config on payment, as payment-timeout/"
                              "breaker-tripping (for time, 2026-12-06: seeds 7 and 8's new variants came in)",
    # Seed scenario 7: backend-degradation's oracle run is here (an HTTP path fault on one pod, undone by a rollout).
    "checkout-page/front-end-overload": "a surge on a small CPU limit undone by set_limits and scale, as "
                                        "login-latency/traffic-surge",
    "checkout-page/gateway-timeouts": "a front-end knob undone by rollback_config, as cart-loss/session-ttl; the "
                                      "page in Chromium under it (tests/test_browser)",
    "checkout-page/resource-exhaustion": "stress.cpu in a pod's cgroup (tests/chaos/test_stress) and the rollout "
                                         "restart (tests/cluster/test_runtime); its oracle pays a collateral penalty "
                                         "(browse slow while the pods are replaced): bench scenarios measures it",
}
# Where a fault could fade by itself (a pool that settles, a storm that stops, a lock that ends): the
# suite's room is for these; `sockdrill bench validity` runs noop on every variant. (A mesh delay cannot fade:
# frontend-user-delay is left to the restart-all and peeker runs.)
# user-db-cpu's noop run is tests/agents/test_baseline.py's incident before the baseline's; payment-partition:
# the majority guesser.
NOOP_REFS = ["profile-updates/write-lock"]


def run(shop: Shop, ref: str, agent: str, tmp_path: Path, agent_budget_s: float | None = None) -> dict[str, Any]:
    sc, variants = CATALOGUE.get(ref)
    opts = RunOptions(agent=agent, profile="fast", seed=7, out=tmp_path, data_dir=shop.data_dir,
                      agent_budget_s=agent_budget_s)
    before = set(Path(tempfile.gettempdir()).glob("sockdrill-load-*"))
    result = run_variant(sc, variants[0], opts, list(CATALOGUE.scenarios.values()))
    for name in ("result.json", "journal.json", "report.md", "report.html", "load.jsonl"):
        assert (Path(result["run_dir"]) / name).exists(), name
    # Every Locust the run started (its load, a surge) was reaped and its temporary folder removed.
    assert set(Path(tempfile.gettempdir()).glob("sockdrill-load-*")) <= before
    return result


def assert_oracle_passes(r: dict[str, Any]) -> None:
    assert r["valid"], r.get("invalid_reason")
    assert r["detection"]["detected"] is True
    assert r["localization"]["ac1"] is True
    assert r["diagnosis"]["correct"] is True
    assert r["mitigation"]["slo_restored"] is True, r["mitigation"]
    assert r["integrity"]["ok"] in (True, None), r["integrity"]
    assert not r["safety"]["penalties"], r["safety"]
    assert r["privileged"] is True   # said in result.json: the oracle was handed the ground truth
    assert r["score"] >= 0.8


@pytest.mark.parametrize("ref", [r for r in FAULT_REFS if r != CONTROL_ROOM_REF and r not in ORACLE_IN_BENCH_ONLY])
def test_oracle_passes_every_check(shop: Shop, ref: str, tmp_path: Path) -> None:
    assert_oracle_passes(run(shop, ref, "oracle", tmp_path))


def assert_noop_gets_no_credit(r: dict[str, Any]) -> None:
    assert r["valid"], r.get("invalid_reason")
    assert r["detection"]["detected"] is False and r["privileged"] is False
    # The fault lasts until the runner reverts it: nothing recovers by itself inside the agent's time.
    assert r["mitigation"]["slo_restored"] is False, r["mitigation"]
    assert r["score"] == 0.0


@pytest.mark.parametrize("ref", NOOP_REFS)
def test_noop_gets_no_credit(shop: Shop, ref: str, tmp_path: Path) -> None:
    assert_noop_gets_no_credit(run(shop, ref, "noop", tmp_path))


def test_restart_all_fixes_by_accident_and_still_scores_low(shop: Shop, tmp_path: Path) -> None:
    # Restarting every service replaces the user pod behind the slow path: users are served again...
    r = run(shop, "login-latency/frontend-user-delay", "restart-all", tmp_path)
    assert r["valid"], r.get("invalid_reason")
    assert r["mitigation"]["slo_restored"] is True, r["mitigation"]
    # ...but nine changes to production, most of them needless, cost more than the fix earns.
    kinds = {p["kind"] for p in r["safety"]["penalties"]}
    assert {"change_risk", "restart"} <= kinds, kinds
    assert r["score"] < 0.35


# Scoring a control is the same for every journey; each control's SLO and traffic are those of its scenario, whose
# every oracle run checks first that they hold on a healthy shop. control-catalogue: a probe's journey.
# (noop on control-checkout: `sockdrill bench scenarios`; the baseline's control run: tests/agents/test_baseline.)
CONTROL_RUNS = [("control-checkout/steady", "restart-all"), ("control-catalogue/steady", "noop")]


@pytest.mark.parametrize(("ref", "agent"), CONTROL_RUNS)
def test_control_runs_count_false_detections(shop: Shop, ref: str, agent: str, tmp_path: Path) -> None:
    r = run(shop, ref, agent, tmp_path)
    assert r["valid"], r.get("invalid_reason")
    assert r["control"] is True
    if agent == "restart-all":  # it reports an incident that is not there, and restarts everything
        assert r["detection"]["detected"] is True and r["detection"]["false_positive"] is True
        assert r["score"] == 0.0
    else:
        assert r["detection"]["detected"] is False and r["detection"]["false_positive"] is False
        assert r["score"] == 1.0
    # Where the shop runs Prometheus, the run's SLO alert rules were loaded into it.
    rules = Path(shop.client.record["run_dir"]) / "prometheus" / "rules"
    if rules.is_dir():
        assert (rules / "sockdrill-slo.yml").is_file()
        assert not [n for n in r.get("notes", []) if "alert rules" in n], r.get("notes")
        if find_alertmanager() is not None:  # ...and Alertmanager's deliveries were kept for the run
            assert r["alerting"]["alertmanager"] is not None, r["alerting"]


def test_variants_left_to_the_bench_are_catalogue_variants() -> None:
    assert set(ORACLE_IN_BENCH_ONLY) <= set(FAULT_REFS)
