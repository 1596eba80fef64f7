"""Rendering: every kind renders; Chaos Mesh objects validate (strictly: unknown fields are errors, as
with kubectl's strict validation) against the CRD schemas in ../shared/chaos-mesh-crds; recurring faults
are Schedules, never the 1.x ``spec.scheduler``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from sockdrill.chaos.kinds import KINDS
from sockdrill.chaos.render import RenderOptions, render_faults, to_yaml
from sockdrill.chaos.spec import load_faults, parse_fault
from sockdrill.cli import app
from sockdrill.errors import FaultError

CRDS = Path(__file__).resolve().parents[3] / "shared" / "chaos-mesh-crds"
if not CRDS.is_dir():
    CRDS = Path("/work/shared/chaos-mesh-crds")

EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "network.delay": ("front-end->user", {"latency_ms": 2000, "jitter_ms": 10, "correlation": 100}),
    "network.bandwidth": ("*->catalogue", {"rate_kb_s": 100, "direction": "both"}),
    "network.stall": ("orders->*", {}),
    "network.reset": ("front-end->carts", {}),
    "network.partition": ("user->user-db", {"direction": "upstream"}),
    "http.abort": ("front-end->user", {"path": "/login", "method": "GET", "code": 500}),
    "http.delay": ("orders", {"path": "/orders*", "delay_ms": 1500, "direction": "downstream"}),
    "pod.kill": ("carts", {}),
    "pod.failure": ("catalogue", {}),
    "pod.pause": ("queue-master", {}),
    "stress.cpu": ("user-db", {"workers": 2, "load": 80}),
    "stress.memory": ("carts", {"size": "512Mi"}),
    "resource.limit": ("user-db", {"cpu": "100m", "memory": "256Mi"}),
    "datastore.query_storm": ("user-db", {"concurrency": 16}),
    "datastore.drop_index": ("user-db", {}),
    "datastore.lock_table": ("user-db", {"table": "customers", "mode": "share"}),
    "datastore.connection_leak": ("carts-db", {"connections": 90}),
    "datastore.add_check": ("user-db", {"column": "phone", "pattern": "^[0-9']*$"}),
    "datastore.bad_import": ("rates-db", {"where_values": ["uk-remote", "it's"]}),
    "datastore.redis_config": ("session-db", {"maxmemory": "1mb", "maxmemory_policy": "noeviction"}),
    "datastore.redis_fill": ("carts-cache", {"rate": "4mb", "ttl_s": 30}),
    "config.knob": ("orders", {"payment_timeout_s": 0.05}),
    "thirdparty.errors": ("payment-gateway", {"error_rate": 0.15}),
    "thirdparty.latency": ("payment-gateway", {"latency_ms": 4000, "jitter_ms": 500}),
    "thirdparty.tariff": ("carrier-api", {"revision": 2}),
    "time.skew": ("orders", {"offset": "-10m"}),
    "queue.poison": ("queue", {"queue": "cdn-purge.eu", "body": "PURGE /catalogue/x 'quoted'"}),
    "mesh.route": ("catalogue", {"weights": {"primary": 50, "v1": 50}}),
}


def _strict(schema: Any) -> Any:
    """Forbid fields a schema does not declare (unless it preserves unknown fields)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _schemas() -> dict[str, Any]:
    out = {}
    for path in CRDS.glob("chaos-mesh.org_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        kind = crd["spec"]["names"]["kind"]
        schema = copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"type": "object"}
        out[kind] = _strict(schema)
    return out


SCHEMAS = _schemas()


