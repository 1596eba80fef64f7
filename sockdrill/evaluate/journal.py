"""The run journal: everything about one run that scoring needs, as one JSON document.

A journal is complete enough to re-score a run later without the system: who ran what (scenario,
variant, agent, seed, profile), the timeline (markers from the runner and the chaos audit, every
agent action, the submission), the client-side SLI samples per journey, the SLOs, the ground truth,
the topology (to measure how far a wrong answer was), the data-integrity results and token counts.

Times are Unix seconds (floats). Timeline markers, in the order a run produces them::

    run_start → shop_ready → reset → warmup_start → settled → slo_verified → fault_onset
      → symptom_verified → agent_start → action* → submit → mitigation_done → fault_revert → end

(``recovery_verified`` lands where the runner saw the SLO restored; ``fault_expired`` only if a fault
ended by itself before the runner reverted it, from the chaos audit: no recovery after it counts.)
A control run (no fault) has no fault_onset, symptom_verified or fault_revert and no ground truth.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sockdrill.errors import OracleError, did_you_mean
from sockdrill.slo.sli import SliSample
from sockdrill.slo.slo import SLO, get_profile

JOURNAL_VERSION = 1

MarkerKind = Literal["run_start", "shop_ready", "reset", "warmup_start", "settled", "slo_verified", "fault_onset",
                     "symptom_verified", "agent_start", "mitigation_done", "fault_expired", "fault_revert",
                     "recovery_verified", "operator_action", "end"]
MARKER_KINDS: tuple[str, ...] = get_args(MarkerKind)

# Tool names that only read (used when an action does not say whether it changed anything).
READ_ONLY_PREFIXES = ("get", "list", "query", "describe", "read", "search", "show", "topology", "log", "promql",
                      "edges", "pods", "categories", "queue_status", "cache_stats", "db_sessions",
                      "trace", "metrics", "traces", "alerts", "runbook", "slo_status", "status")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Marker(_Model):
    """A point on the timeline set by the runner (``fault_onset`` comes from the chaos audit)."""

    kind: MarkerKind
    time: float
    detail: dict[str, Any] = Field(default_factory=dict)


class ActionEvent(_Model):
    """One agent tool call, read or write, with what it returned."""

    kind: Literal["action"] = "action"
    time: float
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    ok: bool = True
    mutating: bool | None = None  # None: guessed from the tool name

    @property
    def changes_system(self) -> bool:
        if self.mutating is not None:
            return self.mutating
        return not self.tool.lower().startswith(READ_ONLY_PREFIXES)


class SubmitEvent(_Model):
    """The agent's answer: did it see an incident, where, what kind, in its own words."""

    kind: Literal["submit"] = "submit"
    time: float
    detected: bool
    ranked: list[str] = Field(default_factory=list)
    category: str | None = None
    summary: str = ""


Event = Annotated[Marker | ActionEvent | SubmitEvent, Field(discriminator="kind")]


class GroundTruth(_Model):
    root_cause_components: list[str] = Field(default_factory=list)
    category: str | None = None
    propagation_path: list[str] = Field(default_factory=list)

    @property
    def implicated(self) -> set[str]:
        """Components an agent may legitimately touch: the root causes and the propagation path."""
        return set(self.root_cause_components) | set(self.propagation_path)


class Topology(_Model):
    """Deployments and call edges (caller → callee); distances ignore direction."""

    deployments: list[str] = Field(default_factory=list)
    edges: list[tuple[str, str]] = Field(default_factory=list)

    @classmethod
    def from_manifest(cls) -> Topology:
        """The shop's own topology (``sockdrill.shop.manifest``)."""
        from sockdrill.shop.manifest import shop_deployments

        specs = shop_deployments()
        return cls(deployments=[s.name for s in specs], edges=[(s.name, c) for s in specs for c in s.calls])

    def resolve(self, name: str) -> str | None:
        """A deployment for a name an agent wrote: exact, case/underscore-insensitive, or a pod name.

        Pods are ``<deployment>-<n>``; the longest deployment that prefixes the name wins, so
        ``user-db-0`` is ``user-db`` and ``user-3`` is ``user``.
        """
        key = name.strip().lower().replace("_", "-")
        if key in self.deployments:
            return key
        matches = [d for d in self.deployments if key.startswith(d + "-")]
        return max(matches, key=len) if matches else None

    def distance(self, a: str, b: str) -> int | None:
        """Hops between two deployments in the undirected call graph; None if unknown or unreachable."""
        ra, rb = self.resolve(a), self.resolve(b)
        if ra is None or rb is None:
            return None
        if ra == rb:
            return 0
        adjacent: dict[str, set[str]] = {d: set() for d in self.deployments}
        for src, dst in self.edges:
            adjacent.setdefault(src, set()).add(dst)
            adjacent.setdefault(dst, set()).add(src)
        seen, queue = {ra}, deque([(ra, 0)])
        while queue:
            node, d = queue.popleft()
            for nxt in adjacent.get(node, ()):
                if nxt == rb:
                    return d + 1
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append((nxt, d + 1))
        return None


