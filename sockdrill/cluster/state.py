"""What the runtime records on disk so that ``down`` can clean up after any crash.

``<data-dir>/state/runtime.json``: the supervisor (pid, start time, control address, token, cgroup bases).
``<data-dir>/state/pods.json``: every pod process (pid, start time, cgroup paths), rewritten atomically
on each change. A pid is only trusted together with its start time, so a recycled pid is never killed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from sockdrill.cluster.cgroups import remove_run_cgroups


def state_dir(data_dir: Path) -> Path:
    return data_dir / "state"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def same_process(pid: int, started: float | None) -> bool:
    now = process_start_time(pid)
    if now is None or (started is not None and abs(now - started) >= 1.0):
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
