"""Free TCP ports on 127.0.0.1, never the standard ports of services this machine may already run."""

from __future__ import annotations

import socket

# PostgreSQL, MariaDB/MySQL, Redis, RabbitMQ (+mgmt), Mosquitto, NATS, Prometheus: never ours.
RESERVED = frozenset({5432, 3306, 6379, 5672, 15672, 1883, 4222, 9090, 8222})


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now (bind to 0, read it back, close)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in RESERVED:
            return port
    raise OSError("could not find a free port")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False
