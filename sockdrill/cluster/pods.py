"""A pod: one OS process started from its deployment's spec, restarted with back-off, probed for readiness."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from sockdrill.cluster import podrun, stores
from sockdrill.cluster.cgroups import PodCgroup
from sockdrill.cluster.state import process_start_time

if TYPE_CHECKING:
    from sockdrill.cluster.runtime import Deployment, Runtime


@dataclass
class RestartPolicy:
    """Back-off between restarts: base * 2^(n-1) for the n-th quick crash in a row, capped."""

    base_s: float = 0.5
    cap_s: float = 30.0
    quick_crash_s: float = 10.0  # a run shorter than this counts as a crash in a row
    crashloop_after: int = 2  # shown as CrashLoopBackOff from this many crashes in a row

    def delay(self, crashes_in_row: int) -> float:
        if crashes_in_row <= 0:
            return 0.0
        return float(min(self.cap_s, self.base_s * 2 ** (crashes_in_row - 1)))


@dataclass
class ProbeSettings:
    """Readiness probing, Kubernetes' ``periodSeconds`` compressed for fast runs. A pod that is not ready, or
    whose last probe failed, is probed every ``interval_s`` (a new pod joins its endpoints within half a
    second, a failing one leaves them after ``failure_threshold`` misses in a row); a healthy ready pod every
    ``ready_interval_s`` (issue 19: with the probes' access lines gone too, an idle shop went from 0.089 to
    0.060 cores on a 2-core AMD EPYC VM, ``sockdrill bench headroom``)."""

    interval_s: float = 0.5
    ready_interval_s: float = 1.0
    # A process that has not answered yet, for its first ``starting_window_s``: a shop's pods all start at
    # once and became ready on the same half-second ticks, so a cold ``up`` waited up to 0.5 s past the
    # last pod's readiness (a refused connection costs next to nothing to ask again).
    starting_interval_s: float = 0.1
    starting_window_s: float = 30.0
    timeout_s: float = 1.0
    failure_threshold: int = 3


def _preexec(cgroup_files: list[str], user: str | None) -> Callable[[], None]:
    """Runs in the child before exec: join the pod's cgroups (as root), then drop to ``user``."""
    uid = gid = None
    if user:
        info = pwd.getpwnam(user)
        uid, gid = info.pw_uid, info.pw_gid

    def fn() -> None:
        pid = str(os.getpid())
        for f in cgroup_files:
            with open(f, "w") as fh:
                fh.write(pid)
        if uid is not None and gid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

    return fn


