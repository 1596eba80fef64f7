"""The shipping queue: one small interface, two brokers.

- Redis Streams (default, ``redis://``): stream ``shipping-task``, consumer group ``queue-master``.
  Consumers read with XREADGROUP and XACK (then XDEL, so the stream holds only unfinished work);
  entries left pending longer than the visibility timeout (a consumer crashed or its handler failed)
  are taken over with XAUTOCLAIM and delivered again. Counters shared by all pods live in a hash
  ``<stream>:stats``.
- RabbitMQ (``amqp://``), laid out like upstream shipping: queue ``shipping-task`` plus the topic
  exchange ``shipping-task-exchange`` bound with key ``shipping-task``, publishing through the default
  exchange, manual acks.

Messages are JSON objects (``{"id","name"}`` for shipments) plus string headers; a ``traceparent``
header travels with the message so the consumer can continue the trace.

    q = open_queue(url)
    await q.publish({"id": "…", "name": "…"}, {"traceparent": tp})
    await q.consume(handler)          # handler(delivery); returning acks, raising redelivers later
    await q.stats()                   # QueueStats(ready, unacked, consumers, published, delivered, acked)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sockdrill.errors import ShopError

log = logging.getLogger("sockdrill.queue")

DEFAULT_QUEUE = "shipping-task"
CONSUMER_GROUP = "queue-master"
ALIVE_MS = 10_000  # Redis: a consumer without a heartbeat for this long is not counted
EXCHANGE = "shipping-task-exchange"
# Spring's JSON message converter on the Java side reads this header to pick the class it turns the
# body into; we set it so that an upstream Java consumer could read our messages unchanged.
TYPE_ID = "works.weave.socks.shipping.entities.Shipment"


def queue_name() -> str:
    """The stream/queue name: ``SOCKDRILL_QUEUE_NAME`` (tests isolate with it) or ``shipping-task``."""
    return os.environ.get("SOCKDRILL_QUEUE_NAME") or DEFAULT_QUEUE


class QueueError(Exception):
    """The broker could not be reached or refused the operation."""


@dataclass
class Delivery:
    """One message handed to a consumer."""

    body: Any  # the decoded JSON (None if the payload was not JSON)
    raw: bytes
    headers: dict[str, str]
    message_id: str
    redelivered: bool = False


@dataclass
class QueueStats:
    queue: str
    ready: int = 0  # waiting, not yet delivered
    unacked: int = 0  # delivered, not yet acknowledged
    consumers: int = 0
    published: int = 0
    delivered: int = 0
    acked: int = 0
    scope: dict[str, str] = field(default_factory=dict)  # where each number comes from

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Handler = Callable[[Delivery], Awaitable[None]]


class ShippingQueue(ABC):
    """What shipping and queue-master use; ``open_queue`` picks the implementation from the URL."""

    kind = "abstract"

    def __init__(self, url: str, name: str | None = None) -> None:
        self.url = url
        self.name = name or queue_name()
        self._stopping = asyncio.Event()

    @abstractmethod
    async def publish(self, message: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None: ...

    @abstractmethod
    async def consume(self, handler: Handler) -> None:
        """Deliver messages to ``handler`` until ``close()``; ack when it returns, redeliver if it raises."""

    @abstractmethod
    async def stats(self) -> QueueStats: ...

    @abstractmethod
    async def healthy(self) -> bool: ...

    async def close(self) -> None:
        self._stopping.set()

    @staticmethod
    def encode(message: Mapping[str, Any]) -> bytes:
        return json.dumps(dict(message), separators=(",", ":")).encode()

    @staticmethod
    def decode(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None


def open_queue(url: str, name: str | None = None, *, consumer: str | None = None,
               visibility_timeout_s: float = 30.0, prefetch: int = 10) -> ShippingQueue:
    """A queue client for ``url`` (``redis://`` / ``rediss://`` / ``unix://`` or ``amqp://`` / ``amqps://``)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisStreamQueue(url, name, consumer=consumer, visibility_timeout_s=visibility_timeout_s,
                                batch=prefetch)
    if scheme in ("amqp", "amqps"):
        return RabbitQueue(url, name, prefetch=prefetch)
    raise ShopError(f"queue URL must start with redis:// or amqp://, got {url!r}")


