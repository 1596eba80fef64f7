"""The long-lived background process that owns the runtime: ``python -m sockdrill.cluster.supervisor DIR``.

Started detached by ``sockdrill up``; reads ``DIR/state/config.json``, sweeps whatever a previous,
crashed supervisor left (pods, cgroups, faults), starts the runtime and its control API, records
itself in ``DIR/state/runtime.json``, and on SIGTERM or ``/v1/shutdown`` stops everything it started.

``DIR/state`` is 0700 and its files 0600 (``state.write_json``): runtime.json holds the control token,
which is all it takes to act as the operator, and the stores' admin URLs. The token reaches the flight
recorder in its environment, never on a command line (``/proc/PID/cmdline`` is world-readable).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from sockdrill.cluster.control import ControlAPI
from sockdrill.cluster.pods import ProbeSettings, RestartPolicy
from sockdrill.cluster.runtime import Runtime
from sockdrill.cluster.spec import DeploymentSpec
from sockdrill.cluster.state import private_dir, process_start_time, read_json, state_dir, sweep, write_json

# Rooms that extend the supervisor (telemetry, chaos): each module has
# ``async def attach(runtime, api) -> Callable[[], Awaitable[None]] | None``, called before the runtime
# starts its pods (so it may still add control routes to ``api.app.router``); work that needs running
# pods goes in ``api.started_hooks`` (each gets runtime.json's record and may add fields to it). The
# returned clean-up runs before the runtime stops. A missing module is skipped.
PLUGINS = ("sockdrill.telemetry.plugin", "sockdrill.chaos.plugin")


def build_runtime(config: dict[str, Any], data_dir: Path, run_id: str) -> Runtime:
    specs = [DeploymentSpec.model_validate(s) for s in config["deployments"]]
    return Runtime(
        specs, data_dir, Path(config["cache_dir"]), seed=int(config.get("seed", 1)),
        restart_policy=RestartPolicy(**config.get("restart_policy", {})),
        probe=ProbeSettings(**config.get("probe", {})),
        pod_env=config.get("pod_env", {}), run_id=run_id,
    )


async def serve(data_dir: Path) -> int:
    log = logging.getLogger("sockdrill.supervisor")
    sdir = private_dir(state_dir(data_dir))  # 0700: runtime.json holds the token and the stores' logins
    config = read_json(sdir / "config.json")
    if not isinstance(config, dict):
        log.error("no readable %s", sdir / "config.json")
        return 2
    run_id = secrets.token_hex(4)
    runtime = build_runtime(config, data_dir, run_id)
    api = ControlAPI(runtime)
    cleanups = []
    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        plugin_attach = getattr(module, "attach", None)
        if plugin_attach is not None:
            api.plugins.append((name, plugin_attach))
    runner = web.AppRunner(api.app, access_log=None, handle_signals=False)
    for name, plugin_attach in api.plugins:
        try:
            cleanup = await plugin_attach(runtime, api)
        except Exception:
            log.exception("plugin %s failed to attach", name)
            continue
        if cleanup is not None:
            cleanups.append(cleanup)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", int(config.get("control_port", 0)))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    record = {
        "supervisor": {"pid": os.getpid(), "started": process_start_time(os.getpid())},
        "control_url": f"http://127.0.0.1:{port}", "token": api.token, "run_id": run_id,
        "telemetry_token": runtime.telemetry_token, "staff": {"username": "admin", "password": runtime.staff_password},
        "cgroup_bases": [str(p) for p in runtime.cgroups.bases()], "started_at": time.time(),
        "data_dir": str(data_dir), "state": "starting",
    }
    write_json(sdir / "runtime.json", record)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, api.shutdown.set)
    try:
        await runtime.start(config.get("host_ports"))
        for hook in api.started_hooks:
            await hook(record)
        record["state"] = "running"
        record["front_end_url"] = runtime.host_url("front-end") if "front-end" in runtime.deployments else None
        record["addresses"] = {n: runtime.host_url(n) for n in runtime.deployments}
        write_json(sdir / "runtime.json", record)
        log.info("runtime started")
        await api.shutdown.wait()
    except Exception as exc:
        log.exception("runtime failed: %s", exc)
        record["state"] = "failed"
        record["error"] = str(exc)
        write_json(sdir / "runtime.json", record)
        await asyncio.sleep(0.5)  # let the CLI read the error
    finally:
        log.info("stopping runtime")
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("plugin clean-up failed")
        await runtime.stop()
        await runner.cleanup()
        (sdir / "runtime.json").unlink(missing_ok=True)
        (sdir / "pods.json").unlink(missing_ok=True)
        log.info("runtime stopped")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sockdrill.cluster.supervisor DATA_DIR", file=sys.stderr)
        return 2
    data_dir = Path(argv[0]).resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # Whatever a killed supervisor left behind goes first.
    leftovers = read_json(state_dir(data_dir) / "pods.json")
    if leftovers:
        for line in sweep(data_dir):
            logging.getLogger("sockdrill.supervisor").info("cleanup: %s", line)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    return asyncio.run(serve(data_dir))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