def validate(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "chaos-mesh.org/v1alpha1"
    jsonschema.Draft4Validator(SCHEMAS[doc["kind"]]).validate(doc)  # OpenAPI v3 is draft-4 style
    spec = inner = doc["spec"]
    if doc["kind"] == "Schedule":
        inner = next(v for k, v in spec.items() if k.endswith("Chaos"))
        assert "duration" in inner  # Forbid would otherwise block every later run
    # Webhook rules the schema cannot express.
    if inner.get("action") not in (None, "partition") and inner.get("direction") in ("from", "both"):
        assert "target" in inner
    if doc["kind"] == "HTTPChaos" or (doc["kind"] == "Schedule" and spec["type"] == "HTTPChaos"):
        assert inner["port"] > 0
    assert "scheduler" not in json.dumps(doc)


def test_every_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(KINDS)


@pytest.mark.parametrize("style", ["upstream", "sockdrill"])
@pytest.mark.parametrize("schedule", [None, "*/10 * * * *"])
def test_every_kind_renders_valid_manifests(style: str, schedule: str | None) -> None:
    opts = RenderOptions(namespace="sock-shop", selector_style=style)  # type: ignore[arg-type]
    for kind, (target, params) in EXAMPLES.items():
        spec = parse_fault({"kind": kind, "target": target, "params": params, "duration": "90s",
                            "schedule": schedule})
        docs = render_faults([spec], opts)
        assert docs, kind
        for doc in docs:
            assert doc["metadata"]["namespace"] == "sock-shop"
            if doc["apiVersion"].startswith("chaos-mesh.org"):
                assert KINDS[kind].chaos_mesh, kind
                validate(doc)
                if schedule:
                    assert doc["kind"] == "Schedule" and doc["spec"]["schedule"] == schedule
            elif doc["kind"] in ("Job", "CronJob"):
                assert not KINDS[kind].chaos_mesh, kind
                assert doc["kind"] == ("CronJob" if schedule else "Job")
        text = to_yaml(docs)
        assert list(yaml.safe_load_all(text)) == docs


def test_selectors_follow_upstream_labels() -> None:
    spec = parse_fault({"kind": "network.delay", "target": "front-end->user", "params": {"latency_ms": 2000}})
    (doc,) = render_faults([spec])
    assert doc["spec"]["selector"]["labelSelectors"] == {"name": "front-end"}
    assert doc["spec"]["target"]["selector"]["labelSelectors"] == {"name": "user"}
    assert doc["spec"]["delay"]["latency"] == "2000ms"
    (doc,) = render_faults([parse_fault({"kind": "pod.kill", "target": "queue"})])
    assert doc["spec"]["selector"]["labelSelectors"] == {"name": "rabbitmq"}
    (doc,) = render_faults([parse_fault({"kind": "pod.kill", "target": "carts", "mode": "one"})],
                           RenderOptions(selector_style="sockdrill"))
    assert doc["spec"]["selector"]["labelSelectors"] == {"app.kubernetes.io/name": "carts"}
    assert doc["spec"]["mode"] == "one"


def test_strict_validation_rejects_the_1x_scheduler() -> None:
    spec = parse_fault({"kind": "pod.kill", "target": "carts"})
    (doc,) = render_faults([spec])
    doc["spec"]["scheduler"] = {"cron": "@every 1m"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMAS["PodChaos"]).validate(doc)


def test_spec_file_errors_name_every_field() -> None:
    doc = {"faults": [{"kind": "pod.kill", "target": "carts"},
                      {"kind": "network.delay", "target": "a->b", "params": {"latency_ms": -1}, "duration": "x"},
                      {"kind": "nope", "target": "carts"}]}
    with pytest.raises(FaultError) as info:
        load_faults(doc)
    text = str(info.value)
    assert "faults[1].params.latency_ms" in text and "faults[1].duration" in text
    assert "faults[2].kind: unknown fault kind 'nope'" in text


def test_cli_render_writes_manifests(tmp_path: Path) -> None:
    spec_file = tmp_path / "faults.yaml"
    spec_file.write_text(yaml.safe_dump({"faults": [
        {"kind": "network.delay", "target": "front-end->user", "params": {"latency_ms": 500}, "duration": "5m"},
        {"kind": "datastore.drop_index", "target": "user-db", "duration": "10m"},
    ]}))
    out = tmp_path / "out.yaml"
    runner = CliRunner()
    res = runner.invoke(app, ["chaos", "render", str(spec_file), "--selector-style", "sockdrill",
                              "--namespace", "shop", "-o", str(out)])
    assert res.exit_code == 0, res.output
    docs = list(yaml.safe_load_all(out.read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["NetworkChaos", "Job"]
    validate(docs[0])
    assert docs[0]["metadata"]["namespace"] == "shop"
    res = runner.invoke(app, ["chaos", "render", "--kind", "network.dealy", "--target", "user"])
    assert res.exit_code == 2 and "did you mean 'network.delay'" in res.output
    res = runner.invoke(app, ["chaos", "render", "--kind", "pod.kill", "--target", "carts",
                              "--schedule", "@every 5m"])
    assert res.exit_code == 0 and "kind: Schedule" in res.output and "podChaos:" in res.output


def test_a_cache_sized_for_its_data_reads_the_overhead_in_the_job() -> None:
    spec = parse_fault({"kind": "datastore.redis_config", "target": "carts-cache", "duration": "5m",
                        "params": {"maxmemory_data": "16kb", "maxmemory_policy": "allkeys-lru"}})
    text = to_yaml(render_faults([spec], RenderOptions()))
    assert "used_memory_overhead" in text and "CONFIG SET maxmemory $((OVERHEAD + 16384))" in text, text


def test_a_connection_leak_renders_sessions_that_come_back_and_an_engine_upstream_has() -> None:
    spec = parse_fault({"kind": "datastore.connection_leak", "target": "carts-db", "duration": "2m"})
    ours = render_faults([spec], RenderOptions(selector_style="sockdrill"))
    script = ours[0]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "psql -h carts-db" in script and "-lt 100" in script and "while true" in script  # opened again when ended
    upstream = render_faults([spec], RenderOptions(selector_style="upstream"))  # upstream's carts-db is MongoDB
    assert "mongo --quiet --host carts-db" in upstream[0]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
