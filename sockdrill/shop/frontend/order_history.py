"""The front-end's cache of each customer's order history (the "my orders" page), per pod.

A customer's list is kept ``orders_cache_ttl_s`` after it was read from orders, and dropped when this front-end
places an order for that customer (``orders_cache_invalidation``). Nothing tells the front-end that the warehouse
delivered an order, so for up to the TTL the history shows an order's earlier status while its detail page (read
from orders each time) shows the new one: a short TTL keeps the two views within a second of each other; a long
one without the invalidation is the seed's "cache invalidation issues" of scenario 8. A change of either knob
empties the cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from prometheus_client import Counter

MAX_CUSTOMERS = 20000


class OrderHistoryCache:
    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._lists: OrderedDict[str, tuple[float, list[Any]]] = OrderedDict()
        self.requests = Counter("frontend_orders_cache_requests_total", "Order-history reads by cache result.",
                                ["service", "result"], registry=svc.metrics.registry)
        for result in ("hit", "miss"):
            self.requests.labels(svc.name, result)

    def get(self, customer_id: str) -> list[Any] | None:
        entry = self._lists.get(customer_id)
        if entry is not None and entry[0] > time.monotonic():
            self.requests.labels(self.svc.name, "hit").inc()
            return entry[1]
        self.requests.labels(self.svc.name, "miss").inc()
        return None

    def put(self, customer_id: str, orders: list[Any]) -> None:
        ttl = float(self.svc.knobs["orders_cache_ttl_s"])
        if ttl <= 0:
            return
        self._lists[customer_id] = (time.monotonic() + ttl, orders)
        self._lists.move_to_end(customer_id)
        while len(self._lists) > MAX_CUSTOMERS:
            self._lists.popitem(last=False)

    def invalidate(self, customer_id: str) -> None:
        self._lists.pop(customer_id, None)

    def clear(self) -> None:
        self._lists.clear()
