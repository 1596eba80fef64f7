"""Python for processes that run as another user: the agent under test and the shop's service pods.

As root, sockdrill starts those as unprivileged system users, which must be able to run the interpreter
and read the code it imports, wherever the operator installed them: a pyenv under ``/root`` (0700), a
virtualenv inside a private home, a checkout in a ``mktemp -d`` folder. Nothing of the operator's folders
is ever loosened; instead what is not reachable is copied, root-owned and world-readable, into the cache
(``/var/cache/sockdrill`` as root), once, atomically, under a lock:

- ``python_for``: the interpreter and its standard library with its bytecode (``agent-python-<version>-<layout>``);
- ``site_for``: the distributions the shop needs (its imports' and their requirements' closure) from the
  virtualenv's site-packages (``pod-site-<hash of names and versions>``);
- ``code_for``: the ``sockdrill`` package itself (``pod-code-<hash of its files>``, so an editable
  checkout that changed gets a new copy; older copies are pruned).

Each returns what is reachable as it is, when it is.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from sockdrill.cluster.stores import _locked, reachable_by
from sockdrill.errors import ClusterError

STDLIB_SKIP = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages"}
# The interpreter copy's layout: "compiled" holds the standard library's bytecode (an earlier copy without
# it made every pod start compile asyncio, email, http, ... again: ~0.5 s of CPU per pod, measured).
PYTHON_LAYOUT = "compiled"
# What the shop's services import (directly or lazily: the AMQP client only with RabbitMQ); the copy
# takes these and everything they require.
POD_ROOTS = ("aiohttp", "asyncpg", "redis", "aio-pika", "prometheus-client", "opentelemetry-api",
             "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http", "uvloop", "pillow", "pydantic",
             "pyyaml", "psutil", "google-re2")
KEEP_CODE_COPIES = 3


def _world_readable(root: Path) -> None:
    """Directories 0755, files 0644 (0755 when executable), links untouched."""
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(base, name)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if name in dirs or os.access(p, os.X_OK) else 0o644)
    os.chmod(root, 0o755)


def _staged(cache_dir: Path, target: Path, lock: str, build: object) -> Path:
    """Build ``target`` once: in a temporary folder beside it, renamed into place when complete."""
    if (target / ".sockdrill-ready").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / lock):
        if not (target / ".sockdrill-ready").exists():
            shutil.rmtree(target, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{target.name}."))
            try:
                staged = tmp / "copy"
                staged.mkdir()
                build(staged)  # type: ignore[operator]
                _world_readable(staged)
                (staged / ".sockdrill-ready").touch()
                os.chmod(staged / ".sockdrill-ready", 0o644)
                staged.rename(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _check_reachable(path: Path, user: str, cache_dir: Path) -> None:
    if not reachable_by(path, user):
        raise ClusterError(f"the cache directory {cache_dir} is not reachable by the user '{user}' (a parent "
                           "folder is private); set SOCKDRILL_CACHE_DIR to a folder such as /var/cache/sockdrill")


def python_for(user: str, cache_dir: Path) -> tuple[Path, dict[str, str]]:
    """An interpreter ``user`` can run, and the environment it needs (PYTHONHOME, library path)."""
    exe = Path(os.path.realpath(sys.executable))
    home = Path(sys.base_prefix)
    if reachable_by(exe.parent, user) and reachable_by(home, user):
        return exe, {}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = cache_dir / f"agent-python-{sys.version.split()[0]}-{PYTHON_LAYOUT}"

    def build(staged: Path) -> None:
        (staged / "bin").mkdir(parents=True)
        shutil.copy2(exe, staged / "bin" / exe.name)
        libdir = Path(sysconfig.get_config_var("LIBDIR") or home / "lib")
        (staged / "lib").mkdir()
        for lib in libdir.glob("libpython*.so*"):
            shutil.copy2(lib, staged / "lib" / lib.name, follow_symlinks=False)
        stdlib = staged / "lib" / f"python{version}"
        shutil.copytree(Path(sysconfig.get_paths()["stdlib"]), stdlib, symlinks=True, ignore=_stdlib_skipped)
        _compile(stdlib)  # whatever the installation had not compiled (copy2 kept the sources' times)

    _staged(cache_dir, target, ".agent-python.lock", build)
    _check_reachable(target, user, cache_dir)
    return target / "bin" / exe.name, {"PYTHONHOME": str(target), "LD_LIBRARY_PATH": str(target / "lib")}


def _stdlib_skipped(folder: str, names: list[str]) -> list[str]:
    """What the interpreter copy leaves out: tests, tools, and optimised bytecode (pods run without -O)."""
    if os.path.basename(folder) == "__pycache__":
        return [n for n in names if ".opt-" in n or not n.endswith(".pyc")]
    return [n for n in names if n in STDLIB_SKIP or n.startswith("config-")]


def _compile(root: Path) -> None:
    """Byte-compile a copy once, as root: its user cannot write ``__pycache__`` there, and every pod start
    would otherwise compile every module it imports again."""
    import compileall

    compileall.compile_dir(str(root), quiet=2, workers=1)


_checkouts_compiled: set[Path] = set()


def compile_checkout() -> None:
    """Byte-compile this ``sockdrill`` package where it lies (its gitignored ``__pycache__``), once per
    process. Pods never write bytecode (``PYTHONDONTWRITEBYTECODE``: as another user they cannot, and a
    user's own may be set so too), so without this every pod start compiled every module it imports
    again; compileall only rewrites what changed. A read-only checkout is left as it is."""
    pkg = Path(__file__).resolve().parent.parent
    if pkg not in _checkouts_compiled:
        _checkouts_compiled.add(pkg)
        _compile(pkg)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: Iterable[str]) -> list[md.Distribution]:
    """The installed distributions ``roots`` need, with their requirements' closure (extras left out,
    environment markers honoured); a root that is not installed is skipped."""
    from packaging.requirements import Requirement

    seen: dict[str, md.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[name] = dist
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(seen.values(), key=lambda d: _norm(d.metadata["Name"]))


def site_for(user: str, cache_dir: Path) -> Path:
    """A site-packages ``user`` can read holding what the shop imports: the virtualenv's own when reachable,
    else a copy of just those distributions in the cache."""
    site = Path(sysconfig.get_paths()["purelib"])
    if reachable_by(site, user):
        return site
    dists = closure(POD_ROOTS)
    key = hashlib.sha256("\n".join(f"{_norm(d.metadata['Name'])}=={d.version}" for d in dists).encode()
                         ).hexdigest()[:16]
    target = cache_dir / f"pod-site-{key}"

    def build(staged: Path) -> None:
        for dist in dists:
            for f in dist.files or []:
                src = Path(str(dist.locate_file(f)))
                try:
                    rel = src.resolve().relative_to(site.resolve())
                except ValueError:
                    continue  # scripts and data outside site-packages: not imported
                if src.is_file():
                    (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, staged / rel)
        _compile(staged)

    _staged(cache_dir, target, ".pod-site.lock", build)
    _check_reachable(target, user, cache_dir)
    return target


def _code_key(pkg: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            st = p.stat()
            h.update(f"{p.relative_to(pkg)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def code_for(user: str, cache_dir: Path) -> Path:
    """A folder ``user`` can read whose ``sockdrill`` is this sockdrill: the checkout's own when reachable,
    else a copy in the cache (a new one whenever the package's files changed)."""
    pkg = Path(__file__).resolve().parent.parent
    if reachable_by(pkg, user):
        return pkg.parent
    target = cache_dir / f"pod-code-{_code_key(pkg)}"

    def build(staged: Path) -> None:
        shutil.copytree(pkg, staged / "sockdrill", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _compile(staged)

    _staged(cache_dir, target, ".pod-code.lock", build)
    _check_reachable(target, user, cache_dir)
    # Old copies go once there are several and they are a day old: a pod still running from one may yet
    # import a module lazily.
    copies = sorted(cache_dir.glob("pod-code-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in copies[KEEP_CODE_COPIES:]:
        if old != target and time.time() - old.stat().st_mtime > 86400:
            shutil.rmtree(old, ignore_errors=True)
    return target
