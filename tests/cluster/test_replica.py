"""The catalogue's streaming read replica (seed scenario 4's eventual consistency), on a small shop of the
manifest's own deployments: it clones its primary through the mesh edge, streams every change, serves reads to
catalogue-ro and refuses writes; a stall on its link freezes it and the exporters say so on both sides; asleep it
keeps its data and its slot, and a replica whose slot is gone clones again."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import requests

from sockdrill.cluster.client import RuntimeClient
from sockdrill.cluster.stores import PG_REPLICATION_USER, store_credentials
from sockdrill.errors import ClusterError
from sockdrill.scenarios.reset import reset_deployments
from sockdrill.scenarios.schema import Setup
from sockdrill.telemetry.collectors import PostgresExporter
from tests.chaos.conftest import inject
from tests.conftest import manifest_part, running_shop, wait_for

HOLY = "03fef6ac-1896-4ce8-bd69-b798f85c6e0b"
WANTED = {"catalogue-db", "catalogue-db-replica", "queue", "catalogue", "catalogue-ro"}
LINK = "catalogue-db-replica->catalogue-db"
SLOT = "catalogue_db_replica"


@pytest.fixture(scope="module")
def replica_shop() -> Iterator[RuntimeClient]:
    with running_shop(manifest_part(WANTED), "sockdrill-replica-") as rc:
        done, _ = reset_deployments(rc, Setup(replicas={"catalogue-db-replica": 1, "catalogue-ro": 1}))
        assert done["scaled"] == {"catalogue-db-replica": 1, "catalogue-ro": 1}, done
        yield rc


def _sql(url: str, query: str, *args: Any) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def _price(rc: RuntimeClient, store: str) -> float:
    return float(_sql(rc.record["addresses"][store], "SELECT price FROM sock WHERE sock_id = $1", HOLY)[0]["price"])


def _set_price(rc: RuntimeClient, price: float) -> None:
    _sql(rc.record["addresses"]["catalogue-db"], "UPDATE sock SET price = $1 WHERE sock_id = $2", price, HOLY)


def _metrics(rc: RuntimeClient, store: str) -> dict[tuple[str, str], float]:
    """(metric, its slot or application label) → value, from the exporter the recorder runs on ``store``."""
    exporter = PostgresExporter(store, lambda: rc.record["addresses"][store], 5.0)

    async def go() -> Any:
        try:
            return await exporter.collect()
        finally:
            await exporter.close()

    out = {}
    for fam in asyncio.run(go()):
        for labels, value in fam.samples:
            out[(fam.name, labels.get("slot_name") or labels.get("application_name") or "")] = value
    return out


def _replica_dir(rc: RuntimeClient) -> Path:
    return Path(os.path.realpath(rc.data_dir / "stores" / "catalogue-db-replica-0" / "pgdata"))


def test_the_replica_streams_through_the_mesh_and_serves_reads_only(replica_shop: RuntimeClient) -> None:
    rc = replica_shop
    _set_price(rc, 12.5)
    wait_for(lambda: _price(rc, "catalogue-db-replica") == 12.5, timeout=20)
    ro = rc.record["addresses"]["catalogue-ro"].rstrip("/")
    assert requests.get(f"{ro}/catalogue/{HOLY}", timeout=10).json()["price"] == 12.5
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        _sql(rc.record["addresses"]["catalogue-db-replica"], "UPDATE sock SET price = 1 WHERE sock_id = $1", HOLY)
    assert rc.get("/v1/edges")[LINK]["bytes"]["downstream"] > 1 << 20  # the clone and the stream, via the mesh
    replica, primary = _metrics(rc, "catalogue-db-replica"), _metrics(rc, "catalogue-db")
    assert replica[("pg_replication_is_replica", "")] == 1 and replica[("pg_stat_wal_receiver_streaming", "")] == 1
    assert primary[("pg_replication_is_replica", "")] == 0 and primary[("pg_replication_slots_active", SLOT)] == 1
    assert ("pg_stat_replication_pg_wal_lsn_diff", SLOT) in primary
    # The replication login streams WAL and nothing else: no database session, even with its password.
    password = store_credentials(rc.data_dir, ["catalogue-db"])["catalogue-db"]["replication"]
    port = urlsplit(rc.record["addresses"]["catalogue-db"]).port
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match=r"pg_hba\.conf rejects"):
        _sql(f"postgresql://{PG_REPLICATION_USER}:{password}@127.0.0.1:{port}/sockdrill", "SELECT 1")


def test_a_stalled_link_freezes_the_replica_and_both_sides_show_it(replica_shop: RuntimeClient) -> None:
    rc = replica_shop
    _set_price(rc, 20.0)
    wait_for(lambda: _price(rc, "catalogue-db-replica") == 20.0, timeout=20)
    fault = inject(rc, "network.stall", LINK, duration=120)
    try:
        _set_price(rc, 21.0)
        time.sleep(3)
        assert _price(rc, "catalogue-db-replica") == 20.0  # the write is on the primary only
        # The walsender notices in wal_sender_timeout (10 s); the primary holds back WAL for the slot meanwhile.
        primary = wait_for(lambda: (m := _metrics(rc, "catalogue-db"))[("pg_replication_slots_active", SLOT)] == 0
                           and m, timeout=40)
        assert primary[("pg_replication_slots_pg_wal_lsn_diff", SLOT)] > 0
        replica = _metrics(rc, "catalogue-db-replica")
        assert replica[("pg_replication_last_replay_age_seconds", "")] > 3
        assert _price(rc, "catalogue-db-replica") == 20.0
    finally:
        rc.post("/v1/chaos/clear", {"id": fault["id"]})
    wait_for(lambda: _price(rc, "catalogue-db-replica") == 21.0, timeout=60)  # it reconnects and catches up
    wait_for(lambda: _metrics(rc, "catalogue-db")[("pg_replication_slots_active", SLOT)] == 1, timeout=30)


def test_asleep_it_keeps_its_slot_and_a_lost_slot_makes_a_new_clone(replica_shop: RuntimeClient) -> None:
    rc = replica_shop
    marker = _replica_dir(rc) / "sockdrill-test-marker"
    marker.write_text("this clone")
    rc.post("/v1/scale", {"deployment": "catalogue-db-replica", "replicas": 0})
    _set_price(rc, 30.0)
    assert _metrics(rc, "catalogue-db")[("pg_replication_slots_active", SLOT)] == 0  # kept while it sleeps
    rc.post("/v1/scale", {"deployment": "catalogue-db-replica", "replicas": 1})
    wait_for(lambda: _ready(rc), timeout=60)
    wait_for(lambda: _price(rc, "catalogue-db-replica") == 30.0, timeout=30)
    assert marker.exists()  # the same clone, streaming from where it stopped

    rc.post("/v1/scale", {"deployment": "catalogue-db-replica", "replicas": 0})
    _sql(rc.record["addresses"]["catalogue-db"], "SELECT pg_drop_replication_slot($1)", SLOT)
    _set_price(rc, 31.0)
    rc.post("/v1/scale", {"deployment": "catalogue-db-replica", "replicas": 1})
    wait_for(lambda: _ready(rc), timeout=90)
    wait_for(lambda: _price(rc, "catalogue-db-replica") == 31.0, timeout=30)
    assert not (_replica_dir(rc) / "sockdrill-test-marker").exists()  # cloned again
    assert _metrics(rc, "catalogue-db")[("pg_replication_slots_active", SLOT)] == 1


def _ready(rc: RuntimeClient) -> bool:
    dep = next(d for d in rc.get("/v1/status")["deployments"] if d["name"] == "catalogue-db-replica")
    return bool(dep["pods"]) and all(p["ready"] for p in dep["pods"])


def test_a_set_up_route_reads_from_the_replica_until_the_next_reset(replica_shop: RuntimeClient) -> None:
    """Scenario 4's replica-lag end to end: the set-up sends the catalogue's reads to the replica (unrecorded, so
    rollback_route has nothing to undo), a stalled link makes shoppers' reads stale, and a reset brings back the
    manifest's route."""
    rc = replica_shop
    awake = {"catalogue-db-replica": 1, "catalogue-ro": 1}
    reset_deployments(rc, Setup(replicas=awake, routes={"catalogue": {"primary": 0, "replica": 100}}))
    described = rc.get("/v1/describe/catalogue")["route"]
    assert described["subsets"]["replica"]["weight"] == 100 and described["revision"] == 0
    with pytest.raises(ClusterError, match="no earlier route"):
        rc.post("/v1/route/rollback", {"deployment": "catalogue"})
    url = rc.record["addresses"]["catalogue"].rstrip("/") + f"/catalogue/{HOLY}"
    _set_price(rc, 40.0)
    wait_for(lambda: requests.get(url, timeout=10).json()["price"] == 40.0, timeout=20)
    inject(rc, "network.stall", LINK, duration=120)
    _set_price(rc, 41.0)
    time.sleep(2)
    with requests.Session() as shopper:  # one keep-alive connection, as the front-end's pool holds
        assert {shopper.get(url, timeout=10).json()["price"] for _ in range(6)} == {40.0}  # the frozen copy
        # The fix an on-call engineer makes while the link is still stalled: reads back on the primary, the
        # open connection included (from its next request).
        rc.post("/v1/route", {"deployment": "catalogue", "weights": {"primary": 100, "replica": 0}})
        assert {shopper.get(url, timeout=10).json()["price"] for _ in range(6)} == {41.0}
    reset_deployments(rc, Setup(replicas=awake))  # faults cleared, the manifest's route (all to the primary)
    assert rc.get("/v1/describe/catalogue")["route"]["subsets"]["replica"]["weight"] == 0
    assert {requests.get(url, timeout=10).json()["price"] for _ in range(6)} == {41.0}
