"""Ports for pods and listeners come from outside the kernel's ephemeral range (where every outgoing
connection takes its source port: a pod given such a port once failed eleven restarts in a row because
a keep-alive connection held it), are never a reserved service port, and never handed out twice."""

from __future__ import annotations

import socket

import pytest

from sockdrill.cluster import ports
from sockdrill.cluster.ports import RESERVED, ephemeral_range, free_port


def test_ports_are_outside_the_ephemeral_range_distinct_and_free() -> None:
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert not any(low <= p <= high for p in ports), (low, high, [p for p in ports if low <= p <= high][:5])
    assert not set(ports) & RESERVED
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", ports[-1]))  # free when handed out


def test_a_port_some_socket_holds_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port a connection or a listener holds (here: a listener on the first port drawn) is not free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        real = ports._rng.randint
        drawn: list[int] = []

        def draw(a: int, b: int) -> int:  # the held port first, then the real draws
            drawn.append(taken if not drawn else real(a, b))
            return drawn[-1]

        monkeypatch.setattr(ports._rng, "randint", draw)
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (60000, 60999))  # so any port may be drawn
        monkeypatch.setattr(ports, "FLOOR", 1024)
        assert ports.free_port() != taken and drawn[0] == taken and len(drawn) >= 2
