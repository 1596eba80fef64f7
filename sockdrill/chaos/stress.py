"""Stress (CPU workers, memory) inside the target pod's cgroup, and resource limits on a deployment.

Stress workers are processes that join the pod's cgroup before they exec (so the pod's own CPU and
memory accounting, limits and throttling see them, as with Chaos Mesh's StressChaos). Where the host
has no writable cgroup they run as competing processes instead, and the fault's record says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field, field_validator, model_validator

from sockdrill.chaos.kinds import Ctx, FaultKind, Params, choose_pods, deployment, register
from sockdrill.chaos.render import KUBECTL_IMAGE, RenderOptions, chaos_object, job, mode_fields, quote, selector
from sockdrill.chaos.spec import FaultSpec
from sockdrill.cluster.spec import parse_quantity_cpu, parse_quantity_memory
from sockdrill.cluster.state import process_start_time, same_process
from sockdrill.errors import FaultError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB|Ki|Mi|Gi|K|M|G)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3}


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"must be a size like 256MB or 512Mi, got {value!r}")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


class CpuParams(Params):
    workers: int = Field(1, ge=1, le=64, description="busy processes")
    load: int = Field(100, ge=1, le=100, description="percent of a core each worker keeps busy")


class MemoryParams(Params):
    size: str = Field("256MB", description="memory each worker touches and holds (e.g. 256MB, 1Gi)")
    workers: int = Field(1, ge=1, le=16)

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> str:
        n = parse_size(v)
        if not 1 << 20 <= n <= 64 << 30:
            raise ValueError(f"must be between 1MiB and 64GiB, got {v!r}")
        return str(v)


def _join(files: list[str]) -> Callable[[], None]:
    def fn() -> None:
        pid = str(os.getpid())
        for f in files:
            with open(f, "w") as fh:
                fh.write(pid)

    return fn


async def spawn_worker(cfg: dict[str, Any], cgroup_files: list[str], stdout: bool = False,
                       env: dict[str, str] | None = None) -> dict[str, Any]:
    """A worker process; ``env`` adds to the inherited environment (secrets go there, not in ``cfg``: a command
    line is world-readable)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sockdrill.chaos.worker", json.dumps({**cfg, "parent": os.getpid()}),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
        start_new_session=True, preexec_fn=_join(cgroup_files) if cgroup_files else None,
        env={**os.environ, **env} if env else None,
    )
    rec: dict[str, Any] = {"pid": proc.pid, "started": process_start_time(proc.pid)}
    # Reap it when it ends so no zombie stays behind (the task is kept with the process).
    rec["_proc"] = (proc, asyncio.ensure_future(proc.wait()))
    return rec


