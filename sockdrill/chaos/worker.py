"""Fault worker processes: ``python -m sockdrill.chaos.worker '{"mode": "cpu", ...}'``.

Modes: ``cpu`` (busy loop at ``load`` percent), ``memory`` (``size`` bytes touched and held),
``storm`` (``concurrency`` PostgreSQL connections running an expensive regex scan back to back).

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
    import asyncio
    import random
    import string

    import asyncpg

    async def one(conn: asyncpg.Connection) -> None:
        rng = random.Random()
        while time.time() < deadline:
            needle = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(6))
            try:
                await conn.fetchval(query, f".*{needle}@example.com")
            except asyncpg.QueryCanceledError:
                pass

    async def main() -> None:
        conns = []
        for _ in range(concurrency):
            conns.append(await asyncpg.connect(url, timeout=10, server_settings={"statement_timeout": "10000"}))
        print(json.dumps({"backends": [c.get_server_pid() for c in conns]}), flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        tasks = [asyncio.ensure_future(one(c)) for c in conns]
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        # Cancel what is running on the server too, so the load stops with us.
        for c in conns:
            c.terminate()
        for t in tasks:
            t.cancel()

    asyncio.run(main())


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[0])
    parent = int(cfg.get("parent") or os.getppid())
    threading.Thread(target=_watchdog, args=(float(cfg["deadline"]), parent), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0)) if cfg["mode"] != "storm" else None
    if cfg["mode"] == "cpu":
        run_cpu(float(cfg.get("load", 100)))
    elif cfg["mode"] == "memory":
        run_memory(int(cfg["size"]))
    elif cfg["mode"] == "storm":
        run_storm(cfg["url"], int(cfg["concurrency"]), cfg["query"], float(cfg["deadline"]))
    else:
        print(f"unknown mode {cfg['mode']!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
