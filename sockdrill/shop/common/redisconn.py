"""Redis client settings every service shares."""

from __future__ import annotations

from typing import Any


def stale_connection_retry() -> dict[str, Any]:
    """A pooled connection that died while idle (the Redis pod restarted) is replaced and the command
    sent again once, instead of failing a customer's request."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    return {"retry": Retry(NoBackoff(), 1), "retry_on_error": [RedisConnectionError]}


# Connections a pod keeps to one Redis store. redis-py's default pool refuses a request past 100 connections in use
# (MaxConnectionsError: a customer's 500 in 0.1 ms); at a sale's peak (scenario 7's 1000 shoppers) a request waits
# for a connection instead, up to the client's timeout, as a busy service queues.
POOL_SIZE = 64


def pooled_redis(url: str, timeout: float | None = 5.0, **kwargs: Any) -> Any:
    """An asyncio client of a Redis store over a blocking pool of ``POOL_SIZE`` connections, with the
    stale-connection retry: past the pool's size a command waits up to ``timeout`` s for a connection (None: no
    limit, on the socket either)."""
    import redis.asyncio as aioredis

    kwargs.setdefault("socket_timeout", timeout)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=POOL_SIZE, timeout=timeout,
                                                    **stale_connection_retry(), **kwargs)
    return aioredis.Redis.from_pool(pool)


def redis_store(url: str | None, timeout: float | None = 5.0) -> Any:
    """An asyncio client of a Redis store (``url`` a redis:// URL), pooled as ``pooled_redis``; None when ``url`` is
    not a Redis one (no queue, or a RabbitMQ queue)."""
    if url is None or not url.startswith("redis"):
        return None
    return pooled_redis(url, timeout)
