"""The shipping queue over both brokers (Redis Streams at 127.0.0.1:6379, RabbitMQ at 127.0.0.1:5672),
then shipping → queue → queue-master as real processes. Every test uses its own stream/queue name."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import requests
from servicekit import ServiceProcess, free_port

from sockdrill.shop.queue import Delivery, RabbitQueue, RedisStreamQueue, ShippingQueue, open_queue
from tests.conftest import wait_for

REDIS = "redis://127.0.0.1:6379/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
BACKENDS = {"redis": REDIS, "rabbitmq": AMQP}


def metric(text: str, name: str, labels: str = "") -> float | None:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(\{[^}]*\})?") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.M)
    return float(m.group(m.lastindex or 1)) if m else None


# ---- library level: both backends ------------------------------------------------------------------
@pytest.fixture(params=list(BACKENDS))
async def queue_name(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    url = BACKENDS[request.param]
    name = f"sdtest-{request.param}-{uuid.uuid4().hex[:8]}"
    yield url, name
    q = open_queue(url, name)
    try:
        await q.delete()  # type: ignore[attr-defined]
    finally:
        await q.close()


async def run_consumer(q: ShippingQueue, handler: object) -> asyncio.Task[None]:
    return asyncio.create_task(q.consume(handler))  # type: ignore[arg-type]


async def eventually(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_open_queue_picks_backend_by_url() -> None:
    for url, kind in ((REDIS, RedisStreamQueue), (AMQP, RabbitQueue)):
        q = open_queue(url, "x")
        assert isinstance(q, kind) and q.name == "x"
        await q.close()
    with pytest.raises(Exception, match="redis:// or amqp://"):
        open_queue("http://nope")


async def test_publish_consume_ack_and_stats(queue_name: tuple[str, str]) -> None:
    url, name = queue_name
    pub = open_queue(url, name)
    con = open_queue(url, name, consumer="c1")
    try:
        for i in range(3):
            tp = f"00-{'a' * 32}-{'b' * 16}-01"
            await pub.publish({"id": f"s{i}", "name": f"cust{i}"}, {"traceparent": tp})
        stats = await pub.stats()
        assert stats.queue == name and stats.ready == 3 and stats.unacked == 0 and stats.consumers == 0
        assert stats.published == 3
        got: list[Delivery] = []

        async def handler(d: Delivery) -> None:
            got.append(d)

        task = await run_consumer(con, handler)
        await eventually(lambda: _async_true(len(got) == 3))
        assert [d.body for d in got] == [{"id": f"s{i}", "name": f"cust{i}"} for i in range(3)]
        assert all(d.headers["traceparent"].startswith("00-aaaa") for d in got)
        assert json.loads(got[0].raw) == {"id": "s0", "name": "cust0"}

        async def settled() -> bool:
            s = await con.stats()
            return s.ready == 0 and s.unacked == 0 and s.acked == 3 and s.delivered == 3 and s.consumers == 1

        await eventually(settled)
        await con.close()
        await task
    finally:
        await pub.close()
        await con.close()


async def _async_true(value: bool) -> bool:
    return value


async def test_failed_handler_gets_message_again(queue_name: tuple[str, str]) -> None:
    url, name = queue_name
    pub = open_queue(url, name)
    con = open_queue(url, name, consumer="c1", visibility_timeout_s=0.3)
    seen: list[Delivery] = []

    async def handler(d: Delivery) -> None:
        seen.append(d)
        if len(seen) == 1:
            raise RuntimeError("first attempt fails")

    try:
        await pub.publish({"id": "s1", "name": "n"})
        task = await run_consumer(con, handler)
        await eventually(lambda: _async_true(len(seen) >= 2), timeout=8)
        assert seen[1].body == {"id": "s1", "name": "n"} and seen[1].redelivered
        stats = await con.stats()
        assert stats.acked == 1 and stats.delivered >= 2
        await con.close()
        await task
    finally:
        await pub.close()
        await con.close()


async def test_redis_crashed_consumer_messages_are_reclaimed() -> None:
    name = f"sdtest-redis-{uuid.uuid4().hex[:8]}"
    pub = RedisStreamQueue(REDIS, name)
    survivor = RedisStreamQueue(REDIS, name, consumer="survivor", visibility_timeout_s=0.4)
    try:
        await pub.publish({"id": "s1", "name": "lost"})
        # A consumer takes the message and dies before acking it.
        import redis.asyncio as aioredis

        raw = aioredis.from_url(REDIS)
        taken = await raw.xreadgroup("queue-master", "crashed", {name: ">"}, count=10)
        assert len(taken[0][1]) == 1
        await raw.aclose()
        stats = await pub.stats()
        assert stats.unacked == 1 and stats.ready == 0
        got: list[Delivery] = []

        async def handler(d: Delivery) -> None:
            got.append(d)

        task = asyncio.create_task(survivor.consume(handler))
        await eventually(lambda: _async_true(len(got) == 1), timeout=5)
        assert got[0].body == {"id": "s1", "name": "lost"} and got[0].redelivered

        async def settled() -> bool:
            s = await survivor.stats()
            return s.unacked == 0 and s.ready == 0 and s.acked == 1

        await eventually(settled)
        await survivor.close()
        await task
    finally:
        await pub.delete()
        await pub.close()
        await survivor.close()


async def test_rabbitmq_layout_like_upstream() -> None:
    import aio_pika

    name = f"sdtest-rabbitmq-{uuid.uuid4().hex[:8]}"
    q = RabbitQueue(AMQP, name)
    conn = await aio_pika.connect_robust(AMQP)
    try:
        await q.publish({"id": "s1", "name": "n"}, {"traceparent": "00-x-y-01"})
        channel = await conn.channel()
        # Both exist (passive declares fail otherwise) and the exchange routes the queue's key to it.
        await channel.get_exchange("shipping-task-exchange", ensure=True)
        queue = await channel.get_queue(name, ensure=True)
        exchange = await channel.get_exchange("shipping-task-exchange")
        await exchange.publish(aio_pika.Message(b'{"id":"s2","name":"m"}'), routing_key=name)
        first = await queue.get(timeout=5)
        assert first.content_type == "application/json"
        assert first.headers["__TypeId__"] == "works.weave.socks.shipping.entities.Shipment"
        assert first.headers["traceparent"] == "00-x-y-01"
        assert json.loads(first.body) == {"id": "s1", "name": "n"}
        await first.ack()
        second = await queue.get(timeout=5)
        assert json.loads(second.body) == {"id": "s2", "name": "m"}
        await second.ack()
    finally:
        await q.delete()
        await q.close()
        await conn.close()


async def test_unreachable_broker_raises_queue_error() -> None:
    from sockdrill.shop.queue import QueueError

    port = free_port()
    for url in (f"redis://127.0.0.1:{port}/0", f"amqp://guest:guest@127.0.0.1:{port}/"):
        q = open_queue(url, "x")
        with pytest.raises(QueueError):
            await asyncio.wait_for(q.publish({"id": "1", "name": "n"}), timeout=10)
        assert not await q.healthy()
        await q.close()


# ---- service level: shipping → queue → queue-master ------------------------------------------------
@pytest.fixture(params=list(BACKENDS))
def pipeline(request: pytest.FixtureRequest) -> Iterator[tuple[ServiceProcess, ServiceProcess, str]]:
    url = BACKENDS[request.param]
    name = f"sdtest-{request.param}-{uuid.uuid4().hex[:8]}"
    env = {"SOCKDRILL_URL_QUEUE": url, "SOCKDRILL_QUEUE_NAME": name}
    shipping = ServiceProcess("shipping", env)
    master = ServiceProcess("queue-master", env)
    try:
        # Both boot at once, then each is waited for.
        shipping.start(wait=False)
        master.start(wait=False)
        shipping.wait_healthy()
        master.wait_healthy()
        yield shipping, master, name
    finally:
        shipping.close()
        master.close()
        q = open_queue(url, name)

        async def cleanup() -> None:
            try:
                await q.delete()  # type: ignore[attr-defined]
            finally:
                await q.close()

        asyncio.run(cleanup())


def test_shipment_flows_to_queue_master(pipeline: tuple[ServiceProcess, ServiceProcess, str]) -> None:
    shipping, master, name = pipeline
    health = requests.get(f"{shipping.url}/health", timeout=5).json()["health"]
    assert [(h["service"], h["status"]) for h in health] == [("shipping-rabbitmq", "OK"), ("shipping", "OK")]
    health = requests.get(f"{master.url}/health", timeout=5).json()["health"]
    assert [(h["service"], h["status"]) for h in health] == [("queue-master", "OK"),
                                                              ("queue-master-rabbitmq", "OK")]
    assert all("date" in h for h in health)
    shipment_id = str(uuid.uuid4())
    tp = f"00-{'c' * 32}-{'d' * 16}-01"
    r = requests.post(f"{shipping.url}/shipping", json={"id": shipment_id, "name": "cust-42"},
                      headers={"traceparent": tp}, timeout=5)
    assert r.status_code == 201 and r.json() == {"id": shipment_id, "name": "cust-42"}
    assert r.headers["Content-Type"] == "application/json;charset=UTF-8"

    def processed() -> dict | None:  # the line written once the shipment is done (after "Received ...")
        return next((json.loads(x) for x in master.logs().splitlines()
                     if x.startswith("{") and "shipment_processed" in x), None)

    line = wait_for(processed, timeout=10)
    assert "Received shipment task: cust-42" in master.logs()
    assert line["fields"]["shipment_id"] == shipment_id and line["trace_id"] == "c" * 32
    for path in ("/metrics", "/prometheus"):
        text = requests.get(f"{master.url}{path}", timeout=5).text
        assert metric(text, "queue_master_shipments_processed_total", 'service="queue-master"') == 1.0
        assert metric(text, "rabbitmq_queue_messages_ready", f'queue="{name}"') == 0.0
        assert metric(text, "rabbitmq_queue_messages_unacknowledged", f'queue="{name}"') == 0.0
        assert metric(text, "rabbitmq_queue_consumers", f'queue="{name}"') == 1.0
        assert metric(text, "rabbitmq_queue_messages_delivered_total", f'queue="{name}"') == 1.0
        assert metric(text, "rabbitmq_queue_messages_acked_total", f'queue="{name}"') == 1.0
        assert metric(text, "rabbitmq_queue_messages_published_total", f'queue="{name}"') is not None
    text = requests.get(f"{shipping.url}/metrics", timeout=5).text
    assert metric(text, "shipping_published_total", 'service="shipping"') == 1.0


def test_shipping_texts(pipeline: tuple[ServiceProcess, ServiceProcess, str]) -> None:
    shipping = pipeline[0]
    r = requests.get(f"{shipping.url}/shipping", timeout=5)
    assert r.status_code == 200 and r.text == "GET ALL Shipping Resource."
    r = requests.get(f"{shipping.url}/shipping/abc-1", timeout=5)
    assert r.status_code == 200 and r.text == "GET Shipping Resource with id: abc-1"
    for bad in ("nope", "[]", '{"id": 5, "name": "x"}'):
        r = requests.post(f"{shipping.url}/shipping", data=bad, headers={"Content-Type": "application/json"},
                          timeout=5)
        assert r.status_code == 400 and r.json()


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_shipping_answers_201_when_queue_is_down(scheme: str) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://127.0.0.1:{port}/0" if scheme == "redis" else f"amqp://guest:guest@127.0.0.1:{port}/"
    # The queue is down on purpose: /health answers 200 with an "err" entry.
    with ServiceProcess("shipping", {"SOCKDRILL_URL_QUEUE": url,
                                     "SOCKDRILL_KNOBS": json.dumps({"publish_timeout_s": 1.0})},
                        require_ok=False) as shipping:
        health = requests.get(f"{shipping.url}/health", timeout=5).json()["health"]
        assert [(h["service"], h["status"]) for h in health] == [("shipping-rabbitmq", "err"),
                                                                  ("shipping", "OK")]
        r = requests.post(f"{shipping.url}/shipping", json={"id": "s-1", "name": "n"}, timeout=5)
        assert r.status_code == 201 and r.json() == {"id": "s-1", "name": "n"}
        text = requests.get(f"{shipping.url}/metrics", timeout=5).text
        failures = sum(float(v) for v in re.findall(r"^shipping_publish_failures_total\{[^}]*\} (\S+)$", text,
                                                    re.M))
        assert failures == 1.0
        assert "shipment s-1 not published" in shipping.logs()


def test_queue_master_reports_err_when_queue_is_down() -> None:
    port = free_port()
    with ServiceProcess("queue-master", {"SOCKDRILL_URL_QUEUE": f"redis://127.0.0.1:{port}/0"},
                        require_ok=False) as master:
        health = requests.get(f"{master.url}/health", timeout=5).json()["health"]
        assert [(h["service"], h["status"]) for h in health] == [("queue-master", "OK"),
                                                                  ("queue-master-rabbitmq", "err")]
        text = requests.get(f"{master.url}/metrics", timeout=5).text
        assert metric(text, "rabbitmq_up") == 0.0


async def test_redis_restarted_consumer_finishes_its_own_pending_at_once() -> None:
    import redis.asyncio as aioredis

    name = f"sdtest-redis-{uuid.uuid4().hex[:8]}"
    pub = RedisStreamQueue(REDIS, name)
    # Same consumer name as before the "restart", long visibility timeout: no waiting for a reclaim.
    restarted = RedisStreamQueue(REDIS, name, consumer="queue-master-0", visibility_timeout_s=60)
    try:
        for i in range(3):
            await pub.publish({"id": f"s{i}", "name": "n"})
        raw = aioredis.from_url(REDIS)
        await raw.xreadgroup("queue-master", "queue-master-0", {name: ">"}, count=2)  # then "crashes"
        await raw.aclose()
        got: list[Delivery] = []

        async def handler(d: Delivery) -> None:
            got.append(d)

        task = asyncio.create_task(restarted.consume(handler))
        await eventually(lambda: _async_true(len(got) == 3), timeout=3)
        assert [(d.body["id"], d.redelivered) for d in got] == [("s0", True), ("s1", True), ("s2", False)]
        await restarted.close()
        await task
    finally:
        await pub.delete()
        await pub.close()
        await restarted.close()
