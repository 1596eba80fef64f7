"""The mesh: one TCP listener per edge (source → destination), balancing over the destination's pods.

Every connection between components goes through an edge, so this is where network faults live
(``toxics.py``) and where per-edge traffic is counted. The fast path (no toxic on a direction) is a
pair of asyncio Protocols writing straight into each other's transport, with pause/resume reading
for back-pressure; a direction with a toxic switches to a queue drained by a small pump task, and
back again once the queue is empty.

    mesh = Mesh(seed=7)
    mesh.set_backends("catalogue", [Backend("catalogue-0", "127.0.0.1", 41001)])
    edge = await mesh.add_edge("front-end", "catalogue")           # listens on a free port
    tid = edge.add_toxic("delay", latency_ms=200)                  # live, on existing connections too
    edge.remove_toxic(tid)                                         # held data is released, not dropped

Metric ``kind`` labels describe what a client would observe (refused, reset, cut), never which
fault caused it; ``Edge.stats()["injected"]`` has the per-toxic counts for the chaos layer's audit.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from time import perf_counter
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from sockdrill.cluster.toxics import HttpFramer, HttpHead, Toxic, ToxicRuntime, make_toxic
from sockdrill.errors import ClusterError, FaultError, did_you_mean

__all__ = ["LATENCY_BUCKETS", "Backend", "Edge", "Mesh", "MeshCollector"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONNECT_TIMEOUT = 5.0
QUEUE_HIGH = 256 * 1024  # a held direction stops reading its source past this many queued bytes
QUEUE_LOW = 64 * 1024
_EPS = 0.0005  # timers may fire this early; do not loop for less

# reasons a side's reading is paused (a bitmask, so one resume cannot undo another's pause)
_CONNECTING, _PEER_FULL, _QUEUE_FULL = 1, 2, 4
_SWALLOW = "swallow"
_CODE_CLASS = {ord(d): f"{d}xx" for d in "12345"}  # first digit of the status (as a byte) → class

Protocol = Literal["http", "tcp"]
Balancing = Literal["connection", "request"]


@dataclass(frozen=True)
class Backend:
    """One ready endpoint of a destination: a pod (or "external") at host:port."""

    pod: str
    host: str
    port: int


def _sock_opt(transport: asyncio.BaseTransport | None, level: int, opt: int, value: int | bytes) -> None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        try:
            sock.setsockopt(level, opt, value)
        except (OSError, ValueError):  # closed meanwhile ("negative file descriptor"): nothing left to set
            pass


def _rst(transport: asyncio.BaseTransport | None) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a reset peer does."""
    if transport is None:
        return
    _sock_opt(transport, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _abort(transport)


def _abort(transport: asyncio.BaseTransport) -> None:
    """Abort a transport that may be closing already: a connection that went away on its own while a fault
    reset every connection of its edge must not fail the fault (it did, as "negative file descriptor")."""
    try:
        transport.abort()  # type: ignore[attr-defined]
    except (OSError, ValueError):
        pass


def _synthetic_response(code: int, method: str) -> bytes:
    try:
        reason = HTTPStatus(code).phrase
    except ValueError:
        reason = "Error"
    body = json.dumps({"error": reason, "status_code": code}).encode()
    head = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head if method == "HEAD" else head + body


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; pauses its reading for any of several reasons."""

    def __init__(self) -> None:
        self.conn: _Conn | None = None
        self.transport: asyncio.Transport | None = None
        self.paused = 0
        self.lost = False

    def pause(self, reason: int) -> None:
        t = self.transport
        if not self.paused and t is not None and not t.is_closing():
            t.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        t = self.transport
        if not self.paused and t is not None and not t.is_closing():
            t.resume_reading()


class _ClientSide(_Side):
    """The accepted socket (source pod → mesh)."""

    def __init__(self, edge: Edge) -> None:
        super().__init__()
        self.edge = edge

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _sock_opt(transport, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.edge._accept(self)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        conn.edge.bytes_up += len(data)
        if conn.http:
            if conn.req_start is None:  # client speaks after the server did: a new request
                conn.req_start = perf_counter()
                if (conn.http_toxics or conn.per_request) and not conn.http_on and not conn.http_broken:
                    conn.http_enable()
            if conn.http_on:
                conn.http_up(data)
                return
        up = conn.up
        server = conn.server
        if up.toxics or up.queue or server is None or server.lost:
            up.enqueue(data)
        else:
            server.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        if self.conn is not None:
            self.conn.up.finish(lost=False)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.conn is not None:
            self.conn.side_lost(self)

    def pause_writing(self) -> None:
        if self.conn is not None and self.conn.server is not None:
            self.conn.server.pause(_PEER_FULL)

    def resume_writing(self) -> None:
        if self.conn is not None and self.conn.server is not None:
            self.conn.server.resume(_PEER_FULL)


class _ServerSide(_Side):
    """The socket to the chosen backend (mesh → destination pod)."""

    def __init__(self, conn: _Conn, backend: Backend) -> None:
        super().__init__()
        self.conn = conn
        self.backend = backend

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _sock_opt(transport, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.conn is not None and self.conn.backend is self.backend:
            self.conn.server = self  # now: a server that speaks first may do so before connect() resumes

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closed or conn.server is not self:
            return
        conn.edge.bytes_down += len(data)
        if conn.http_on:
            conn.http_down(data)
            return
        down = conn.down
        if down.toxics or down.queue or conn.client.lost:
            down.enqueue(data)
            return
        if conn.req_start is not None:
            conn.on_response(data)
        conn.client.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        if self.conn is None or self.conn.server is not self:
            return False  # a kept connection the backend closed: close it too
        self.conn.down.finish(lost=False)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.conn is not None and self.conn.server is self:
            if exc is not None and not self.conn.closed:
                self.conn.edge._error("upstream_reset")
            self.conn.side_lost(self)

    def pause_writing(self) -> None:
        if self.conn is not None and self.conn.server is self:
            self.conn.client.pause(_PEER_FULL)

    def resume_writing(self) -> None:
        if self.conn is not None and self.conn.server is self:
            self.conn.client.resume(_PEER_FULL)


class _Pipe:
    """One direction of a connection. Empty queue and no toxics: bytes go straight through."""

    __slots__ = ("conn", "ended", "eof", "next_send", "queue", "queued", "task", "to_server", "toxics",
                 "waiter")

    def __init__(self, conn: _Conn, to_server: bool) -> None:
        self.conn = conn
        self.to_server = to_server
        self.toxics: list[ToxicRuntime] = []  # L4 toxics that hit this connection in this direction
        self.queue: deque[list[Any]] = deque()  # [data, arrival, [(runtime, seconds), ...]]
        self.queued = 0
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.next_send = 0.0
        self.eof: str | None = None  # "eof" or "lost" once the source has finished
        self.ended = False

    @property
    def src(self) -> _Side | None:
        return self.conn.client if self.to_server else self.conn.server

    @property
    def dst(self) -> _Side | None:
        return self.conn.server if self.to_server else self.conn.client

    def send(self, data: bytes, holds: list[tuple[ToxicRuntime, float]] | None = None) -> None:
        if self.toxics or self.queue or holds or self.dst is None:
            self.enqueue(data, holds)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        dst = self.dst
        t = dst.transport if dst is not None else None
        if t is None or t.is_closing():
            return
        if not self.to_server and self.conn.req_start is not None:
            self.conn.on_response(data)
        t.write(data)

    def enqueue(self, data: bytes, holds: list[tuple[ToxicRuntime, float]] | None = None) -> None:
        if self.ended:
            return  # the destination is gone
        delays = list(holds) if holds else []
        for rt in self.toxics:
            if rt.kind == "delay":
                delays.append((rt, rt.sample_delay()))
        self.queue.append([data, self.conn.loop.time(), delays])
        self.queued += len(data)
        if self.queued > QUEUE_HIGH and self.src is not None:
            self.src.pause(_QUEUE_FULL)
        self.kick()

    def kick(self) -> None:
        if self.task is None:
            if self.queue and self.dst is not None:
                self.task = self.conn.loop.create_task(self._pump())
        else:
            self.notify()

    def notify(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _held(self) -> bool:
        return any(rt.kind in ("stall", "partition") for rt in self.toxics)

    def _rate(self) -> float:
        rate = 0.0
        for rt in self.toxics:
            if rt.kind == "bandwidth":
                r = rt.params["rate"] * 1024.0
                rate = r if rate == 0.0 else min(rate, r)
        return rate

    async def _wait(self, timeout: float | None) -> None:
        loop = self.conn.loop
        fut: asyncio.Future[None] = loop.create_future()
        self.waiter = fut
        handle = loop.call_later(timeout, _wake, fut) if timeout is not None else None
        try:
            await fut
        finally:
            self.waiter = None
            if handle is not None:
                handle.cancel()

    async def _pump(self) -> None:
        loop = self.conn.loop
        queue = self.queue
        try:
            while queue:
                if self.conn.closed:
                    queue.clear()
                    break
                if self._held():
                    await self._wait(None)
                    continue
                chunk = queue[0]
                now = loop.time()
                release = chunk[1]
                for rt, secs in chunk[2]:
                    if rt.active:
                        release += secs
                if release > now + _EPS:
                    await self._wait(release - now)
                    continue
                data = chunk[0]
                rate = self._rate()
                if rate:
                    if self.next_send > now + _EPS:
                        await self._wait(self.next_send - now)
                        continue
                    piece = max(512, int(rate * 0.02))  # 20 ms worth per write keeps the rate smooth
                    if len(data) > piece:
                        chunk[0] = data[piece:]
                        data = data[:piece]
                    else:
                        queue.popleft()
                    self.next_send = max(now, self.next_send) + len(data) / rate
                else:
                    queue.popleft()
                self.queued -= len(data)
                self._write(data)
                if self.queued < QUEUE_LOW and self.src is not None:
                    self.src.resume(_QUEUE_FULL)
        finally:
            self.task = None
        if self.eof is not None and not queue:
            self._end()

    def finish(self, lost: bool) -> None:
        """The source finished (EOF or gone): pass that on once the queue has drained."""
        if self.eof is None or lost:
            self.eof = "lost" if lost else "eof"
        if not self.queue and self.task is None and self.dst is not None:
            self._end()

    def kill(self) -> None:
        """The destination is gone: drop what is queued."""
        self.queue.clear()
        self.queued = 0
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.ended = True

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        dst = self.dst
        t = dst.transport if dst is not None else None
        if t is not None and not t.is_closing():
            if self.eof == "lost" or not t.can_write_eof():
                t.close()
            else:
                t.write_eof()
        self.conn.pipe_ended()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Pending:
    """A request forwarded upstream whose response has not ended yet (HTTP mode)."""

    __slots__ = ("abort", "delays", "method")

    def __init__(self, method: str) -> None:
        self.method = method
        self.abort: ToxicRuntime | None = None
        self.delays: list[tuple[ToxicRuntime, float]] = []


class _Conn:
    """A proxied connection: the two sides, the two pipes, and per-connection HTTP state."""

    def __init__(self, edge: Edge, client: _ClientSide, backend: Backend) -> None:
        self.edge = edge
        self.loop = edge.loop
        self.client = client
        self.backend = backend
        self.server: _ServerSide | None = None
        self.up = _Pipe(self, to_server=True)
        self.down = _Pipe(self, to_server=False)
        self.closed = False
        self.finalised = False
        self.http = edge.protocol == "http"
        self.req_start: float | None = None  # first byte of the request in flight (turn-taking)
        self.http_toxics: list[ToxicRuntime] = []
        self.http_on = False
        self.http_broken = False
        self.up_framer: HttpFramer | None = None
        self.down_framer: HttpFramer | None = None
        self.fifo: deque[_Pending | bytes] = deque()
        self.req_action: Any = None
        self.resp_action: Any = None
        self.resp_final = True
        self.connect_task: asyncio.Task[None] | None = None
        # Per-request balancing (a destination whose policy is "request", as a sidecar proxy balances): each
        # request goes to the next backend; connections to the others are kept for later requests.
        self.per_request = self.http and edge.mesh.balancing(edge.destination) == "request"
        self.idle: dict[str, _ServerSide] = {}

    # --- lifecycle ------------------------------------------------------------------------------

    async def connect(self) -> None:
        b = self.backend
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                transport, side = await self.loop.create_connection(lambda: _ServerSide(self, b), b.host, b.port)
        except (OSError, TimeoutError):
            if not self.closed:
                self.edge._error("connect_failed")
                self.abort(rst=True)
            return
        except asyncio.CancelledError:
            return
        if self.closed or self.client.lost or b is not self.backend:
            transport.close()
            self._finalise_if_done()
            return
        self.server = side  # type: ignore[assignment]  # (already set by connection_made)
        if self.up.queue:
            self.up.kick()
        if self.up.eof is not None:
            self.up.finish(lost=self.up.eof == "lost")
        self.client.resume(_CONNECTING)

    def abort(self, rst: bool) -> None:
        """Tear the connection down now (RST both ways when ``rst``), dropping anything held."""
        if self.closed:
            return
        self.closed = True
        self.up.kill()
        self.down.kill()
        for side in (self.client, self.server):
            if side is not None and side.transport is not None:
                if rst:
                    _rst(side.transport)
                else:
                    _abort(side.transport)
        self._finalise_if_done()

    def side_lost(self, side: _Side) -> None:
        if side is self.client:
            self.down.kill()
            self.up.finish(lost=True)
        else:
            self.up.kill()
            self.down.finish(lost=True)
        self._finalise_if_done()

    def pipe_ended(self) -> None:
        if self.up.ended and self.down.ended:
            for side in (self.client, self.server):
                if side is not None and side.transport is not None and not side.transport.is_closing():
                    side.transport.close()
        self._finalise_if_done()

    def _finalise_if_done(self) -> None:
        if self.finalised:
            return
        server_gone = self.server is None or self.server.lost
        if not self.closed and not (self.client.lost and server_gone):
            return
        self.finalised = True
        self.closed = True
        self.up.kill()
        self.down.kill()
        for side in self.idle.values():
            if side.transport is not None:
                side.transport.close()
        self.idle.clear()
        if self.connect_task is not None and not self.connect_task.done():
            self.connect_task.cancel()
        if self.http and self.req_start is not None:
            self.edge._error("no_response")
            self.req_start = None
        self.edge._closed(self)

    # --- toxics -----------------------------------------------------------------------------------

    def install(self, rt: ToxicRuntime, new: bool) -> None:
        """Apply a toxic to this connection (at accept when ``new``, else live)."""
        kind = rt.kind
        direction = rt.toxic.direction
        if rt.toxic.spec.http:
            # Per request, the pod is known only when each request is routed: _on_request checks it then.
            if rt.pod is None or rt.pod == self.backend.pod or self.per_request:
                self.http_toxics.append(rt)
            return
        if not rt.hits(self.backend.pod):
            return
        if new and rt.toxic.params.get("established_only"):
            return  # only the connections that were open when it was installed
        if kind == "reset":
            self.edge._error("reset")
            self.abort(rst=True)
        elif kind == "partition" and direction == "both":
            self.edge._error("refused" if new else "cut")
            if new:  # closed at once with no data (FIN), as if nothing listened
                self.closed = True
                t = self.client.transport
                if t is not None:
                    t.close()
                self._finalise_if_done()
            else:
                self.abort(rst=False)
        else:
            for pipe in self._pipes(direction):
                pipe.toxics.append(rt)
                pipe.notify()

    def uninstall(self, rt: ToxicRuntime) -> None:
        if rt in self.http_toxics:
            self.http_toxics.remove(rt)
            if self.http_on:
                self._maybe_http_off()
        for pipe in (self.up, self.down):
            if rt in pipe.toxics:
                pipe.toxics.remove(rt)
            pipe.kick()  # re-evaluate holds tied to it at once

    def _pipes(self, direction: str) -> tuple[_Pipe, ...]:
        if direction == "upstream":
            return (self.up,)
        if direction == "downstream":
            return (self.down,)
        return (self.up, self.down)

    # --- HTTP -----------------------------------------------------------------------------------

    def on_response(self, data: bytes) -> None:
        """First bytes written back to the client since the request began: latency and status."""
        start = self.req_start
        if start is None:
            return
        first = data[9] if len(data) > 11 and data.startswith(b"HTTP/") else 0
        if first == 49 and data[9:12] != b"101":  # informational: the real answer is still to come
            return
        self.req_start = None
        self.edge._request(_CODE_CLASS.get(first, "other"), perf_counter() - start)

    def _route(self, method: str = "GET") -> None:
        """Per-request balancing: send this request to the destination's next backend (on a routed
        destination, to the subset its weights give this request)."""
        picked = self.edge.mesh.pick(self.edge.destination, method) if self.edge.mesh.routed(
            self.edge.destination) else None
        if picked is not None:
            backend = picked
        else:
            backends = self.edge.mesh._backends.get(self.edge.destination)
            if not backends:
                return  # none ready now: the current one (if it still answers) keeps the request
            backend = backends[self.edge._rr % len(backends)]
            self.edge._rr += 1
            if self.edge.mesh.balancing(self.edge.destination) == "connection":
                self.per_request = False  # back on the destination's own pods after a route ended: stay
        self.edge.by_pod[backend.pod] += 1
        if backend == self.backend and self.server is not None and not self.server.lost:
            return
        old = self.server
        for pod in [p for p, side in self.idle.items() if side.lost]:  # gone (its pod replaced, or it timed out)
            del self.idle[pod]
        if old is not None:
            old.conn = None  # detached: its callbacks no longer touch this connection
            if old.lost or old.transport is None or old.transport.is_closing() or old.paused:
                if old.transport is not None:
                    old.transport.close()
            else:
                stale = self.idle.pop(self.backend.pod, None)
                if stale is not None and stale.transport is not None:
                    stale.transport.close()
                self.idle[self.backend.pod] = old
        self.server = None
        self.backend = backend
        # The network toxics go with the request to its pod: drawn again for it, as for a new connection.
        for pipe in (self.up, self.down):
            pipe.toxics = []
        for rt in list(self.edge._toxics.values()):
            if not rt.toxic.spec.http and rt.active:
                self.install(rt, new=True)
                if self.closed:
                    return
        side = self.idle.pop(backend.pod, None)
        if side is not None and not side.lost and side.transport is not None and not side.transport.is_closing():
            side.conn = self
            self.server = side
            return
        if side is not None and side.transport is not None:
            side.transport.close()
        self.client.pause(_CONNECTING)
        self.connect_task = self.loop.create_task(self.connect())

    def http_enable(self) -> None:
        self.http_on = True
        self.up_framer = HttpFramer(request=True)
        self.down_framer = HttpFramer(request=False)
        self.fifo.clear()
        self.req_action = self.resp_action = None
        self.resp_final = True

    def _maybe_http_off(self) -> None:
        if (not self.per_request and not self.http_toxics and not self.fifo and self.req_action is None
                and self.up_framer is not None and self.up_framer.idle()
                and self.down_framer is not None and self.down_framer.idle()):
            self.http_on = False

    def _http_broken(self) -> None:
        """Not HTTP/1.x (or an upgrade): pass everything through from now on."""
        if self.up_framer is not None and self.up_framer.broken:
            self.edge._error("http_parse")
        self.http_broken = True
        self.http_on = False
        if self.per_request and self.server is None and (self.connect_task is None or self.connect_task.done()):
            self._route()  # not HTTP after all: the bytes need a backend of their own
        while self.fifo:
            item = self.fifo.popleft()
            if isinstance(item, bytes):
                self.down.send(item)

    def _flush_fifo(self) -> None:
        while self.fifo and isinstance(self.fifo[0], bytes):
            self.down.send(self.fifo.popleft())  # type: ignore[arg-type]

    def http_up(self, data: bytes) -> None:
        framer = self.up_framer
        assert framer is not None
        for head, seg, end in framer.feed(data):
            if head is not None:
                if self.per_request and not self.fifo:  # the previous exchange is over: this one may go elsewhere
                    self._route(head.method)
                    if self.closed:
                        return
                self.req_action = self._on_request(head)
                if self.closed:
                    return
            act = self.req_action
            if act is None:
                self.up.send(seg)
            elif act is not _SWALLOW:
                self.up.send(seg, act)
                self.req_action = None  # the rest of the request queues behind its head
            if end:
                self.req_action = None
        if framer.tunnel:
            self._http_broken()
        elif not self.http_toxics:
            self._maybe_http_off()

    def _on_request(self, head: HttpHead) -> Any:
        pending = _Pending(head.method)
        holds: list[tuple[ToxicRuntime, float]] = []
        for rt in self.http_toxics:
            if not rt.active or not rt.matches(head.method, head.path) or not rt.hits(self.backend.pod):
                continue
            upstream = rt.toxic.direction == "upstream"
            if rt.kind == "http_abort":
                if upstream:
                    if rt.params["drop"]:
                        self.edge._error("reset")
                        self.abort(rst=True)
                        return None
                    self.fifo.append(_synthetic_response(rt.params["code"], head.method))
                    self._flush_fifo()
                    return _SWALLOW  # the server never sees it
                if pending.abort is None:
                    pending.abort = rt
            else:
                delay = (rt, rt.params["delay_ms"] / 1000.0)
                (holds if upstream else pending.delays).append(delay)
        self.fifo.append(pending)
        return holds or None

    def http_down(self, data: bytes) -> None:
        framer = self.down_framer
        assert framer is not None
        first = next((p for p in self.fifo if isinstance(p, _Pending)), None)
        framer.request_method = first.method if first is not None else "GET"
        for head, seg, end in framer.feed(data):
            if head is not None:
                self.resp_final = not (100 <= head.status < 200 and head.status != 101)
                self.resp_action = None
                pending = self.fifo[0] if self.fifo and isinstance(self.fifo[0], _Pending) else None
                if self.resp_final and pending is not None:
                    if pending.abort is not None and pending.abort.active:
                        if pending.abort.params["drop"]:  # the server did the work; the client never hears
                            self.edge._error("reset")
                            self.abort(rst=True)
                            return
                        self.down.send(_synthetic_response(pending.abort.params["code"], pending.method))
                        self.resp_action = _SWALLOW
                    elif pending.delays:
                        self.resp_action = pending.delays
            act = self.resp_action
            if act is None:
                self.down.send(seg)
            elif act is not _SWALLOW:
                self.down.send(seg, act)
                self.resp_action = None
            if end and self.resp_final:
                if self.fifo and isinstance(self.fifo[0], _Pending):
                    self.fifo.popleft()
                self.resp_action = None
                self._flush_fifo()
        if framer.tunnel:
            self._http_broken()
        elif not self.http_toxics:
            self._maybe_http_off()


class Edge:
    """A listener for one source → destination edge, with its toxics and counters."""

    def __init__(self, mesh: Mesh, source: str, destination: str, protocol: Protocol, host: str) -> None:
        if protocol not in ("http", "tcp"):
            raise ClusterError(f"edge {source}->{destination}: protocol={protocol!r} must be 'http' or 'tcp'")
        self.mesh = mesh
        self.source = source
        self.destination = destination
        self.protocol: Protocol = protocol
        self.host = host
        self.port = 0
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.AbstractServer | None = None
        self._rr = 0
        self._toxics: dict[str, ToxicRuntime] = {}
        self._seed_text = f"{mesh.seed}:{source}->{destination}"
        self.conns: set[_Conn] = set()
        # counters
        self.connections_total = 0
        self.active = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.errors: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.by_pod: Counter[str] = Counter()
        self.lat_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.lat_sum = 0.0
        self.lat_count = 0

    @property
    def name(self) -> str:
        return f"{self.source}->{self.destination}"

    async def _start(self, port: int) -> None:
        try:
            self._server = await self.loop.create_server(lambda: _ClientSide(self), self.host, port,
                                                         reuse_address=True, backlog=1024)
        except OSError as exc:
            raise ClusterError(f"edge {self.name}: cannot listen on {self.host}:{port}: {exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]

    # --- connections ------------------------------------------------------------------------------

    def _accept(self, side: _ClientSide) -> None:
        self.connections_total += 1
        backends = self.mesh._backends.get(self.destination)
        if self.mesh.routed(self.destination):
            backends = self.mesh.route_backends(self.destination) or backends
        if not backends:
            self._error("no_backend")
            _rst(side.transport)
            return
        if self.protocol == "http" and self.mesh.balancing(self.destination) == "request":
            # No backend yet: the first request picks one (and so does every later one).
            conn = _Conn(self, side, backends[0])
            side.conn = conn
            self.active += 1
            self.conns.add(conn)
            for rt in list(self._toxics.values()):
                if rt.toxic.spec.http:
                    conn.install(rt, new=True)
            return
        backend = backends[self._rr % len(backends)]
        self._rr += 1
        conn = _Conn(self, side, backend)
        side.conn = conn
        self.active += 1
        self.conns.add(conn)
        self.by_pod[backend.pod] += 1
        for rt in list(self._toxics.values()):
            conn.install(rt, new=True)
            if conn.closed:
                return
        side.pause(_CONNECTING)
        conn.connect_task = self.loop.create_task(conn.connect())

    def _closed(self, conn: _Conn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self.active -= 1

    def _error(self, kind: str) -> None:
        self.errors[kind] += 1

    def _request(self, code_class: str, seconds: float) -> None:
        self.requests[code_class] += 1
        self.lat_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.lat_sum += seconds
        self.lat_count += 1

    # --- toxics -----------------------------------------------------------------------------------

    def add_toxic(self, kind: str | Toxic, /, **fields: Any) -> str:
        """Install a toxic (a Toxic, or a kind plus fields) live; return its id.

        ``edge.add_toxic("delay", latency_ms=100, jitter_ms=20, direction="both", pod="carts-1")``
        """
        toxic = kind if isinstance(kind, Toxic) else make_toxic(kind, **fields)
        if isinstance(kind, Toxic) and fields:
            toxic = make_toxic(kind.kind, **{**kind.model_dump(), **fields})
        if toxic.spec.http and self.protocol != "http":
            raise FaultError(f"toxic {toxic.kind!r} needs an http edge; {self.name} is {self.protocol}")
        ident = toxic.id
        if ident:
            if ident in self._toxics:
                raise FaultError(f"edge {self.name}: toxic id {ident!r} already exists")
        else:
            base = f"{toxic.kind}_{toxic.direction}"
            ident, n = base, 1
            while ident in self._toxics:
                n += 1
                ident = f"{base}_{n}"
            toxic = toxic.model_copy(update={"id": ident})
        rt = ToxicRuntime(toxic, self._seed_text)
        self._toxics[ident] = rt
        for conn in list(self.conns):
            if not conn.closed:
                conn.install(rt, new=False)
        return ident

    def remove_toxic(self, toxic_id: str) -> None:
        """Remove a toxic at once; data it was holding is released, not dropped."""
        rt = self._toxics.pop(toxic_id, None)
        if rt is None:
            raise FaultError(f"edge {self.name}: no toxic {toxic_id!r}{did_you_mean(toxic_id, self._toxics)}")
        rt.active = False
        for conn in list(self.conns):
            conn.uninstall(rt)

    def reset(self) -> None:
        """Remove every toxic (the single recovery switch)."""
        for ident in list(self._toxics):
            self.remove_toxic(ident)

    def toxics(self) -> list[Toxic]:
        return [rt.toxic for rt in self._toxics.values()]

    def toxic_draws(self, toxic_id: str) -> list[float]:
        """The last delay draws (ms) of a delay toxic: seeded, so the same seed gives the same list."""
        rt = self._toxics.get(toxic_id)
        if rt is None:
            raise FaultError(f"edge {self.name}: no toxic {toxic_id!r}{did_you_mean(toxic_id, self._toxics)}")
        return list(rt.recent_ms)

    # --- reporting --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        cumulative, running = {}, 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.lat_buckets, strict=True):
            running += count
            cumulative[str(bound) if bound != float("inf") else "+Inf"] = running
        return {
            "source": self.source,
            "destination": self.destination,
            "protocol": self.protocol,
            "host": self.host,
            "port": self.port,
            "backends": [b.pod for b in self.mesh._backends.get(self.destination, ())],
            "connections_total": self.connections_total,
            "active_connections": self.active,
            "connections_by_pod": dict(self.by_pod),
            "bytes": {"upstream": self.bytes_up, "downstream": self.bytes_down},
            "errors": dict(self.errors),
            "requests": dict(self.requests),
            "request_duration_seconds": {"count": self.lat_count, "sum": self.lat_sum, "buckets": cumulative},
            "toxics": [rt.toxic.describe() for rt in self._toxics.values()],
            "injected": {ident: rt.injected for ident, rt in self._toxics.items()},
        }

    async def close(self) -> None:
        for rt in self._toxics.values():
            rt.active = False
        self._toxics.clear()
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns):
            conn.abort(rst=False)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                pass
            self._server = None


class Mesh:
    """All edges of a runtime plus the ready backends of each destination."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._backends: dict[str, tuple[Backend, ...]] = {}
        self._balancing: dict[str, Balancing] = {}
        self.edges: dict[tuple[str, str], Edge] = {}
        # Weighted subsets of a destination (an Istio VirtualService's routes): destination → ((subset,
        # deployment, weight), ...). Only a destination some of whose weight goes to another deployment is
        # routed; every other keeps the plain paths below, untouched.
        self._routes: dict[str, tuple[tuple[str, str, int], ...]] = {}
        self._wrr: dict[str, dict[str, int]] = {}
        self._subset_rr: Counter[tuple[str, str]] = Counter()
        self.route_requests: Counter[tuple[str, str]] = Counter()  # (destination, subset) → requests

    # Requests that change something go to the first subset (the primary), whatever the weights: only reads
    # are split, as a read replica or a canary of reads would be.
    ROUTED_METHODS = frozenset({"GET", "HEAD"})

    def set_route(self, destination: str, routes: Iterable[tuple[str, str, int]]) -> None:
        """Route ``destination``'s reads over subsets by weight: ``[(subset, deployment, weight), ...]``, the
        first the primary. All weight on the destination's own deployment: not routed (plain balancing)."""
        table = tuple((str(n), str(d), int(w)) for n, d, w in routes)
        if any(w < 0 for _n, _d, w in table):
            raise ClusterError(f"route of {destination}: weights must be >= 0")
        self._routes[destination] = table
        self._wrr[destination] = {}
        per_request = self.balancing(destination) == "request"
        own = {b.pod for b in self._backends.get(destination, ())}
        for (_src, dest), edge in self.edges.items():
            if dest == destination:
                for conn in edge.conns:
                    # A keep-alive connection a route had sent to another subset's pod leaves it with its next
                    # request (as a sidecar applies a new route to every request), then stays where it lands.
                    conn.per_request = conn.http and (per_request or conn.backend.pod not in own)

    def route(self, destination: str) -> tuple[tuple[str, str, int], ...]:
        return self._routes.get(destination, ())

    def routed(self, destination: str) -> bool:
        """Whether any read may go elsewhere than the destination's own pods (all weight on them: no route)."""
        return any(w > 0 and d != destination for _n, d, w in self._routes.get(destination, ()))

    def pick(self, destination: str, method: str) -> Backend | None:
        """The backend for one request to a routed destination (None: not routed, or nothing ready): the
        subset by smooth weighted round-robin (nginx's: deterministic, no seed), skipping a subset with no
        ready pod; then the subset's pods in turn."""
        table = self._routes.get(destination, ())
        live = [(n, d, w) for n, d, w in table if w > 0 and self._backends.get(d)]
        if not table or not live:
            return None
        if method not in self.ROUTED_METHODS:
            first = table[0]
            chosen = first if self._backends.get(first[1]) else live[0]
        else:
            current = self._wrr.setdefault(destination, {})
            total = 0
            for n, _d, w in live:
                current[n] = current.get(n, 0) + w
                total += w
            chosen = max(live, key=lambda r: current[r[0]])
            current[chosen[0]] -= total
        name, deployment, _w = chosen
        pods = self._backends[deployment]
        key = (destination, name)
        backend = pods[self._subset_rr[key] % len(pods)]
        self._subset_rr[key] += 1
        self.route_requests[key] += 1
        return backend

    def route_backends(self, destination: str) -> tuple[Backend, ...]:
        """Every ready pod of a routed destination's subsets (where a new connection may be accepted)."""
        out: list[Backend] = []
        for _n, d, w in self._routes.get(destination, ()):
            if w > 0:
                out.extend(self._backends.get(d, ()))
        return tuple(out)

    def set_balancing(self, destination: str, policy: Balancing) -> None:
        """``connection`` (default): each new connection goes to the next pod, as kube-proxy does; a client's
        keep-alive pool can then route around a slow pod. ``request``: each HTTP request goes to the next pod,
        as a sidecar proxy (Envoy) balances."""
        if policy not in ("connection", "request"):
            raise ClusterError(f"balancing of {destination}: {policy!r} must be 'connection' or 'request'")
        self._balancing[destination] = policy
        # Connections already open follow too (from their next request): a client's pool opened under the
        # old policy must not keep routing around a pod.
        for (_src, dest), edge in self.edges.items():
            if dest == destination:
                for conn in edge.conns:
                    conn.per_request = conn.http and policy == "request"

    def balancing(self, destination: str) -> Balancing:
        if self.routed(destination):
            return "request"  # a routed destination is balanced per request, as a sidecar routes
        return self._balancing.get(destination, "connection")

    def set_backends(self, destination: str, backends: Iterable[Backend]) -> None:
        """Replace the ready backends of ``destination``; existing connections keep theirs."""
        self._backends[destination] = tuple(backends)

    def backends(self, destination: str) -> list[Backend]:
        return list(self._backends.get(destination, ()))

    async def add_edge(self, source: str, destination: str, *, port: int = 0, host: str = "127.0.0.1",
                       protocol: Protocol = "http") -> Edge:
        if (source, destination) in self.edges:
            raise ClusterError(f"edge {source}->{destination} already exists")
        edge = Edge(self, source, destination, protocol, host)
        await edge._start(port)
        self.edges[(source, destination)] = edge
        return edge

    def edge(self, source: str, destination: str) -> Edge:
        found = self.edges.get((source, destination))
        if found is None:
            names = [f"{s}->{d}" for s, d in self.edges]
            raise ClusterError(f"no mesh edge {source}->{destination}"
                               f"{did_you_mean(f'{source}->{destination}', names)}")
        return found

    async def remove_edge(self, source: str, destination: str) -> None:
        await self.edge(source, destination).close()
        del self.edges[(source, destination)]

    def reset(self) -> None:
        """Remove every toxic on every edge."""
        for edge in self.edges.values():
            edge.reset()

    def stats(self) -> list[dict[str, Any]]:
        return [edge.stats() for edge in self.edges.values()]

    async def close(self) -> None:
        for edge in list(self.edges.values()):
            await edge.close()
        self.edges.clear()


