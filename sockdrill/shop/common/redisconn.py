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