# ---------------------------------------------------------------------------------------------------
# Redis Streams
# ---------------------------------------------------------------------------------------------------


class RedisStreamQueue(ShippingQueue):
    kind = "redis"

    def __init__(self, url: str, name: str | None = None, *, consumer: str | None = None,
                 visibility_timeout_s: float = 30.0, batch: int = 10, block_ms: int = 1000) -> None:
        super().__init__(url, name)
        import redis.asyncio as aioredis

        self.group = CONSUMER_GROUP
        self.consumer = consumer or f"consumer-{os.getpid()}"
        self.visibility_timeout_s = visibility_timeout_s
        self.batch = batch
        self.block_ms = block_ms
        self.stats_key = f"{self.name}:stats"
        self.alive_prefix = f"{self.name}:alive:"
        from sockdrill.shop.common.redisconn import stale_connection_retry

        self._redis = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=2,
                                        health_check_interval=10, **stale_connection_retry())
        self._group_ready = False

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        from redis.exceptions import ResponseError

        try:
            # id 0: the group sees everything already in the stream (published before any consumer started).
            await self._redis.xgroup_create(self.name, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def publish(self, message: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        from redis.exceptions import RedisError

        fields = {"body": self.encode(message), "headers": json.dumps(dict(headers or {}))}
        try:
            await self._ensure_group()
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self.name, fields)  # type: ignore[arg-type]
                pipe.hincrby(self.stats_key, "published", 1)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._group_ready = False
            raise QueueError(f"publish to redis stream '{self.name}' failed: {exc}") from exc

    def _delivery(self, entry_id: Any, fields: Mapping[Any, Any], redelivered: bool) -> Delivery:
        def get(key: str) -> bytes:
            value = fields.get(key.encode(), fields.get(key, b""))
            return value if isinstance(value, bytes) else str(value).encode()

        raw = get("body")
        try:
            headers = json.loads(get("headers") or b"{}")
        except ValueError:
            headers = {}
        mid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return Delivery(self.decode(raw), raw, {str(k): str(v) for k, v in dict(headers).items()}, mid,
                        redelivered)

    async def _handle(self, handler: Handler, entries: list[tuple[Any, Any]], redelivered: bool) -> None:
        if not entries:
            return
        await self._redis.hincrby(self.stats_key, "delivered", len(entries))
        for entry_id, fields in entries:
            if fields is None:  # the entry was deleted while pending: nothing to deliver, just settle it
                await self._redis.xack(self.name, self.group, entry_id)
                continue
            delivery = self._delivery(entry_id, fields, redelivered)
            try:
                await handler(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Left pending: after the visibility timeout some consumer claims it again.
                log.exception("handler failed; message %s stays pending", delivery.message_id)
                continue
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xack(self.name, self.group, entry_id)
                pipe.xdel(self.name, entry_id)
                pipe.hincrby(self.stats_key, "acked", 1)
                await pipe.execute()

    async def _claim(self, handler: Handler) -> None:
        """Take over entries pending for longer than the visibility timeout (crashed or failed consumers)."""
        start: Any = "0-0"
        min_idle = int(self.visibility_timeout_s * 1000)
        while True:
            result = await self._redis.xautoclaim(self.name, self.group, self.consumer, min_idle,
                                                  start_id=start, count=self.batch)
            next_start, claimed = result[0], result[1]
            await self._handle(handler, [(eid, f) for eid, f in claimed], redelivered=True)
            if next_start in (b"0-0", "0-0") or not claimed:
                return
            start = next_start

    async def consume(self, handler: Handler) -> None:
        from redis.exceptions import RedisError

        backoff = 0.2
        own_pending_from: Any = "0"  # None once this consumer's earlier pending entries were handed over
        last_claim = 0.0
        while not self._stopping.is_set():
            try:
                await self._ensure_group()
                if own_pending_from is not None:
                    # A restarted pod reuses its consumer name: finish what it had been given before
                    # (once each; what fails again is retried after the visibility timeout).
                    resp: Any = await self._redis.xreadgroup(self.group, self.consumer,
                                                             {self.name: own_pending_from}, count=self.batch)
                    entries = resp[0][1] if resp else []
                    await self._handle(handler, entries, redelivered=True)
                    own_pending_from = entries[-1][0] if entries else None
                    continue
                now = time.monotonic()
                if now - last_claim >= min(1.0, self.visibility_timeout_s / 2):
                    last_claim = now
                    # Redis 7.0 does not refresh a consumer's idle time on empty reads: a heartbeat key
                    # tells live consumers from dead ones for the consumer count.
                    await self._redis.set(self.alive_prefix + self.consumer, 1, px=ALIVE_MS)
                    await self._claim(handler)
                resp = await self._redis.xreadgroup(self.group, self.consumer, {self.name: ">"},
                                                    count=self.batch, block=self.block_ms)
                for _stream, entries in resp or []:
                    await self._handle(handler, entries, redelivered=False)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._stopping.is_set():  # close() shut the connection under a blocking read
                    return
                self._group_ready = False
                log.warning("redis stream '%s' unavailable: %s; retrying in %.1fs", self.name, exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)

    async def stats(self) -> QueueStats:
        from redis.exceptions import RedisError

        out = QueueStats(self.name, scope={"all": "broker"})
        try:
            await self._ensure_group()
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xlen(self.name)
                pipe.xinfo_groups(self.name)
                pipe.xinfo_consumers(self.name, self.group)
                pipe.hgetall(self.stats_key)
                length, groups, consumers, counts = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._group_ready = False
            raise QueueError(f"stats of redis stream '{self.name}' failed: {exc}") from exc
        pending = 0
        for g in groups:
            gname = g.get("name", g.get(b"name"))
            if gname in (self.group, self.group.encode()):
                pending = int(g.get("pending", g.get(b"pending", 0)) or 0)
        # A consumer whose heartbeat expired (crashed, stopped) no longer counts.
        names = [c.get("name", c.get(b"name")) for c in consumers]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        if names:
            alive = await self._redis.mget([self.alive_prefix + n for n in names])
            out.consumers = sum(1 for a in alive if a is not None)
        out.unacked = pending
        out.ready = max(0, int(length) - pending)  # acked entries are deleted, so the stream is the backlog
        c = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in counts.items()}
        out.published, out.delivered, out.acked = (c.get(k, 0) for k in ("published", "delivered", "acked"))
        return out

    async def healthy(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(Exception):
            await self._redis.delete(self.alive_prefix + self.consumer)
        await self._redis.aclose()

    async def delete(self) -> None:
        """Remove the stream and its counters (tests)."""
        await self._redis.delete(self.name, self.stats_key)


# ---------------------------------------------------------------------------------------------------
# RabbitMQ
# ---------------------------------------------------------------------------------------------------


class RabbitQueue(ShippingQueue):
    """AMQP 0-9-1 via aio-pika's robust connection (it re-declares the queue, exchange, binding and
    consumer after a broker restart). Ready/consumers come from the broker (queue declare); without the
    management API, unacked/published/delivered/acked are this process's own counts."""

    kind = "rabbitmq"

    def __init__(self, url: str, name: str | None = None, *, prefetch: int = 10,
                 connect_timeout_s: float = 3.0) -> None:
        super().__init__(url, name)
        self.prefetch = prefetch
        self.connect_timeout_s = connect_timeout_s
        self._conn: Any = None
        self._channel: Any = None
        self._queue: Any = None
        self._lock = asyncio.Lock()
        self._local = {"published": 0, "delivered": 0, "acked": 0}
        self._inflight = 0

    async def _declare(self, channel: Any) -> Any:
        import aio_pika

        # Same layout as upstream shipping: non-durable queue, topic exchange bound by the queue's name.
        queue = await channel.declare_queue(self.name, durable=False)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        await queue.bind(exchange, routing_key=self.name)
        return queue

    def _safe_url(self) -> str:
        return self.url.split("@", 1)[-1]

    async def _ensure(self) -> Any:
        """The channel, connecting on first use (the robust connection then reconnects by itself)."""
        async with self._lock:
            if self._channel is not None:
                return self._channel
            import aio_pika

            conn = None
            try:
                conn = await asyncio.wait_for(aio_pika.connect_robust(self.url),
                                              timeout=self.connect_timeout_s)
                channel = await conn.channel()
                await channel.set_qos(prefetch_count=self.prefetch)
                self._queue = await self._declare(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                raise QueueError(f"rabbitmq at {self._safe_url()} unavailable: {exc or type(exc).__name__}"
                                 ) from exc
            self._conn, self._channel = conn, channel
            return channel

    async def publish(self, message: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        import aio_pika

        channel = await self._ensure()
        msg = aio_pika.Message(
            self.encode(message),
            content_type="application/json",
            content_encoding="UTF-8",
            headers={"__TypeId__": TYPE_ID, **dict(headers or {})},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await asyncio.wait_for(channel.default_exchange.publish(msg, routing_key=self.name),
                                   timeout=self.connect_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise QueueError(f"publish to rabbitmq queue '{self.name}' failed: {exc or type(exc).__name__}"
                             ) from exc
        self._local["published"] += 1

    async def consume(self, handler: Handler) -> None:
        async def on_message(message: Any) -> None:
            self._local["delivered"] += 1
            self._inflight += 1
            try:
                headers = {str(k): v.decode() if isinstance(v, bytes) else str(v)
                           for k, v in (message.headers or {}).items()}
                delivery = Delivery(self.decode(message.body), message.body, headers,
                                    str(message.delivery_tag), bool(message.redelivered))
                try:
                    await handler(delivery)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("handler failed; message %s requeued", delivery.message_id)
                    await asyncio.sleep(1.0)  # do not spin on a message that keeps failing
                    await message.nack(requeue=True)
                    return
                await message.ack()
                self._local["acked"] += 1
            finally:
                self._inflight -= 1

        backoff = 0.2
        while not self._stopping.is_set():
            try:
                await self._ensure()
                tag = await self._queue.consume(on_message, no_ack=False)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("rabbitmq queue '%s' unavailable: %s; retrying in %.1fs", self.name, exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)
        else:
            return
        try:
            await self._stopping.wait()
        finally:
            await self._cancel_consumer(tag)

    async def _cancel_consumer(self, tag: str) -> None:
        channel = self._channel
        if channel is None or channel.is_closed:
            return
        try:
            await asyncio.wait_for(self._queue.cancel(tag), timeout=self.connect_timeout_s)
        except asyncio.CancelledError:
            # close() may shut the connection under the cancel RPC; only our own cancellation propagates.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception:
            pass

    async def stats(self) -> QueueStats:
        await self._ensure()
        probe = None
        try:
            # A channel of its own: a failing declare closes the channel it ran on.
            probe = await asyncio.wait_for(self._conn.channel(), timeout=self.connect_timeout_s)
            queue = await self._declare(probe)
            result = queue.declaration_result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise QueueError(f"stats of rabbitmq queue '{self.name}' failed: {exc or type(exc).__name__}"
                             ) from exc
        finally:
            if probe is not None:
                with contextlib.suppress(Exception):
                    await probe.close()
        return QueueStats(
            self.name, ready=int(result.message_count or 0), unacked=self._inflight,
            consumers=int(result.consumer_count or 0), published=self._local["published"],
            delivered=self._local["delivered"], acked=self._local["acked"],
            scope={"ready": "broker", "consumers": "broker", "unacked": "process", "published": "process",
                   "delivered": "process", "acked": "process"},
        )

    async def healthy(self) -> bool:
        try:
            channel = await self._ensure()
            return not channel.is_closed and not self._conn.is_closed
        except Exception:
            return False

    async def close(self) -> None:
        await super().close()
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def delete(self) -> None:
        """Delete the queue (tests)."""
        channel = await self._ensure()
        await channel.queue_delete(self.name)
