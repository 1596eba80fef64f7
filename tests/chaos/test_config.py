"""config.knob: the knob changes live in the pods and its exact pre-fault value comes back, even when an
operator changed other knobs meanwhile."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from sockdrill.errors import ClusterError
from tests.chaos.conftest import active, inject, wait_for
from tests.conftest import Shop


def _knob(shop: Shop, service: str, name: str) -> Any:
    port = shop.describe(service)["pods"][0]["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/config", timeout=5) as resp:
        return json.loads(resp.read())["knobs"][name]["value"]


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
