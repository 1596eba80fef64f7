"""Seed scenario 10's probe: test addresses whose delivery zone is known by hand (not read from the shop's
postcode directory), and what a customer would call a wrong delivery quote for one of them. Plain functions and
data, so that tests and tools can use them without the load's event loop."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from typing import Any

from sockdrill.shop import shipping_tariff as tariff

# (place, country as the customer types it, postcode, the zone it truly is in)
DESTINATIONS: tuple[tuple[str, str, str, str], ...] = (
    ("London", "UK", "SW1A 1AA", "uk"),
    ("Leeds", "UK", "LS1 4AP", "uk"),
    ("Manchester", "UK", "M1 1AE", "uk"),
    ("Cardiff", "UK", "CF10 1EP", "uk"),
    ("Edinburgh", "UK", "EH1 1YZ", "uk"),
    ("Kirkwall", "UK", "KW15 1BX", "uk-remote"),
    ("Stornoway", "UK", "HS1 2BW", "uk-remote"),
    ("Lerwick", "UK", "ZE1 0AA", "uk-remote"),
    ("Inverness", "UK", "IV1 1HY", "uk-remote"),
    ("Belfast", "UK", "BT1 5GS", "uk-remote"),
    ("Dublin", "IE", "D02 X285", "eu"),
    ("Paris", "FR", "75001", "eu"),
    ("Berlin", "DE", "10115", "eu"),
    ("New York", "US", "10001", "world"),
    ("Sydney", "AU", "2000", "world"),
)
# After the carrier publishes a new tariff, quotes at the old prices are still right for this long (a quote on its
# way, a cache entry about to be fetched again): past it, a price of the old tariff is wrong.
TARIFF_GRACE_S = 5.0


class PublishedTariff:
    """The carrier's tariff revision in force, read from its public API at most once a second (shared by every
    simulated user of the process), with when each revision was last seen in force."""

    def __init__(self, url: str, every_s: float = 1.0) -> None:
        self.url = url.rstrip("/")
        self.every_s = every_s
        self.seen: dict[int, float] = {}
        self.checked = -math.inf
        self.lock = threading.Lock()

    def read(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/tariff", timeout=2.0) as resp:
                revision = json.loads(resp.read()).get("revision")
        except (OSError, ValueError):
            return None
        return revision if isinstance(revision, int) and not isinstance(revision, bool) else None

    def in_force(self, now: float | None = None) -> set[int]:
        """Revisions a quote may be priced with now (empty when the carrier cannot say)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            if now - self.checked >= self.every_s:
                self.checked = now
                revision = self.read()
                if revision is not None:
                    self.seen[revision] = now
            return {r for r, at in self.seen.items() if now - at <= TARIFF_GRACE_S}


def quote_problem(answer: Any, place: str, postcode: str, zone: str, pairs: int, revisions: set[int]) -> str | None:
    """What a customer shipping ``pairs`` pairs to ``place`` would call wrong in the shop's answer: a missing
    service, or (when the carrier's tariff is known) a price the carrier does not charge. None when it is right."""
    where = f"{place} ({postcode})"
    if not isinstance(answer, dict) or not isinstance(answer.get("options"), list):
        return f"delivery to {where}: no options in the answer"
    offered = {o.get("service"): o for o in answer["options"] if isinstance(o, dict)}
    missing = [s for s in tariff.SERVICES if s not in offered]
    if missing:
        return f"delivery to {where}: missing shipping options: {', '.join(missing)}"
    if not revisions:
        return None
    weight = tariff.parcel_weight_g(pairs)
    for service in tariff.SERVICES:
        quoted = offered[service].get("price")
        right = sorted({tariff.price(r, zone, service, weight) for r in revisions})
        if isinstance(quoted, bool) or not isinstance(quoted, int | float) or \
                not any(math.isclose(quoted, p, abs_tol=0.005) for p in right):
            return (f"{service} delivery to {where}: quoted {quoted}, the carrier charges "
                    f"{' or '.join(f'{p:.2f}' for p in right)}")
    return None
