"""Isolation: with a fault active, nothing any observe tool returns names the fault, its id or parameters."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

from sockdrill.agents.registry import all_tools
from sockdrill.agents.tools import Tools
from sockdrill.scenarios.catalogue_loader import load_catalogue
from tests.conftest import Shop, wait_for

# Distinctive parameter values, so a leak cannot hide behind a common number.
LATENCY_MS = 1237


def _outputs(tools: Tools) -> dict[str, str]:
    calls: dict[str, dict] = {
        "topology": {}, "pods": {}, "describe": {"service": "front-end"}, "categories": {}, "runbooks": {},
        "alerts": {}, "slo_status": {}, "edges": {"limit": 100}, "edges#to": {"destination": "catalogue"},
        "metrics": {"limit": 500}, "log_stats": {"since_s": 120},
        "logs": {"service": "front-end", "limit": 200}, "logs#cat": {"service": "catalogue", "limit": 200},
        "traces": {"limit": 50}, "queue_status": {}, "promql": {"query": "up"},
        "cache_stats": {"service": "carts-cache"}, "cache_stats#queue": {"service": "queue"},
        "db_sessions": {"service": "carts-db"}, "db_sessions#user": {"service": "user-db"},
    }
    outputs = {}
    for key, args in calls.items():
        outputs[key] = json.dumps(tools.call(key.split("#")[0], **args))
    names = json.loads(outputs["metrics"])["result"]["names"]
    for name in names:
        outputs[f"metrics:{name}"] = json.dumps(tools.call("metrics", name=name, limit=100, since_s=30))
    for d in ("front-end", "catalogue"):
        outputs[f"describe:{d}"] = json.dumps(tools.call("describe", service=d))
    traces = json.loads(outputs["traces"]).get("result", {}).get("traces", [])
    for t in traces[:5]:
        outputs[f"trace:{t['trace_id']}"] = json.dumps(tools.call("trace", trace_id=t["trace_id"]))
    return outputs


# Every fault kind the local runtime can inject (time.skew renders for Chaos Mesh only), on targets the test's
# traffic does not need, with values distinctive enough that a leak cannot hide behind a common number. Values
# that are the observable state itself (a CPU limit in describe, a timeout in the effective config, a
# constraint a migration added) are legitimately visible and not searched.
KINDS: dict[str, dict[str, object]] = {
    "network.bandwidth": {"target": "front-end->catalogue", "params": {"rate_kb_s": 4321}},
    "network.stall": {"target": "orders->payment", "params": {}},
    "network.reset": {"target": "orders->shipping", "params": {}},
    "network.partition": {"target": "orders->user", "params": {"direction": "downstream"}},
    "http.abort": {"target": "front-end->orders", "params": {"path": "/orders*", "code": 418}},
    "http.delay": {"target": "front-end->carts", "params": {"path": "/carts*", "delay_ms": LATENCY_MS}},
    "pod.kill": {"target": "queue-master", "params": {}},
    "pod.failure": {"target": "shipping", "params": {}},
    "pod.pause": {"target": "queue-master", "params": {}},
    "stress.cpu": {"target": "carts", "params": {"workers": 1, "load": 37}},
    "stress.memory": {"target": "carts", "params": {"size": "37Mi"}},
    "datastore.drop_index": {"target": "user-db", "params": {}},
    "datastore.lock_table": {"target": "user-db", "params": {"table": "cards", "mode": "share"}},
    "datastore.add_check": {"target": "user-db", "params": {"table": "addresses", "column": "city",
                                                            "pattern": "^.*$", "name": "addresses_city_check"}},
    "thirdparty.latency": {"target": "payment-gateway", "params": {"latency_ms": LATENCY_MS}},
    "network.delay": {"target": "front-end->catalogue", "params": {"latency_ms": LATENCY_MS, "jitter_ms": 3}},
    "resource.limit": {"target": "catalogue", "params": {"cpu": "917m"}},
    "config.knob": {"target": "orders", "params": {"fetch_timeout_s": 7.77}},
    "thirdparty.errors": {"target": "payment-gateway", "params": {"error_rate": 0.0123}},
    "datastore.redis_config": {"target": "queue", "params": {"maxmemory": "123457kb"}},
    "datastore.redis_fill": {"target": "carts-cache", "params": {"rate": "257kb", "ttl_s": 7, "prefix": "rpt:"}},
    "datastore.connection_leak": {"target": "carts-db", "params": {"connections": 37, "drop_others": False}},
    "datastore.query_storm": {"target": "catalogue-db", "params": {"concurrency": 1, "table": "sock",
                                                                   "column": "name"}},
    "queue.poison": {"target": "queue", "params": {"queue": "cdn-purge.iso", "body": "PURGE /catalogue/x"}},
    "mesh.route": {"target": "catalogue", "params": {"weights": {"primary": 63, "v1": 37}}},
    "datastore.bad_import": {"target": "user-db", "params": {"table": "addresses", "column": "city",
                                                             "value": "Ruritania", "where_column": "city",
                                                             "where_values": ["Aberdare"], "key": ["id"]}},
    "thirdparty.tariff": {"target": "carrier-api", "params": {"revision": 37}},
}
# Kinds whose target sleeps in this shop (an optional deployment): woken for the test, asleep again after.
WAKE = {"thirdparty.tariff": ["carrier-api"]}
# What an agent would search for: the fault machinery, each kind and parameter name, the knob a third-party
# fault sets (never shown), and every scenario, variant and runbook-as-answer identifier of the catalogue.
SCENARIO_IDS = sorted({sc.id for sc in load_catalogue().scenarios.values()} |
                      {v.id for sc in load_catalogue().scenarios.values() for v in sc.variants} - {"steady"})
NEEDLES = ["toxic", "toxics", "chaos", "injected", "ground_truth", "remediation", "fault", "faults",
           "latency_ms", "jitter_ms", "transient_error_rate", "tariff_revision", "query_storm", "redis_config",
           "thirdparty", *KINDS, *SCENARIO_IDS]


def test_every_injectable_kind_is_searched() -> None:
    from sockdrill.chaos.kinds import KINDS as ALL_KINDS

    assert set(KINDS) == {k for k, v in ALL_KINDS.items() if v.local}


@pytest.mark.parametrize("kind", list(KINDS))
def test_no_tool_output_reveals_the_fault(shop: Shop, tools: Tools, kind: str) -> None:
    observe = {n for n, s in all_tools().items() if s.kind == "observe"}
    for name in WAKE.get(kind, []):
        shop.post("/v1/scale", {"deployment": name, "replicas": 1})
    wait_for(lambda: shop.status()["ready"], timeout=60)
    fault = shop.post("/v1/chaos/inject", {"kind": kind, "duration": "2m", **KINDS[kind]})
    try:
        for _ in range(5):  # traffic through the faulty part, so every tool has something to show
            urllib.request.urlopen(shop.url + "/catalogue?size=2", timeout=10).read()
        time.sleep(1)
        outputs = _outputs(tools)
        outputs["describe:payment-gateway"] = json.dumps(tools.call("describe", service="payment-gateway"))
        outputs["describe:orders"] = json.dumps(tools.call("describe", service="orders"))
    finally:
        # A kill is done at onset (nothing to revert): clear whatever is left instead of that id.
        shop.post("/v1/chaos/clear", {} if kind == "pod.kill" else {"id": fault["id"]})
        for name in WAKE.get(kind, []):
            shop.post("/v1/scale", {"deployment": name, "replicas": 0})
        wait_for(lambda: shop.status()["ready"], timeout=60)  # a killed or failed pod is back for the next test
    covered = {k.split("#")[0].split(":")[0] for k in outputs}
    assert observe - covered - {"read_runbook"} == set(), "every observe tool is searched"
    # Whole words only: "fault" inside "DEFAULT" (SQL in pg_stat_statements) is no leak.
    patterns = [re.compile(rf"(?<![a-z0-9_]){re.escape(n.lower())}(?![a-z0-9_])") for n in [fault["id"], *NEEDLES]]
    leaks = [(key, p.pattern) for key, text in outputs.items() for p in patterns if p.search(text.lower())]
    if kind in ("network.delay", "http.delay", "thirdparty.latency"):
        # The parameter's value is searched in the text the tools return (names, labels, messages), not in
        # measured numbers, where 1237 may honestly occur as a request count.
        number = re.compile(rf"(?<![0-9A-Za-z.]){LATENCY_MS}(?![0-9A-Za-z])")  # not inside hex ids
        leaks += [(key, number.pattern) for key, text in outputs.items()
                  if any(number.search(t) for t in _strings(text))]
    assert leaks == []


def _strings(text: str) -> list[str]:
    """Every key and string value in a JSON document."""
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                out.append(str(k))
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            out.append(node)

    walk(json.loads(text))
    return out
