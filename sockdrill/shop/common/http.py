"""Outgoing HTTP calls between services: aiohttp (measured ~10x httpx here), explicit timeouts, metrics.

Every call names its destination deployment; the base URL comes from the runtime (a mesh edge), the
timeout from the caller or the service's ``http_timeout_s`` knob. Each call carries its deadline
(``X-Request-Deadline``, epoch seconds: when the caller stops waiting), so a callee can drop work whose
caller has already given up; carts does for the cart merge at login. Failures without a response raise
``UpstreamError`` carrying the destination and the kind (timeout, connect, ...), which handlers turn
into the status upstream Sock Shop answers.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from sockdrill.shop.common.env import upstream_url
from sockdrill.shop.common.metrics import ServiceMetrics
from sockdrill.telemetry import tracing

DEADLINE_HEADER = "X-Request-Deadline"


def caller_deadline(headers: Mapping[str, str]) -> float | None:
    """The epoch second at which the caller of this request stops waiting (None: not said, or not a number)."""
    raw = headers.get(DEADLINE_HEADER)
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value == value and value > 0 else None


class UpstreamError(Exception):
    def __init__(self, destination: str, kind: str, detail: str) -> None:
        super().__init__(f"{destination}: {kind}: {detail}")
        self.destination = destination
        self.kind = kind  # "timeout" | "connect" | "protocol"
        self.detail = detail


@dataclass
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    # Every header line as sent, repeats included (``headers`` keeps one value per name: several Set-Cookie
    # lines would collapse into one there); what a proxy passes on.
    header_list: tuple[tuple[str, str], ...] = ()

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except (ValueError, UnicodeDecodeError):
            return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


# Hook for tracing: returns headers to inject (W3C traceparent) for the current context.
def _no_headers() -> dict[str, str]:
    return {}


class Upstreams:
    """One pooled client per pod for all destinations."""

    inject_headers = staticmethod(_no_headers)

    def __init__(self, service: str, metrics: ServiceMetrics, default_timeout: float = 5.0, pool: int = 100):
        self.service = service
        self.metrics = metrics
        self.default_timeout = default_timeout
        self.pool = pool
        self._session: aiohttp.ClientSession | None = None
        self._bases: dict[str, str] = {}

    def base(self, destination: str) -> str:
        if destination not in self._bases:
            self._bases[destination] = upstream_url(destination)
        return self._bases[destination]

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.pool, ttl_dns_cache=None, force_close=False)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
            self.metrics.pool_size.labels(self.service, "http").set(self.pool)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def resize(self, pool: int) -> None:
        """Apply a new pool size: new connections use the new limit; old ones drain."""
        old = self._session
        self.pool = pool
        self._session = None
        await self.start()
        if old is not None:
            asyncio.get_running_loop().call_later(30, lambda: asyncio.ensure_future(old.close()))

    async def request(
        self,
        destination: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> UpstreamResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        if not path.startswith("/"):  # a path on the destination, never a URL of the caller's choosing
            raise ValueError(f"an upstream path must start with '/', got {path[:60]!r}")
        url = self.base(destination) + path
        hdrs = dict(headers or {})
        limit = self.default_timeout if timeout is None else timeout
        started = time.perf_counter()
        status_label = "error"
        connector = self._session.connector
        call = tracing.client_call(destination, method, url)  # a client span, current until call.end()
        try:
            hdrs.update(self.inject_headers())
            hdrs.setdefault(DEADLINE_HEADER, f"{time.time() + limit:.6f}")
            if connector is not None:
                self.metrics.pool_in_use.labels(self.service, "http").set(
                    len(getattr(connector, "_acquired", ()))
                )
            async with self._session.request(
                method,
                url,
                json=json_body,
                data=data,
                headers=hdrs,
                params=params,
                timeout=aiohttp.ClientTimeout(total=limit),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                status_label = str(resp.status)
                return UpstreamResponse(resp.status, dict(resp.headers), body, tuple(resp.headers.items()))
        except TimeoutError as exc:
            self.metrics.client_timeouts.labels(self.service, destination).inc()
            self.metrics.client_errors.labels(self.service, destination, "timeout").inc()
            raise UpstreamError(destination, "timeout", f"no answer within {limit:g}s") from exc
        except aiohttp.ClientConnectionError as exc:
            self.metrics.client_errors.labels(self.service, destination, "connect").inc()
            raise UpstreamError(destination, "connect", str(exc) or type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            self.metrics.client_errors.labels(self.service, destination, "protocol").inc()
            raise UpstreamError(destination, "protocol", str(exc) or type(exc).__name__) from exc
        finally:
            call.end(status_label, sys.exc_info()[1])
            self.metrics.client.labels(self.service, destination, method, status_label).observe(
                time.perf_counter() - started
            )
