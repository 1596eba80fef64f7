"""The diagnosis taxonomy covers the seed: every seed root cause has a category, every category a cause."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sockdrill.errors import OracleError
from sockdrill.evaluate.taxonomy import CATEGORIES, SEED_ROOT_CAUSES, category_of, get_category, normalise

SEED = Path("/work/shared/seed/sock-shop-failure-scenarios.md")


def test_every_category_is_used_by_a_seed_root_cause() -> None:
    used = {rc.category for rc in SEED_ROOT_CAUSES}
    assert used == set(CATEGORIES), f"unused: {set(CATEGORIES) - used}"


def test_every_mapping_names_a_known_category_and_every_scenario_is_covered() -> None:
    for rc in SEED_ROOT_CAUSES:
        assert rc.category in CATEGORIES, rc
        assert rc.source in ("root cause", "reproduction")
    assert {rc.scenario for rc in SEED_ROOT_CAUSES} == set(range(1, 11))
    assert all(c.description for c in CATEGORIES.values())


@pytest.mark.skipif(not SEED.exists(), reason="seed document not on this machine")
def test_mapping_lists_every_root_cause_in_the_seed_document() -> None:
    text = SEED.read_text()
    found: list[tuple[int, str]] = []
    for m in re.finditer(r"^## (\d+)\. .*?(?=^## |\Z)", text, re.M | re.S):
        number = int(m.group(1))
        block = m.group(0).split("**Potential Root Causes**:", 1)[1].split("**Key Metrics**", 1)[0]
        found += [(number, line.strip()[2:].strip()) for line in block.splitlines() if line.strip().startswith("- ")]
    assert len(found) == 40
    listed = {(rc.scenario, rc.cause) for rc in SEED_ROOT_CAUSES if rc.source == "root cause"}
    assert set(found) == listed


def test_lookup_and_normalise() -> None:
    assert category_of(1, "missing database indexes on user collection") == "query_inefficiency"
    assert category_of(3, "Data eviction from cache") == "cache_eviction"
    with pytest.raises(OracleError, match="did you mean"):
        category_of(3, "Data evictions from cache")
    with pytest.raises(OracleError, match="does not exist"):
        category_of(11, "anything")
    assert normalise("Network Partition") == "network_partition"
    assert normalise("missing-index") == "query_inefficiency"
    assert normalise("  ") is None and normalise(None) is None and normalise("bad luck") is None
    with pytest.raises(OracleError, match="did you mean 'cache_eviction'"):
        get_category("cache_evictions")
