"""Fault worker processes: ``python -m sockdrill.chaos.worker '{"mode": "cpu", ...}'``.

Modes: ``cpu`` (busy loop at ``load`` percent), ``memory`` (``size`` bytes touched and held),
``storm`` (``concurrency`` PostgreSQL connections running an expensive regex scan back to back), ``hold``
(one PostgreSQL session that opens a transaction, runs ``statements`` and then sits idle in it, holding
whatever they locked, until its deadline or until its session is ended), ``fill`` (a job that caches its
results in a Redis: ``rate`` bytes a second in keys of ``value_size`` bytes that expire after ``ttl_s``), ``leak``
(another application's connection leak: PostgreSQL sessions opened and never closed, up to ``connections`` or
until the store refuses).

Each worker is its own dead-man's switch: it exits at its ``deadline`` (wall clock) plus a small grace,
and as soon as its parent (the supervisor that started it) is gone, so no fault outlives its
controller even after a SIGKILL. Only the standard library is imported for cpu/memory.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

GRACE_S = 2.0


def _watchdog(deadline: float, parent: int) -> None:
    """Exit the whole process when the deadline passes or the parent dies."""
    while True:
        if time.time() > deadline + GRACE_S or os.getppid() != parent:
            os._exit(0)
        time.sleep(0.2)


def run_cpu(load: float) -> None:
    slice_s = 0.1
    while True:
        start = time.perf_counter()
        busy = slice_s * load / 100.0
        while time.perf_counter() - start < busy:
            pass
        rest = slice_s - (time.perf_counter() - start)
        if rest > 0:
            time.sleep(rest)


def run_memory(size: int) -> None:
    block = b"\x01" * size  # bytes multiplication writes every page: resident, not just reserved
    _ = block
    while True:
        time.sleep(3600)


def run_storm(url: str, concurrency: int, query: str, deadline: float) -> None:
    """``concurrency`` clients of a reporting job: each runs the scan back to back and, like a job that retries,
    reconnects after its session is ended (1 s, doubling to 8 s, while logins are refused). Only blocking
    the job's role (a connection limit of 0) or the fault's end stops it; ending its queries gives a pause."""
    import asyncio
    import random
    import string

    import asyncpg

    refused = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

    async def connect() -> asyncpg.Connection:
        # The password (if any) comes in PGPASSWORD: a worker's command line is world-readable.
        return await asyncpg.connect(url, timeout=10, server_settings={"statement_timeout": "10000",
                                                                       "application_name": "report-job"})

    async def one(conn: asyncpg.Connection | None) -> None:
        rng = random.Random()
        backoff = 1.0
        try:
            while time.time() < deadline:
                if conn is None or conn.is_closed():
                    try:
                        conn = await connect()
                        backoff = 1.0
                    except refused:  # blocked, full, or the store is restarting: try again later
                        await asyncio.sleep(min(backoff, max(0.0, deadline - time.time())))
                        backoff = min(backoff * 2, 8.0)
                        continue
                needle = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(6))
                try:
                    await conn.fetchval(query, f".*{needle}@example.com")
                except asyncpg.QueryCanceledError:
                    pass
                except refused:  # the session was ended (pg_terminate_backend, a restart): reconnect
                    conn.terminate()
                    conn = None
                    await asyncio.sleep(min(backoff, max(0.0, deadline - time.time())))
                    backoff = min(backoff * 2, 8.0)
        finally:
            if conn is not None:
                conn.terminate()  # closes the socket: the server drops what it was running

    async def main() -> None:
        conns = [await connect() for _ in range(concurrency)]
        print(json.dumps({"backends": [c.get_server_pid() for c in conns]}), flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        tasks = [asyncio.ensure_future(one(c)) for c in conns]
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def run_hold(url: str, statements: list[str], deadline: float) -> None:
    """A maintenance job stuck half-way: its transaction stays open (idle) with its locks until the deadline.
    Ended from the outside (pg_terminate_backend), it is gone for good: a one-off job does not come back."""
    import asyncio

    import asyncpg

    async def main() -> None:
        conn = await asyncpg.connect(url, timeout=10, server_settings={"application_name": "maintenance"})
        tx = conn.transaction()
        await tx.start()
        for sql in statements:
            await conn.execute(sql)
        print(json.dumps({"backends": [conn.get_server_pid()]}), flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        # Idle, not polling: the session shows the lock statement and its age, as a stuck job's would.
        conn.add_termination_listener(lambda _c: stop.set())
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, deadline - time.time()))
        except TimeoutError:
            pass
        conn.terminate()

    asyncio.run(main())


def run_leak(url: str, connections: int, application: str, deadline: float) -> None:
    """Another application's connection leak: it opens sessions and never closes them, one after the other, up to
    ``connections`` (0: until the store refuses), each left idle after one query. A session that is ended (a
    restart, pg_terminate_backend) is opened again, as the leaking pool would; a refused login is tried again every
    0.2 s, one at a time (each attempt costs the store a backend). Prints ``{"backends": [...]}`` once it holds its
    target or is first refused, ``{"error": ...}`` when it could not open a single session."""
    import asyncio

    import asyncpg

    refused = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        held: list[asyncpg.Connection] = []
        ready = False
        while not stop.is_set() and time.time() < deadline:
            held = [c for c in held if not c.is_closed()]
            full = bool(connections) and len(held) >= connections
            if not full:
                try:  # the password (if any) comes in PGPASSWORD: a worker's command line is world-readable
                    conn = await asyncpg.connect(url, timeout=5, server_settings={"application_name": application})
                    await conn.fetchval("SELECT 1")
                    held.append(conn)
                    continue  # the next one at once: a leak under load opens them as fast as requests come
                except refused as exc:
                    if not held and not ready:
                        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
                        return
                    full = True
            if full and not ready:
                print(json.dumps({"backends": [c.get_server_pid() for c in held]}), flush=True)
                ready = True
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except TimeoutError:
                pass
        for c in held:
            c.terminate()

    asyncio.run(main())


def run_fill(host: str, port: int, username: str | None, rate: int, value_size: int, ttl_s: int, prefix: str,
             deadline: float) -> None:
    """Another team's job that caches its reports in a Redis it shares: ``rate`` bytes a second, ten batches a
    second, each key expiring after ``ttl_s``. A refused write (full under noeviction, the store restarting)
    is dropped and the job goes on, as a cache client does. The password comes in SOCKDRILL_FILL_PASSWORD."""
    import secrets

    import redis

    r = redis.Redis(host=host, port=port, username=username, password=os.environ.get("SOCKDRILL_FILL_PASSWORD"),
                    socket_timeout=2, socket_connect_timeout=2)
    value = b"r" * value_size
    per_tick = max(1, round(rate / value_size / 10))
    try:  # one write first: a login or permission problem fails the injection, not silently the job
        r.set(prefix + secrets.token_hex(8), value, ex=ttl_s)
    except redis.RedisError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return
    print(json.dumps({"backends": []}), flush=True)
    tick = time.monotonic()
    while time.time() < deadline:
        try:
            pipe = r.pipeline(transaction=False)
            for _ in range(per_tick):
                pipe.set(prefix + secrets.token_hex(8), value, ex=ttl_s)
            pipe.execute(raise_on_error=False)
        except redis.RedisError:
            pass
        tick += 0.1
        time.sleep(max(0.0, tick - time.monotonic()))
        tick = max(tick, time.monotonic() - 1.0)  # behind by more than a second: do not try to catch up


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[0])
    parent = int(cfg.get("parent") or os.getppid())
    threading.Thread(target=_watchdog, args=(float(cfg["deadline"]), parent), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0)) if cfg["mode"] not in ("storm", "hold", "leak") else None
    if cfg["mode"] == "cpu":
        run_cpu(float(cfg.get("load", 100)))
    elif cfg["mode"] == "memory":
        run_memory(int(cfg["size"]))
    elif cfg["mode"] == "storm":
        run_storm(cfg["url"], int(cfg["concurrency"]), cfg["query"], float(cfg["deadline"]))
    elif cfg["mode"] == "fill":
        run_fill(cfg["host"], int(cfg["port"]), cfg.get("username"), int(cfg["rate"]), int(cfg["value_size"]),
                 int(cfg["ttl_s"]), cfg["prefix"], float(cfg["deadline"]))
    elif cfg["mode"] == "leak":
        run_leak(cfg["url"], int(cfg["connections"]), cfg["application"], float(cfg["deadline"]))
    elif cfg["mode"] == "hold":
        run_hold(cfg["url"], list(cfg["statements"]), float(cfg["deadline"]))
    else:
        print(f"unknown mode {cfg['mode']!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
