"""Pod faults: kill (the restart policy brings it back), failure (down for the duration), pause
(SIGSTOP, then SIGCONT). ``pod`` names one pod, ``mode: one`` draws one; otherwise every pod."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

from pydantic import Field

from sockdrill.chaos.kinds import Ctx, FaultKind, Params, choose_pods, deployment, register
from sockdrill.chaos.render import RenderOptions, chaos_object, mode_fields, selector
from sockdrill.chaos.spec import FaultSpec
from sockdrill.cluster.state import same_process
from sockdrill.errors import FaultError


class KillParams(Params):
    grace_s: float = Field(0.0, ge=0, le=300, description="SIGTERM first and wait this long (0: SIGKILL)")


class NoParams(Params):
    pass


def _deployment(rt: Any, spec: FaultSpec) -> Any:
    dep = deployment(rt, spec.target)
    if dep.external:
        raise FaultError(f"target: {spec.target!r} is external; it has no pods here")
    return dep


class _PodKind(FaultKind):
    target_help = "a deployment (pod: one pod of it)"

    def check(self, rt: Any, spec: FaultSpec) -> None:
        choose_pods(rt, spec, _deployment(rt, spec))


@register
class PodKill(_PodKind):
    id = "pod.kill"
    summary = "kills the pod's processes; the runtime restarts it under its policy (restart count +1)"
    Params = KillParams
    chaos_mesh = "PodChaos"
    one_shot = True

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        import asyncio

        pods = choose_pods(ctx, spec, deployment(ctx.runtime, spec.target))
        grace = spec.params.get("grace_s", 0.0)
        for pod in pods:
            pod.kill(signal.SIGTERM if grace else signal.SIGKILL)
        if grace:
            await asyncio.sleep(grace)
            for pod in pods:
                pod.kill(signal.SIGKILL)
        return {"pods": [p.name for p in pods]}

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        return None  # one-shot: the restart policy is the recovery

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        body = {"action": "pod-kill", **mode_fields(spec), "selector": selector(spec.target, opts),
                "gracePeriod": round(spec.params.get("grace_s", 0))}
        return [chaos_object("PodChaos", spec, opts, body, with_duration=False)]


@register
class PodFailure(_PodKind):
    id = "pod.failure"
    summary = "the pod is down (not running, not ready) for the duration, then started again"
    Params = NoParams
    chaos_mesh = "PodChaos"

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        pods = choose_pods(ctx, spec, deployment(ctx.runtime, spec.target))
        state = {"pods": [p.name for p in pods], "supervisor": os.getpid()}
        for pod in pods:
            ctx.memo[pod.name] = pod  # revert relaunches only if this very pod is still in place
            await pod.stop(grace=2.0)
            pod.status = "Error"
            pod.ready = False
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        from sockdrill.cluster.pods import Pod

        rt = ctx.runtime
        for name in state.get("pods", []):
            old: Pod | None = ctx.memo.pop(name, None)
            if old is None or ctx.leftover:
                continue  # a new supervisor started every pod afresh
            dep = rt.deployments.get(spec.target)
            # If an operator already replaced the pod (restart, scale), theirs stands.
            if dep is None or dep.pods.get(name) is not old or ctx.reason == "down":
                continue
            new = Pod(rt, dep, old.name, old.port, restarts=old.restarts + 1)
            dep.pods[name] = new
            new.launch()

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        body = {"action": "pod-failure", **mode_fields(spec), "selector": selector(spec.target, opts)}
        return [chaos_object("PodChaos", spec, opts, body)]


@register
class PodPause(_PodKind):
    id = "pod.pause"
    summary = "freezes the pod's processes (SIGSTOP) for the duration, then SIGCONT"
    Params = NoParams
    chaos_mesh = "PodChaos"

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        pods = choose_pods(ctx, spec, deployment(ctx.runtime, spec.target))
        state: dict[str, Any] = {"pods": []}
        for pod in pods:
            if pod.pid:
                state["pods"].append({"name": pod.name, "pid": pod.pid, "started": pod.pid_started})
        await ctx.checkpoint(state)
        for rec in state["pods"]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rec["pid"], signal.SIGSTOP)
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        for rec in state.get("pods", []):
            # The same process only (a pid is never trusted without its start time).
            if same_process(int(rec["pid"]), rec.get("started")):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(rec["pid"]), signal.SIGCONT)

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        # Chaos Mesh cannot freeze a container; pod-failure (pause image: not serving) is the closest.
        body = {"action": "pod-failure", **mode_fields(spec), "selector": selector(spec.target, opts)}
        note = {"sockdrill.io/note": "pause (SIGSTOP) rendered as pod-failure: the pod stops serving"}
        return [chaos_object("PodChaos", spec, opts, body, annotations=note)]
