"""PostgreSQL access for a service: an asyncpg pool through the mesh, schema set-up, health, pool metrics.

Schema and seed data are created by the service on start-up, under an advisory lock so that several
replicas starting together do it once. ``db_pool_size`` and ``db_timeout_s`` are knobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from sockdrill.shop.common.env import upstream_url
from sockdrill.shop.common.knobs import Knob
from sockdrill.shop.common.service import Service, bad_request
from sockdrill.telemetry import tracing

DB_KNOBS = (
    Knob("db_pool_size", 10, "max connections in the database pool", minimum=1, maximum=500),
    Knob("db_timeout_s", 5.0, "timeout of one database statement (seconds)", minimum=0.001, maximum=300),
)

Init = Callable[[asyncpg.Connection], Awaitable[None]]

# Errors that mean no session could be had or kept (refused, full, unreachable, lost, timed out), not that a
# statement was wrong: a caller may degrade on these, never on a query's own error.
UNREACHABLE = (OSError, TimeoutError, asyncpg.exceptions.PostgresConnectionError,
               asyncpg.exceptions.TooManyConnectionsError, asyncpg.exceptions.CannotConnectNowError,
               asyncpg.InterfaceError)

# Errors that mean the connection was unusable, not that the statement failed.
STALE_CONNECTION = (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InterfaceError,
                    ConnectionResetError, BrokenPipeError)


async def _rollback_only(_conn: asyncpg.Connection) -> None:
    """What the pool does to a connection handed back, besides asyncpg's own rollback of an open transaction.

    asyncpg's default sends ``RESET ALL; CLOSE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all()`` on every
    release: one more round trip to the database per query, a tenth of user's CPU per checkout and a share of
    its database's (issue 19, py-spy). The services keep no session state (no ``SET``, ``LISTEN``, cursors or
    session locks outside start-up, which unlocks or drops its connection), so a rollback is enough, as in
    SQLAlchemy's pool (``reset_on_return="rollback"``) or PgBouncer's transaction pooling."""


class Database:
    """The pool of one service to its database deployment (e.g. ``catalogue-db``)."""

    def __init__(self, svc: Service, destination: str, init: Init | None = None, lock_id: int = 424242) -> None:
        self.svc = svc
        self.destination = destination
        self.init = init
        self.lock_id = lock_id
        self.pool: asyncpg.Pool | None = None
        svc.on_startup(self._start)
        svc.on_cleanup(self._stop)
        svc.add_health(destination, self.healthy)
        svc.knobs.on_change(self._knobs_changed)

    @property
    def dsn(self) -> str:
        return upstream_url(self.destination)

    async def _connect_pool(self) -> asyncpg.Pool:
        size = self.svc.knobs["db_pool_size"]
        pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=size, command_timeout=self.svc.knobs["db_timeout_s"],
            timeout=10, statement_cache_size=100, init=tracing.watch_queries(self.destination),
            reset=_rollback_only,
        )
        self.svc.metrics.pool_size.labels(self.svc.name, self.destination).set(size)
        return pool

    async def _start(self, _app: web.Application) -> None:
        # The database may still be starting (or restarting): retry for a while, like a real service would.
        last: Exception | None = None
        for _ in range(100):
            try:
                self.pool = await self._connect_pool()
                break
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                last = exc
                await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"cannot reach {self.destination}: {last}")
        if self.init is not None:
            async with self.pool.acquire() as conn:
                await conn.execute("SELECT pg_advisory_lock($1)", self.lock_id)
                try:
                    await self.init(conn)
                    await conn.execute("SELECT pg_advisory_unlock($1)", self.lock_id)
                except BaseException:
                    conn.terminate()  # the pool does not reset sessions: never hand back one holding the lock
                    raise

    async def _stop(self, _app: web.Application) -> None:
        if self.pool is not None:
            await self.pool.close()

    def _knobs_changed(self, changes: dict[str, Any]) -> None:
        if "db_pool_size" in changes or "db_timeout_s" in changes:
            self._reopening = asyncio.ensure_future(self._reopen())

    async def _reopen(self) -> None:
        old, self.pool = self.pool, await self._connect_pool()
        if old is not None:
            await old.close()

    async def healthy(self) -> bool:
        if self.pool is None:
            return False
        async with self.pool.acquire(timeout=2) as conn:
            return await conn.fetchval("SELECT 1") == 1

    def _in_use(self) -> None:
        if self.pool is not None:
            used = self.pool.get_size() - self.pool.get_idle_size()
            self.svc.metrics.pool_in_use.labels(self.svc.name, self.destination).set(used)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run("fetch", query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._run("fetchrow", query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run("fetchval", query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self._run("execute", query, *args)

    def acquire(self) -> Any:
        """``async with db.acquire() as conn`` for transactions."""
        if self.pool is None:
            raise bad_request(f"{self.destination} is not connected", 503)
        return self.pool.acquire(timeout=self.svc.knobs["db_timeout_s"])

    async def _run(self, method: str, query: str, *args: Any) -> Any:
        if self.pool is None:
            raise bad_request(f"{self.destination} is not connected", 503)
        self._in_use()
        try:
            for attempt in (1, 2):
                try:
                    async with self.pool.acquire(timeout=self.svc.knobs["db_timeout_s"]) as conn:
                        return await getattr(conn, method)(query, *args, timeout=self.svc.knobs["db_timeout_s"])
                except STALE_CONNECTION as exc:
                    # A pooled connection that died while idle (the database restarted): the pool drops it;
                    # one more try on a fresh one, like a pool that validates connections on checkout.
                    if attempt == 2:
                        raise
                    self.svc.log.warning("stale connection to %s dropped: %s", self.destination, exc)
            raise AssertionError("unreachable")
        finally:
            self._in_use()
