"""``sockdrill bench``: the figures in the README, measured on this machine.

A package above every other layer (it starts shops, loads, faults and agent runs), so that nothing below
imports it: ``mesh`` (one hop's cost), ``locust`` (the load generator's ceiling), ``chaos`` (fault
accuracy), ``recorder`` and ``tracing`` (telemetry's cost), ``soak``, ``scenarios``, ``validity``,
``agents``, ``headroom`` (the whole platform's CPU, idle and per checkout), ``scale`` (throughput at 1, 2, 4
replicas); this module runs them and
measures the runtime and the shop itself:

- ``runtime``: cold ``up`` to all-ready (every datastore included), and the mesh proxy's cost per hop.
- ``shop``: catalogue browsing through the front-end at fixed concurrency, next to a bare one-hop ASGI
  relay measured in the same run with the same load generator; the shop's CPU per request by owner (pod,
  mesh, recorder) and what the goal (0.35 of the relay) would leave the shop to spend on this machine.

The load generator runs in its own process (aiohttp, fixed concurrency, fixed duration) so it does not
share an event loop with what it measures; on a 2-core machine it still shares the CPU, equally for
both sides of every comparison.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sockdrill.bench.locust import bench_load
from sockdrill.cluster.ports import free_port


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {cpu}, Python {platform.python_version()}"


# ---- load generator (runs in a child process) --------------------------------------------------
async def _loadgen(urls: list[str], concurrency: int, duration: float) -> dict[str, Any]:
    import aiohttp

    lat: list[float] = []
    errors = 0
    cpu0 = time.process_time()
    stop_at = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def worker(i: int) -> None:
        nonlocal errors
        n = i
        # Each worker is one visitor keeping its cookies, as a browser does (aiohttp refuses cookies from an IP
        # address unless told): without this every request was a new visitor and the front-end wrote a new
        # session for each, a cost no shopper causes.
        async with aiohttp.ClientSession(connector=connector, connector_owner=False,
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            while time.perf_counter() < stop_at:
                url = urls[n % len(urls)]
                n += 1
                t0 = time.perf_counter()
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        if resp.status >= 400:
                            errors += 1
                            continue
                except Exception:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t0)

    async with connector:
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"requests": len(lat), "errors": errors, "rps": len(lat) / elapsed, "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
            "cpu_us_per_request": round((time.process_time() - cpu0) / len(lat) * 1e6, 1) if lat else float("nan")}


def load(urls: list[str], concurrency: int, duration: float) -> dict[str, Any]:
    """Run the load generator in a child process and return its figures."""
    out = subprocess.run(
        [sys.executable, "-m", "sockdrill.bench.loadgen", json.dumps(urls), str(concurrency), str(duration)],
        capture_output=True, text=True, timeout=duration + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-500:]}")
    return json.loads(out.stdout)


# ---- runtime ------------------------------------------------------------------------------------
COLD_UP_SETTLE_S = 5.0


def bench_runtime(duration: float) -> dict[str, Any]:
    from sockdrill.bench.mesh import run_mesh_bench
    from sockdrill.cluster import client
    from sockdrill.shop.manifest import shop_deployments

    results: dict[str, Any] = {}
    times = []
    for _ in range(3):
        # A shop torn down a moment ago still costs the next start (measured on 2-core VMs: 4.3-6.8 s back to
        # back, 3.5-3.8 s after a 5 s pause), so each start begins on a machine at rest, as a user's would.
        time.sleep(COLD_UP_SETTLE_S)
        data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-"))
        os.chmod(data_dir, 0o711)
        try:
            t0 = time.perf_counter()
            client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=120)
            times.append(time.perf_counter() - t0)
        finally:
            client.down(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)
    results["cold_up_s"] = {"runs": [round(t, 2) for t in times], "best": round(min(times), 2),
                            "median": round(statistics.median(times), 2), "settle_s": COLD_UP_SETTLE_S,
                            "deployments": len(shop_deployments()),
                            "awake": sum(1 for d in shop_deployments() if d.replicas > 0), "goal": "<= 5 s"}
    results["mesh_hop"] = run_mesh_bench(duration_s=duration, concurrency=32)
    return results


# ---- shop ---------------------------------------------------------------------------------------
RELAY_APP = """
import aiohttp, os
BACKEND = os.environ["RELAY_BACKEND"]
session = None
async def app(scope, receive, send):
    global session
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await session.close(); await send({"type": "lifespan.shutdown.complete"}); return
    async with session.get(BACKEND + scope["path"]) as r:
        body = await r.read()
    await send({"type": "http.response.start", "status": r.status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"""


def _wait_http(url: str, timeout: float = 20) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def bench_shop(duration: float, concurrency: int = 32) -> dict[str, Any]:
    from sockdrill.cluster import client
    from sockdrill.shop.manifest import shop_deployments

    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-"))
    os.chmod(data_dir, 0o711)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        rc, _ = client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=120)
        url = rc.record["front_end_url"]
        shop = load_with_cpu(data_dir, browse_urls(url), concurrency, duration)
        # The reference: a trivial backend answering the same catalogue JSON, behind a bare ASGI relay.
        body = _fetch(url + "/catalogue")
        backend_port, relay_port = free_port(), free_port()
        tmp = Path(data_dir) / "relay"
        tmp.mkdir()
        (tmp / "backend.py").write_text(
            "from aiohttp import web\nimport sys\nBODY=open(sys.argv[2],'rb').read()\n"
            "async def h(r):\n    return web.Response(body=BODY, content_type='application/json')\n"
            "app=web.Application(); app.router.add_get('/{p:.*}', h)\n"
            "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None, access_log=None)\n")
        (tmp / "body.json").write_bytes(body)
        (tmp / "relay_app.py").write_text(RELAY_APP)
        procs.append(subprocess.Popen([sys.executable, str(tmp / "backend.py"), str(backend_port),
                                       str(tmp / "body.json")]))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "relay_app:app", "--host", "127.0.0.1", "--port", str(relay_port),
             "--log-level", "warning", "--no-access-log", "--loop", "uvloop"],
            cwd=tmp, env={**os.environ, "RELAY_BACKEND": f"http://127.0.0.1:{backend_port}"}))
        _wait_http(f"http://127.0.0.1:{relay_port}/catalogue")
        relay = load([f"http://127.0.0.1:{relay_port}/catalogue"], concurrency, duration)
        ratio = shop["rps"] / relay["rps"] if relay["rps"] else 0.0
        return {"concurrency": concurrency, "duration_s": duration, "front_end": shop, "asgi_relay": relay,
                "throughput_vs_relay": round(ratio, 3), "goal": ">= 0.35 of the relay at p99 <= 50 ms",
                "budget_at_goal": budget_at_goal(shop, relay)}
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        client.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def load_with_cpu(data_dir: Path, urls: list[str], concurrency: int, duration: float) -> dict[str, Any]:
    """:func:`load` against the shop in ``data_dir``, with where the shop's CPU went meanwhile: every process
    of the shop, by owner (a pod, the recorder, the runtime), in µs per request served."""
    from sockdrill.bench.headroom import cpu_by_owner, cpu_delta  # it imports the load runner (Locust)

    before, t0 = cpu_by_owner(data_dir), time.monotonic()
    figures = load(urls, concurrency, duration)
    spent, seconds = cpu_delta(before, cpu_by_owner(data_dir)), time.monotonic() - t0
    n = max(1, int(figures["requests"]))
    ranked = sorted(spent.items(), key=lambda kv: -kv[1])
    figures["cpu"] = {"shop_cores": round(sum(spent.values()) / seconds, 3),
                      "shop_us_per_request": round(sum(spent.values()) / n * 1e6, 1),
                      "by_owner_us_per_request": {k: round(v / n * 1e6, 1) for k, v in ranked[:8]}}
    return figures


def budget_at_goal(shop: dict[str, Any], relay: dict[str, Any]) -> dict[str, Any]:
    """What the goal asks of the shop on this machine, in CPU: at 0.35 of the relay's throughput every core is
    shared by the shop and the load generator, so the shop's CPU a request must fit in what is left (the
    browse run is CPU-bound: the shop and the generator together use all cores)."""
    cores = os.cpu_count() or 1
    goal_rps = 0.35 * relay["rps"]
    per_request = cores * 1e6 / goal_rps if goal_rps else float("nan")
    shop_budget = per_request - shop["cpu_us_per_request"]
    now = shop["cpu"]["shop_us_per_request"]
    return {"rps": round(goal_rps), "cpu_us_per_request_all_processes": round(per_request, 1),
            "shop_us_per_request": round(shop_budget, 1), "shop_us_per_request_now": now,
            "cut_needed": f"{max(0.0, 1 - shop_budget / now):.0%}" if now else "n/a"}


def _fetch(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def browse_urls(front_end: str) -> list[str]:
    """What ``bench shop`` and ``bench scale`` browse: the catalogue's first page and each product on it."""
    ids = [s["id"] for s in json.loads(_fetch(front_end + "/catalogue"))]
    return [front_end + "/catalogue"] + [f"{front_end}/catalogue/{i}" for i in ids]


BENCHES: dict[str, Callable[[float], dict[str, Any]]] = {"runtime": bench_runtime, "shop": bench_shop,
                                                                   "load": bench_load,
                                                                   "chaos": lambda d: _bench_chaos(d),
                                                                   "recorder": lambda d: _bench_recorder(d),
                                                                   "tracing": lambda d: _bench_tracing(d),
                                                                   "agents": lambda d: _bench_agents(d),
                                                                   "autopilot": lambda d: _bench_autopilot(d),
                                                                   "scenarios": lambda d: _bench_scenarios(d),
                                                                   "validity": lambda d: _bench_validity(d),
                                                                   "soak": lambda d: _bench_soak(d),
                                                                   "headroom": lambda d: _bench_headroom(d),
                                                                   "scale": lambda d: _bench_scale(d)}


def _bench_scale(duration: float) -> dict[str, Any]:
    from sockdrill.bench.scale import bench_scale

    return bench_scale(duration)


def _bench_headroom(duration: float) -> dict[str, Any]:
    from sockdrill.bench.headroom import bench_headroom

    return bench_headroom(duration)


def _bench_soak(duration: float) -> dict[str, Any]:
    from sockdrill.bench.soak import bench_soak

    return bench_soak(duration)


def _bench_validity(duration: float) -> dict[str, Any]:
    from sockdrill.bench.validity import bench_validity

    return bench_validity(duration)


def _bench_scenarios(duration: float) -> dict[str, Any]:
    from sockdrill.bench.scenarios import bench_scenarios

    return bench_scenarios(duration)


def _bench_autopilot(duration: float) -> dict[str, Any]:
    from sockdrill.bench.autopilot import bench_autopilot

    return bench_autopilot(duration)


def _bench_agents(duration: float) -> dict[str, Any]:
    from sockdrill.bench.agents import bench_agents

    return bench_agents(duration)


def _bench_tracing(duration: float) -> dict[str, Any]:
    from sockdrill.bench.tracing import run_tracing_bench

    return run_tracing_bench(duration)


def _bench_recorder(duration: float) -> dict[str, Any]:
    from sockdrill.bench.recorder import bench_recorder

    # Several scrapes at the default 5 s interval are needed for a steady figure.
    return bench_recorder(max(duration, 30.0))


def _bench_chaos(duration: float) -> dict[str, Any]:
    from sockdrill.bench.chaos import bench_chaos

    return bench_chaos(duration)


def run_benches(names: list[str], duration: float, console: Console | None) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine()}
    for name in names:
        if console:
            with console.status(f"benchmark {name}…"):
                results[name] = BENCHES[name](duration)
            _print(console, name, results[name])
        else:
            results[name] = BENCHES[name](duration)
    if console:
        console.print(f"machine: {results['machine']}")
    return results


def _print(console: Console, name: str, data: dict[str, Any]) -> None:
    data = dict(data)
    text = data.pop("markdown", None)  # a table already (bench scenarios): printed as it is, after the figures
    table = Table(title=f"bench {name}")
    table.add_column("figure")
    table.add_column("value")

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            table.add_row(prefix, f"{value:.3f}" if isinstance(value, float) else str(value))

    walk("", data)
    console.print(table)
    if isinstance(text, str):
        console.print(text, markup=False, highlight=False, soft_wrap=True)
