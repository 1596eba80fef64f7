"""The mesh proxy over real sockets: pass-through, balancing, toxics (live), HTTP-level faults, metrics."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from sockdrill.cluster.mesh import Backend, Edge, Mesh, MeshCollector
from sockdrill.cluster.toxics import TOXIC_KINDS, HttpFramer, Toxic, describe_kinds, make_toxic
from sockdrill.errors import FaultError

LOCAL = "127.0.0.1"


class TcpServer:
    """An echo server that first sends its name (so a test can see which backend it reached)."""

    def __init__(self, name: str, greet: bool = False) -> None:
        self.name = name
        self.greet = greet
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.handlers: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpServer:
        self.server = await asyncio.start_server(self._handle, LOCAL, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        self.writers.add(writer)
        try:
            if self.greet:
                writer.write(f"{self.name}\n".encode())
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def backend(self) -> Backend:
        return Backend(self.name, LOCAL, self.port)

    async def stop(self) -> None:
        """Close the listener and every connection, and wait for the handlers to end."""
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await asyncio.wait_for(asyncio.gather(*self.handlers, return_exceptions=True), 5)


class HttpServer:
    """A small aiohttp app that counts what reached it."""

    def __init__(self, name: str = "web-0") -> None:
        self.name = name
        self.seen: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> HttpServer:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.seen[f"{request.method} {request.path}"] += 1
            if request.path == "/big":
                return web.Response(body=b"b" * 1_000_000)
            return web.json_response({"pod": self.name, "path": request.path, "len": len(body)})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, LOCAL, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def backend(self) -> Backend:
        return Backend(self.name, LOCAL, self.port)

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def mesh() -> AsyncIterator[Mesh]:
    m = Mesh(seed=42)
    yield m
    await m.close()


async def tcp_edge(mesh: Mesh, *servers: TcpServer) -> Edge:
    mesh.set_backends("db", [s.backend() for s in servers])
    return await mesh.add_edge("svc", "db", protocol="tcp")


async def http_edge(mesh: Mesh, *servers: HttpServer) -> Edge:
    mesh.set_backends("api", [s.backend() for s in servers])
    return await mesh.add_edge("svc", "api", protocol="http")


async def open_conn(edge: Edge) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(LOCAL, edge.port)


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> float:
    t0 = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    assert got == payload
    return time.perf_counter() - t0


async def eventually(check, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def read_closed(reader: asyncio.StreamReader, timeout: float = 2.0) -> str:
    """How the connection ended: 'eof' (FIN) or 'reset' (RST)."""
    try:
        data = await asyncio.wait_for(reader.read(100), timeout)
    except ConnectionResetError:
        return "reset"
    return "eof" if data == b"" else f"data:{data!r}"


# --- plain TCP ----------------------------------------------------------------------------------


async def test_bytes_pass_both_ways_and_are_counted(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    reader, writer = await open_conn(edge)
    payload = bytes(range(256)) * 4096  # 1 MiB, more than any socket buffer: exercises flow control
    writer.write(payload)
    got = await asyncio.wait_for(reader.readexactly(len(payload)), 10)
    assert got == payload
    st = edge.stats()
    assert st["connections_total"] == 1 and st["active_connections"] == 1
    assert st["bytes"] == {"upstream": len(payload), "downstream": len(payload)}
    writer.close()
    await eventually(lambda: edge.stats()["active_connections"] == 0)
    await srv.stop()


async def test_half_close_is_passed_on(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    reader, writer = await open_conn(edge)
    writer.write(b"last words")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"last words"  # server saw EOF and closed
    writer.close()
    await srv.stop()


async def test_round_robin_over_two_backends(mesh: Mesh) -> None:
    a, b = await TcpServer("db-0", greet=True).start(), await TcpServer("db-1", greet=True).start()
    edge = await tcp_edge(mesh, a, b)
    names = []
    for _ in range(4):
        reader, writer = await open_conn(edge)
        names.append((await asyncio.wait_for(reader.readline(), 5)).decode().strip())
        writer.close()
    assert sorted(names) == ["db-0", "db-0", "db-1", "db-1"]
    assert edge.stats()["connections_by_pod"] == {"db-0": 2, "db-1": 2}
    await a.stop()
    await b.stop()


async def test_backend_change_keeps_existing_connections(mesh: Mesh) -> None:
    a, b = await TcpServer("db-0", greet=True).start(), await TcpServer("db-1", greet=True).start()
    edge = await tcp_edge(mesh, a)
    r1, w1 = await open_conn(edge)
    assert await asyncio.wait_for(r1.readline(), 5) == b"db-0\n"
    mesh.set_backends("db", [b.backend()])
    r2, w2 = await open_conn(edge)
    assert await asyncio.wait_for(r2.readline(), 5) == b"db-1\n"
    await roundtrip(r1, w1, b"still here")  # the old connection still reaches db-0
    assert a.accepted == 1 and b.accepted == 1
    w1.close()
    w2.close()
    await a.stop()
    await b.stop()


async def test_no_backend_closes_at_once_and_counts(mesh: Mesh) -> None:
    mesh.set_backends("db", [])
    edge = await mesh.add_edge("svc", "db", protocol="tcp")
    reader, writer = await open_conn(edge)
    assert await read_closed(reader) in ("eof", "reset")
    assert edge.stats()["errors"] == {"no_backend": 1}
    writer.close()


async def test_unreachable_backend_counts_connect_failed(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    await srv.stop()
    await asyncio.sleep(0.05)
    edge = await tcp_edge(mesh, srv)
    reader, writer = await open_conn(edge)
    assert await read_closed(reader) in ("eof", "reset")
    assert edge.stats()["errors"].get("connect_failed") == 1
    writer.close()


# --- L4 toxics ----------------------------------------------------------------------------------


async def test_delay_adds_the_latency_live_and_goes_away(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    reader, writer = await open_conn(edge)
    base = await roundtrip(reader, writer, b"ping")
    tid = edge.add_toxic("delay", latency_ms=150)  # on the already open connection
    delayed = await roundtrip(reader, writer, b"ping")
    assert 0.148 <= delayed < 0.150 + 0.1, delayed
    edge.remove_toxic(tid)
    assert await roundtrip(reader, writer, b"ping") < base + 0.05
    both = edge.add_toxic("delay", latency_ms=100, direction="both")
    rtt = await roundtrip(reader, writer, b"ping")
    assert 0.198 <= rtt < 0.2 + 0.1, rtt
    edge.remove_toxic(both)
    writer.close()
    await srv.stop()


async def test_delay_keeps_order_of_chunks(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    edge.add_toxic("delay", latency_ms=20, jitter_ms=20, direction="upstream")
    reader, writer = await open_conn(edge)
    sent = b""
    for i in range(30):
        part = f"<{i}>".encode()
        sent += part
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.002)
    assert await asyncio.wait_for(reader.readexactly(len(sent)), 5) == sent
    writer.close()
    await srv.stop()


async def test_jitter_draws_are_reproducible_for_a_seed() -> None:
    srv = await TcpServer("db-0").start()

    async def draws(seed: int) -> list[float]:
        m = Mesh(seed=seed)
        try:
            edge = await tcp_edge(m, srv)
            tid = edge.add_toxic("delay", latency_ms=5, jitter_ms=4, correlation=25)
            reader, writer = await open_conn(edge)
            for _ in range(8):
                await roundtrip(reader, writer, b"x")
            writer.close()
            return edge.toxic_draws(tid)
        finally:
            await m.close()

    first, again, other = await draws(7), await draws(7), await draws(8)
    assert len(first) == 8 and all(1.0 <= d <= 9.0 for d in first)
    assert first == again
    assert first != other
    await srv.stop()


async def test_partition_refuses_cuts_and_heals(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    r_old, w_old = await open_conn(edge)
    await roundtrip(r_old, w_old, b"before")
    tid = edge.add_toxic("partition")
    assert await read_closed(r_old) in ("eof", "reset")  # existing connection cut
    r_new, w_new = await open_conn(edge)
    assert await read_closed(r_new) == "eof"  # refused: closed at once, no data
    assert srv.accepted == 1  # the server never saw the refused one
    edge.remove_toxic(tid)
    r3, w3 = await open_conn(edge)
    await roundtrip(r3, w3, b"healed")
    errors = edge.stats()["errors"]
    assert errors["cut"] == 1 and errors["refused"] == 1
    for w in (w_old, w_new, w3):
        w.close()
    await srv.stop()


async def test_one_way_partition_holds_that_direction(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    reader, writer = await open_conn(edge)
    tid = edge.add_toxic("partition", direction="upstream")
    writer.write(b"held")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    edge.remove_toxic(tid)
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"
    writer.close()
    await srv.stop()


async def test_reset_existing_and_new_connections(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    r_old, w_old = await open_conn(edge)
    await roundtrip(r_old, w_old, b"hi")
    tid = edge.add_toxic("reset")
    assert await read_closed(r_old) == "reset"
    r_new, w_new = await open_conn(edge)
    assert await read_closed(r_new) == "reset"
    edge.remove_toxic(tid)
    r3, w3 = await open_conn(edge)
    await roundtrip(r3, w3, b"ok again")
    assert edge.stats()["errors"]["reset"] == 2
    for w in (w_old, w_new, w3):
        w.close()
    await srv.stop()


async def test_stall_holds_data_and_releases_it_on_removal(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    reader, writer = await open_conn(edge)
    await roundtrip(reader, writer, b"warm")
    tid = edge.add_toxic("stall")
    payload = b"x" * 300_000  # more than the queue's high-water mark: back-pressure, no loss
    writer.write(payload)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(1), 0.3)
    assert edge.stats()["active_connections"] == 1  # held open
    edge.remove_toxic(tid)
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 5) == payload
    writer.close()
    await srv.stop()


async def test_a_stall_of_established_connections_only_lets_a_new_connection_through(mesh: Mesh) -> None:
    """Seed 8's dropped connection: the connections open at install stall (a firewall forgot them) for as long as
    the toxic stays; one made after it passes, so only a client that never reconnects is stuck."""
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    reader, writer = await open_conn(edge)
    await roundtrip(reader, writer, b"warm")
    tid = edge.add_toxic("stall", established_only=True)
    writer.write(b"held")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.5)
    fresh_reader, fresh_writer = await open_conn(edge)
    await asyncio.wait_for(roundtrip(fresh_reader, fresh_writer, b"fresh"), 5)
    with pytest.raises(TimeoutError):  # the old one still held, the new one notwithstanding
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    edge.remove_toxic(tid)
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
    for w in (writer, fresh_writer):
        w.close()
    await srv.stop()


async def test_bandwidth_limits_throughput(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    edge.add_toxic("bandwidth", rate=200)  # 200 KB/s server → client
    reader, writer = await open_conn(edge)
    payload = b"y" * (100 * 1024)
    elapsed = await roundtrip(reader, writer, payload)
    assert 0.4 <= elapsed < 1.5, elapsed  # 100 KB at 200 KB/s ≈ 0.5 s
    writer.close()
    await srv.stop()


async def test_pod_scoped_toxic_affects_only_that_pod(mesh: Mesh) -> None:
    a, b = await TcpServer("db-0", greet=True).start(), await TcpServer("db-1", greet=True).start()
    edge = await tcp_edge(mesh, a, b)
    edge.add_toxic("partition", pod="db-1")
    outcomes = []
    writers = []
    for _ in range(4):
        reader, writer = await open_conn(edge)
        writers.append(writer)
        try:
            line = await asyncio.wait_for(reader.readline(), 2)
        except ConnectionResetError:
            line = b""
        outcomes.append(line.decode().strip() or "refused")
    assert sorted(outcomes) == ["db-0", "db-0", "refused", "refused"]
    assert b.accepted == 0 and a.accepted == 2
    assert edge.stats()["injected"] == {"partition_both": 2}
    for w in writers:
        w.close()
    await a.stop()
    await b.stop()


async def test_probability_is_seeded_per_connection(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    edge.add_toxic("reset", probability=0.5)
    results = []
    for _ in range(20):
        reader, writer = await open_conn(edge)
        writer.write(b"?")
        try:
            data = await asyncio.wait_for(reader.read(1), 2)
            results.append(bool(data))
        except ConnectionResetError:
            results.append(False)
        writer.close()
    assert 3 <= sum(results) <= 17  # some reset, some not
    assert edge.stats()["injected"]["reset_both"] == results.count(False)
    await srv.stop()


# --- HTTP ---------------------------------------------------------------------------------------


async def test_http_abort_matches_path_and_method(mesh: Mesh) -> None:
    srv = await HttpServer().start()
    edge = await http_edge(mesh, srv)
    edge.add_toxic("http_abort", method="GET", path="/catalogue/*", code=503)
    base = f"http://{LOCAL}:{edge.port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/catalogue/42") as r:
            assert r.status == 503
            assert (await r.json())["status_code"] == 503
        async with s.post(f"{base}/catalogue/42", json={"a": 1}) as r:
            assert r.status == 200
        async with s.get(f"{base}/cart") as r:
            assert r.status == 200
        # the aborted request's body is swallowed and keep-alive goes on
        async with s.get(f"{base}/catalogue/1", data=b"z" * 5000) as r:
            assert r.status == 503
        async with s.get(f"{base}/cart") as r:
            assert r.status == 200
    assert srv.seen == {"POST /catalogue/42": 1, "GET /cart": 2}  # aborted upstream: never reached it
    st = edge.stats()
    assert st["requests"] == {"5xx": 2, "2xx": 3}
    assert st["connections_total"] == 1
    await srv.stop()


async def test_http_abort_downstream_reaches_server_and_drop_resets(mesh: Mesh) -> None:
    srv = await HttpServer().start()
    edge = await http_edge(mesh, srv)
    edge.add_toxic("http_abort", direction="downstream", path="/pay", code=500)
    edge.add_toxic("http_abort", path="/drop", drop=True)
    base = f"http://{LOCAL}:{edge.port}"
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/pay", json={"amount": 3}) as r:
            assert r.status == 500
        with pytest.raises(aiohttp.ClientError):
            async with s.get(f"{base}/drop") as r:
                await r.read()
        async with s.get(f"{base}/ok") as r:
            assert r.status == 200
    assert srv.seen["POST /pay"] == 1  # the server did the work; the client saw 500
    assert "GET /drop" not in srv.seen
    await srv.stop()


async def test_http_delay_only_on_matching_requests(mesh: Mesh) -> None:
    srv = await HttpServer().start()
    edge = await http_edge(mesh, srv)
    edge.add_toxic("http_delay", path="/slow*", delay_ms=200)
    edge.add_toxic("http_delay", path="/late", delay_ms=150, direction="downstream")
    base = f"http://{LOCAL}:{edge.port}"

    async def timed(s: aiohttp.ClientSession, path: str) -> float:
        t0 = time.perf_counter()
        async with s.get(base + path) as r:
            assert r.status == 200
            await r.read()
        return time.perf_counter() - t0

    async with aiohttp.ClientSession() as s:
        fast = await timed(s, "/fast")
        slow = await timed(s, "/slow/x")
        late = await timed(s, "/late")
    assert fast < 0.1
    assert 0.198 <= slow < 0.2 + 0.1, slow
    assert 0.148 <= late < 0.15 + 0.1, late
    await srv.stop()


async def test_http_mode_passes_chunked_uploads_and_big_responses(mesh: Mesh) -> None:
    srv = await HttpServer().start()
    edge = await http_edge(mesh, srv)
    edge.add_toxic("http_delay", path="/never", delay_ms=500)  # puts connections in HTTP mode
    edge.add_toxic("http_abort", path="/never")
    base = f"http://{LOCAL}:{edge.port}"

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([65 + i % 26]) * 1000

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for _ in range(2):
            async with s.post(f"{base}/upload", data=chunks()) as r:  # Transfer-Encoding: chunked
                assert (await r.json())["len"] == 50_000
            assert [c.http_on for c in edge.conns] == [True]  # parsed, not passed blindly
            async with s.get(f"{base}/big") as r:
                assert len(await r.read()) == 1_000_000
            async with s.head(f"{base}/big") as r:  # no body follows a HEAD answer
                assert r.status == 200
    st = edge.stats()
    assert st["requests"] == {"2xx": 6} and st["connections_total"] == 1
    assert st["injected"] == {"http_delay_upstream": 0, "http_abort_upstream": 0}
    await srv.stop()


async def test_toxics_added_to_a_keep_alive_connection_take_effect(mesh: Mesh) -> None:
    srv = await HttpServer().start()
    edge = await http_edge(mesh, srv)
    base = f"http://{LOCAL}:{edge.port}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        async with s.get(f"{base}/x") as r:
            assert r.status == 200
        abort = edge.add_toxic("http_abort", code=429)
        async with s.get(f"{base}/x") as r:
            assert r.status == 429
        edge.remove_toxic(abort)
        async with s.get(f"{base}/x") as r:
            assert r.status == 200
        delay = edge.add_toxic("delay", latency_ms=120)
        t0 = time.perf_counter()
        async with s.get(f"{base}/x") as r:
            await r.read()
        assert time.perf_counter() - t0 >= 0.118
        edge.remove_toxic(delay)
    assert edge.stats()["connections_total"] == 1  # all of it on one pooled connection
    assert srv.seen["GET /x"] == 3
    await srv.stop()


async def test_http_toxic_scoped_to_a_pod(mesh: Mesh) -> None:
    a, b = await HttpServer("api-0").start(), await HttpServer("api-1").start()
    edge = await http_edge(mesh, a, b)
    edge.add_toxic("http_abort", pod="api-1", code=502)
    statuses: Counter[tuple[int, str]] = Counter()
    for _ in range(4):  # a new session each time: a new connection, round-robin
        async with aiohttp.ClientSession() as s, s.get(f"http://{LOCAL}:{edge.port}/p") as r:
            pod = (await r.json()).get("pod", "-") if r.status == 200 else "-"
            statuses[(r.status, pod)] += 1
    assert statuses == {(200, "api-0"): 2, (502, "-"): 2}
    await a.stop()
    await b.stop()


async def test_stats_and_collector_output(mesh: Mesh) -> None:
    srv = await HttpServer().start()
    edge = await http_edge(mesh, srv)
    base = f"http://{LOCAL}:{edge.port}"
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.get(f"{base}/ok") as r:
                await r.read()
    mesh.set_backends("gone", [])
    gone = await mesh.add_edge("svc", "gone", protocol="tcp")
    _, w = await open_conn(gone)
    await eventually(lambda: gone.stats()["errors"].get("no_backend") == 1)
    w.close()
    st = edge.stats()
    assert st["requests"] == {"2xx": 3}
    assert st["request_duration_seconds"]["count"] == 3
    assert st["bytes"]["upstream"] > 0 and st["bytes"]["downstream"] > 0
    registry = CollectorRegistry()
    registry.register(MeshCollector(mesh))
    text = generate_latest(registry).decode()
    labels = 'destination="api",source="svc"'
    assert f"mesh_edge_connections_total{{{labels}}} 1.0" in text
    assert f'mesh_edge_requests_total{{code_class="2xx",{labels}}} 3.0' in text
    assert f"mesh_edge_request_duration_seconds_count{{{labels}}} 3.0" in text
    assert 'mesh_edge_request_duration_seconds_bucket{destination="api",le="+Inf",source="svc"} 3.0' in text
    assert 'mesh_edge_bytes_total{destination="api",direction="upstream",source="svc"}' in text
    assert f"mesh_edge_active_connections{{{labels}}}" in text
    assert 'mesh_edge_errors_total{destination="gone",kind="no_backend",source="svc"} 1.0' in text
    assert registry.get_sample_value("mesh_edge_active_connections", {"source": "svc",
                                                                      "destination": "api"}) == 0
    await srv.stop()


async def test_fast_path_under_uvloop() -> None:
    """The runtime embeds the mesh in a uvloop loop: pass-through and a live toxic there too."""

    async def main() -> None:
        srv = await TcpServer("db-0").start()
        m = Mesh(seed=1)
        try:
            edge = await tcp_edge(m, srv)
            reader, writer = await open_conn(edge)
            payload = b"u" * 500_000
            writer.write(payload)
            assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
            tid = edge.add_toxic("delay", latency_ms=100)
            assert 0.095 <= await roundtrip(reader, writer, b"p") < 0.25
            edge.remove_toxic(tid)
            tid = edge.add_toxic("reset")
            assert await read_closed(reader) == "reset"
            writer.close()
            await eventually(lambda: edge.stats()["active_connections"] == 0)
            await asyncio.sleep(0.05)  # let the backend's handler see the reset before the loop ends
        finally:
            await m.close()
            await srv.stop()

    await asyncio.to_thread(uvloop.run, main())  # its own loop, in a thread


# --- model and framing --------------------------------------------------------------------------


async def test_toxic_validation_names_field_and_value() -> None:
    with pytest.raises(FaultError, match=r"latency_ms=-5 must be >= 0"):
        make_toxic("delay", latency_ms=-5)
    with pytest.raises(FaultError, match=r"kind='dealy' is unknown \(did you mean 'delay'\?\)"):
        make_toxic("dealy")
    with pytest.raises(FaultError, match=r"unknown parameter 'latency'"):
        make_toxic("delay", params={"latency": 3})
    with pytest.raises(FaultError, match=r"probability=1.5 must be"):
        make_toxic("stall", probability=1.5)
    with pytest.raises(FaultError, match=r"direction='upstream' is not allowed"):
        make_toxic("reset", direction="upstream")
    with pytest.raises(FaultError, match=r"code=700 must be <= 599"):
        make_toxic("http_abort", code=700)
    t = make_toxic("http_delay", method="post", path="/orders*")
    assert t.params == {"method": "POST", "path": "/orders*", "delay_ms": 1000.0}
    assert t.direction == "upstream"
    assert Toxic(kind="bandwidth", rate=50).params["rate"] == 50.0
    assert {k["kind"] for k in describe_kinds()} == set(TOXIC_KINDS)
    for kind in TOXIC_KINDS.values():
        make_toxic(kind.name)  # every default is valid


async def test_edge_rejects_bad_toxic_use(mesh: Mesh) -> None:
    srv = await TcpServer("db-0").start()
    edge = await tcp_edge(mesh, srv)
    with pytest.raises(FaultError, match="needs an http edge"):
        edge.add_toxic("http_abort")
    edge.add_toxic("delay", id="slow")
    with pytest.raises(FaultError, match="already exists"):
        edge.add_toxic("delay", id="slow")
    with pytest.raises(FaultError, match="did you mean 'slow'"):
        edge.remove_toxic("slwo")
    assert edge.add_toxic("stall") == "stall_both"
    assert edge.add_toxic("stall") == "stall_both_2"
    edge.reset()
    assert edge.toxics() == []
    await srv.stop()


async def test_framer_splits_keep_alive_streams() -> None:
    stream = (b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
              b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n"
              b"GET /c?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    for step in (1, 2, 7, len(stream)):  # any cut points give the same messages
        framer = HttpFramer(request=True)
        msgs: list[list] = []
        for i in range(0, len(stream), step):
            for head, seg, end in framer.feed(stream[i:i + step]):
                if head is not None:
                    msgs.append([head.path, b""])
                msgs[-1][1] += seg
                if end:
                    msgs[-1].append("end")
        assert [m[0] for m in msgs] == ["/a", "/b", "/c"]
        assert all(m[-1] == "end" for m in msgs)
        assert b"".join(m[1] for m in msgs) == stream
    resp = HttpFramer(request=False)
    resp.request_method = "HEAD"
    out = resp.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert out[0][2] is True  # HEAD: no body despite Content-Length
    bad = HttpFramer(request=True)
    bad.feed(b"\x16\x03\x01 not http\r\n\r\n")
    assert bad.tunnel and bad.broken


# --- per-request balancing ------------------------------------------------------------------------


async def _pods_over_one_connection(edge: Edge, n: int, path: str = "/r") -> list[tuple[int, str, float]]:
    """(status, pod, seconds) of ``n`` requests on one keep-alive connection."""
    out = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for _ in range(n):
            t0 = time.perf_counter()
            async with s.get(f"http://{LOCAL}:{edge.port}{path}") as r:
                pod = (await r.json()).get("pod", "-") if r.status == 200 else "-"
                out.append((r.status, pod, time.perf_counter() - t0))
    return out


async def test_connection_balancing_keeps_a_keep_alive_connection_on_one_pod(mesh: Mesh) -> None:
    a, b = await HttpServer("api-0").start(), await HttpServer("api-1").start()
    edge = await http_edge(mesh, a, b)
    assert mesh.balancing("api") == "connection"  # kube-proxy's way, the default
    assert len({pod for _s, pod, _t in await _pods_over_one_connection(edge, 4)}) == 1
    await a.stop()
    await b.stop()


async def test_per_request_balancing_spreads_one_connection_over_the_pods(mesh: Mesh) -> None:
    a, b = await HttpServer("api-0").start(), await HttpServer("api-1").start()
    mesh.set_balancing("api", "request")
    edge = await http_edge(mesh, a, b)
    got = await _pods_over_one_connection(edge, 6)
    assert [pod for _s, pod, _t in got] == ["api-0", "api-1"] * 3
    stats = edge.stats()
    assert stats["connections_total"] == 1 and stats["connections_by_pod"] == {"api-0": 3, "api-1": 3}
    assert a.seen["GET /r"] == 3 and b.seen["GET /r"] == 3
    with pytest.raises(Exception, match="must be 'connection' or 'request'"):
        mesh.set_balancing("api", "random")  # type: ignore[arg-type]
    await a.stop()
    await b.stop()


async def test_per_request_a_slow_pod_slows_its_share_and_pod_scoped_aborts_follow(mesh: Mesh) -> None:
    """The seed's "one pod behind a slow path" as a sidecar mesh shows it: a client cannot route around it."""
    a, b = await HttpServer("api-0").start(), await HttpServer("api-1").start()
    mesh.set_balancing("api", "request")
    edge = await http_edge(mesh, a, b)
    delay = edge.add_toxic("delay", latency_ms=150, pod="api-1")
    got = await _pods_over_one_connection(edge, 6)
    slow = [t for _s, pod, t in got if pod == "api-1"]
    assert len(slow) == 3 and min(slow) >= 0.148, got
    edge.remove_toxic(delay)
    edge.add_toxic("http_abort", pod="api-1", code=502)
    got = await _pods_over_one_connection(edge, 4)
    assert [(st, pod) for st, pod, _t in got] == [(200, "api-0"), (502, "-"), (200, "api-0"), (502, "-")], got
    await a.stop()
    await b.stop()


