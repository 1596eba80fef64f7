"""Shared fixtures: one real shop for the whole session (the suite reuses it to stay fast).

Tests that change the shared shop (scale, limits, knobs, faults) put it back as they found it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sockdrill.cluster import client
from sockdrill.cluster.client import RuntimeClient
from sockdrill.cluster.ports import free_port
from sockdrill.shop.manifest import shop_deployments

TEST_USERS = 2000


@dataclass
class Shop:
    url: str
    data_dir: Path
    client: RuntimeClient

    @property
    def addresses(self) -> dict[str, str]:
        return dict(self.client.record.get("addresses", {}))

    @property
    def telemetry(self) -> dict[str, str]:
        """The header every telemetry endpoint of this shop asks for (its telemetry token)."""
        from sockdrill.cluster.admin import telemetry_headers

        return telemetry_headers(self.client.record.get("telemetry_token"))

    def status(self) -> dict[str, Any]:
        return self.client.get("/v1/status")

    def describe(self, name: str) -> dict[str, Any]:
        return self.client.get(f"/v1/describe/{name}")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(path, body)

    def get(self, path: str) -> Any:
        return self.client.get(path)


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``pred`` until it returns something truthy and return that; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def make_data_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o711)  # PostgreSQL runs as its own user when we are root
    return path


def manifest_part(names: Iterable[str], **overrides: Any) -> list[Any]:
    """The manifest's own deployments of ``names`` (their calls cut to those), for a small shop of its own."""
    wanted = set(names)
    return [s.model_copy(update={"calls": [c for c in s.calls if c in wanted],
                                 "subsets": {k: d for k, d in s.subsets.items() if d in wanted},
                                 "route": {k: w for k, w in s.route.items() if s.subsets.get(k) in wanted}})
            for s in shop_deployments(**overrides) if s.name in wanted]


@contextmanager
def running_shop(specs: list[Any], prefix: str, **up: Any) -> Iterator[RuntimeClient]:
    """A shop of these deployments beside the shared one (ports are leased machine-wide), down and gone after."""
    data_dir = make_data_dir(prefix)
    try:
        rc, _ = client.up(specs, data_dir=data_dir, timeout=120, **up)
        yield rc
    finally:
        client.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_shop() -> Iterator[Shop]:
    data_dir = make_data_dir("sockdrill-test-")
    specs = shop_deployments(front_end_port=free_port())
    rc, _ = client.up(specs, data_dir=data_dir, timeout=180,
                      pod_env={"SOCKDRILL_DATA_USERS": str(TEST_USERS), "SOCKDRILL_SCRAPE_INTERVAL": "1"})
    try:
        yield Shop(url=rc.record["front_end_url"], data_dir=data_dir, client=rc)
    finally:
        client.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def shop(shared_shop: Shop) -> Shop:
    """The shared shop, handed to each test ready: no fault left by an earlier test, every pod ready
    (a pod an earlier test killed or restarted may still be coming back)."""
    # The same reset a scenario run starts with: no faults, default replicas, limits and knobs, so
    # what an earlier test (or an agent in it) changed does not leak into this one.
    from sockdrill.scenarios.reset import reset_shop
    from sockdrill.scenarios.schema import Setup

    reset_shop(shared_shop.client, Setup())
    wait_for(lambda: shared_shop.status()["ready"], timeout=90, interval=0.2)
    return shared_shop
