"""orders' side of the order life cycle: apply the warehouse's status events (``order_events.py``) to orders-db.

Each orders pod reads ``order-events`` as one consumer of the group ``orders``: its own pending events first (one
a failure stopped at, even after a restart), then new ones; events pending on a consumer that is gone are claimed
after ``CLAIM_IDLE_S``. An event moves the order with that shipment along the state machine (``shipped`` →
``delivered``) in one guarded UPDATE, then is acked. An event the state machine refuses (the order is not in a
state it may leave that way, or there is no such order) is acked and counted as ``rejected`` or ``unknown``: the
seed's "inconsistent-state events". An event that could not be applied (the database refused or is away) stays
pending and is tried again, ``status_retry_s`` later: nothing is lost, the order only lags.

``status_read_timeout_s`` bounds each read: past it the connection is given up and made again, so a connection the
network silently dropped costs that long; at 0 a read waits for ever, and such a connection stops the pod's
updates until it restarts (seed 8's "service communication failures").

``status_apply_interval_s`` (0: apply as they come) batches: events are read and applied every that many seconds,
a load-shedding setting that leaves orders' views behind the warehouse's for as long.

Metrics: ``orders_status_events_total{status, result}`` (applied, duplicate, rejected, unknown, failed, malformed),
``orders_status_update_latency_seconds`` (event written → applied), ``orders_status_events_pending`` (read, not yet
acked, on this pod) and ``orders_status_consumer_lag_seconds`` (age of the oldest event not yet applied).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from sockdrill.shop import order_events
from sockdrill.shop.common.env import optional_upstream_url
from sockdrill.shop.common.redisconn import redis_store
from sockdrill.shop.common.tasks import cancel_and_wait

BATCH = 100
# A pod's own pending events are re-read (and so kept from going idle) every status_retry_s while it lives; a
# consumer whose events lie idle this long is gone or stuck, and a rollout's new pod takes them over. Applying twice
# is harmless (a duplicate).
CLAIM_IDLE_S = 10.0
RESULTS = ("applied", "duplicate", "rejected", "unknown", "failed", "malformed")


class OrderStatusUpdater:
    def __init__(self, svc: Any, db: Any, status_changes: Counter) -> None:
        self.svc = svc
        self.db = db
        self.status_changes = status_changes
        self._redis: Any = None
        self._read_timeout = 0.0
        self._task: asyncio.Task[None] | None = None
        reg = svc.metrics.registry
        self.events = Counter("orders_status_events_total", "Order status events from the warehouse, by result.",
                              ["service", "status", "result"], registry=reg)
        for result in RESULTS:
            self.events.labels(svc.name, "delivered", result)
        self.latency = Histogram("orders_status_update_latency_seconds",
                                 "From the warehouse's status event to the order's new status.", ["service"],
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120), registry=reg)
        self.pending = Gauge("orders_status_events_pending", "Status events read by this pod and not yet applied.",
                             ["service"], registry=reg)
        self.lag = Gauge("orders_status_consumer_lag_seconds", "Age of the oldest status event not yet applied.",
                         ["service"], registry=reg)
        svc.on_startup(self._start)
        svc.on_cleanup(self._stop)

    # ---- life cycle ------------------------------------------------------------------------------
    def _connect(self) -> Any:
        self._read_timeout = float(self.svc.knobs["status_read_timeout_s"])
        return redis_store(optional_upstream_url("queue"), timeout=self._read_timeout or None)

    async def _start(self, _app: Any) -> None:
        self._redis = self._connect()
        if self._redis is None:
            return  # no Redis queue: nothing tells orders of deliveries (orders stay 'shipped')
        self._task = asyncio.ensure_future(self._run())

    async def _stop(self, _app: Any) -> None:
        await cancel_and_wait(self._task)
        if self._redis is not None:
            await self._redis.aclose()

    # ---- the loop --------------------------------------------------------------------------------
    async def _ensure_group(self) -> None:
        """The group, made with the stream if need be, from the stream's start: events written before it existed
        (orders started after queue-master, the queue store restarted) are applied too; applying is idempotent."""
        from redis.exceptions import ResponseError

        try:
            await self._redis.xgroup_create(order_events.STREAM, order_events.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _run(self) -> None:
        consumer = self.svc.pod
        ready = False
        # Batching counts from the start: a restarted pod does not apply its backlog at once.
        last_claim, last_round = 0.0, time.monotonic()
        while True:
            try:
                if float(self.svc.knobs["status_read_timeout_s"]) != self._read_timeout:
                    # A new read timeout: a new client from the next read. (A read already waiting on a dead
                    # connection with no timeout never gets here: only a restart frees it.)
                    old, self._redis = self._redis, self._connect()
                    await old.aclose()
                if not ready:
                    await self._ensure_group()
                    ready = True
                interval = float(self.svc.knobs["status_apply_interval_s"])
                if interval > 0 and time.monotonic() - last_round < interval:
                    await asyncio.sleep(0.2)  # short naps: a new interval (a knob change) applies at once
                    continue
                last_round = time.monotonic()
                if time.monotonic() - last_claim > CLAIM_IDLE_S / 2:
                    last_claim = time.monotonic()
                    await self._claim(consumer)
                got: Any = await self._redis.xreadgroup(order_events.GROUP, consumer, {order_events.STREAM: "0"},
                                                        count=BATCH)
                entries = got[0][1] if got else []
                if entries:  # our own pending ones (a failure, or a restart): applied again first
                    if not await self._apply_all(entries):
                        await asyncio.sleep(float(self.svc.knobs["status_retry_s"]))
                    continue
                got = await self._redis.xreadgroup(order_events.GROUP, consumer, {order_events.STREAM: ">"},
                                                   count=BATCH, block=None if interval > 0 else 1000)
                entries = got[0][1] if got else []
                if entries and not await self._apply_all(entries):
                    await asyncio.sleep(float(self.svc.knobs["status_retry_s"]))
                if not entries:
                    self.pending.labels(self.svc.name).set(0)
                    self.lag.labels(self.svc.name).set(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the queue store away: try again shortly
                ready = False
                self.svc.log.warning("order status events unreadable: %s", exc or type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _claim(self, consumer: str) -> None:
        """Take over events pending on a consumer that stopped (a pod gone) for longer than CLAIM_IDLE_S."""
        await self._redis.xautoclaim(order_events.STREAM, order_events.GROUP, consumer,
                                     min_idle_time=int(CLAIM_IDLE_S * 1000), start_id="0-0", count=BATCH)

    async def _apply_all(self, entries: list[Any]) -> bool:
        """Apply (and ack) each event in turn; False when one could not be applied (it and the rest stay)."""
        now = time.time()
        oldest = None
        for _entry_id, fields in entries:
            try:
                _s, _st, at = order_events.parse_status_event(fields)
                oldest = at if oldest is None or (at is not None and at < oldest) else oldest
            except order_events.EventError:
                pass
        self.pending.labels(self.svc.name).set(len(entries))
        self.lag.labels(self.svc.name).set(max(0.0, now - oldest) if oldest else 0.0)
        for entry_id, fields in entries:
            try:
                shipment, status, at = order_events.parse_status_event(fields)
            except order_events.EventError as exc:
                self.events.labels(self.svc.name, "unknown_status", "malformed").inc()
                self.svc.log.error("order event %s dropped: %s", order_events.decode(entry_id), exc)
                await self._ack(entry_id)
                continue
            try:
                result = await self.apply(shipment, status)
            except Exception as exc:
                self.events.labels(self.svc.name, status, "failed").inc()
                self.svc.log.error("order event for shipment %s not applied (tried again): %s", shipment, exc,
                                   extra={"fields": {"kind": "order_event_failed", "shipment_id": shipment,
                                                     "status": status, "error": type(exc).__name__}})
                return False
            self.events.labels(self.svc.name, status, result).inc()
            if result == "applied" and at is not None:
                self.latency.labels(self.svc.name).observe(max(0.0, time.time() - at))
            await self._ack(entry_id)
        return True

    async def _ack(self, entry_id: Any) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(order_events.STREAM, order_events.GROUP, entry_id)
            pipe.xdel(order_events.STREAM, entry_id)
            await pipe.execute()

    async def apply(self, shipment: str, status: str) -> str:
        """Move the order of ``shipment`` to what ``status`` means; the result's name (see RESULTS)."""
        sources, target = order_events.TRANSITIONS[status]
        moved = await self.db.fetchval(
            "UPDATE customer_orders SET status = $1, updated_at = now() "
            "WHERE shipment_id = $2 AND status = ANY($3::text[]) RETURNING id", target, shipment, list(sources))
        if moved is not None:
            self.status_changes.labels(self.svc.name, target).inc()
            return "applied"
        row = await self.db.fetchrow("SELECT id, status FROM customer_orders WHERE shipment_id = $1", shipment)
        if row is None:
            self.svc.log.warning("status event '%s' for shipment %s: no such order", status, shipment,
                                 extra={"fields": {"kind": "order_event_unknown", "shipment_id": shipment}})
            return "unknown"
        if row["status"] == target:
            return "duplicate"
        self.svc.log.error("order %s is '%s': the event '%s' cannot apply (inconsistent state)", row["id"],
                           row["status"], status, extra={"fields": {"kind": "order_event_rejected",
                                                                    "order_id": row["id"], "status": row["status"],
                                                                    "event": status}})
        return "rejected"