async def test_connections_open_before_a_policy_change_follow_it(mesh: Mesh) -> None:
    a, b = await HttpServer("api-0").start(), await HttpServer("api-1").start()
    edge = await http_edge(mesh, a, b)
    pods = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        async def one() -> None:
            async with s.get(f"http://{LOCAL}:{edge.port}/r") as r:
                pods.append((await r.json())["pod"])
        for _ in range(3):
            await one()
        mesh.set_balancing("api", "request")
        for _ in range(4):
            await one()
    assert len(set(pods[:3])) == 1 and set(pods[3:]) == {"api-0", "api-1"}, pods
    assert edge.stats()["connections_total"] == 1
    await a.stop()
    await b.stop()


async def test_a_route_splits_reads_by_weight_and_sends_writes_to_the_primary(mesh: Mesh) -> None:
    """Weighted subsets (an Istio VirtualService's routes): reads split 3:1 by smooth weighted round-robin, in the
    same order every time; a write goes to the first subset; a subset with no ready pod is skipped; one subset
    left with weight is no route (the plain per-connection balancing again)."""
    primary, old = await HttpServer("api-0").start(), await HttpServer("api-v1-0").start()
    mesh.set_backends("api", [primary.backend()])
    mesh.set_backends("api-v1", [old.backend()])
    edge = await mesh.add_edge("svc", "api", protocol="http")
    mesh.set_route("api", [("primary", "api", 75), ("v1", "api-v1", 25)])
    assert mesh.routed("api") and mesh.balancing("api") == "request"
    pods = [pod for _s, pod, _t in await _pods_over_one_connection(edge, 8)]
    assert pods == ["api-0", "api-0", "api-v1-0", "api-0"] * 2, pods
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for _ in range(4):
            async with s.post(f"http://{LOCAL}:{edge.port}/w", data=b"x") as r:
                assert (await r.json())["pod"] == "api-0"
    assert primary.seen["POST /w"] == 4 and old.seen.get("POST /w", 0) == 0
    mesh.set_backends("api-v1", [])  # the old release's pod not ready: its share goes to the others
    assert {pod for _s, pod, _t in await _pods_over_one_connection(edge, 4)} == {"api-0"}
    mesh.set_backends("api-v1", [old.backend()])
    mesh.set_route("api", [("primary", "api", 100), ("v1", "api-v1", 0)])
    assert not mesh.routed("api") and mesh.balancing("api") == "connection"
    assert {pod for _s, pod, _t in await _pods_over_one_connection(edge, 4)} == {"api-0"}
    mesh.set_route("api", [("primary", "api", 0), ("v1", "api-v1", 100)])  # every read to the old release
    assert mesh.routed("api")
    assert {pod for _s, pod, _t in await _pods_over_one_connection(edge, 4)} == {"api-v1-0"}
    text = generate_latest(_registry(mesh)).decode()
    assert 'mesh_route_weight{destination="api",subset="v1"} 100.0' in text
    assert 'mesh_route_requests_total{destination="api",subset="v1"} 6.0' in text
    mesh.set_route("api", [])
    await mesh.remove_edge("svc", "api")
    await primary.stop()
    await old.stop()


def _registry(mesh: Mesh) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(MeshCollector(mesh))  # type: ignore[arg-type]
    return reg
