"""What one mesh hop costs: req/s and latency of the same HTTP load, direct and through an edge.

Three processes, so that no two roles share an event loop (or a GIL): a tiny aiohttp server, the
mesh (one HTTP edge, no toxics, uvloop as in the runtime) and an aiohttp client at fixed concurrency
over keep-alive connections. The same client code hits the server directly and through the edge,
alternating rounds (direct, proxied, direct, proxied...) so that drift hits both alike; the mesh
process runs during the direct rounds too, idle. On a machine with fewer cores than busy processes
the proxied rounds also pay for CPU sharing: that is part of what a hop costs on one machine.

A second, unloaded pass (concurrency 1) shows the added latency per hop without CPU contention.

    python -m sockdrill.bench.mesh --duration 5 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

PY = sys.executable
MODULE = "sockdrill.bench.mesh"


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- roles (each runs in its own process) ----------------------------------------------------------


async def _serve() -> None:
    from aiohttp import web

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text='{"ok": true}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await _until_stdin_closes()
    await runner.cleanup()


async def _proxy(backend_port: int) -> None:
    from sockdrill.cluster.mesh import Backend, Mesh

    mesh = Mesh(seed=0)
    mesh.set_backends("bench", [Backend("bench-0", "127.0.0.1", backend_port)])
    edge = await mesh.add_edge("client", "bench", protocol="http")
    ready = resource.getrusage(resource.RUSAGE_SELF)  # imports and set-up are not the hop's cost
    print(edge.port, flush=True)
    await _until_stdin_closes()
    st = edge.stats()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {k: st[k] for k in ("connections_total", "requests", "errors", "bytes")}
    out["cpu_s"] = round(usage.ru_utime + usage.ru_stime - ready.ru_utime - ready.ru_stime, 3)
    out["cpu_kernel_share"] = round((usage.ru_stime - ready.ru_stime) / max(out["cpu_s"], 1e-9), 2)
    out["cpu_us_per_request"] = round(1e6 * out["cpu_s"] / max(1, sum(st["requests"].values())), 1)
    print(json.dumps(out), flush=True)
    await mesh.close()


async def _client(url: str, duration: float, concurrency: int, warmup: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        measure_from = start + warmup
        stop = measure_from + duration

        async def worker() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter()
                now = loop.time()
                if now >= stop:
                    return
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if now >= measure_from:
                    if ok:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"latencies_us": [round(x * 1e6) for x in latencies], "errors": errors, "seconds": duration}


# --- orchestration ---------------------------------------------------------------------------------


def _spawn(*args: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_root(), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([PY, "-m", MODULE, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"bench role {args[0]} did not start (said {line!r})")
    return proc, int(line)


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_client(port: int, duration: float, concurrency: int, warmup: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_root(), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [PY, "-m", MODULE, "client", "--url", f"http://127.0.0.1:{port}/", "--duration", str(duration),
         "--concurrency", str(concurrency), "--warmup", str(warmup)],
        capture_output=True, text=True, env=env, check=True, timeout=duration + warmup + 60,
    )
    return json.loads(out.stdout)


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    lat = sorted(x for r in rounds for x in r["latencies_us"])
    seconds = sum(r["seconds"] for r in rounds)
    if not lat:
        return {"requests": 0, "errors": sum(r["errors"] for r in rounds), "rps": 0.0,
                "p50_ms": None, "p99_ms": None}

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] / 1000.0, 3)

    return {"requests": len(lat), "errors": sum(r["errors"] for r in rounds),
            "rps": round(len(lat) / seconds, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "rps_by_round": [round(len(r["latencies_us"]) / r["seconds"]) for r in rounds]}


def _compare(direct: dict[str, Any], proxied: dict[str, Any]) -> dict[str, Any]:
    if not direct["rps"] or direct["p50_ms"] is None or proxied["p50_ms"] is None:
        return {}
    return {
        "rps_loss_pct": round(100.0 * (direct["rps"] - proxied["rps"]) / direct["rps"], 1),
        "p50_added_ms": round(proxied["p50_ms"] - direct["p50_ms"], 3),
        "p99_added_ms": round(proxied["p99_ms"] - direct["p99_ms"], 3),
    }


def _pair(server_port: int, proxy_port: int, duration: float, concurrency: int, rounds: int,
          warmup: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "proxied": []}
    per_round = duration / rounds
    for _ in range(rounds):
        runs["direct"].append(_run_client(server_port, per_round, concurrency, warmup))
        runs["proxied"].append(_run_client(proxy_port, per_round, concurrency, warmup))
    direct, proxied = _summary(runs["direct"]), _summary(runs["proxied"])
    return {"concurrency": concurrency, "direct": direct, "proxied": proxied,
            "delta": _compare(direct, proxied)}


def run_mesh_bench(duration_s: float = 5, concurrency: int = 32, *, rounds: int = 4, warmup_s: float = 0.5,
                   unloaded_s: float = 2.0) -> dict[str, Any]:
    """Measure one mesh hop; return direct vs proxied req/s and p50/p99 latency, and the deltas.

    ``duration_s`` is the measured time per mode (split into ``rounds`` alternating rounds, each after
    ``warmup_s``); ``unloaded_s`` adds a concurrency-1 pass (0 skips it).
    """
    if duration_s <= 0 or concurrency < 1 or rounds < 1:
        raise ValueError("duration_s must be > 0, concurrency >= 1 and rounds >= 1")
    server, server_port = _spawn("server")
    proxy = None
    try:
        proxy, proxy_port = _spawn("proxy", "--backend-port", str(server_port))
        result: dict[str, Any] = {
            "cpus": os.cpu_count(),
            "duration_s": duration_s,
            "setup": "aiohttp server, mesh (uvloop) and aiohttp client in three processes; keep-alive; "
                     "direct and proxied rounds alternate",
            **_pair(server_port, proxy_port, duration_s, concurrency, rounds, warmup_s),
        }
        if unloaded_s > 0:
            result["unloaded"] = _pair(server_port, proxy_port, unloaded_s, 1, rounds, warmup_s)
    finally:
        for proc in (proxy, server):
            if proc is not None and proc.poll() is None:
                assert proc.stdin is not None
                proc.stdin.close()
        if proxy is not None:
            try:
                tail = proxy.stdout.read() if proxy.stdout is not None else ""
                proxy.wait(timeout=10)
                if tail.strip():
                    result["proxy_stats"] = json.loads(tail.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, UnboundLocalError):
                proxy.kill()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return result


def _print(result: dict[str, Any]) -> None:
    def line(label: str, part: dict[str, Any]) -> None:
        delta = part["delta"]
        print(f"{label} (concurrency {part['concurrency']}):")
        for mode in ("direct", "proxied"):
            m = part[mode]
            print(f"  {mode:<8}: {m['rps']:>9} req/s  p50 {m['p50_ms']} ms  p99 {m['p99_ms']} ms  "
                  f"errors {m['errors']}  (rounds: {m.get('rps_by_round')})")
        print(f"  one hop : throughput loss {delta.get('rps_loss_pct')} %, "
              f"p50 {delta.get('p50_added_ms'):+} ms, p99 {delta.get('p99_added_ms'):+} ms")

    print(f"mesh hop benchmark on {result['cpus']} CPUs, {result['duration_s']} s per mode")
    line("loaded", result)
    if "unloaded" in result:
        line("unloaded", result["unloaded"])
    ps = result.get("proxy_stats")
    if ps:
        print(f"mesh process: {ps['cpu_us_per_request']} µs CPU per proxied request, "
              f"{round(100 * ps['cpu_kernel_share'])} % of it in the kernel "
              f"({sum(ps['requests'].values())} requests, errors {ps['errors'] or 'none'})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m " + MODULE, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role")
    sub.add_parser("server")
    proxy = sub.add_parser("proxy")
    proxy.add_argument("--backend-port", type=int, required=True)
    client = sub.add_parser("client")
    client.add_argument("--url", required=True)
    client.add_argument("--duration", type=float, default=5.0)
    client.add_argument("--concurrency", type=int, default=32)
    client.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.role is None:
        result = run_mesh_bench(args.duration, args.concurrency)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            _print(result)
        return
    _use_uvloop()
    if args.role == "server":
        asyncio.run(_serve())
    elif args.role == "proxy":
        asyncio.run(_proxy(args.backend_port))
    else:
        print(json.dumps(asyncio.run(_client(args.url, args.duration, args.concurrency, args.warmup))))


if __name__ == "__main__":
    main()
