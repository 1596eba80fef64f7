"""The scenario catalogue validates, and bad scenario files give every error with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sockdrill.errors import ScenarioError
from sockdrill.scenarios import load_catalogue, load_scenario_file
from sockdrill.scenarios.catalogue_loader import load_scenario_text


def test_catalogue_is_valid_and_complete() -> None:
    cat = load_catalogue()
    assert {"login-latency", "order-failure", "cart-loss", "profile-updates", "control-login", "control-checkout",
            "control-cart", "control-profile", "order-inconsistency", "control-orders"} <= set(cat.scenarios)
    assert {v.id for v in cat.scenarios["order-inconsistency"].variants} == {"consistency-lag", "stale-history",
                                                                      "refused-transition", "dropped-connection"}
    login = cat.scenarios["login-latency"]
    assert {v.id for v in login.variants} == {"traffic-surge", "user-db-cpu", "frontend-user-delay", "missing-index"}
    order = cat.scenarios["order-failure"]
    assert {v.id for v in order.variants} == {"payment-partition", "payment-timeout-config",
                                               "shipping-queue-failure", "no-retry"}
    assert {v.id for v in cat.scenarios["cart-loss"].variants} == {"session-ttl", "merge-timeout", "cache-eviction",
                                                                        "db-connections"}
    assert {v.id for v in cat.scenarios["profile-updates"].variants} == {"validation-skip", "write-lock",
                                                                         "phone-constraint", "lost-updates"}
    assert {v.id for v in cat.scenarios["payment-timeout"].variants} == {"gateway-latency", "breaker-tripping",
                                                                         "pool-exhaustion", "slow-validation"}
    assert {v.id for v in cat.scenarios["control-payment"].variants} == {"hair-trigger", "small-pool", "scanning",
                                                                         "two-providers"}
    assert {v.id for v in cat.scenarios["shipping-calculation"].variants} == {"carrier-outage", "stale-rates",
                                                                              "directory-import", "services-config"}
    assert cat.scenarios["shipping-calculation"].seed == 10 and cat.scenarios["control-shipping"].control
    assert {v.id for v in cat.scenarios["checkout-page"].variants} == {"front-end-overload", "gateway-timeouts",
                                                                       "backend-degradation", "resource-exhaustion"}
    assert cat.scenarios["checkout-page"].seed == 7 and cat.scenarios["control-checkout-page"].control
    # Every seed scenario of ../shared/seed is in the catalogue.
    assert {sc.seed for sc in cat.scenarios.values() if sc.seed} == set(range(1, 11))
    from sockdrill.agents.registry import all_tools

    tools = all_tools()
    for sc in cat.scenarios.values():
        for v in sc.variants:
            if not sc.control:
                assert v.remediation and v.ground_truth
            for step in v.remediation:
                assert step.tool in tools, (sc.id, v.id, step.tool)
                assert set(step.args) <= set(tools[step.tool].parameters["properties"]), (sc.id, v.id, step.args)


def test_every_fault_scenario_has_a_control_drawn_like_it() -> None:
    """A control run shows the same user report, SLOs and traffic as a fault scenario of its journey, so
    that an agent cannot tell it from an incident without looking."""
    cat = load_catalogue()
    controls = [sc for sc in cat.scenarios.values() if sc.control]
    for sc in cat.scenarios.values():
        if sc.control:
            continue
        # Two scenarios may share a journey (order-failure and payment-timeout: checkout), each its own report.
        twins = [c for c in controls if c.journey == sc.journey and c.impact == sc.impact]
        assert twins, f"{sc.id}: no control run for journey {sc.journey} with its report"
        twin = twins[0]
        assert twin.slo == sc.slo and twin.load == sc.load, (sc.id, twin.id)


def test_refs_and_suggestions() -> None:
    cat = load_catalogue()
    sc, variants = cat.get("login-latency/missing-index")
    assert sc.id == "login-latency" and [v.id for v in variants] == ["missing-index"]
    with pytest.raises(ScenarioError, match="did you mean 'login-latency'"):
        cat.get("login-latncy")
    with pytest.raises(ScenarioError, match="did you mean 'missing-index'"):
        cat.get("login-latency/missing-idx")


BAD = """\
id: broken
title: A broken scenario
journey: login
impact: none
slo:
  - {journey: login, sli: latency_p95, below: 1.0}
symptom:
  any:
    - {journey: login, sli: latency_p95, above: 2}
variants:
  - id: one
    title: t
    cause: c
    faults:
      - {kind: network.delay, target: front-end->usr, params: {latency_ms: -5}}
    ground_truth: {root_cause: [user], category: network_lag}
    remediation: [{tool: restar, args: {service: user}}]
"""


def test_bad_file_reports_every_error_with_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text(BAD)
    with pytest.raises(ScenarioError) as info:
        load_scenario_file(f)
    text = str(info.value)
    assert f"{f}:16: variants[0].ground_truth.category: unknown category 'network_lag'" in text
    assert "latency_ms" in text and ":15:" in text
    assert "unknown component 'usr'" in text and "did you mean 'user'" in text
    assert "unknown action tool 'restar'" in text and "did you mean 'restart'" in text


@pytest.mark.parametrize("text, needle", [
    ("id: x\n", "title"),
    ("- not a mapping\n", "mapping"),
    ("id: [unclosed\n", "not valid YAML"),
])
def test_malformed_documents(text: str, needle: str) -> None:
    with pytest.raises(ScenarioError, match=needle):
        load_scenario_text(text, "x.yaml")


SETUP_DOC = """
id: shared-setup
title: A scenario whose variants share a set-up
journey: login
impact: Slow logins.
slo: [{journey: login, sli: latency_p95, below: 1.0}]
symptom: {any: [{journey: login, sli: latency_p95, above: 2.0}]}
setup: {users: 3000, replicas: {user: 2}, knobs: {user: {login_delay_ms: 5, bcrypt_rounds: 4}}}
variants:
  - id: one
    title: One
    cause: one cause
    setup: {users: 100, replicas: {carts: 2}, knobs: {user: {login_delay_ms: 9}}}
    faults: [{kind: pod.kill, target: user}]
    ground_truth: {root_cause: [user], category: process_crash}
    remediation: [{tool: restart, args: {service: user}}]
