"""Helpers for the chaos tests: inject through the runtime's routes, measure with real clients."""

from __future__ import annotations

import statistics
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Shop
from tests.conftest import wait_for as wait_for  # re-exported: the chaos tests import it from here


def inject(rc: Any, kind: str, target: str, duration: float = 2.0, **fields: Any) -> dict[str, Any]:
    params = fields.pop("params", {})
    return rc.post("/v1/chaos/inject", {"kind": kind, "target": target, "params": params,
                                        "duration": duration, **fields})


def active(rc: Any) -> list[dict[str, Any]]:
    return rc.get("/v1/chaos/faults")


def get_ms(url: str, timeout: float = 5.0) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        resp.read()
    return (time.perf_counter() - t0) * 1000


def p50_ms(url: str, n: int = 9) -> float:
    return statistics.median(get_ms(url) for _ in range(n))


@pytest.fixture
def chaos(shop: Shop) -> Iterator[Any]:
    """The shop's runtime client; every fault is cleared afterwards, whatever happened."""
    try:
        yield shop.client
    finally:
        shop.client.post("/v1/chaos/clear", {})
        assert active(shop.client) == []