@dataclass
class Pod:
    runtime: Runtime
    deployment: Deployment
    name: str
    port: int
    status: str = "Pending"
    ready: bool = False
    restarts: int = 0
    crashes_in_row: int = 0
    last_exit: int | None = None
    last_exit_at: float | None = None
    started_at: float | None = None
    pid: int | None = None
    pid_started: float | None = None
    cgroup: PodCgroup | None = None
    proc: asyncio.subprocess.Process | None = None
    stopping: bool = False
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _probe_failures: int = 0
    _answered: bool = False  # this process has passed a probe (see ProbeSettings.starting_interval_s)
    _next_start_at: float | None = None
    _pg_probe: Any = None  # the readiness probe's own connection to a PostgreSQL pod, kept between probes

    # ---- paths and commands ---------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.runtime.data_dir / "logs" / f"{self.name}.log"

    @property
    def store_dir(self) -> Path:
        return self.runtime.data_dir / "stores" / self.name

    @property
    def workdir(self) -> str:
        # uvloop changes directory after the pre-exec hook dropped privileges: an unprivileged server
        # must start in a folder it can reach (a relocated cluster's own, never a private parent).
        if self.kind == "postgres":
            return os.path.realpath(self.store_dir / "pgdata")
        if self.kind == "service":
            return str(self.runtime.service_dirs.get(self.deployment.spec.name, self.runtime.data_dir))
        return str(self.store_dir)

    @property
    def kind(self) -> str:
        return self.deployment.spec.kind

    @property
    def stop_signal(self) -> int:
        # PostgreSQL: SIGINT is "fast shutdown" (SIGTERM would wait for every client to leave).
        return signal.SIGINT if self.kind == "postgres" else signal.SIGTERM

    def command(self) -> tuple[list[str], dict[str, str], str | None]:
        spec = self.deployment.spec
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOCKDRILL_URL_")}
        if spec.kind == "postgres":
            extra = None
            if spec.replica_of:
                extra = self.runtime.replica_settings(self.deployment, self)
            else:
                stores.prepare_pg_datadir(self.store_dir / "pgdata", self.runtime.cache_dir)
            env.update({"LC_ALL": "C", "LANG": "C"})
            argv = stores.postgres_command(self.store_dir / "pgdata", self.port, self.runtime.cache_dir, extra)
            return argv, env, stores.os_user_for_postgres()
        if spec.kind == "redis":
            return stores.redis_command(self.store_dir, self.port, spec.maxmemory, spec.maxmemory_policy), env, None
        env.update(self.runtime.pod_env(self.deployment, self))
        user = self.runtime.pod_user
        argv, extra = podrun.command(spec.module or spec.name, user, self.runtime.cache_dir)
        env.update(extra)
        if user is not None:
            env["HOME"] = env["SOCKDRILL_POD_DIR"]  # not root's home
            for key in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"):
                if key not in extra:
                    env.pop(key, None)  # the operator's interpreter settings are not the copy's
        return argv, env, user

    # ---- lifecycle --------------------------------------------------------------------
    def launch(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._run()))
        self._tasks.append(asyncio.ensure_future(self._probe_loop()))

    async def _spawn(self) -> None:
        argv, env, user = await asyncio.get_running_loop().run_in_executor(None, self.command)
        if self.cgroup is None:
            self.cgroup = self.runtime.cgroups.create(self.name)
            self.deployment.apply_limits_to(self)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - handed to the child
        try:
            files = [str(f) for f in self.cgroup.procs_files()] if self.cgroup else []
            self.proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, preexec_fn=_preexec(files, user),
                cwd=self.workdir,
            )
        finally:
            log.close()
        self.pid = self.proc.pid
        self._answered = False
        self.pid_started = process_start_time(self.pid)
        self.started_at = time.time()
        self.status = "Running"
        self.runtime.pods_changed()

    async def _run(self) -> None:
        policy = self.runtime.restart_policy
        while not self.stopping:
            try:
                await self._spawn()
            except Exception as exc:  # a pod that cannot even start is a crash too
                self.runtime.log.error("pod %s failed to start: %s", self.name, exc)
                self.last_exit = -1
            else:
                assert self.proc is not None
                code = await self.proc.wait()
                self.last_exit = code
            self.last_exit_at = time.time()
            self.pid = None
            self.proc = None
            self._set_ready(False)
            if self.stopping:
                break
            ran = (self.last_exit_at - self.started_at) if self.started_at else 0.0
            self.crashes_in_row = self.crashes_in_row + 1 if ran < policy.quick_crash_s else 1
            self.restarts += 1
            delay = policy.delay(self.crashes_in_row)
            self.status = "CrashLoopBackOff" if self.crashes_in_row >= policy.crashloop_after else "Restarting"
            self.runtime.log.warning("pod %s exited with %s; restart %d in %.1fs", self.name, self.last_exit,
                                     self.restarts, delay)
            self._next_start_at = time.time() + delay
            self.runtime.pods_changed()
            await asyncio.sleep(delay)
            self._next_start_at = None
        self.status = "Terminated"
        self.runtime.pods_changed()

    def _set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            self.runtime.readiness_changed(self.deployment)

    async def _probe_loop(self) -> None:
        settings = self.runtime.probe
        session = self.runtime.http
        while not self.stopping:
            if self.ready and not self._probe_failures:
                wait = settings.ready_interval_s
            elif (not self._answered and self.started_at
                  and time.time() - self.started_at < settings.starting_window_s):
                wait = settings.starting_interval_s
            else:
                wait = settings.interval_s
            await asyncio.sleep(wait)
            if self.proc is None or self.stopping:
                continue
            ok = await self._probe_once(session, settings.timeout_s)
            if ok:
                self._answered = True
                self._probe_failures = 0
                if self.crashes_in_row and self.started_at and time.time() - self.started_at > 10:
                    self.crashes_in_row = 0
                if self.status in ("CrashLoopBackOff", "Restarting"):
                    self.status = "Running"
                self._set_ready(True)
            else:
                self._probe_failures += 1
                if self._probe_failures >= settings.failure_threshold or not self.ready:
                    self._set_ready(False)

    async def _probe_once(self, session: aiohttp.ClientSession, timeout: float) -> bool:
        try:
            if self.kind == "service":
                async with session.get(f"http://127.0.0.1:{self.port}/health",
                                       timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                    await resp.read()
                    return resp.status == 200
            if self.kind == "redis":
                return await asyncio.wait_for(_redis_ping(self.port), timeout)
            return await asyncio.wait_for(self._postgres_ready(), timeout)
        except (TimeoutError, OSError, aiohttp.ClientError):
            self._drop_pg_probe()
            return False
        except Exception:
            self._drop_pg_probe()
            return False

    async def _postgres_ready(self) -> bool:
        """``SELECT 1`` on the probe's own connection, made again when it broke (the server restarted). A new
        connection per probe cost a backend fork and a SCRAM exchange twice a second per store: most of an idle
        shop's PostgreSQL CPU, and much of the runtime's."""
        import asyncpg

        for fresh in (False, True):
            if self._pg_probe is None or self._pg_probe.is_closed():
                self._pg_probe = await asyncpg.connect(host="127.0.0.1", port=self.port, user=stores.PG_USER,
                                                       database=stores.PG_DATABASE, timeout=1.0,
                                                       server_settings={"application_name": "sockdrill-probe"})
                fresh = True
            try:
                return bool(await self._pg_probe.fetchval("SELECT 1") == 1)
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                self._drop_pg_probe()
                if fresh:
                    raise
        return False

    def _drop_pg_probe(self) -> None:
        conn, self._pg_probe = self._pg_probe, None
        if conn is not None:
            conn.terminate()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop for good (scale down, restart, down): signal, wait, kill."""
        self.stopping = True
        self.status = "Terminating"
        self._set_ready(False)
        self._drop_pg_probe()
        await self._terminate(grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.status = "Terminated"
        if self.cgroup is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.cgroup.remove)
            self.cgroup = None
        self.runtime.pods_changed()

    async def _terminate(self, grace: float) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, self.stop_signal)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        # Children that left the process group (rare) are still in the cgroup.
        if self.cgroup is not None:
            for pid in self.cgroup.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the pod's process group (the restart policy then does its job)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def record(self) -> dict[str, Any]:
        return {
            "pid": self.pid, "started": self.pid_started, "stop_signal": int(self.stop_signal),
            "cgroups": [str(p) for p in self.cgroup.paths] if self.cgroup else [],
        }

    def describe(self) -> dict[str, Any]:
        cg = self.cgroup
        out: dict[str, Any] = {
            "name": self.name, "deployment": self.deployment.spec.name, "status": self.status,
            "ready": self.ready, "pid": self.pid, "port": self.port, "restarts": self.restarts,
            "last_exit_code": self.last_exit, "started_at": self.started_at,
        }
        if self._next_start_at:
            out["restart_in_s"] = round(max(0.0, self._next_start_at - time.time()), 2)
        if cg is not None:
            out["cpu_seconds"] = cg.cpu_seconds()
            out["memory_working_set_bytes"] = cg.memory_working_set()
            out["throttling"] = cg.throttling()
        return out


async def _redis_ping(port: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        line = await reader.readline()
        return line.startswith(b"+PONG")
    finally:
        writer.close()



