"""What a scenario file holds, validated with pydantic.

A scenario is one seed user-journey failure (``login-latency``); its variants are the root causes the
seed lists, each a fault recipe with its ground truth and the remediation that fixes it (runbooks are
written per alert, in ``scenarios/runbooks/``, never per variant: a variant's runbook would be its answer)::

    id: login-latency
    version: 1
    title: High login latency during peak traffic
    seed: 1                      # the number in ../shared/seed/sock-shop-failure-scenarios.md
    journey: login
    impact: Shoppers wait seconds to log in, and some give up.
    slo:                         # the seed's "Expected": must hold before the fault and after the fix
      - {journey: login, sli: latency_p95, below: 1.0}
    symptom:                     # the seed's "Actual": the fault must really cause one of these
      any:
        - {journey: login, sli: latency_p95, above: 2.0}
    load: {journeys: {login: 3, browse: 1}, users: 8}
    variants:
      - id: frontend-user-delay
        faults: [{kind: network.delay, target: front-end->user, mode: one, params: {latency_ms: 2000}}]
        ground_truth: {root_cause: [user], category: network_latency, propagation: [user, front-end]}
        remediation: [{tool: restart, args: {service: user}}]

Field paths in errors are reported as ``variants[2].faults[0].params.latency_ms``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sockdrill.scenarios.scripted import ScheduledAction, ScheduledProbe

ID = re.compile(r"^[a-z][a-z0-9-]{1,60}$")
SliName = Literal["latency_p50", "latency_p95", "latency_p99", "error_rate", "throughput"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(Strict):
    """One SLI bound on one journey: ``below`` for an SLO, ``above`` for a symptom (or both)."""

    journey: str
    sli: SliName
    below: float | None = Field(None, ge=0)
    above: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_bound(self) -> Objective:
        if self.below is None and self.above is None:
            raise ValueError("give 'below' (an objective) or 'above' (a symptom)")
        return self

    def text(self) -> str:
        unit = "s" if self.sli.startswith("latency") else ""
        parts = []
        if self.below is not None:
            parts.append(f"{self.journey} {self.sli} < {self.below:g}{unit}")
        if self.above is not None:
            parts.append(f"{self.journey} {self.sli} > {self.above:g}{unit}")
        return " and ".join(parts)


class Symptom(Strict):
    any: list[Objective] = Field(min_length=1)

    @field_validator("any")
    @classmethod
    def _above(cls, v: list[Objective]) -> list[Objective]:
        for o in v:
            if o.above is None:
                raise ValueError(f"a symptom needs 'above' (what the fault makes worse), got {o.text()}")
        return v


class StandardLoad(Strict):
    """The load at the standard (game-day) profile where it differs from the fast one: more shoppers at a
    shopper's pace, e.g. scenario 7's 1000 concurrent shoppers thinking 20-40 s, the same page rate the fast
    profile gets from a dozen thinking under a second."""

    users: int = Field(ge=1, le=5000)
    spawn_rate: float | None = Field(default=None, gt=0)
    think_s: tuple[float, float] | None = None


class Load(Strict):
    journeys: dict[str, int] = Field(default_factory=lambda: {"browse": 3, "login": 1, "cart": 1,
                                                              "checkout": 1})
    users: int = Field(default=8, ge=1, le=2000)
    spawn_rate: float = Field(default=20.0, gt=0)
    shape: Literal["steady", "ramp", "spike", "step"] = "steady"
    peak_users: int | None = Field(default=None, ge=1, le=5000)
    think_s: tuple[float, float] = (0.2, 0.6)
    # Where shoppers come in: entry deployment → weight (a region's edge cache; default: the front-end).
    entry: dict[str, int] = Field(default_factory=lambda: {"front-end": 1})
    standard: StandardLoad | None = None  # the standard profile's shoppers, where they differ

    def for_profile(self, profile: str) -> Load:
        """This load as the profile runs it (``standard`` applies its own users, spawn rate and think time)."""
        if profile != "standard" or self.standard is None:
            return self
        own = self.standard
        return self.model_copy(update={
            "users": own.users, "spawn_rate": own.spawn_rate or self.spawn_rate,
            "think_s": own.think_s or self.think_s, "standard": None})

    @field_validator("journeys")
    @classmethod
    def _weights(cls, v: dict[str, int]) -> dict[str, int]:
        if not v or any(w < 0 for w in v.values()) or sum(v.values()) == 0:
            raise ValueError("journeys must map names to non-negative weights, at least one > 0")
        return v

    @field_validator("entry")
    @classmethod
    def _entries(cls, v: dict[str, int]) -> dict[str, int]:
        if not v or any(not 0 <= w <= 100 for w in v.values()) or sum(v.values()) == 0:
            raise ValueError("entry must map deployments to weights from 0 to 100, at least one > 0")
        return v

    @field_validator("think_s")
    @classmethod
    def _think(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] < 0 or v[1] < v[0]:
            raise ValueError(f"think_s {list(v)} must be [min, max] seconds with 0 <= min <= max")
        return v

    def entry_list(self) -> list[str]:
        """Each entry repeated by its weight, in a stable order: user i enters through item i % n."""
        return [name for name, w in sorted(self.entry.items()) for _ in range(w)]


RedisPolicy = Literal["noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu",
                      "volatile-random", "volatile-ttl"]


class CacheSetting(Strict):
    """A Redis store's memory limit and eviction policy, as its operators configured it."""

    maxmemory: str | None = None  # 16mb, 1gb, 0 (no limit)
    policy: RedisPolicy | None = None

    @field_validator("maxmemory")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+(kb|mb|gb)?", v.strip().lower()):
            raise ValueError(f"maxmemory {v!r} must be like '0', '16mb' or '1gb'")
        return None if v is None else v.strip().lower()


