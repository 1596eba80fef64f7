"""config.knob: the knob changes live in the pods and its exact pre-fault value comes back, even when an
operator changed other knobs meanwhile."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from sockdrill.errors import ClusterError
from tests.chaos.conftest import active, inject, wait_for
from tests.conftest import Shop


def _knob(shop: Shop, service: str, name: str) -> Any:
    return shop.get(f"/v1/config/{service}")["config"][name]


def test_a_pod_s_admin_endpoint_answers_only_the_runtime(shop: Shop) -> None:
    port = shop.describe("orders")["pods"][0]["port"]
    for method, body in (("GET", None), ("PUT", b'{"payment_timeout_s": 0.01}')):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/config", data=body, method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 403
    assert _knob(shop, "orders", "payment_timeout_s") != 0.01


def test_knob_set_then_restored_exactly(shop: Shop, chaos: Any) -> None:
    before = _knob(shop, "orders", "payment_timeout_s")
    other = _knob(shop, "orders", "fetch_timeout_s")
    inject(chaos, "config.knob", "orders", duration=2, params={"payment_timeout_s": 0.05})
    assert _knob(shop, "orders", "payment_timeout_s") == 0.05
    shop.post("/v1/config", {"deployment": "orders", "knobs": {"fetch_timeout_s": other + 1}})
    try:
        wait_for(lambda: not active(chaos), timeout=5)
        assert _knob(shop, "orders", "payment_timeout_s") == before
        assert _knob(shop, "orders", "fetch_timeout_s") == other + 1  # the operator's change stands
        assert "payment_timeout_s" not in shop.describe("orders")["knobs"]
    finally:
        shop.post("/v1/config/rollback", {"deployment": "orders"})
    assert _knob(shop, "orders", "fetch_timeout_s") == other


def test_unknown_knob_or_bad_value_is_a_clear_error(shop: Shop, chaos: Any) -> None:
    with pytest.raises(ClusterError, match=r"params.payment_timeout: .*did you mean 'payment_timeout_s'"):
        inject(chaos, "config.knob", "orders", params={"payment_timeout": 1})
    with pytest.raises(ClusterError, match="params"):
        inject(chaos, "config.knob", "orders", params={"payment_timeout_s": -1})
    with pytest.raises(ClusterError, match="target: 'user-db' is a postgres deployment"):
        inject(chaos, "config.knob", "user-db", params={"x": 1})
    with pytest.raises(ClusterError, match="at least one knob"):
        inject(chaos, "config.knob", "orders")
    assert active(chaos) == []
    assert _knob(shop, "orders", "payment_timeout_s") == 5.0


@pytest.mark.parametrize(("kind", "params", "knobs"), [
    ("thirdparty.errors", {"error_rate": 0.15}, {"transient_error_rate": 0.15}),
    ("thirdparty.latency", {"latency_ms": 4000}, {"latency_ms": 4000.0, "latency_jitter_ms": 0.0}),
])
def test_a_third_party_s_behaviour_is_a_fault_not_a_config_change(shop: Shop, chaos: Any, kind: str,
                                                                   params: dict, knobs: dict) -> None:
    before = shop.get("/v1/config/payment-gateway")
    fault = inject(chaos, kind, "payment-gateway", duration=30, params=params)
    try:
        now = shop.get("/v1/config/payment-gateway")
        assert {k: now["config"][k] for k in knobs} == knobs
        assert now["revision"] == before["revision"]            # no config push, nothing to roll back
        with pytest.raises(ClusterError, match="no earlier config"):
            shop.post("/v1/config/rollback", {"deployment": "payment-gateway"})
    finally:
        chaos.post("/v1/chaos/clear", {"id": fault["id"]})
    after = shop.get("/v1/config/payment-gateway")["config"]
    assert {k: after[k] for k in knobs} == {k: before["config"][k] for k in knobs}
    with pytest.raises(ClusterError, match="not a third-party"):
        chaos.post("/v1/chaos/inject", {"kind": "thirdparty.errors", "target": "orders",
                                        "params": {"error_rate": 0.1}, "duration": "5s"})
