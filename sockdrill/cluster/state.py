"""What the runtime records on disk so that ``down`` can clean up after any crash.

``<data-dir>/state/runtime.json``: the supervisor (pid, start time, control address, token, cgroup bases).
``<data-dir>/state/pods.json``: every pod process (pid, start time, cgroup paths), rewritten atomically
on each change. A pid is only trusted together with its start time, so a recycled pid is never killed.

The state folder is private (0700) and every file in it is created 0600 (never loosened, never chmod-ed
after the fact): runtime.json holds the control token and the stores' admin URLs, credentials.json the
stores' passwords. ``security_report`` says whether that still holds (``sockdrill doctor``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import stat
import time
from pathlib import Path
from typing import Any

import psutil

from sockdrill.cluster.cgroups import remove_run_cgroups


def state_dir(data_dir: Path) -> Path:
    return data_dir / "state"


PRIVATE_DIR = 0o700
SECRET_FILE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner may enter: made 0700 (parents as usual), or tightened to 0700
    when an earlier version left it open (a folder's mode is its own: no file in it is ever exposed)."""
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=False, exist_ok=False)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
        os.chmod(path, PRIVATE_DIR)
    return path


def write_private(path: Path, data: str | bytes, owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` atomically with a file created 0600 from the start (``os.open`` with the mode, so
    there is no moment at which another user could open it), owned by ``owner`` (uid, gid) if given."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a killed process with our pid: O_EXCL must create a new file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, SECRET_FILE)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    private_dir(path.parent)
    write_private(path, json.dumps(data, indent=1, default=str))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Start times written before they were counted from boot were wall-clock seconds (about 1.7e9 today).
_WALL_CLOCK_RECORD = 1e9


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since boot. Read from the kernel's tick count, not as a wall-clock
    time: a wall-clock start is boot time plus ticks, and the kernel's boot time moves by a second whenever
    the clock is adjusted, so two processes reading it minutes apart disagreed and a live shop looked gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return int(raw[raw.rindex(")") + 2:].split()[19]) / _CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        pass
    try:  # no /proc (not Linux): the wall-clock start is the best there is
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def same_process(pid: int, started: float | None) -> bool:
    """Whether ``pid`` is still the process recorded with start time ``started``. A record without a start
    time proves nothing (the pid may have been reused by anyone's process): never treated as ours."""
    if started is None:
        return False
    try:
        now = psutil.Process(pid).create_time() if started > _WALL_CLOCK_RECORD else process_start_time(pid)
    except (psutil.Error, OSError):
        now = None
    if now is None or abs(now - started) >= 1.0:
        return False
    try:  # an exited child its parent has not reaped yet (a test that ran ``up`` itself) holds nothing
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_process_tree(pid: int, started: float | None, grace: float = 3.0, sig: int = signal.SIGTERM) -> None:
    """Signal a recorded process group, wait, then SIGKILL what is left."""
    if not same_process(pid, started):
        return
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=2)


def sweep(data_dir: Path) -> list[str]:
    """Kill every recorded process and remove recorded cgroups; return what was done."""
    done: list[str] = []
    sdir = state_dir(data_dir)
    runtime = read_json(sdir / "runtime.json") or {}
    pods = read_json(sdir / "pods.json") or {}
    sup = runtime.get("supervisor") or {}
    if sup.get("pid") and same_process(int(sup["pid"]), sup.get("started")):
        kill_process_tree(int(sup["pid"]), sup.get("started"), grace=1.0, sig=signal.SIGKILL)
        done.append(f"killed supervisor {sup['pid']}")
    for name, rec in pods.items():
        pid = rec.get("pid")
        if pid and same_process(int(pid), rec.get("started")):
            kill_process_tree(int(pid), rec.get("started"), grace=3.0, sig=rec.get("stop_signal", signal.SIGTERM))
            done.append(f"stopped pod {name} (pid {pid})")
    recorder = runtime.get("recorder") or {}  # the telemetry plugin's flight recorder
    if recorder.get("pid") and same_process(int(recorder["pid"]), recorder.get("started")):
        kill_process_tree(int(recorder["pid"]), recorder.get("started"), grace=5.0)
        done.append(f"stopped recorder (pid {recorder['pid']})")
    bases = [Path(p) for p in runtime.get("cgroup_bases", [])]
    if bases:
        remove_run_cgroups(bases)
        done.append("removed cgroups")
    for f in ("runtime.json", "pods.json"):
        (sdir / f).unlink(missing_ok=True)
    for tmp in sdir.glob("*.tmp*"):
        tmp.unlink(missing_ok=True)
    return done


def wait_gone(pid: int, started: float | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not same_process(pid, started):
            return True
        time.sleep(0.05)
    return not same_process(pid, started)


# ---- the security posture of a shop (``sockdrill doctor``) --------------------------------------------
def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _path_check(path: Path, what: str, dir_expected: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(path), "what": what, "expected": "0700" if dir_expected else "0600"}
    try:
        st = os.stat(path)
    except OSError:
        return {**out, "exists": False, "ok": True}
    mode = stat.S_IMODE(st.st_mode)
    return {**out, "exists": True, "mode": f"{mode:04o}", "owner": _owner(st.st_uid), "ok": not mode & 0o077}


def _process(pid: int | None, started: float | None) -> dict[str, Any] | None:
    if not pid or not same_process(int(pid), started):
        return None
    try:
        proc = psutil.Process(int(pid))
        procs = [proc, *proc.children(recursive=True)]
        return {"pid": int(pid), "user": _owner(proc.uids().effective),
                "cmdlines": [" ".join(p.cmdline()) for p in procs if p.is_running()]}
    except psutil.Error:
        return None


def security_report(data_dir: Path) -> dict[str, Any]:
    """Who may read what the shop keeps, and who its processes run as: every secret and private folder
    with its mode and owner, the user of each pod, the recorder and the supervisor, and ``problems``
    (a secret or folder others may read, a store that trusts local connections, a datastore running as
    root, a secret on a command line)."""
    from sockdrill.cluster import stores

    sdir = state_dir(data_dir)
    paths = [_path_check(sdir, "state folder (token, passwords)", True)]
    for name, what in (("runtime.json", "control token, store admin URLs"), ("credentials.json", "store passwords"),
                       (stores.PGPASS_FILE, "PostgreSQL superuser passwords"), ("config.json", "shop config"),
                       ("pods.json", "pod records"), ("chaos-ledger.json", "live faults")):
        paths.append(_path_check(sdir / name, what, False))
    paths.append(_path_check(data_dir / "runs", "run folders (journals, telemetry)", True))
    paths.append(_path_check(data_dir / "logs", "pod logs", True))
    for state in sorted((data_dir / "stores").glob("*/state")):
        paths.append(_path_check(Path(os.path.realpath(state)), f"service state ({state.parent.name})", True))
    for conf in sorted((data_dir / "stores").glob("*/redis/redis.conf")):
        paths.append(_path_check(conf.parent, f"Redis data ({conf.parent.parent.name})", True))
        paths.append(_path_check(conf, f"Redis ACLs ({conf.parent.parent.name})", False))
    problems = [f"{p['path']} ({p['what']}) is {p['mode']}: others may read it (expected {p['expected']})"
                for p in paths if not p["ok"]]
    for hba in sorted((data_dir / "stores").glob("*/pgdata/pg_hba.conf")):
        methods = {ln.split()[-1] for ln in _lines(hba) if ln.strip() and not ln.lstrip().startswith("#")}
        paths.append({**_path_check(hba, f"PostgreSQL auth ({hba.parent.parent.name})", False),
                      "methods": sorted(methods)})
        weak = methods - {"scram-sha-256", "reject"}  # reject: the replication login's database sessions
        if weak:
            problems.append(f"{hba} accepts {', '.join(sorted(weak))}: "
                            "restart the shop so that its stores ask for passwords")

    runtime = read_json(sdir / "runtime.json") or {}
    config = read_json(sdir / "config.json") or {}
    kinds = {d.get("name"): d.get("kind", "service") for d in config.get("deployments", []) if isinstance(d, dict)}
    creds = read_json(sdir / stores.CREDENTIALS_FILE) or {}
    secrets = [runtime.get("token"), runtime.get("telemetry_token"), (runtime.get("staff") or {}).get("password")]
    secrets += [pw for entry in creds.values() if isinstance(entry, dict) for pw in entry.values()]
    secrets = [s for s in secrets if isinstance(s, str) and len(s) >= 16]
    processes: list[dict[str, Any]] = []
    sup = runtime.get("supervisor") or {}
    rec = runtime.get("recorder") or {}
    for role, name, pid, started in [("supervisor", "supervisor", sup.get("pid"), sup.get("started")),
                                     ("recorder", "recorder", rec.get("pid"), rec.get("started"))]:
        info = _process(pid, started)
        if info:
            processes.append({"role": role, "name": name, **info})
    for name, record in sorted((read_json(sdir / "pods.json") or {}).items()):
        info = _process(record.get("pid"), record.get("started"))
        if info:
            processes.append({"role": kinds.get(name.rsplit("-", 1)[0], "service"), "name": name, **info})
    store_user = stores.PG_USER if os.geteuid() == 0 else _owner(os.geteuid())
    notes = []
    for proc in processes:
        if proc["role"] in ("postgres", "redis") and proc["user"] != store_user:
            problems.append(f"{proc['name']} ({proc['role']}) runs as {proc['user']}, not {store_user}")
        if any(secret in line for line in proc.pop("cmdlines") for secret in secrets):
            problems.append(f"{proc['name']} (pid {proc['pid']}) has a secret on its command line")
    if os.geteuid() == 0:
        as_root = [p["name"] for p in processes if p["role"] == "service" and p["user"] == "root"]
        if as_root and os.environ.get("SOCKDRILL_PODS_AS_ROOT", "").strip() == "1":
            notes.append(f"service pods run as root on request (SOCKDRILL_PODS_AS_ROOT=1): {', '.join(as_root)}")
        elif as_root:
            problems.append(f"service pods run as root: {', '.join(as_root)} (they should run as sockdrill-pods)")
    return {"data_dir": str(data_dir), "paths": paths, "processes": processes, "problems": problems,
            "notes": notes, "ok": not problems}


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def without_password(url: str) -> str:
    """A URL as views may show it: the user kept, the password dropped."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, f"{user}{host}", parts.path, parts.query, parts.fragment))
