"""The reset before each run cools carts-cache: carts already written back leave it, changes still waiting
for carts-db stay (nothing is lost), so an eviction fault meets the same cache whatever ran before."""

from __future__ import annotations

import redis

from sockdrill.scenarios.reset import _cool_carts_cache, reset_shop
from sockdrill.scenarios.schema import Setup
from sockdrill.shop.carts_cache import DIRTY
from tests.conftest import Shop

# The machine's own Redis, a database no other test uses: no carts service writes back here, so a dirty
# cart stays dirty for as long as the test needs.
SYSTEM_REDIS = "redis://127.0.0.1:6379/15"  # its own db: test_edge uses 13


def test_cooling_drops_clean_carts_and_keeps_changes_not_yet_written_back() -> None:
    r = redis.Redis.from_url(SYSTEM_REDIS, decode_responses=True)
    r.flushdb()
    try:
        for i in range(50):
            r.hset(f"cart:clean-{i}", mapping={"v": 1, "lines": "[]"})
        r.hset("cart:dirty", mapping={"v": 2, "lines": '[{"itemId": "x", "quantity": 1}]'})
        r.zadd(DIRTY, {"dirty": 1.0})
        r.set("other-key", "kept")  # not a cart: not the reset's business
        assert _cool_carts_cache(SYSTEM_REDIS) == 50
        assert sorted(r.keys()) == sorted(["cart:dirty", DIRTY, "other-key"])
    finally:
        r.flushdb()


def test_reset_cools_the_shops_carts_cache(shop: Shop) -> None:
    r = redis.Redis.from_url(shop.addresses["carts-cache"], decode_responses=True)
    try:
        r.hset("cart:reset-test-clean", mapping={"v": 1, "lines": "[]"})
        done = reset_shop(shop.client, Setup())
        assert done["carts_cache_cooled"] >= 1
        assert not r.exists("cart:reset-test-clean")
    finally:
        r.delete("cart:reset-test-clean")
