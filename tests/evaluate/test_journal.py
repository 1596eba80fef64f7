"""The run journal: JSON round-trip, clear errors on bad files, topology distances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sockdrill.errors import OracleError
from sockdrill.evaluate.journal import ActionEvent, Journal, Marker, SubmitEvent, Topology

from .journalkit import T0, oracle_run


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    j = oracle_run()
    path = j.save(tmp_path / "run" / "journal.json")
    back = Journal.load(path)
    assert back == j
    assert back.to_json() == j.to_json()
    kinds = [type(e) for e in back.timeline()]
    assert Marker in kinds and ActionEvent in kinds and SubmitEvent in kinds
    assert back.samples["login"][0].time == T0
    assert back.onset == T0 + 30 and back.first("fault_revert") == T0 + 100
    assert back.submission is not None and back.submission.category == "missing_index"
    assert back.recovery_window == 10.0          # the fast profile's
    assert not list(tmp_path.glob("run/*.tmp"))  # written atomically


def test_bad_journals_are_named(tmp_path: Path) -> None:
    with pytest.raises(OracleError, match="not JSON"):
        Journal.from_json("{", source="x.json")
    data = json.loads(oracle_run().to_json())
    data["version"] = 99
    with pytest.raises(OracleError, match="version 99"):
        Journal.from_json(json.dumps(data))
    data = json.loads(oracle_run().to_json())
    data["events"][0]["kind"] = "fault_onsett"
    with pytest.raises(OracleError, match=r"events\.0"):
        Journal.from_json(json.dumps(data))
    data = json.loads(oracle_run().to_json())
    data["slos"][0]["threshold"] = -1
    with pytest.raises(OracleError, match="journal: SLO login-latency: threshold must be > 0"):
        Journal.from_json(json.dumps(data))
    with pytest.raises(OracleError, match="cannot read journal"):
        Journal.load(tmp_path / "missing.json")
    with pytest.raises(OracleError, match="did you mean 'fault_onset'"):
        oracle_run().mark("fault_onsets", T0)


def test_topology_resolves_pods_and_measures_hops() -> None:
    topo = Topology.from_manifest()
    assert topo.resolve("user-db-0") == "user-db" and topo.resolve("user-3") == "user"
    assert topo.resolve("USER_DB") == "user-db" and topo.resolve("mongo") is None
    assert topo.distance("user-db", "user-db") == 0
    assert topo.distance("user", "user-db") == 1
    assert topo.distance("front-end", "user-db") == 2
    assert topo.distance("carts", "user-db") == 3     # carts ← orders → user → user-db
    assert topo.distance("mongo", "user") is None
    lonely = Topology(deployments=["a", "b"], edges=[])
    assert lonely.distance("a", "b") is None


def test_action_read_write_guess() -> None:
    assert not ActionEvent(time=0, tool="get_metrics").changes_system
    assert ActionEvent(time=0, tool="restart").changes_system
    assert not ActionEvent(time=0, tool="restart", mutating=False).changes_system
