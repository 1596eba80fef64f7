"""The supervisor's telemetry plugin: the runtime's metrics listener, scrape targets, the flight recorder.

``attach(runtime, api)`` (called by the supervisor before any pod starts):
- serves ``GET /metrics`` on a free 127.0.0.1 port (mesh edges + pod resources + datastores), to holders
  of the shop's telemetry token only (``sockdrill/cluster/admin.py``);
- adds ``GET /v1/targets`` to the control API: every ready service pod's own ``/metrics`` plus the
  runtime listener, as ``[{"job", "pod", "url"}]``;
- points the pods' OTLP exporters at the flight recorder (``SOCKDRILL_OTLP_ENDPOINT``, and the standard
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` unless the user already set one for their own collector) and starts
  the recorder (``python -m sockdrill.telemetry.recorder``) as a child the supervisor owns, restarted if
  it dies, recorded in runtime.json so ``down`` can stop it even after a crash of the supervisor. The
  shop comes up without it when the module is missing or fails to start.

The recorder needs the control API's address, which the supervisor only knows once its listener is up,
so it is spawned by the first started hook: right after the runtime has launched the pods and before
any of them can serve (``up`` returns only once the recorder answers /health or gave up).

The control and telemetry tokens reach the recorder in its environment (``SOCKDRILL_CONTROL_TOKEN``,
``SOCKDRILL_TELEMETRY_TOKEN``, readable by its user only), never on its command line, which every local
user can read in ``/proc/PID/cmdline``. Run folders (``DATA_DIR/runs``) are 0700: the journals in them
are the ground truth of a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sockdrill.cluster.admin import TELEMETRY_TOKEN_ENV, bearer_ok
from sockdrill.cluster.ports import free_port
from sockdrill.cluster.state import private_dir, process_start_time, state_dir, write_json
from sockdrill.telemetry.collectors import RuntimeMetrics

log = logging.getLogger("sockdrill.telemetry")

RECORDER_MODULE = "sockdrill.telemetry.recorder"
TOKEN_ENV = "SOCKDRILL_CONTROL_TOKEN"  # how the recorder gets the control token (see recorder.main)
RUNTIME_JOB = "sockdrill-runtime"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECORDER_HEALTH_TIMEOUT_S = 20.0
RECORDER_STOP_GRACE_S = 10.0
_OFF = ("off", "0", "false", "no", "disabled")


def scrape_interval(env: dict[str, str] | None = None) -> float:
    """``SOCKDRILL_SCRAPE_INTERVAL`` from the runtime's pod environment (what ``up`` was given), else the
    supervisor's own environment, else 5 s."""
    raw = (env or {}).get("SOCKDRILL_SCRAPE_INTERVAL") or os.environ.get("SOCKDRILL_SCRAPE_INTERVAL", "5")
    try:
        value = float(raw)
    except ValueError:
        log.warning("SOCKDRILL_SCRAPE_INTERVAL=%r is not a number; using 5", raw)
        return 5.0
    return value if value > 0 else 5.0


def run_dir_for(data_dir: Path, run_id: str) -> Path:
    env = os.environ.get("SOCKDRILL_RUN_DIR")
    if env:
        return Path(env).expanduser().resolve()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return data_dir / "runs" / f"{stamp}-{run_id}"


