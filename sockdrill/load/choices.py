"""Every random choice a simulated user makes, from its own seeded generator, so a run can be repeated.

User ``i`` of a run with seed ``s`` draws from ``random.Random(sha256("s:i"))``: which journey next, which
item, which page, how long to think. The same seed gives the same sequence per user (as long as the
shop answers the same), a different seed a different one. Pure Python: no locust, no gevent.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any, TypeVar

from sockdrill.shop.data.generate import credentials

T = TypeVar("T")

# Upstream's seeded accounts, used when the shop has no generated users.
SEEDED_ACCOUNTS = (("user", "password"), ("user1", "password"), ("Eve_Berger", "eve"))


def user_seed(seed: int, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"sockdrill-load:{seed}:{index}".encode()).digest()[:8], "big")


STRIDE = 7919  # a prime: consecutive simulated users land far apart in the user table


def account_index(index: int, accounts: int) -> int:
    """Which generated user simulated user ``index`` is: distinct for distinct users (while there are
    enough accounts) and spread over the whole table, as real shoppers are, so a lookup without an
    index has to scan like it would in production (not stop after the first few rows)."""
    if accounts % STRIDE == 0:
        return index % accounts
    return (index * STRIDE + accounts // 2) % accounts


def account_for(index: int, accounts: int, data_seed: int) -> tuple[str, str]:
    """(username, password) simulated user ``index`` logs in as: a generated user (see
    ``account_index``), or one of the three seeded accounts when there are none."""
    if accounts > 0:
        return credentials(account_index(index, accounts), data_seed)
    return SEEDED_ACCOUNTS[index % len(SEEDED_ACCOUNTS)]


class Chooser:
    """One simulated user's choices. ``log`` (if given) receives ``[what, value]`` for every choice."""

    def __init__(self, seed: int, index: int, mix: dict[str, int], think: tuple[float, float] = (0.0, 0.0),
                 log: list[list[Any]] | None = None) -> None:
        if not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError(f"a journey mix needs positive weights, got {mix}")
        self.index = index
        self.rng = random.Random(user_seed(seed, index))
        self._names = list(mix)
        self._weights = [mix[n] for n in self._names]
        self.think_range = think
        self.log = log

    def _note(self, what: str, value: Any) -> None:
        if self.log is not None:
            self.log.append([what, value])

    def journey(self) -> str:
        name = self.rng.choices(self._names, self._weights)[0]
        self._note("journey", name)
        return name

    def pick(self, what: str, items: Sequence[T], key: str | None = None) -> T:
        """One of ``items``; ``key`` names the field logged for dict items (e.g. ``"id"``)."""
        if not items:
            raise IndexError(f"nothing to choose for {what}")
        item = items[self.rng.randrange(len(items))]
        self._note(what, item.get(key) if key and isinstance(item, dict) else item)
        return item

    def randint(self, what: str, low: int, high: int) -> int:
        value = self.rng.randint(low, high)
        self._note(what, value)
        return value

    def chance(self, what: str, p: float) -> bool:
        value = self.rng.random() < p
        self._note(what, value)
        return value

    def think(self) -> float:
        low, high = self.think_range
        return self.rng.uniform(low, high) if high > 0 else 0.0
