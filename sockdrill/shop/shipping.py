"""shipping: takes shipments from orders and puts them on the shipping queue (``queue`` deployment).

Like upstream, POST /shipping answers 201 with the shipment even when publishing fails; the failure
is logged and counted (``shipping_publish_failures_total``), so lost shipments show in metrics and
logs rather than to the caller. The queue is Redis Streams, or RabbitMQ for an ``amqp://`` URL; the
health entry keeps upstream's name ``shipping-rabbitmq`` either way and comes first, as upstream.

Extension: ``GET /shipping/{id}/status`` is the warehouse's view of a shipment, from the tracking record
queue-master writes when it hands the parcel over (``order_events.py``): ``{"id", "status": "delivered", "at"}``, or
``"in_transit"`` (``at`` null) while there is none. Upstream's ``GET /shipping/{id}`` text is unchanged.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from sockdrill.shop import order_events
from sockdrill.shop.common import Knob, Service, json_response, read_json, run_service
from sockdrill.shop.common.env import upstream_url
from sockdrill.shop.common.redisconn import redis_store
from sockdrill.shop.queue import QueueError, ShippingQueue, open_queue
from sockdrill.shop.spring import JSON_UTF8
from sockdrill.telemetry import tracing

KNOBS: list[Knob] = [
    Knob("publish_timeout_s", 2.0, "timeout of one publish to the queue (seconds)",
         minimum=0.001, maximum=60),
    # Upstream answered 201 even when the broker refused the message (the shipment was silently lost).
    # With publisher confirms required, a refused publish is a 503 the caller sees.
    Knob("require_publish", False, "answer 503 when the queue refuses the shipment (publisher confirms)"),
]

TEXT_UTF8 = "text/plain;charset=UTF-8"


class Shipping:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.queue: ShippingQueue | None = None
        reg = svc.metrics.registry
        self.published = Counter("shipping_published_total", "Shipments put on the queue.", ["service"],
                                 registry=reg)
        self.failures = Counter("shipping_publish_failures_total",
                                "Shipments answered 201 but not put on the queue.", ["service", "reason"],
                                registry=reg)
        self._redis: Any = None
        svc.on_startup(self._start)
        svc.on_cleanup(self._stop)
        svc.add_health("shipping-rabbitmq", self._healthy)

    async def _start(self, _app: web.Application) -> None:
        # No broker round-trip here: shipping starts (and reports err) while the queue is down.
        url = upstream_url("queue")
        self.queue = open_queue(url)
        self._redis = redis_store(url, timeout=2.0)

    async def _stop(self, _app: web.Application) -> None:
        if self.queue is not None:
            await self.queue.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def _healthy(self) -> bool:
        return self.queue is not None and await self.queue.healthy()

    async def create(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        shipment_id = body.get("id")
        name = body.get("name")
        if shipment_id is None:
            shipment_id = str(uuid.uuid4())
        if not isinstance(shipment_id, str) or not (name is None or isinstance(name, str)):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": "shipment 'id' and 'name' must be strings", "status_code": 400,
                                 "status_text": "Bad Request"}), content_type="application/json")
        shipment = {"id": shipment_id, "name": name}
        headers = {}
        if "traceparent" in request.headers:
            headers["traceparent"] = request.headers["traceparent"]
        assert self.queue is not None
        try:
            # The consumer's span continues the trace through the message's traceparent (ours, once
            # tracing is on; the caller's forwarded one otherwise).
            with tracing.span(f"{self.queue.name} publish", "producer", {
                    "messaging.system": self.queue.kind, "messaging.destination.name": self.queue.name,
                    "messaging.operation": "publish", "messaging.message.id": shipment_id}):
                await asyncio.wait_for(self.queue.publish(shipment, tracing.inject(headers)),
                                       timeout=self.svc.knobs["publish_timeout_s"])
        except (QueueError, TimeoutError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "broker"
            self.failures.labels(self.svc.name, reason).inc()
            self.svc.log.error("shipment %s not published: %s", shipment_id, exc or "timeout",
                               extra={"fields": {"shipment_id": shipment_id, "name": name, "reason": reason}})
            if self.svc.knobs["require_publish"]:
                return json_response({"error": f"shipment not queued: {reason}", "status_code": 503,
                                      "status_text": "Service Unavailable"}, status=503)
        else:
            self.published.labels(self.svc.name).inc()
            self.svc.log.info("shipment %s published", shipment_id,
                              extra={"fields": {"event": "shipment_published", "shipment_id": shipment_id,
                                                "name": name}})
        return json_response(shipment, status=201, content_type=JSON_UTF8)

    async def list_all(self, _request: web.Request) -> web.Response:
        return web.Response(body=b"GET ALL Shipping Resource.", headers={"Content-Type": TEXT_UTF8})

    async def get_one(self, request: web.Request) -> web.Response:
        text = f"GET Shipping Resource with id: {request.match_info['id']}"
        return web.Response(body=text.encode(), headers={"Content-Type": TEXT_UTF8})


    async def tracking(self, request: web.Request) -> web.Response:
        shipment_id = request.match_info["id"]
        if self._redis is None:
            raise web.HTTPNotImplemented(text=json.dumps({
                "error": "shipment tracking needs the Redis queue", "status_code": 501,
                "status_text": "Not Implemented"}), content_type="application/json")
        try:
            rec = await order_events.tracking(self._redis, shipment_id)
        except Exception as exc:  # the queue store away: the view is unavailable, not "in transit"
            self.svc.log.warning("tracking of %s unavailable: %s", shipment_id, exc)
            raise web.HTTPServiceUnavailable(text=json.dumps({
                "error": "shipment tracking unavailable", "status_code": 503,
                "status_text": "Service Unavailable"}), content_type="application/json") from None
        status, at = (rec["status"], rec["at"]) if rec else ("in_transit", None)
        return json_response({"id": shipment_id, "status": status, "at": at}, content_type=JSON_UTF8)


@web.middleware
async def _queue_health_first(request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                              ) -> web.StreamResponse:
    """Upstream shipping lists ``shipping-rabbitmq`` before itself in /health."""
    resp = await handler(request)
    if request.path == "/health" and isinstance(resp, web.Response) and isinstance(resp.body, bytes):
        data = json.loads(resp.body)
        items = data.get("health", [])
        data["health"] = items[1:] + items[:1]
        return json_response(data, status=resp.status)
    return resp


def build(svc: Service) -> None:
    svc.health_time_field = "date"
    shipping = Shipping(svc)
    svc.app.middlewares.append(_queue_health_first)
    r = svc.app.router
    r.add_post("/shipping", shipping.create)
    r.add_get("/shipping", shipping.list_all)
    r.add_get("/shipping/{id}", shipping.get_one)
    r.add_get("/shipping/{id}/status", shipping.tracking)


def main() -> None:
    run_service("shipping", build, KNOBS)


if __name__ == "__main__":
    main()