class Setup(Strict):
    """Data, replicas, limits and knobs a run needs before the fault: the scenario's (what every variant and the
    control share, e.g. the optional components it wakes), with each variant's own on top."""

    users: int = Field(default=0, ge=0, le=2_000_000)
    products: int = Field(default=0, ge=0, le=200_000)
    replicas: dict[str, int] = Field(default_factory=dict)
    knobs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    limits: dict[str, dict[str, str]] = Field(default_factory=dict)  # {user: {cpu: 150m, memory: 256Mi}}
    # How the mesh balances a service over its pods: "request" (a sidecar's way) or "connection" (default)
    balancing: dict[str, Literal["connection", "request"]] = Field(default_factory=dict)
    # The mesh route a routed service starts the run with (subset → weight 0-100), as its operators left it: the
    # agent's rollback_route has no history to undo before the run's own changes.
    routes: dict[str, dict[str, int]] = Field(default_factory=dict)
    # A Redis store's memory limit and eviction policy (e.g. an evicting carts-cache): how it is deployed, so it
    # is set after the reset (which puts the manifest's back) and a resize_cache has no history to undo.
    caches: dict[str, CacheSetting] = Field(default_factory=dict)


class GroundTruth(Strict):
    root_cause: list[str] = Field(min_length=1)  # components; any of them at rank 1 counts as correct
    category: str
    propagation: list[str] = Field(default_factory=list)  # root cause first, the journey's entry last