class IntegrityCheck(_Model):
    """One data-integrity check; ``ok`` None means not applicable (e.g. no payment ledger yet)."""

    name: str
    ok: bool | None
    detail: str = ""
    violations: list[dict[str, Any]] = Field(default_factory=list)


class Tokens(_Model):
    input: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output


class Journal(_Model):
    version: int = JOURNAL_VERSION
    scenario: str
    variant: str = ""
    agent: str
    seed: int = 0
    profile: str = "fast"
    control: bool = False
    mode: Literal["investigation", "detection"] = "investigation"  # investigation: told the user impact
    privileged: bool = False  # the agent was handed the ground truth (only the built-in oracle may be)
    slos: list[SLO] = Field(default_factory=list)          # the scenario's journey SLOs
    guard_slos: list[SLO] = Field(default_factory=list)    # other journeys' SLOs (collateral damage)
    recovery_window_s: float | None = None                  # None: the profile's
    events: list[Event] = Field(default_factory=list)
    samples: dict[str, list[SliSample]] = Field(default_factory=dict)
    load_failures: int = 0
    ground_truth: GroundTruth | None = None
    topology: Topology = Field(default_factory=Topology)
    integrity: list[IntegrityCheck] = Field(default_factory=list)
    tokens: Tokens | None = None
    # The alerts Alertmanager delivered to the recorder from the reset on (None: the shop ran no Alertmanager).
    alertmanager: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    # ---- building ---------------------------------------------------------------------------------
    def mark(self, kind: str, time: float, **detail: Any) -> Marker:
        if kind not in MARKER_KINDS:
            raise OracleError(f"unknown journal marker {kind!r}{did_you_mean(kind, MARKER_KINDS)}")
        marker = Marker(kind=kind, time=time, detail=detail)  # type: ignore[arg-type]
        self.events.append(marker)
        return marker

    def action(self, time: float, tool: str, args: dict[str, Any] | None = None, result: Any = None,
               ok: bool = True, mutating: bool | None = None) -> ActionEvent:
        event = ActionEvent(time=time, tool=tool, args=args or {}, result=result, ok=ok, mutating=mutating)
        self.events.append(event)
        return event

    def submit(self, time: float, detected: bool, ranked: list[str] | None = None, category: str | None = None,
               summary: str = "") -> SubmitEvent:
        event = SubmitEvent(time=time, detected=detected, ranked=ranked or [], category=category, summary=summary)
        self.events.append(event)
        return event

    def add_samples(self, samples: list[SliSample]) -> None:
        for s in samples:
            self.samples.setdefault(s.journey, []).append(s)

    # ---- reading ----------------------------------------------------------------------------------
    def timeline(self) -> list[Marker | ActionEvent | SubmitEvent]:
        return sorted(self.events, key=lambda e: e.time)

    def first(self, kind: str, after: float | None = None) -> float | None:
        """Time of the first marker of a kind (at or after ``after``), or None."""
        times = [e.time for e in self.events if e.kind == kind and (after is None or e.time >= after)]
        return min(times) if times else None

    def has(self, kind: str) -> bool:
        return any(e.kind == kind for e in self.events)

    @property
    def actions(self) -> list[ActionEvent]:
        return sorted((e for e in self.events if isinstance(e, ActionEvent)), key=lambda e: e.time)

    @property
    def submission(self) -> SubmitEvent | None:
        """The first submit (a submit ends the agent's turn; later ones are ignored)."""
        subs = sorted((e for e in self.events if isinstance(e, SubmitEvent)), key=lambda e: e.time)
        return subs[0] if subs else None

    @property
    def onset(self) -> float | None:
        return None if self.control else self.first("fault_onset")

    @property
    def end_time(self) -> float | None:
        """The ``end`` marker, else the last thing recorded."""
        end = self.first("end")
        if end is not None:
            return end
        times = [e.time for e in self.events] + [s.end for rows in self.samples.values() for s in rows]
        return max(times) if times else None

    @property
    def recovery_window(self) -> float:
        if self.recovery_window_s is not None:
            return self.recovery_window_s
        return get_profile(self.profile).recovery_window_s

    def all_samples(self) -> list[SliSample]:
        return sorted((s for rows in self.samples.values() for s in rows), key=lambda s: (s.time, s.journey))

    # ---- files ------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "journal") -> Journal:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise OracleError(f"{source}: not JSON: {exc}") from None
        if isinstance(data, dict) and data.get("version", JOURNAL_VERSION) != JOURNAL_VERSION:
            raise OracleError(f"{source}: journal version {data.get('version')!r} is not {JOURNAL_VERSION}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise OracleError(f"{source}: {where}: {first['msg']} ({exc.error_count()} error(s))") from None
        except OracleError as exc:  # raised by SLO / SliSample checks, which name the bad object
            raise OracleError(f"{source}: {exc}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)  # never leave half a journal behind
        return path

    @classmethod
    def load(cls, path: str | Path) -> Journal:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise OracleError(f"cannot read journal {path}: {exc.strerror}") from None
        return cls.from_json(text, source=str(path))


__all__ = ["MARKER_KINDS", "ActionEvent", "Event", "GroundTruth", "IntegrityCheck", "Journal", "Marker",
           "SubmitEvent", "Tokens", "Topology"]
