"""The registry of fault kinds by id (``network.delay``, ``pod.kill``, ``datastore.drop_index``...).

A kind is a small class: its ``Params`` (a pydantic model, checked before anything is touched),
``check`` against the running topology, ``inject``/``revert`` side by side, and a pure ``render``
to Chaos Mesh (or to the kubectl Job that causes it where Chaos Mesh has no such kind).

``inject`` returns a JSON-able *state*: everything ``revert`` needs, written to the ledger on disk so
that a later supervisor can revert what a crashed one left (``ctx.leftover`` is then True: the mesh,
pods and knobs are new, only datastores and stray processes remain).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from sockdrill.errors import ClusterError, FaultError, did_you_mean

if TYPE_CHECKING:
    from sockdrill.chaos.render import RenderOptions
    from sockdrill.chaos.spec import FaultSpec
    from sockdrill.cluster.pods import Pod
    from sockdrill.cluster.runtime import Deployment, Runtime


class Params(BaseModel):
    """Base of every kind's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Ctx:
    """What inject/revert get: the runtime, the fault id, and a way to save state early."""

    runtime: Runtime
    fault_id: str
    seed: int = 1
    leftover: bool = False  # reverting what an earlier (crashed) supervisor left on disk
    reason: str = ""  # why a revert happens: expiry, clear, down, leftover
    save: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    notes: list[str] = field(default_factory=list)  # said in the fault's record (e.g. no cgroup)
    memo: dict[str, Any] = field(default_factory=dict)  # in-memory objects from inject for revert

    async def checkpoint(self, state: dict[str, Any]) -> None:
        """Write revert state to the ledger before a change that outlives the supervisor."""
        if self.save is not None:
            await self.save(state)


class FaultKind:
    id: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    target_help: ClassVar[str] = "a deployment"
    chaos_mesh: ClassVar[str] = ""  # the Chaos Mesh kind it renders to; "" = a kubectl Job
    one_shot: ClassVar[bool] = False  # done at onset (pod.kill): nothing to revert
    survives_restart: ClassVar[bool] = False  # a datastore change: revert leftovers once the store is ready
    local: ClassVar[bool] = True  # False: render-only (no honest local mechanism)
    store_kinds: ClassVar[tuple[str, ...]] = ()  # for datastore kinds: deployment kinds allowed

    def check_static(self, spec: FaultSpec) -> list[str]:
        """Problems visible without a runtime (e.g. an edge target for a pod kind)."""
        if spec.edge is not None:
            return [f"target: {self.id} takes a deployment name, not an edge, got {spec.target!r}"]
        return []

    def check(self, rt: Runtime, spec: FaultSpec) -> None:
        """Raise FaultError naming the field if the target does not fit the running topology."""
        deployment(rt, spec.target)

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        raise NotImplementedError

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        raise NotImplementedError

    def target_deployments(self, spec: FaultSpec) -> list[str]:
        """Deployments the fault lives in (leftover reverts wait for these to be ready)."""
        return [spec.target]

    @classmethod
    def describe(cls) -> dict[str, Any]:
        schema = cls.Params.model_json_schema()
        params = {}
        for name, prop in schema.get("properties", {}).items():
            params[name] = {k: v for k, v in prop.items() if k in ("type", "default", "description", "minimum",
                                                                      "maximum", "enum", "anyOf")}
        return {"kind": cls.id, "summary": cls.summary, "target": cls.target_help, "params": params,
                "chaos_mesh": cls.chaos_mesh or "kubectl Job", "one_shot": cls.one_shot,
                "local": cls.local}


KINDS: dict[str, FaultKind] = {}


def register(cls: type[FaultKind]) -> type[FaultKind]:
    if cls.id in KINDS:
        raise RuntimeError(f"fault kind {cls.id!r} registered twice")
    KINDS[cls.id] = cls()
    return cls


def get_kind(name: str) -> FaultKind:
    kind = KINDS.get(name)
    if kind is None:
        raise FaultError(f"kind: unknown fault kind {name!r}{did_you_mean(name, KINDS)}")
    return kind


def describe_kinds() -> list[dict[str, Any]]:
    return [KINDS[k].describe() for k in sorted(KINDS)]


# ---- topology helpers -----------------------------------------------------------------------------
def deployment(rt: Runtime, name: str, field_name: str = "target",
               kinds: tuple[str, ...] | None = None) -> Deployment:
    dep = rt.deployments.get(name)
    if dep is None:
        raise FaultError(f"{field_name}: no deployment {name!r}{did_you_mean(name, rt.deployments)}")
    if kinds and dep.spec.kind not in kinds:
        fits = [n for n, d in rt.deployments.items() if d.spec.kind in kinds]
        raise FaultError(f"{field_name}: {name!r} is a {dep.spec.kind} deployment; this fault needs a "
                         f"{' or '.join(kinds)} one{did_you_mean(name, fits)}")
    return dep


def choose_pods(ctx_or_rt: Ctx | Runtime, spec: FaultSpec, dep: Deployment) -> list[Pod]:
    """The pods a fault hits: ``pod`` if named, one (seeded draw) for ``mode: one``, else all live ones."""
    rt = ctx_or_rt.runtime if isinstance(ctx_or_rt, Ctx) else ctx_or_rt
    live = [p for p in dep.pods.values() if not p.stopping]
    if spec.pod is not None:
        if spec.pod not in dep.pods or dep.pods[spec.pod].stopping:
            raise FaultError(f"pod: {dep.name!r} has no pod {spec.pod!r}{did_you_mean(spec.pod, dep.pods)}")
        return [dep.pods[spec.pod]]
    if not live:
        raise FaultError(f"target: {dep.name!r} has no running pod")
    if spec.mode == "one":
        fid = ctx_or_rt.fault_id if isinstance(ctx_or_rt, Ctx) else ""
        return [random.Random(f"{rt.seed}:{fid}").choice(sorted(live, key=lambda p: p.name))]
    return live


def pg_url(rt: Runtime, name: str) -> str:
    """A direct URL to a PostgreSQL deployment's pod (not through the mesh: this is 'kubectl exec')."""
    dep = deployment(rt, name, kinds=("postgres",))
    if dep.spec.external_url:
        return dep.spec.external_url
    pods = dep.ready_pods()
    if not pods:
        raise FaultError(f"target: {name!r} has no ready pod")
    return dep.spec.url_for("127.0.0.1", pods[0].port)


async def wait_ready(rt: Runtime, names: list[str], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(rt.deployment(n).is_ready() for n in names):
                return True
        except ClusterError:
            return False
        await asyncio.sleep(0.1)
    return False


# The kinds register themselves on import.
from sockdrill.chaos import config, connections, datastore, migrations, network, pod, queue, stress  # noqa: E402

__all__ = ["KINDS", "Ctx", "FaultKind", "Params", "config", "connections", "datastore", "describe_kinds", "get_kind",
           "migrations", "network", "pod", "queue", "register", "stress"]
