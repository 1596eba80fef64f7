"""queue-master: consumes the shipping queue (``queue`` deployment) and processes shipments.

For each shipment it logs ``Received shipment task: <name>`` like upstream, does the work (a knob-set
delay stands in for upstream's worker container), then logs a structured ``shipment processed`` line
carrying the shipment id and counts it in ``queue_master_shipments_processed_total``; the message is
acked only after that, so a crash mid-way redelivers it. Processed is delivered (this shop has no courier): on a
Redis queue store, before the ack, queue-master writes the shipment's tracking record and an ``order-events``
status event in one transaction (``order_events.py``); orders applies the event to the order, so queue-master
never touches orders-db. If that write fails the message is not acked: it is delivered again later. With
``handover_delay_s`` the hand-over comes that much later (a warehouse takes a while): the parcel waits on the
``handovers`` list of the queue store, so a restart loses none.

Queue metrics use the RabbitMQ exporter's names with a ``queue`` label, read from the broker at each
scrape (``/metrics``, and ``/prometheus`` where upstream's Spring actuator served them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sockdrill.shop import order_events
from sockdrill.shop.common import Knob, Service, run_service
from sockdrill.shop.common.env import upstream_url
from sockdrill.shop.common.redisconn import redis_store
from sockdrill.shop.common.tasks import cancel_and_wait
from sockdrill.shop.queue import Delivery, QueueError, QueueStats, ShippingQueue, open_queue
from sockdrill.telemetry import tracing

KNOBS: list[Knob] = [
    Knob("process_delay_s", 0.0, "time spent on each shipment before it is acked (seconds)",
         minimum=0, maximum=600),
    Knob("visibility_timeout_s", 30.0, "Redis queue: pending messages older than this are delivered again",
         minimum=0.05, maximum=3600),
    Knob("prefetch", 10, "messages fetched (Redis) or in flight unacked (RabbitMQ) at once",
         minimum=1, maximum=1000),
    Knob("handover_delay_s", 0.0, "time the warehouse takes to hand a processed parcel over (seconds; 0: at once)",
         minimum=0, maximum=3600),
]
HANDOVERS = "handovers"  # parcels processed and not yet handed over: shipment id scored by when it is due


class QueueCollector:
    """Exporter-style queue series from the last stats read (refreshed before each scrape)."""

    def __init__(self) -> None:
        self.last: QueueStats | None = None
        self.up = 0

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("rabbitmq_up", "Whether the last read of the queue broker worked.")
        up.add_metric([], self.up)
        yield up
        s = self.last
        if s is None:
            return
        gauges = (("rabbitmq_queue_messages_ready", "Messages ready to be delivered.", s.ready),
                  ("rabbitmq_queue_messages_unacknowledged", "Messages delivered, not yet acked.", s.unacked),
                  ("rabbitmq_queue_messages", "Ready plus unacknowledged messages.", s.ready + s.unacked),
                  ("rabbitmq_queue_consumers", "Consumers on the queue.", s.consumers))
        for name, doc, value in gauges:
            g = GaugeMetricFamily(name, doc, labels=["queue"])
            g.add_metric([s.queue], value)
            yield g
        counters = (("rabbitmq_queue_messages_published", "Messages published to the queue.", s.published),
                    ("rabbitmq_queue_messages_delivered", "Messages delivered to consumers.", s.delivered),
                    ("rabbitmq_queue_messages_acked", "Messages acknowledged by consumers.", s.acked))
        for name, doc, value in counters:
            c = CounterMetricFamily(name, doc, labels=["queue"])
            c.add_metric([s.queue], value)
            yield c


class QueueMaster:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.queue: ShippingQueue | None = None
        self._task: asyncio.Task[None] | None = None
        reg = svc.metrics.registry
        self.collector = QueueCollector()
        reg.register(self.collector)  # type: ignore[arg-type]
        self.processed = Counter("queue_master_shipments_processed_total", "Shipments processed and acked.",
                                 ["service"], registry=reg)
        self.invalid = Counter("queue_master_invalid_messages_total", "Messages dropped as unreadable.",
                               ["service"], registry=reg)
        self.events = Counter("queue_master_order_events_total", "Deliveries told to orders (tracking record and "
                              "status event), by result.", ["service", "result"], registry=reg)
        for result in ("ok", "failed"):
            self.events.labels(svc.name, result)
        self._redis: Any = None
        self._handover_task: asyncio.Task[None] | None = None
        svc.on_startup(self._start)
        svc.on_cleanup(self._stop)
        svc.add_health("queue-master-rabbitmq", self._healthy)
        svc.knobs.on_change(self._knobs_changed)

    def _knobs_changed(self, changes: dict[str, object]) -> None:
        # Read by the consumer loop on its next round; no reconnect needed.
        if self.queue is not None and "visibility_timeout_s" in changes:
            self.queue.visibility_timeout_s = float(changes["visibility_timeout_s"])  # type: ignore[attr-defined,arg-type]

    async def _start(self, _app: web.Application) -> None:
        k = self.svc.knobs
        self.queue = open_queue(upstream_url("queue"), consumer=self.svc.pod,
                                visibility_timeout_s=k["visibility_timeout_s"], prefetch=k["prefetch"])
        self._redis = redis_store(upstream_url("queue"))
        if self._redis is None:
            self.svc.log.warning("the queue is not Redis: deliveries are not tracked and orders stay 'shipped'")
        self._task = asyncio.create_task(self.queue.consume(self._traced))
        if self._redis is not None:
            self._handover_task = asyncio.create_task(self._handovers())

    async def _handovers(self) -> None:
        """Hand over the parcels whose time has come: the tracking record and status event first, then off the
        list (a crash in between hands one over twice, which orders counts as a duplicate)."""
        while True:
            # Idle (no hand-over time set, the shop's default) it looks once a second, for parcels left on the list.
            await asyncio.sleep(0.2 if float(self.svc.knobs["handover_delay_s"]) > 0 else 1.0)
            try:
                due = await self._redis.zrangebyscore(HANDOVERS, "-inf", time.time(), start=0, num=100)
                for raw in due:
                    shipment_id = order_events.decode(raw)
                    await order_events.record_delivery(self._redis, shipment_id, time.time())
                    await self._redis.zrem(HANDOVERS, shipment_id)
                    self.events.labels(self.svc.name, "ok").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the queue store away: the parcels wait, nothing is lost
                self.events.labels(self.svc.name, "failed").inc()
                self.svc.log.warning("hand-overs delayed: %s", exc)

    async def _stop(self, _app: web.Application) -> None:
        if self.queue is not None:
            await self.queue.close()
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._handover_task)
        if self._redis is not None:
            await self._redis.aclose()

    async def _healthy(self) -> bool:
        return self.queue is not None and await self.queue.healthy()

    async def _traced(self, delivery: Delivery) -> None:
        """Handle one message in a consumer span, child of the publisher's span (message traceparent)."""
        assert self.queue is not None
        with tracing.span(f"{self.queue.name} process", "consumer", {
                "messaging.system": self.queue.kind, "messaging.destination.name": self.queue.name,
                "messaging.operation": "process", "messaging.message.id": delivery.message_id,
                "messaging.redelivered": delivery.redelivered}, parent_headers=delivery.headers):
            await self.handle(delivery)

    async def handle(self, delivery: Delivery) -> None:
        body = delivery.body
        if not isinstance(body, dict):
            # Acked and dropped: redelivering an unreadable message would only repeat the failure.
            self.invalid.labels(self.svc.name).inc()
            self.svc.log.error("dropping unreadable shipment message %s", delivery.message_id,
                               extra={"fields": {"raw": delivery.raw[:200].decode("utf-8", "replace")}})
            return
        name, shipment_id = body.get("name"), body.get("id")
        # W3C traceparent = version-traceid-spanid-flags: log lines carry the publisher's trace id.
        parts = delivery.headers.get("traceparent", "").split("-")
        trace = {"trace_id": parts[1]} if len(parts) == 4 else {}
        self.svc.log.info("Received shipment task: %s", name, extra={**trace, "fields": {
            "shipment_id": shipment_id, "name": name, "redelivered": delivery.redelivered}})
        delay = self.svc.knobs["process_delay_s"]
        if delay:
            await asyncio.sleep(delay)
        event = None
        handover = float(self.svc.knobs["handover_delay_s"])
        if self._redis is not None and isinstance(shipment_id, str) and shipment_id:
            try:
                if handover > 0:  # handed over later by _handovers (durable: the queue store keeps the list)
                    await self._redis.zadd(HANDOVERS, {shipment_id: time.time() + handover})
                else:
                    event = await order_events.record_delivery(self._redis, shipment_id, time.time())
            except Exception as exc:
                self.events.labels(self.svc.name, "failed").inc()
                self.svc.log.error("delivery of shipment %s not recorded (the message is delivered again): %s",
                                   shipment_id, exc, extra={**trace, "fields": {"shipment_id": shipment_id}})
                raise
            self.events.labels(self.svc.name, "ok").inc()
        self.processed.labels(self.svc.name).inc()
        self.svc.log.info("shipment processed", extra={**trace, "fields": {
            "event": "shipment_processed", "shipment_id": shipment_id, "name": name,
            "message_id": delivery.message_id, "order_event": event}})

    async def refresh(self) -> None:
        if self.queue is None:
            return
        try:
            self.collector.last = await asyncio.wait_for(self.queue.stats(), timeout=1.0)
            self.collector.up = 1
        except (QueueError, TimeoutError) as exc:
            self.collector.up = 0
            self.svc.log.warning("queue stats unavailable: %s", exc or "timeout")

    async def prometheus(self, request: web.Request) -> web.Response:
        self.svc.check_telemetry(request)
        resp = web.Response(body=generate_latest(self.svc.metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp


def build(svc: Service) -> None:
    svc.health_time_field = "date"
    master = QueueMaster(svc)

    @web.middleware
    async def fresh_queue_stats(request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                ) -> web.StreamResponse:
        if request.path in ("/metrics", "/prometheus"):
            svc.check_telemetry(request)  # before the work: an unauthorised scrape costs nothing
            await master.refresh()
        return await handler(request)

    svc.app.middlewares.append(fresh_queue_stats)
    svc.app.router.add_get("/prometheus", master.prometheus)


def main() -> None:
    run_service("queue-master", build, KNOBS)


if __name__ == "__main__":
    main()
