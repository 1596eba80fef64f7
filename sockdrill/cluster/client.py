"""The CLI's side of the runtime: start the supervisor, talk to its control API, clean up after crashes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sockdrill.cluster.ports import port_in_use
from sockdrill.cluster.spec import DeploymentSpec
from sockdrill.cluster.state import read_json, same_process, state_dir, sweep, wait_gone, write_json
from sockdrill.errors import ClusterError


def default_data_dir() -> Path:
    env = os.environ.get("SOCKDRILL_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    if os.geteuid() == 0:
        return Path("/var/lib/sockdrill")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sockdrill"


def default_cache_dir() -> Path:
    env = os.environ.get("SOCKDRILL_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    if os.geteuid() == 0:
        return Path("/var/cache/sockdrill")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sockdrill"


class RuntimeClient:
    """A handle on a running supervisor, found through ``DATA_DIR/state/runtime.json``."""

    def __init__(self, data_dir: Path, record: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.record = record
        self.base = record["control_url"]
        self.token = record["token"]

    @classmethod
    def find(cls, data_dir: Path | None = None) -> RuntimeClient | None:
        data_dir = (data_dir or default_data_dir()).expanduser().resolve()
        record = read_json(state_dir(data_dir) / "runtime.json")
        if not isinstance(record, dict) or "control_url" not in record:
            return None
        sup = record.get("supervisor", {})
        if not same_process(int(sup.get("pid", 0) or 0), sup.get("started")):
            return None
        return cls(data_dir, record)

    @classmethod
    def connect(cls, data_dir: Path | None = None) -> RuntimeClient:
        client = cls.find(data_dir)
        if client is None:
            raise ClusterError("the shop is not up (run 'sockdrill up' first)")
        return client

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 120) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"X-Sockdrill-Token": self.token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            raise ClusterError(str(message)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClusterError(f"the runtime does not answer at {self.base}: {exc}") from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("POST", path, body)

    def running(self) -> set[str]:
        """Deployments that run: one pod or more, or an external server (an optional one asleep does not)."""
        return {d["name"] for d in self.get("/v1/status")["deployments"] if d["replicas"] > 0 or d.get("external")}


def up(
    deployments: list[DeploymentSpec],
    *,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    seed: int = 1,
    fresh: bool = False,
    timeout: float = 120.0,
    pod_env: dict[str, str] | None = None,
    probe: dict[str, Any] | None = None,
    restart_policy: dict[str, Any] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[RuntimeClient, bool]:
    """Start the supervisor and wait until every pod is ready. Returns (client, already_up)."""
    # Absolute from here on: the supervisor and its pods run in other working directories.
    data_dir = (data_dir or default_data_dir()).expanduser().resolve()
    cache_dir = (cache_dir or default_cache_dir()).expanduser().resolve()
    existing = RuntimeClient.find(data_dir)
    if existing is not None:
        return existing, True
    sweep(data_dir)  # a crashed earlier run may have left processes or cgroups
    for spec in deployments:
        if spec.host_port and port_in_use(spec.host_port):
            raise ClusterError(f"port {spec.host_port} (for {spec.name}) is already in use; pick another with --port")
    if fresh:
        from sockdrill.cluster import podrun, stores

        stores.purge_relocated(data_dir)
        podrun.purge_relocated(data_dir)
        for sub in ("stores", "logs", "runs"):
            shutil.rmtree(data_dir / sub, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "deployments": [d.model_dump() for d in deployments], "seed": seed, "cache_dir": str(cache_dir),
        "pod_env": pod_env or {}, "probe": probe or {}, "restart_policy": restart_policy or {},
    }
    sdir = state_dir(data_dir)
    write_json(sdir / "config.json", config)
    # 0600 from the start: the runtime's log is the operator's.
    log = os.fdopen(os.open(data_dir / "supervisor.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                            0o600), "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sockdrill.cluster.supervisor", str(data_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
        )
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    client: RuntimeClient | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"the runtime exited during start-up (code {proc.returncode}); "
                               f"see {data_dir / 'supervisor.log'}: {_tail(data_dir / 'supervisor.log')}")
        record = read_json(sdir / "runtime.json")
        if isinstance(record, dict) and record.get("state") == "failed":
            _abandon(proc, data_dir)
            raise ClusterError(f"the runtime failed to start: {record.get('error')}")
        if client is None and isinstance(record, dict) and record.get("supervisor", {}).get("pid") == proc.pid:
            client = RuntimeClient(data_dir, record)
        if client is not None and (record or {}).get("state") == "running":
            try:
                status = client.get("/v1/status")
            except ClusterError:
                status = None
            if status is not None:
                if progress:
                    progress(status)
                if status.get("ready"):
                    client.record = read_json(sdir / "runtime.json") or client.record
                    return client, False
        time.sleep(0.1)
    waiting = _not_ready(client)
    _abandon(proc, data_dir)
    errors = [ln for ln in _lines(data_dir / "supervisor.log") if " ERROR " in ln][-3:]
    raise ClusterError(f"the shop was not ready within {timeout:g}s"
                       + (f" (waiting for {', '.join(waiting)})" if waiting else "")
                       + (": " + " | ".join(ln.split(" ERROR ", 1)[1] for ln in errors) if errors else "")
                       + f"; see {data_dir / 'supervisor.log'} and {data_dir / 'logs'}")


def _not_ready(client: RuntimeClient | None) -> list[str]:
    if client is None:
        return []
    try:
        status = client.get("/v1/status")
    except ClusterError:
        return []
    return [d["name"] for d in status.get("deployments", [])
            if d.get("ready_replicas", 0) < d.get("replicas", 0) and not d.get("external")]


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _abandon(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    """Stop a supervisor we started that did not come up in time (even before it recorded itself)."""
    down(data_dir)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    sweep(data_dir)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


PURGED = ("stores", "logs", "runs", "state", "supervisor.log", "recorder.log")  # all a shop writes in its data dir


def down(data_dir: Path | None = None, timeout: float = 30.0, purge: bool = False) -> list[str]:
    """Stop everything; works whether the supervisor is alive, hung or already killed. ``purge`` also
    removes the shop's data: what it wrote in the data dir and its relocated PostgreSQL clusters."""
    data_dir = (data_dir or default_data_dir()).expanduser().resolve()
    done: list[str] = []
    client = RuntimeClient.find(data_dir)
    if client is not None:
        sup = client.record["supervisor"]
        try:
            client.post("/v1/shutdown", {})
            if wait_gone(int(sup["pid"]), sup.get("started"), timeout):
                done.append("runtime stopped")
        except ClusterError:
            pass
    done.extend(sweep(data_dir))
    (state_dir(data_dir) / "config.json").unlink(missing_ok=True)
    if purge:
        from sockdrill.cluster import podrun, stores

        stores.purge_relocated(data_dir)
        podrun.purge_relocated(data_dir)
        for name in PURGED:
            path = data_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            data_dir.rmdir()  # only when nothing else of the user's is in it
        done.append(f"data removed from {data_dir}")
    return done