class MeshCollector:
    """prometheus_client custom collector for every edge of a mesh (register it on your own registry)."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh

    def collect(self) -> Iterable[Any]:
        lab = ["source", "destination"]
        conns = CounterMetricFamily("mesh_edge_connections", "Connections accepted by the mesh edge.",
                                    labels=lab)
        active = GaugeMetricFamily("mesh_edge_active_connections", "Open connections on the mesh edge.",
                                   labels=lab)
        nbytes = CounterMetricFamily("mesh_edge_bytes", "Bytes carried by the mesh edge.",
                                     labels=[*lab, "direction"])
        errors = CounterMetricFamily("mesh_edge_errors", "Connections or requests the edge could not carry.",
                                     labels=[*lab, "kind"])
        reqs = CounterMetricFamily("mesh_edge_requests", "HTTP requests through the edge by status class.",
                                   labels=[*lab, "code_class"])
        dur = HistogramMetricFamily("mesh_edge_request_duration_seconds",
                                    "First request byte to first response byte, as the client sees it.",
                                    labels=lab)
        bounds = [*(repr(b) for b in LATENCY_BUCKETS), "+Inf"]
        for edge in list(self.mesh.edges.values()):
            v = [edge.source, edge.destination]
            conns.add_metric(v, edge.connections_total)
            active.add_metric(v, edge.active)
            nbytes.add_metric([*v, "upstream"], edge.bytes_up)
            nbytes.add_metric([*v, "downstream"], edge.bytes_down)
            for kind, n in sorted(edge.errors.items()):
                errors.add_metric([*v, kind], n)
            if edge.protocol == "http":
                for cls, n in sorted(edge.requests.items()):
                    reqs.add_metric([*v, cls], n)
                running, buckets = 0, []
                for bound, count in zip(bounds, edge.lat_buckets, strict=True):
                    running += count
                    buckets.append((bound, running))
                dur.add_metric(v, buckets, edge.lat_sum)
        weight = GaugeMetricFamily("mesh_route_weight", "Weight of each subset of a routed destination.",
                                   labels=["destination", "subset"])
        routed = CounterMetricFamily("mesh_route_requests", "Requests sent to each subset of a routed destination.",
                                     labels=["destination", "subset"])
        for dest, table in list(self.mesh._routes.items()):
            for name, _dep, w in table:
                weight.add_metric([dest, name], w)
                routed.add_metric([dest, name], self.mesh.route_requests[(dest, name)])
        yield from (conns, active, nbytes, errors, reqs, dur, weight, routed)
