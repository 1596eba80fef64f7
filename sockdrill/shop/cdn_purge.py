"""The purge channel between the catalogue and the edge caches (shop/edge.py): one Redis stream per region on
the ``queue`` store, ``cdn-purge.<region>``, each message ``{"body": "{\\"v\\": 1, \\"keys\\": [\\"product:<id>\\"],
\\"at\\": <epoch>}", "headers": "{}"}`` (the fields every stream of the shop's queue uses).

The catalogue publishes after each committed product change, to the regions in its ``cdn_regions`` knob. A
publish that fails (no queue, the queue down, slower than ``purge_publish_timeout_s``) never fails the staff's
change: it is logged and counted (``catalogue_invalidation_failures_total``), as a CMS whose CDN purge failed
still shows "saved". That is seed scenario 4's "cache invalidation failures".
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from prometheus_client import Counter

from sockdrill.shop.common import Knob, Service
from sockdrill.shop.common.env import optional_upstream_url

STREAM_PREFIX = "cdn-purge."
MAXLEN = 1000  # a region nobody reads (its edge asleep) keeps at most about this many messages

KNOBS: list[Knob] = [
    Knob("cdn_regions", "", "regions whose edge caches are sent a purge on every product change "
         "(comma-separated, e.g. 'us,eu'; empty: none)"),
    Knob("purge_publish_timeout_s", 1.0, "timeout of publishing one product change's purges (seconds)",
         minimum=0.01, maximum=30),
]


class PurgeError(ValueError):
    """A purge message an edge cannot apply."""


def purge_fields(keys: list[str], at: float | None = None) -> dict[str, str]:
    return {"body": json.dumps({"v": 1, "keys": keys, "at": time.time() if at is None else at}), "headers": "{}"}


def parse_purge(fields: dict[Any, Any]) -> tuple[list[str], float | None]:
    """A purge message's keys and publication time; PurgeError if it is not a version-1 purge."""
    raw = fields.get(b"body", fields.get("body"))
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        body = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("v") != 1:
        raise PurgeError(f"not a version-1 purge message: {str(raw)[:120]!r}")
    keys = body.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise PurgeError(f"a purge message needs 'keys', a list of names: {str(raw)[:120]!r}")
    at = body.get("at")
    return keys, float(at) if isinstance(at, (int, float)) else None


def regions_of(value: str) -> list[str]:
    return [r.strip() for r in value.split(",") if r.strip()]


class PurgePublisher:
    """The catalogue's side: XADD a purge to every configured region's stream after a product change."""

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
            url = optional_upstream_url("queue")
            if url is None or not url.startswith("redis"):
                return None
            import redis.asyncio as aioredis

            from sockdrill.shop.common.redisconn import stale_connection_retry

            self._redis = aioredis.Redis.from_url(url, socket_timeout=5, **stale_connection_retry())
        return self._redis

    async def changed(self, op: str, product: str) -> None:
        """A committed change of ``product``: count it, and purge it in every configured region."""
        self.changes.labels(self.svc.name, op).inc()
        regions = regions_of(str(self.svc.knobs["cdn_regions"]))
        if not regions:
            return
        client = self._client()
        fields = purge_fields([f"product:{product}"])
        for region in regions:
            reason = None
            if client is None:
                reason = "no_queue"
            else:
                try:
                    await asyncio.wait_for(client.xadd(STREAM_PREFIX + region, fields, maxlen=MAXLEN,
                                                       approximate=True),
                                           timeout=float(self.svc.knobs["purge_publish_timeout_s"]))
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
