"""Fraud screening in payment, before a charge: is the card's issuer range (its first six digits) blocked?

The blocklist holds ``fraud_blocklist_size`` ranges, drawn from the shop's seed and all starting with 0 or 1
(no card network issues those, so no seeded or generated card is ever blocked: a healthy shop declines
nothing). ``fraud_check``:
- ``indexed`` (default): one set lookup per payment, whatever the list's size;
- ``scan``: each entry is tried as a pattern against the card number, as a naive rules engine does. It runs in
  payment's worker threads (which share one interpreter lock), so its cost, which grows with the list, queues
  every payment in flight behind the others: the seed's "inefficient payment validation". The pod itself stays
  responsive (probes, config changes): measured, a scan on the event loop at 100,000 entries (~2 s a payment)
  failed payment's readiness probe and left no pod to reconfigure.

Metrics: ``payment_fraud_checks_total{result}`` (passed, blocked, no_card), ``payment_fraud_rules_evaluated_total``
(the work done, one per entry tried), ``payment_validation_seconds``.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any

from prometheus_client import Counter, Histogram

from sockdrill.shop.common.knobs import Knob

FRAUD_KNOBS = [
    Knob("fraud_check", "indexed", "how the card's range is checked against the blocklist: an indexed lookup "
         "or a scan of every entry", choices=("indexed", "scan")),
    Knob("fraud_blocklist_size", 2000, "issuer ranges on the fraud blocklist", minimum=0, maximum=1_000_000),
]


def blocklist(size: int, seed: int) -> list[str]:
    """``size`` distinct six-digit ranges starting with 0 or 1, the same for the same seed."""
    rng = random.Random(f"fraud-blocklist:{seed}")
    out: dict[str, None] = {}
    while len(out) < min(size, 200_000):
        out[f"{rng.randint(0, 1)}{rng.randint(0, 99_999):05d}"] = None
    ranges = list(out)
    # Past 200,000 distinct ranges, entries repeat (a rules list grows with duplicates too).
    return (ranges * (size // len(ranges) + 1))[:size] if ranges else []


class FraudScreen:
    def __init__(self, svc: Any, seed: int) -> None:
        self.svc = svc
        self.seed = seed
        self._size = -1
        self._list: list[str] = []
        self._set: frozenset[str] = frozenset()
        reg = svc.metrics.registry
        self.checks = Counter("payment_fraud_checks_total", "Fraud screenings by result.", ["service", "result"],
                              registry=reg)
        for result in ("passed", "blocked", "no_card"):
            self.checks.labels(svc.name, result)
        self.rules = Counter("payment_fraud_rules_evaluated_total", "Blocklist entries tried by the screening.",
                             ["service"], registry=reg)
        self.seconds = Histogram("payment_validation_seconds", "Time spent screening one payment.", ["service"],
                                 buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
                                 registry=reg)

    def _load(self) -> None:
        size = int(self.svc.knobs["fraud_blocklist_size"])
        if size != self._size:
            self._list = blocklist(size, self.seed)
            self._set = frozenset(self._list)
            self._size = size

    async def check(self, card_number: str | None) -> bool:
        """``blocked``, off the event loop when the screening scans."""
        if self.svc.knobs["fraud_check"] == "scan":
            return await asyncio.to_thread(self.blocked, card_number)
        return self.blocked(card_number)

    def blocked(self, card_number: str | None) -> bool:
        """Whether this card's range is on the blocklist (False when the request names no card)."""
        name = self.svc.name
        if not card_number or len(card_number) < 6:
            self.checks.labels(name, "no_card").inc()
            return False
        started = time.perf_counter()
        self._load()
        prefix = card_number[:6]
        if self.svc.knobs["fraud_check"] == "indexed":
            hit = prefix in self._set
            self.rules.labels(name).inc()
        else:
            hit, tried = False, 0
            for entry in self._list:
                tried += 1
                # A pattern per entry, built and matched each time, as a rules engine reading its rules does.
                if re.match(f"^{entry}[0-9]*$", card_number):
                    hit = True
                    break
            self.rules.labels(name).inc(tried)
        self.seconds.labels(name).observe(time.perf_counter() - started)
        self.checks.labels(name, "blocked" if hit else "passed").inc()
        return hit