class TelemetryPlugin:
    def __init__(self, runtime: Any, api: Any) -> None:
        self.runtime = runtime
        self.api = api
        self.metrics = RuntimeMetrics(runtime)
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self.metrics_url = ""
        self.recorder_url: str | None = None
        self.recorder_port = 0
        self.run_dir: Path | None = None
        self.recorder: asyncio.subprocess.Process | None = None
        self._record: dict[str, Any] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closing = False

    # ---- the metrics listener -----------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.api.app.router.add_get("/v1/targets", self._targets)
        self._prepare_recorder()
        self.api.started_hooks.append(self._on_started)
        log.info("runtime metrics on %s", self.metrics_url)

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        if not bearer_ok(self.runtime.telemetry_token, request.headers):
            return web.json_response({"error": "metrics need the shop's telemetry token"}, status=401)
        async with self._lock:  # stores are read over one connection each: one scrape at a time
            scrape = await self.metrics.scrape()
        return web.Response(body=scrape.text.encode(), headers={"Content-Type": CONTENT_TYPE})

    def targets(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for dep in self.runtime.deployments.values():
            if dep.spec.kind != "service" or dep.external:
                continue
            for pod in dep.ready_pods():
                out.append({"job": dep.name, "pod": pod.name, "url": f"http://127.0.0.1:{pod.port}/metrics"})
        out.append({"job": RUNTIME_JOB, "pod": "supervisor", "url": self.metrics_url})
        return out

    async def _targets(self, _request: web.Request) -> web.Response:
        return web.json_response(self.targets())

    # ---- the flight recorder ---------------------------------------------------------------------
    def _prepare_recorder(self) -> None:
        """Before any pod starts: pick the recorder's address and put it in the pods' environment."""
        if os.environ.get("SOCKDRILL_RECORDER", "").strip().lower() in _OFF:
            log.info("flight recorder disabled (SOCKDRILL_RECORDER)")
            return
        try:
            found = importlib.util.find_spec(RECORDER_MODULE) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            log.warning("no flight recorder (%s is missing); running without it", RECORDER_MODULE)
            return
        self.recorder_port = free_port()
        self.recorder_url = f"http://127.0.0.1:{self.recorder_port}"
        self.run_dir = run_dir_for(self.runtime.data_dir, self.runtime.cgroups.run_id)
        env = self.runtime.extra_env
        env["SOCKDRILL_OTLP_ENDPOINT"] = self.recorder_url
        # A collector the user configured keeps its spans; the pods then export to both.
        if not (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.recorder_url

    def _recorder_argv(self) -> list[str]:
        assert self._record is not None and self.run_dir is not None
        return [sys.executable, "-m", RECORDER_MODULE, str(self.run_dir),
                "--control-url", str(self._record["control_url"]),
                "--port", str(self.recorder_port), "--interval", f"{scrape_interval(self.runtime.extra_env):g}",
                "--logs-dir", str(self.runtime.data_dir / "logs")]

    def _recorder_env(self) -> dict[str, str]:
        assert self._record is not None
        return {**os.environ, TOKEN_ENV: str(self._record["token"]),
                TELEMETRY_TOKEN_ENV: self.runtime.telemetry_token}

    async def _spawn_recorder(self) -> bool:
        """Start the recorder and wait for its /health; False (and nothing left running) if it fails."""
        assert self.run_dir is not None
        private_dir(self.run_dir.parent)
        private_dir(self.run_dir)
        logfile = os.fdopen(os.open(self.runtime.data_dir / "recorder.log",
                                    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600), "ab", buffering=0)
        try:
            self.recorder = await asyncio.create_subprocess_exec(
                *self._recorder_argv(), stdin=asyncio.subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                start_new_session=True, cwd=str(self.runtime.data_dir), env=self._recorder_env())
        except OSError as exc:
            log.error("cannot start the flight recorder: %s; running without it", exc)
            return False
        finally:
            logfile.close()
        proc = self.recorder
        deadline = asyncio.get_running_loop().time() + RECORDER_HEALTH_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while asyncio.get_running_loop().time() < deadline:
                if proc.returncode is not None:
                    log.error("the flight recorder exited at start (code %s); see %s; running without it",
                              proc.returncode, self.runtime.data_dir / "recorder.log")
                    self.recorder = None
                    return False
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(f"{self.recorder_url}/health",
                                           timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        if resp.status == 200:
                            return True
                await asyncio.sleep(0.1)
        log.warning("the flight recorder did not answer /health within %.0fs; leaving it running",
                    RECORDER_HEALTH_TIMEOUT_S)
        return True

    def _note_recorder(self) -> None:
        assert self._record is not None
        proc = self.recorder
        if proc is None:
            self._record["recorder"] = None
            self._record["recorder_url"] = None
            return
        self._record["recorder"] = {"pid": proc.pid, "started": process_start_time(proc.pid)}
        self._record["recorder_url"] = self.recorder_url
        self._record["run_dir"] = str(self.run_dir)

    async def _on_started(self, record: dict[str, Any]) -> None:
        self._record = record
        record["metrics_url"] = self.metrics_url
        record["recorder_url"] = None
        record["run_dir"] = None
        if self.recorder_url is None:
            return
        if not await self._spawn_recorder():
            # Pods started since keep exporting into the void (their OTLP exporter drops spans); new
            # pods stop trying.
            for key in ("SOCKDRILL_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
                if self.runtime.extra_env.get(key) == self.recorder_url:
                    del self.runtime.extra_env[key]
        self._note_recorder()
        if self.recorder is not None:
            # On disk at once, so that a supervisor crashing before its own write still gets it cleaned.
            write_json(state_dir(self.runtime.data_dir) / "runtime.json", record)
            self._watch = asyncio.create_task(self._watchdog())

    async def _watchdog(self) -> None:
        """Restart a recorder that dies (with back-off) and keep runtime.json's record of it current."""
        delay = 1.0
        while not self._closing:
            if self.recorder is not None:
                code = await self.recorder.wait()
                if self._closing:
                    return
                log.error("the flight recorder exited (code %s); restarting in %.0fs", code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
            if self._closing:
                return
            if await self._spawn_recorder() and self.recorder is not None:
                self.runtime.event("recorder_restarted", pid=self.recorder.pid)
            if self._closing:
                return
            self._note_recorder()
            write_json(state_dir(self.runtime.data_dir) / "runtime.json", self._record)

    async def _stop_recorder(self) -> None:
        proc = self.recorder
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # it leads its own session: its children go too
        try:
            await asyncio.wait_for(proc.wait(), RECORDER_STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def close(self) -> None:
        self._closing = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        await self._stop_recorder()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.metrics.close()


async def attach(runtime: Any, api: Any) -> Any:
    plugin = TelemetryPlugin(runtime, api)
    await plugin.start()
    return plugin.close
