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


def redis_store(url: str | None, timeout: float = 5.0) -> Any:
    """An asyncio client of a Redis store (``url`` a redis:// URL), with the stale-connection retry; None when
    ``url`` is not a Redis one (no queue, or a RabbitMQ queue)."""
    if url is None or not url.startswith("redis"):
        return None
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, socket_timeout=timeout, **stale_connection_retry())
