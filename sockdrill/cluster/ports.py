"""Free TCP ports on 127.0.0.1, never the standard ports of services this machine may already run, and
never from the kernel's ephemeral range.

Binding to port 0 hands out a port from the ephemeral range (``net.ipv4.ip_local_port_range``,
32768-60999 by default), the same range every outgoing connection takes its source port from. A pod
given such a port could find it taken, between the choice and its bind, by any client's connection (a
keep-alive one lasts minutes), and then fail every restart: seen once in a full test run, where the
shared shop's user pod failed eleven restarts in a row with "address already in use". So ports come
from below that range, drawn at random and checked free, and a process never hands out one twice.

Checked free is not enough when two shops share the machine (a run's fresh shop beside a game day's, a test's
small shop beside the suite's): a pod's port is free while that pod restarts, and the other shop could take it
then, after which the pod fails every restart. So a port handed out is also leased machine-wide, as a file
``<tmp>/sockdrill-ports/<port>`` holding the process that chose it (pid and start time); another process skips
a port whose lease belongs to a live process, and reclaims the lease of one that is gone.
"""

from __future__ import annotations

import os
import random
import socket
import stat
import tempfile
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


def _lease_dir() -> Path | None:
    """The machine's directory of port leases (sticky and world-writable, as /tmp is); None if unusable."""
    d = Path(tempfile.gettempdir()) / "sockdrill-ports"
    try:
        try:
            d.mkdir()
            d.chmod(0o1777)  # every local user's shops lease here; only a lease's owner may remove it
        except FileExistsError:
            pass
        st = d.lstat()
    except OSError:
        return None
    return d if stat.S_ISDIR(st.st_mode) else None  # a symlink or a file planted there: not ours to use


def _identity(pid: int) -> str | None:
    import psutil

    try:
        return f"{pid} {psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def _holder(path: Path) -> str | None:
    """Who holds a lease: its live process's identity, "?" when that cannot be told, None when nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as fh:
            text = fh.read(64)
    except FileNotFoundError:
        return None
    except OSError:
        return "?"  # unreadable: assume someone holds it
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return "?"  # being written right now, or not ours to judge
    return text.strip() if _identity(int(parts[0])) == text.strip() else None


def lease(port: int) -> bool:
    """Claim ``port`` for this process machine-wide; False when a live process holds it. Without a usable
    lease directory every port is ours to take (bindability is then the only check)."""
    d = _lease_dir()
    me = _identity(os.getpid())
    if d is None or me is None:
        return True
    path = d / str(port)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None:
                return holder == me
            try:
                path.unlink()  # its process is gone
            except FileNotFoundError:
                pass
            except OSError:
                return False  # another user's stale lease: leave the port alone
            continue
        except OSError:
            return True
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        return True
    return False


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
                if port in RESERVED or port in _handed or not _bindable(host, port) or not lease(port):
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