async def kill_workers(records: list[dict[str, Any]], sig: int = signal.SIGKILL) -> None:
    for rec in records:
        pid = int(rec["pid"])
        if same_process(pid, rec.get("started")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not any(same_process(int(r["pid"]), r.get("started")) and not _zombie(int(r["pid"])) for r in records):
            return
        await asyncio.sleep(0.02)


def _zombie(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


class _StressKind(FaultKind):
    chaos_mesh = "StressChaos"
    target_help = "a deployment (pod: one pod of it)"

    def check(self, rt: Any, spec: FaultSpec) -> None:
        choose_pods(rt, spec, deployment(rt, spec.target))

    def worker_cfg(self, spec: FaultSpec) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        pods = choose_pods(ctx, spec, deployment(ctx.runtime, spec.target))
        deadline = time.time() + spec.duration_s
        state: dict[str, Any] = {"workers": [], "placement": "pod cgroup"}
        if not ctx.runtime.cgroups.available:
            state["placement"] = f"competing process (no cgroup: {ctx.runtime.cgroups.reason})"
            ctx.notes.append(state["placement"])
        try:
            for pod in pods:
                files = [str(f) for f in pod.cgroup.procs_files()] if pod.cgroup is not None else []
                for cfg in self.worker_cfg(spec):
                    rec = await spawn_worker({**cfg, "deadline": deadline}, files)
                    ctx.memo.setdefault("procs", []).append(rec.pop("_proc"))
                    state["workers"].append({**rec, "pod": pod.name})
        except Exception:
            await kill_workers(state["workers"])
            raise
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        await kill_workers(state.get("workers", []))

    def target_deployments(self, spec: FaultSpec) -> list[str]:
        return []


@register
class StressCpu(_StressKind):
    id = "stress.cpu"
    summary = "CPU workers busy inside the pod's cgroup"
    Params = CpuParams

    def worker_cfg(self, spec: FaultSpec) -> list[dict[str, Any]]:
        return [{"mode": "cpu", "load": spec.params["load"]}] * spec.params["workers"]

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        body = {**mode_fields(spec), "selector": selector(spec.target, opts),
                "stressors": {"cpu": {"workers": spec.params["workers"], "load": spec.params["load"]}}}
        return [chaos_object("StressChaos", spec, opts, body)]


@register
class StressMemory(_StressKind):
    id = "stress.memory"
    summary = "memory touched and held inside the pod's cgroup (counts against its memory limit)"
    Params = MemoryParams

    def worker_cfg(self, spec: FaultSpec) -> list[dict[str, Any]]:
        return [{"mode": "memory", "size": parse_size(spec.params["size"])}] * spec.params["workers"]

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        size = parse_size(spec.params["size"])
        body = {**mode_fields(spec), "selector": selector(spec.target, opts),
                "stressors": {"memory": {"workers": spec.params["workers"], "size": f"{max(1, size // 2**20)}MB"}}}
        return [chaos_object("StressChaos", spec, opts, body)]


# ---- resource limits -------------------------------------------------------------------------------
class LimitParams(Params):
    cpu: str | None = Field(None, description="CPU limit, e.g. 100m or 0.5")
    memory: str | None = Field(None, description="memory limit, e.g. 256Mi")

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> Any:
        if v is None:
            return v
        parse_quantity_cpu(str(v))
        return str(v)

    @field_validator("memory", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> Any:
        if v is None:
            return v
        parse_quantity_memory(str(v))
        return str(v)

    @model_validator(mode="after")
    def _one(self) -> LimitParams:
        if self.cpu is None and self.memory is None:
            raise ValueError("give cpu and/or memory")
        return self


@register
class ResourceLimit(FaultKind):
    id = "resource.limit"
    summary = "CPU/memory limits on a deployment's pods (cgroup quota); the pre-fault limits come back"
    Params = LimitParams
    target_help = "a deployment"

    def check(self, rt: Any, spec: FaultSpec) -> None:
        dep = deployment(rt, spec.target)
        if dep.external:
            raise FaultError(f"target: {spec.target!r} is external; its resources are not ours to limit")

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        dep = deployment(ctx.runtime, spec.target)
        before = {"cpu_millicores": dep.spec.cpu_millicores, "memory_bytes": dep.spec.memory_bytes}
        cpu = parse_quantity_cpu(spec.params["cpu"]) if spec.params.get("cpu") else None
        mem = parse_quantity_memory(spec.params["memory"]) if spec.params.get("memory") else None
        ctx.runtime.set_limits(spec.target, cpu, mem)
        return {"before": before, "set": {"cpu_millicores": cpu, "memory_bytes": mem}}

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        if ctx.leftover:
            return  # a new supervisor starts from the configured limits
        dep = ctx.runtime.deployments.get(spec.target)
        if dep is None:
            return
        before, changed = state["before"], state["set"]
        # Put back exactly what this fault changed; the other limit stays as it is now.
        cpu = before["cpu_millicores"] if changed["cpu_millicores"] is not None else dep.spec.cpu_millicores
        mem = before["memory_bytes"] if changed["memory_bytes"] is not None else dep.spec.memory_bytes
        ctx.runtime.set_limits(spec.target, cpu, mem, clear=True)

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        from sockdrill.chaos.render import service_name

        name = service_name(spec.target, opts)
        ns = opts.namespace
        kind = "deployment"
        base = f"kubectl -n {ns} get {kind} {name}"
        path = "/spec/template/spec/containers/0/resources"
        save, ops = [], []
        for key in ("cpu", "memory"):
            value = spec.params.get(key)
            if value is None:
                continue
            save.append(f"OLD_{key.upper()}=$({base} -o jsonpath='{{.spec.template.spec.containers[0]"
                        f".resources.limits.{key}}}')")
            ops.append((key, value))
        patch = json.dumps({"spec": {"template": {"spec": {"containers": [
            {"name": name, "resources": {"limits": dict(ops)}}]}}}})
        apply = f"kubectl -n {ns} patch {kind} {name} --type=strategic -p {quote(patch)}"
        restore_parts = []
        for key, _ in ops:
            var = f"OLD_{key.upper()}"
            put = f'[{{"op":"replace","path":"{path}/limits/{key}","value":"\'"${var}"\'"}}]'
            remove = f'[{{"op":"remove","path":"{path}/limits/{key}"}}]'
            restore_parts.append(
                f'if [ -n "${var}" ]; then kubectl -n {ns} patch {kind} {name} --type=json -p \'{put}\'; '
                f"else kubectl -n {ns} patch {kind} {name} --type=json -p '{remove}'; fi")
        return job(spec, opts, KUBECTL_IMAGE, apply, "; ".join(restore_parts), save="\n".join(save),
                   note="resource limit: kubectl patch, restored after the duration")
