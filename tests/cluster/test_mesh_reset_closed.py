"""A reset that meets a connection already gone is a no-op, never an error that fails the whole fault.

Seen in a run: ``network.reset`` failed to inject with "negative file descriptor": uvloop's view of a
connection its peer had just reset (fd -1), asked to set SO_LINGER."""

from __future__ import annotations

import asyncio

import uvloop

from sockdrill.cluster.mesh import _rst


def test_resetting_a_connection_its_peer_already_reset_does_nothing() -> None:
    async def main() -> None:
        async def reset_at_once(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.transport.abort()

        server = await asyncio.start_server(reset_at_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        assert transport.get_extra_info("socket") is not None  # the mesh asks early (TCP_NODELAY): kept
        for _ in range(100):  # until the peer's reset has closed our side
            if transport.is_closing():
                break
            await asyncio.sleep(0.01)
        assert transport.is_closing()
        _rst(transport)  # must not raise
        server.close()
        await server.wait_closed()

    uvloop.run(main())  # the loop the supervisor's mesh runs on
