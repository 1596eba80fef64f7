"""What the catalogue tells the rest of the shop after each committed product change, on Redis streams of the
``queue`` store (messages carry the fields every stream of the shop's queue uses, ``body`` and ``headers``):

- **purges** for the edge caches (shop/edge.py): one stream per region, ``cdn-purge.<region>``, body
  ``{"v": 1, "keys": ["product:<id>"], "at": <epoch>}``, to the regions in the ``cdn_regions`` knob;
- **changes** for the search indexer (shop/search.py): ``catalogue-changes``, body ``{"v": 1, "op":
  "create"|"update"|"delete", "id": "<id>", "at": <epoch>}``, always (when the pod has a queue).

A publish that fails (no queue, the queue down, slower than ``purge_publish_timeout_s``) never fails the staff's
change: it is logged and counted (``catalogue_invalidation_failures_total``), as a CMS whose CDN purge failed still
shows "saved". That is seed scenario 4's "cache invalidation failures"; a search index missing a change is
seed scenario 6's staleness.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from prometheus_client import Counter

from sockdrill.shop.common import Knob, Service
from sockdrill.shop.common.env import optional_upstream_url
from sockdrill.shop.common.redisconn import redis_store
from sockdrill.shop.common.streams import EventError as EventError  # (re-exported: readers catch it)
from sockdrill.shop.common.streams import message_body

STREAM_PREFIX = "cdn-purge."
CHANGES_STREAM = "catalogue-changes"
MAXLEN = 1000  # a region nobody reads (its edge asleep) keeps at most about this many messages
CHANGES_MAXLEN = 10000  # the indexer reindexes from the catalogue when it finds a gap, so old ones may go

KNOBS: list[Knob] = [
    Knob("cdn_regions", "", "regions whose edge caches are sent a purge on every product change "
         "(comma-separated, e.g. 'us,eu'; empty: none)"),
    Knob("purge_publish_timeout_s", 1.0, "timeout of publishing one product change's purges (seconds)",
         minimum=0.01, maximum=30),
]


def purge_fields(keys: list[str], at: float | None = None) -> dict[str, str]:
    return {"body": json.dumps({"v": 1, "keys": keys, "at": time.time() if at is None else at}), "headers": "{}"}


def change_fields(op: str, product: str, at: float | None = None) -> dict[str, str]:
    return {"body": json.dumps({"v": 1, "op": op, "id": product, "at": time.time() if at is None else at}),
            "headers": "{}"}


def parse_change(fields: dict[Any, Any]) -> tuple[str, str, float | None]:
    """A change message's (op, product id, time); EventError if it is not one."""
    body = message_body(fields, "change")
    op, product = body.get("op"), body.get("id")
    if op not in ("create", "update", "delete") or not isinstance(product, str) or not product:
        raise EventError(f"a change message needs 'op' and 'id': {body!r:.120}")
    at = body.get("at")
    return op, product, float(at) if isinstance(at, (int, float)) else None


def parse_purge(fields: dict[Any, Any]) -> tuple[list[str], float | None]:
    """A purge message's keys and publication time; EventError if it is not a version-1 purge."""
    body = message_body(fields, "purge")
    raw = fields.get(b"body", fields.get("body"))
    keys = body.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise EventError(f"a purge message needs 'keys', a list of names: {str(raw)[:120]!r}")
    at = body.get("at")
    return keys, float(at) if isinstance(at, (int, float)) else None


async def ensure_group(r: Any, stream: str, group: str) -> None:
    """The consumer group (reading from now on), made with its stream if need be; one that exists is kept."""
    from redis.exceptions import ResponseError

    try:
        await r.xgroup_create(stream, group, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def next_in_order(r: Any, stream: str, group: str, consumer: str, count: int) -> list[Any]:
    """The next messages for a reader that keeps order: its own pending ones first (the one a failure stopped
    at, even after a restart, since the consumer's name is the same), new ones only when none is pending."""
    got: Any = await r.xreadgroup(group, consumer, {stream: "0"}, count=count)
    entries = got[0][1] if got else []
    if not entries:
        got = await r.xreadgroup(group, consumer, {stream: ">"}, count=count, block=1000)
        entries = got[0][1] if got else []
    return list(entries)


def regions_of(value: str) -> list[str]:
    return [r.strip() for r in value.split(",") if r.strip()]


class ProductEvents:
    """The catalogue's side: after a product change, XADD its change record and a purge to every configured
    region's stream."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self._redis: Any = None
        reg = svc.metrics.registry
        self.published = Counter("catalogue_invalidations_published_total", "Purges published, by region.",
                                 ["service", "region"], registry=reg)
        self.failures = Counter("catalogue_invalidation_failures_total",
                                "Purges that could not be published (the change itself was saved).",
                                ["service", "region", "reason"], registry=reg)
        self.changes = Counter("catalogue_product_changes_total", "Product changes by staff, by operation.",
                               ["service", "op"], registry=reg)
        svc.on_cleanup(self._close)

    async def _close(self, _app: Any) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def _client(self) -> Any:
        if self._redis is None:
            self._redis = redis_store(optional_upstream_url("queue"))
        return self._redis

    async def changed(self, op: str, product: str) -> None:
        """A committed change of ``product``: count it, record it for the indexer, purge it in every region."""
        self.changes.labels(self.svc.name, op).inc()
        client = self._client()
        timeout = float(self.svc.knobs["purge_publish_timeout_s"])
        if client is not None:
            try:
                await asyncio.wait_for(client.xadd(CHANGES_STREAM, change_fields(op, product), maxlen=CHANGES_MAXLEN,
                                                   approximate=True), timeout=timeout)
            except Exception as exc:  # the indexer catches up by reindexing; the change itself is saved
                self.svc.log.warning("change of %s not recorded on %s: %s", product, CHANGES_STREAM,
                                     exc or type(exc).__name__)
        regions = regions_of(str(self.svc.knobs["cdn_regions"]))
        fields = purge_fields([f"product:{product}"])
        for region in regions:
            reason = None
            if client is None:
                reason = "no_queue"
            else:
                try:
                    await asyncio.wait_for(client.xadd(STREAM_PREFIX + region, fields, maxlen=MAXLEN,
                                                       approximate=True), timeout=timeout)
                except TimeoutError:
                    reason = "timeout"
                except Exception as exc:  # the queue down or refusing: counted and logged, never the staff's error
                    reason = "queue_error"
                    self.svc.log.warning("purge of %s for %s failed: %s", product, region, exc)
            if reason is None:
                self.published.labels(self.svc.name, region).inc()
            else:
                self.failures.labels(self.svc.name, region, reason).inc()
                self.svc.log.error("purge of product %s not published to region %s: %s", product, region, reason,
                                   extra={"fields": {"kind": "purge_not_published", "product": product,
                                                     "region": region, "reason": reason}})
