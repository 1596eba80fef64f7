"""Free TCP ports on 127.0.0.1, never the standard ports of services this machine may already run, and
never from the kernel's ephemeral range.

Binding to port 0 hands out a port from the ephemeral range (``net.ipv4.ip_local_port_range``,
32768-60999 by default), the same range every outgoing connection takes its source port from. A pod
given such a port could find it taken, between the choice and its bind, by any client's connection (a
keep-alive one lasts minutes), and then fail every restart: seen once in a full test run, where the
shared shop's user pod failed eleven restarts in a row with "address already in use". So ports come
from below that range, drawn at random and checked free, and a process never hands out one twice.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

# PostgreSQL, MariaDB/MySQL, Redis, RabbitMQ (+mgmt), Mosquitto, NATS, Prometheus: never ours.
RESERVED = frozenset({5432, 3306, 6379, 5672, 15672, 1883, 4222, 9090, 8222})
FLOOR = 20000  # below this live well-known and registered services' usual ports
_rng = random.Random()  # our own: the global generator is seeded elsewhere for reproducible data
_handed: set[int] = set()
_lock = threading.Lock()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections (Linux; the default elsewhere)."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    # No SO_REUSEADDR here: a port any socket still holds (even one in TIME_WAIT) is not free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now, outside the ephemeral range, not reserved, not handed out before."""
    low, high = ephemeral_range()
    if low - FLOOR >= 1000:
        bottom, top = FLOOR, low - 1
    elif 65535 - high >= 1000:
        bottom, top = high + 1, 65535
    else:  # a machine whose ephemeral range covers nearly everything: the kernel's pick it is
        bottom = top = 0
    with _lock:
        for _ in range(500):
            if top:
                port = _rng.randint(bottom, top)
                if port in RESERVED or port in _handed or not _bindable(host, port):
                    continue
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((host, 0))
                    port = int(s.getsockname()[1])
                if port in RESERVED or port in _handed:
                    continue
            _handed.add(port)
            return port
    raise OSError(f"could not find a free port in {bottom}-{top}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False
