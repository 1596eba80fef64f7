"""What the runtime runs: deployments of pods, described as data.

The runtime is generic; the shop describes itself with these specs (``sockdrill.shop.manifest``).
A deployment's ``calls`` list is its outgoing edges: for each, the mesh opens one listener
(this deployment → that one) and the pods get its address in ``SOCKDRILL_URL_<DEST>``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")

Kind = Literal["service", "postgres", "redis"]


class DeploymentSpec(BaseModel):
    name: str
    kind: Kind = "service"
    module: str | None = None  # service pods: ``python -m sockdrill.shop <module>``
    replicas: int = Field(default=1, ge=0, le=16)
    # A component only some scenarios use (a region's edge cache, a read replica): the manifest gives it 0 pods
    # and a scenario's set-up wakes it, so that every other run pays nothing for it. An optional datastore
    # runs 0 or 1 pod and keeps its data while asleep, as a StatefulSet scaled to 0 keeps its volume.
    optional: bool = False
    # A PostgreSQL read replica of another store of the shop (streaming replication through the mesh edge to
    # it, so ``calls`` must name it): hot standby, the primary's roles and passwords, reads only.
    replica_of: str | None = None
    # A service whose reads the mesh may split over subsets (an Istio VirtualService's destination rule): subset
    # name → deployment, the first the primary (writes always go there); ``route`` is the manifest's weights.
    subsets: dict[str, str] = Field(default_factory=dict)
    route: dict[str, int] = Field(default_factory=dict)
    calls: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    knobs: dict[str, Any] = Field(default_factory=dict)
    external_url: str | None = None  # replaces an embedded store (the mesh still carries its traffic)
    host_port: int | None = None  # fixed host-facing port (front-end: 8079); others get a free one
    cpu_millicores: int | None = Field(default=None, ge=1)
    memory_bytes: int | None = Field(default=None, ge=1 << 20)
    # What the pod asks the scheduler for (shown, as kubectl shows it; only limits are enforced here).
    cpu_request_millicores: int | None = Field(default=None, ge=1)
    memory_request_bytes: int | None = Field(default=None, ge=1 << 20)
    role: str = ""  # short description shown in topology
    # How the mesh spreads this service's traffic over its pods: per connection (kube-proxy) or per HTTP
    # request (a sidecar proxy). Not shown in describe: it is the platform's, like the mesh itself.
    balancing: Literal["connection", "request"] = "connection"
    # A Redis store's memory budget at start (what its chart would set); a reset between runs restores it.
    maxmemory: str = "0"
    maxmemory_policy: str = "noeviction"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError(f"deployment name {v!r} must be lower-case letters, digits and '-'")
        return v

    @field_validator("maxmemory")
    @classmethod
    def _maxmemory(cls, v: str) -> str:
        if not re.fullmatch(r"\d+(kb|mb|gb)?", v.lower()):
            raise ValueError(f"maxmemory {v!r} must be like '0', '64mb' or '1gb'")
        return v.lower()

    @field_validator("maxmemory_policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        policies = ("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu",
                    "volatile-random", "volatile-ttl")
        if v not in policies:
            raise ValueError(f"maxmemory_policy {v!r} must be one of {', '.join(policies)}")
        return v

    @property
    def is_store(self) -> bool:
        return self.kind != "service"

    def url_for(self, host: str, port: int) -> str:
        """The URL a client uses to reach this deployment at host:port."""
        if self.kind == "postgres":
            return f"postgresql://sockdrill@{host}:{port}/sockdrill"
        if self.kind == "redis":
            return f"redis://{host}:{port}/0"
        return f"http://{host}:{port}"


def parse_quantity_cpu(text: str) -> int:
    """'100m' → 100, '0.5' → 500, '2' → 2000 millicores."""
    t = text.strip()
    try:
        value = int(t[:-1]) if t.endswith("m") else round(float(t) * 1000)
    except ValueError:
        raise ValueError(f"CPU quantity {text!r} is not like '100m' or '0.5'") from None
    if value <= 0:
        raise ValueError(f"CPU quantity {text!r} must be > 0")
    return value


_MEM_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_quantity_memory(text: str) -> int:
    """'256Mi' → 268435456, '1G' → 10**9, '1048576' → bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?)?\s*", text)
    if not m:
        raise ValueError(f"memory quantity {text!r} is not like '256Mi' or '1G'")
    value = int(float(m.group(1)) * _MEM_UNITS[(m.group(2) or "").lower()])
    if value < (1 << 20):
        raise ValueError(f"memory quantity {text!r} is below 1Mi")
    return value
