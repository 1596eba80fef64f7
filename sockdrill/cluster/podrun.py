"""How a service pod runs when sockdrill is root: as the system user ``sockdrill-pods``, never as root.

A pod is our own code, but it serves HTTP to every local user and to the agent under test; as root, one
bug in a handler would be root's. So the pod process drops to ``sockdrill-pods`` (no groups, no login)
after joining its cgroups, and runs an interpreter, site-packages and ``sockdrill`` package that user can
read (``pycopy.py``: the operator's own when reachable, root-owned copies in the cache otherwise). It is
not the stores' user (``sockdrill``, which owns the database files) nor the agents' (``sockdrill-agent``).

Its durable folder (``SOCKDRILL_POD_DIR``: the payment gateway's ledger) is ``stores/<deployment>/state``,
owned by that user and 0700, in place when the user can reach it, else a folder of its own under
``/var/lib/sockdrill-pods`` linked from there (the data dir may sit in a private home); files an older
version left directly in ``stores/<deployment>`` (root's) move in. ``down --purge`` removes both.

Not root (a developer's machine): everything runs as the caller, as before. ``SOCKDRILL_PODS_AS_ROOT=1``
keeps root for debugging, and ``sockdrill doctor`` says so.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from sockdrill.cluster import pycopy
from sockdrill.cluster.stores import _move_regular_file, hand_over, private_home, purge_links, system_user

POD_USER = "sockdrill-pods"
RELOCATED_PODS = Path("/var/lib/sockdrill-pods")  # service state the pods' user could not reach in place


def pod_user() -> str | None:
    """The user service pods run as: None when not root (or kept root on request), else ``sockdrill-pods``."""
    if os.geteuid() != 0 or os.environ.get("SOCKDRILL_PODS_AS_ROOT", "").strip() == "1":
        return None
    return system_user(POD_USER, "service pods")


def _relocated(folder: Path) -> Path:
    shop = Path(os.path.realpath(folder)).parent.parent  # <data-dir>/stores/<deployment>
    key = hashlib.sha256(str(shop).encode()).hexdigest()[:16]
    return RELOCATED_PODS / key / folder.name


def state_dir(folder: Path, user: str | None) -> Path:
    """The real path of a deployment's durable folder (``folder`` is ``stores/<deployment>``), made for
    ``user`` (None: the caller's own, 0700). Nothing here follows a link the user could have planted."""
    folder.mkdir(parents=True, exist_ok=True)
    if user is None:
        os.chmod(folder, 0o700)
        return folder
    os.chmod(folder, 0o711)  # root's, traversable: the pods' user reaches its own state inside
    real = private_home(folder / "state", _relocated(folder), RELOCATED_PODS, user)
    for item in list(folder.iterdir()):  # an older version kept its files right in the root-owned folder
        if item.name != "state" and item.is_file() and not item.is_symlink() and not (real / item.name).exists():
            _move_regular_file(item, real / item.name)
    hand_over(real, user)
    return real


def command(module: str, user: str | None, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) that start ``python -m sockdrill.shop MODULE`` as ``user``."""
    pycopy.compile_checkout()
    # Pods speak plain HTTP inside the mesh and never verify a certificate against the system's store, yet
    # aiohttp loads that store (~150 certificates) at import: 60-80 ms of every pod's start, measured. A pod
    # that did call out over TLS would fail verification loudly, never pass unverified. (The OTLP exporter
    # verifies with certifi's bundle, which these do not touch.)
    no_store = {"SSL_CERT_FILE": os.devnull, "SSL_CERT_DIR": os.devnull}
    if user is None:
        return [sys.executable, "-m", "sockdrill.shop", module], no_store
    exe, env = pycopy.python_for(user, cache_dir)
    code = pycopy.code_for(user, cache_dir)
    site = pycopy.site_for(user, cache_dir)
    env.update({"PYTHONPATH": os.pathsep.join([str(code), str(site)]), "PYTHONNOUSERSITE": "1",
                "PYTHONDONTWRITEBYTECODE": "1", **no_store})
    return [str(exe), "-m", "sockdrill.shop", module], env


def purge_relocated(data_dir: Path) -> list[Path]:
    """Remove the relocated state folders of ``data_dir``'s services."""
    return purge_links(data_dir, "state", RELOCATED_PODS)
