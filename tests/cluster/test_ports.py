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


def test_a_port_another_live_process_leased_is_skipped_until_that_process_is_gone() -> None:
    """Two shops on one machine: a port the other one chose stays its own while that process lives, even when
    nothing is bound to it (its pod restarting); once the process is gone the lease is reclaimed."""
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "from sockdrill.cluster.ports import free_port; "
                              "import sys, time; print(free_port(), flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        theirs = int(child.stdout.readline())
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", theirs))  # nothing holds it: bindable, yet leased
        assert ports.lease(theirs) is False
    finally:
        child.kill()
        child.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not ports.lease(theirs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ports.lease(theirs) is True  # reclaimed from the dead process, and ours now (asked again: still ours)
    assert (ports._lease_dir() / str(theirs)).read_text().split()[0] == str(__import__("os").getpid())
