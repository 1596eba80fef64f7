"""Front-end sessions: a signed ``md.sid`` cookie whose id keys a JSON record in Redis (``session-db``).

Modelled on what upstream's express-session + connect-redis did, with our own signing scheme:
- cookie ``md.sid=s%3A<sid>.<sig>``, ``Path=/; HttpOnly``, no Max-Age (a browser-session cookie);
  ``sig`` = base64url(HMAC-SHA256(secret, sid)) without padding. The secret comes from
  ``SOCKDRILL_SESSION_SECRET`` (every replica must share it) or a fixed default;
- the record lives at ``sess:<sid>`` (connect-redis' default prefix) with a sliding TTL
  (``session_ttl_s``): every request that uses the session pushes the expiry out again;
- a missing, badly signed or expired cookie starts a fresh session (new id, new cookie), like
  ``saveUninitialized: true``: the new record is written at once. A validly signed cookie whose record
  is gone is an expired session: the front-end counts it (``sessions_expired_total``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sockdrill.shop.common.redisconn import pooled_redis
from sockdrill.telemetry import tracing

COOKIE = "md.sid"
LOGGED_IN = "logged_in"
LOGGED_IN_MAX_AGE = 3600  # upstream: 1 hour
PREFIX = "sess:"
DEFAULT_SECRET = "sockdrill front-end session secret"
_SPAN_ATTRS = {"db.system": "redis", "peer.service": "session-db", "server.address": "session-db"}


class SessionStoreError(Exception):
    """The session store (Redis) could not be read or written."""


def _secret() -> bytes:
    return os.environ.get("SOCKDRILL_SESSION_SECRET", DEFAULT_SECRET).encode()


def sign(sid: str, secret: bytes | None = None) -> str:
    mac = hmac.new(secret or _secret(), sid.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def cookie_value(sid: str) -> str:
    """The ``md.sid`` cookie value, URL-encoded like express-session's (``s%3A<sid>.<sig>``)."""
    return f"s%3A{sid}.{sign(sid)}"


def unsign(raw: str | None) -> str | None:
    """The session id inside a cookie value, or None when it is missing, malformed or forged."""
    if not raw:
        return None
    value = unquote(raw)
    if not value.startswith("s:"):
        return None
    sid, dot, sig = value[2:].rpartition(".")
    if not dot or not sid or len(sid) > 128:
        return None
    if not hmac.compare_digest(sig, sign(sid)):
        return None
    return sid


def new_sid() -> str:
    return secrets.token_urlsafe(24)  # 32 URL-safe characters, like uid-safe(24)


@dataclass
class Session:
    sid: str
    data: dict[str, Any] = field(default_factory=dict)
    is_new: bool = False
    dirty: bool = False
    # A new session made for a cookie that was ours (validly signed) but whose record is gone: the old
    # session expired (its TTL ran out) or session-db lost it.
    replaced: str | None = None

    @property
    def customer_id(self) -> str | None:
        value = self.data.get("customerId")
        return value if isinstance(value, str) and value else None

    @customer_id.setter
    def customer_id(self, value: str | None) -> None:
        if value is None:
            self.data.pop("customerId", None)
        else:
            self.data["customerId"] = value
        self.dirty = True


class SessionStore:
    """Sessions in Redis; every failure surfaces as ``SessionStoreError``."""

    def __init__(self, url: str, ttl_s: int, timeout_s: float) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._redis: aioredis.Redis | None = None

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = pooled_redis(self.url, self.timeout_s, decode_responses=True,
                                       socket_connect_timeout=self.timeout_s, health_check_interval=30)
        return self._redis

    async def reconnect(self, timeout_s: float) -> None:
        """Apply a new timeout: later calls use a fresh client, the old one is closed."""
        old, self._redis = self._redis, None
        self.timeout_s = timeout_s
        if old is not None:
            try:
                await old.aclose()
            except (RedisError, OSError):
                pass

    async def close(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except (RedisError, OSError):
                pass
            self._redis = None

    async def ping(self) -> bool:
        try:
            return bool(await self._client().ping())
        except (RedisError, OSError):
            return False

    def _record(self, session: Session) -> str:
        return json.dumps({"cookie": {"path": "/", "httpOnly": True, "originalMaxAge": None}, **session.data})

    async def load(self, cookie: str | None) -> Session:
        """The session named by the cookie (its TTL refreshed), or a new one already saved."""
        sid = unsign(cookie)
        try:
            with tracing.span("session load", "client", _SPAN_ATTRS):
                return await self._load(sid)
        except (RedisError, OSError) as exc:
            raise SessionStoreError(f"session-db: {type(exc).__name__}: {exc}") from exc

    async def _load(self, sid: str | None) -> Session:
        """Read (and touch) the session, or create and save a new one."""
        if sid is not None:
            async with self._client().pipeline(transaction=False) as pipe:
                pipe.get(PREFIX + sid)
                pipe.expire(PREFIX + sid, self.ttl_s)
                raw, _ = await pipe.execute()
            if raw is not None:
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
                if isinstance(data, dict):
                    data.pop("cookie", None)
                    return Session(sid=sid, data=data)
        session = Session(sid=new_sid(), is_new=True, replaced=sid)
        await self._client().set(PREFIX + session.sid, self._record(session), ex=self.ttl_s)
        return session

    async def save(self, session: Session) -> None:
        try:
            with tracing.span("session save", "client", _SPAN_ATTRS):
                await self._client().set(PREFIX + session.sid, self._record(session), ex=self.ttl_s)
        except (RedisError, OSError) as exc:
            raise SessionStoreError(f"session-db: {type(exc).__name__}: {exc}") from exc
        session.dirty = False