"""


def test_a_scenario_s_set_up_lies_under_each_variant_s() -> None:
    sc = load_scenario_text(SETUP_DOC, "x.yaml")
    merged = sc.setup_for(sc.variants[0])
    assert merged.users == 3000 and merged.replicas == {"user": 2, "carts": 2}
    assert merged.knobs == {"user": {"login_delay_ms": 9, "bcrypt_rounds": 4}}
    doc = SETUP_DOC.replace("replicas: {carts: 2}", "routes: {catalogue: {replica: 40, primary: 60}}")
    routed = load_scenario_text(doc, "x.yaml")
    assert routed.setup_for(routed.variants[0]).routes == {"catalogue": {"replica": 40, "primary": 60}}
    doc = SETUP_DOC.replace("replicas: {carts: 2}", "caches: {carts-cache: {maxmemory: 16MB, policy: allkeys-lru}}")
    cached_sc = load_scenario_text(doc, "x.yaml")
    cached = cached_sc.setup_for(cached_sc.variants[0])
    assert {n: c.model_dump() for n, c in cached.caches.items()} == \
        {"carts-cache": {"maxmemory": "16mb", "policy": "allkeys-lru"}}


@pytest.mark.parametrize("change, needle", [
    (("replicas: {user: 2}", "replicas: {user-db: 2}"),
     "x.yaml:8: setup.replicas.user-db: 'user-db' is a datastore that always runs one pod"),
    (("replicas: {carts: 2}", "replicas: {nobody: 2}"), "variants[0].setup.replicas.nobody: unknown service 'nobody'"),
    (("replicas: {carts: 2}", "routes: {carts: {primary: 100}}"),
     "variants[0].setup.routes.carts: 'carts' has no subsets to route between (routed: catalogue)"),
    (("replicas: {carts: 2}", "routes: {catalogue: {primry: 100}}"),
     "setup.routes.catalogue.primry: unknown subset 'primry' of 'catalogue' (did you mean 'primary'?)"),
    (("replicas: {carts: 2}", "routes: {catalogue: {primary: 0, replica: 0}}"),
     "setup.routes.catalogue: a route needs one subset with a weight above 0"),
    (("replicas: {carts: 2}", "routes: {catalogue: {primary: 101}}"),
     "setup.routes.catalogue.primary: a weight is from 0 to 100, got 101"),
    (("replicas: {carts: 2}", "caches: {carts-db: {maxmemory: 16mb}}"),
     "variants[0].setup.caches.carts-db: 'carts-db' is not a Redis datastore (did you mean 'carts-cache'?)"),
    (("replicas: {carts: 2}", "caches: {carts-cache: {maxmemory: lots}}"), "maxmemory 'lots' must be like"),
    (("replicas: {carts: 2}", "caches: {carts-cache: {policy: evict-all}}"), "policy"),
])
def test_a_set_up_sizes_only_what_may_be_sized(change: tuple[str, str], needle: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario_text(SETUP_DOC.replace(*change), "x.yaml")
    assert needle in str(err.value), str(err.value)


def test_the_standard_profile_runs_its_own_crowd() -> None:
    """Scenario 7's standard profile reaches 1000 concurrent shoppers (1600 in the surge) at a shopper's pace; the
    fast profile keeps the dozen the CI machine runs. A load without a standard block is the same in both."""
    sc = load_catalogue().scenarios["checkout-page"]
    overload = sc.variant("front-end-overload")
    fast, standard = sc.load_for(overload).for_profile("fast"), sc.load_for(overload).for_profile("standard")
    assert (fast.users, standard.users) == (12, 1000)
    assert standard.think_s == (20, 40) and standard.journeys == fast.journeys and standard.standard is None
    assert overload.surge is not None
    assert overload.surge.for_profile("standard").users + standard.users >= 1600
    plain = load_catalogue().scenarios["login-latency"].load
    assert plain.for_profile("standard") == plain


@pytest.mark.parametrize(("load", "needle"), [
    ("{users: 5, think_s: [2, 1]}", "think_s [2.0, 1.0] must be [min, max]"),
    ("{users: 5, standard: {users: 0}}", "greater than or equal to 1"),
    ("{users: 5, standard: {users: 10, crowd: 3}}", "crowd"),
])
def test_a_bad_load_is_refused_with_its_field(load: str, needle: str) -> None:
    text = (f"id: x\ntitle: t\njourney: login\nimpact: i\nslo: [{{journey: login, sli: error_rate, below: 0.1}}]\n"
            f"symptom: {{any: [{{journey: login, sli: error_rate, above: 0.2}}]}}\nload: {load}\n"
            "variants: [{id: v, title: t, cause: c, ground_truth: {root_cause: [user], category: misconfiguration}}]\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario_text(text, "bad.yaml")
    assert needle in str(err.value) and "load" in str(err.value)