class Action(Strict):
    """A remediation step, written as the agent tool call that performs it."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    wait_s: float = Field(0.0, ge=0, le=600)  # settle time after this action (e.g. a restart)


class Variant(Strict):
    id: str
    title: str
    cause: str  # the seed's root-cause line this variant realises, in our words
    setup: Setup = Field(default_factory=Setup)
    load: Load | None = None  # overrides the scenario's load
    surge: Load | None = None  # traffic switched to at fault onset (a demand spike is the "fault")
    faults: list[dict[str, Any]] = Field(default_factory=list)
    ground_truth: GroundTruth | None = None
    key_metrics: list[str] = Field(default_factory=list)
    validation: list[str] = Field(default_factory=list)  # PromQL the seed would run
    remediation: list[Action] = Field(default_factory=list)
    symptom: Symptom | None = None  # overrides the scenario's symptom

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID.match(v):
            raise ValueError(f"variant id {v!r} must be lower-case letters, digits and '-'")
        return v

    @model_validator(mode="before")
    @classmethod
    def _no_runbook(cls, data: Any) -> Any:
        if isinstance(data, dict) and "runbook" in data:
            raise ValueError("a variant has no runbook: runbooks are per alert (sockdrill/scenarios/runbooks/), "
                             "since one written for the variant would hand the agent its answer")
        return data


class Scenario(Strict):
    id: str
    version: int = Field(1, ge=1)
    title: str
    seed: int | None = Field(None, ge=1, le=10)
    journey: str
    impact: str
    slo: list[Objective] = Field(min_length=1)
    symptom: Symptom | None = None
    load: Load = Field(default_factory=Load)
    setup: Setup = Field(default_factory=Setup)  # under every variant's own (setup_for)
    control: bool = False  # a fault-free run: measures false detections
    # The run's scripted world, the same for every variant (scripted.py): operator actions on a schedule and
    # client-side probes whose readings are SLI samples of their own journeys.
    actions: list[ScheduledAction] = Field(default_factory=list)
    probes: list[ScheduledProbe] = Field(default_factory=list)
    variants: list[Variant] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID.match(v):
            raise ValueError(f"scenario id {v!r} must be lower-case letters, digits and '-'")
        return v

    @field_validator("slo")
    @classmethod
    def _below(cls, v: list[Objective]) -> list[Objective]:
        for o in v:
            if o.below is None:
                raise ValueError(f"an SLO needs 'below', got {o.text()}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        seen: set[str] = set()
        for i, var in enumerate(self.variants):
            if var.id in seen:
                raise ValueError(f"variants[{i}].id: duplicate variant id {var.id!r}")
            seen.add(var.id)
            if not self.control:
                if not var.faults and var.surge is None:
                    raise ValueError(f"variants[{i}].faults: a variant needs at least one fault or a surge")
                if var.ground_truth is None:
                    raise ValueError(f"variants[{i}].ground_truth: required (root_cause, category)")
                if (var.symptom or self.symptom) is None:
                    raise ValueError(f"variants[{i}].symptom: neither the variant nor the scenario has one")
                if not var.remediation:
                    raise ValueError(f"variants[{i}].remediation: the actions that fix it are required")
            elif var.faults or var.surge:
                raise ValueError(f"variants[{i}].faults: a control scenario has no faults")
        return self

    def variant(self, vid: str) -> Variant:
        from sockdrill.errors import ScenarioError, did_you_mean

        for v in self.variants:
            if v.id == vid:
                return v
        raise ScenarioError(f"scenario '{self.id}' has no variant '{vid}'"
                            + did_you_mean(vid, [v.id for v in self.variants]))

    def load_for(self, var: Variant) -> Load:
        return var.load or self.load

    def setup_for(self, var: Variant) -> Setup:
        """The scenario's set-up with the variant's on top (its replicas, knobs, limits, balancing, routes and caches
        win by name; data sizes are the larger of the two)."""
        base, own = self.setup, var.setup
        knobs = {k: dict(v) for k, v in base.knobs.items()}
        for name, values in own.knobs.items():
            knobs[name] = {**knobs.get(name, {}), **values}
        return Setup(users=max(base.users, own.users), products=max(base.products, own.products),
                     replicas={**base.replicas, **own.replicas}, knobs=knobs, limits={**base.limits, **own.limits},
                     balancing={**base.balancing, **own.balancing}, routes={**base.routes, **own.routes},
                     caches={**base.caches, **own.caches})

    def symptom_for(self, var: Variant) -> Symptom | None:
        return var.symptom or self.symptom
