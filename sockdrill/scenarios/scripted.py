"""A run's scripted world: operator actions the runner performs on a schedule (staff changing a product in the
admin panel) and client-side probes it samples every interval (does a shopper see that change yet?).

A scenario file declares them at its top level, so every variant and the scenario's control run the same
script (the script must not tell the variant)::

    actions:
      - {id: product-change, kind: admin-update, start: load, offset_s: 1, every_s: {fast: 3, standard: 20},
         args: {product: 0000-probe-1, field: description, template: "Probe sock, revision {n}"}}
    probes:
      - {id: freshness, kind: catalogue-freshness, journey: freshness, interval_s: 1,
         args: {product: 0000-probe-1, field: description}}

A probe's readings are SLI samples of its own journey, shaped like the load generator's per-second records,
so SLOs, symptoms, recovery, burn-rate alerts and the journal treat them as any journey's; they are also
pushed to the shop's recorder (the same metric names as the load's), where the agent's tools read them.
Operator actions are journaled as ``operator_action`` markers, never as the agent's actions.

Kinds are registered with ``@action("…")`` and ``@probe("…")``; each has a pydantic ``Params`` that the
scenario loader checks, so a typo in a scenario file is an error at load time, not in the middle of a run.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sockdrill.errors import ScenarioError
from sockdrill.load.sli import (
    JOURNEY_ERROR_RATIO,
    JOURNEY_FAILURES,
    JOURNEY_LATENCY,
    JOURNEY_REQUESTS,
    JOURNEY_RPS,
    QUANTILES,
    Series,
)

Phase = Literal["load", "onset", "agent", "handback"]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- what the actions and probes share -----------------------------------------------------------------

@dataclass
class Expectation:
    value: Any
    at: float | None  # when the shop acknowledged it; None while the change is in flight


class Expectations:
    """What the operator changed, by key (``product.field``): the values in order, each with the time the
    shop acknowledged it. Probes judge a reading against the newest one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, list[Expectation]] = {}

    def begin(self, key: str, value: Any) -> Expectation:
        exp = Expectation(value, None)
        with self._lock:
            self._by_key.setdefault(key, []).append(exp)
        return exp

    def commit(self, exp: Expectation, at: float) -> None:
        with self._lock:
            exp.at = at

    def abandon(self, key: str, exp: Expectation) -> None:
        with self._lock:
            items = self._by_key.get(key, [])
            if exp in items:
                items.remove(exp)

    def judge(self, key: str, reading: Any, now: float) -> float:
        """How long ``reading`` has been out of date at ``now`` (0: it is the newest value, or one in flight,
        or nothing was changed yet): since the change that replaced it, however many came after (a copy frozen
        an hour ago is an hour stale, even if the value changes every few seconds); a value never set, since the
        newest change."""
        with self._lock:
            items = list(self._by_key.get(key, []))
        done = [e for e in items if e.at is not None]
        if not done or any(e.value == reading for e in items if e.at is None) or done[-1].value == reading:
            return 0.0
        shown = max((i for i, e in enumerate(done) if e.value == reading), default=None)
        replaced = done[shown + 1] if shown is not None else done[-1]
        return max(0.0, now - float(replaced.at))  # type: ignore[arg-type]


@dataclass
class ScriptContext:
    front_end_url: str
    record: dict[str, Any]         # the shop's runtime record (addresses, the staff login)
    profile: str
    propagation_budget_s: float    # a change must be visible everywhere within this
    expectations: Expectations = field(default_factory=Expectations)


def _session() -> Any:
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = "sockdrill-operator"
    return s


# ---- operator actions ----------------------------------------------------------------------------------

ACTIONS: dict[str, type[OperatorActionKind]] = {}


def action(kind: str) -> Callable[[type[OperatorActionKind]], type[OperatorActionKind]]:
    def register(cls: type[OperatorActionKind]) -> type[OperatorActionKind]:
        ACTIONS[kind] = cls
        cls.kind = kind
        return cls
    return register


class OperatorActionKind:
    kind: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def __init__(self, ctx: ScriptContext, params: Any) -> None:
        self.ctx, self.params = ctx, params

    def cleanup(self) -> None:
        """After the run: undo what ``prepare`` made (best effort), so a reused shop is as the run found it."""

    def prepare(self) -> None:
        """Before the first run (log in, create what the action changes). An error makes the run invalid."""

    def run(self, n: int) -> dict[str, Any]:
        """The n-th performance (1, 2, …): ``{"ok": bool, "status": int, …}``."""
        raise NotImplementedError


class AdminUpdateParams(Params):
    product: str = Field(min_length=1, max_length=40)
    field: Literal["name", "description", "price", "count"]
    template: str | None = Field(None, max_length=200)  # name/description: the n-th value ("{n}" = n)
    start: float | None = Field(None, ge=0)              # price/count: the n-th value is start + step * n
    step: float | None = Field(None, gt=0)
    create: dict[str, Any] | None = None                 # the product as created when the shop lacks it

    @model_validator(mode="after")
    def _values(self) -> AdminUpdateParams:
        if self.field in ("name", "description"):
            if not self.template or "{n}" not in self.template:
                raise ValueError(f"a {self.field} update needs a 'template' holding {{n}}, so each value is new")
        elif self.start is None or self.step is None:
            raise ValueError(f"a {self.field} update needs 'start' and 'step'")
        return self


@action("admin-update")
class AdminUpdate(OperatorActionKind):
    """Staff change one product in the admin panel, as the seed's scenario 4 does: log in through the
    front-end's ``/admin/login`` with the shop's staff password, ``PATCH /admin/products/{id}``."""

    Params = AdminUpdateParams

    def __init__(self, ctx: ScriptContext, params: AdminUpdateParams) -> None:
        super().__init__(ctx, params)
        self.http = _session()
        # Values new to this run, so a value left by an earlier run on a reused shop never reads as fresh.
        self.base = int(time.time())

    def value(self, n: int) -> Any:
        p = self.params
        if p.template is not None and p.field in ("name", "description"):
            return p.template.replace("{n}", f"{self.base}.{n}")
        value = float(p.start or 0) + float(p.step or 0) * n
        return int(value) if p.field == "count" else round(value, 2)

    def _login(self) -> None:
        staff = self.ctx.record.get("staff") or {}
        r = self.http.post(f"{self.ctx.front_end_url}/admin/login", timeout=10,
                           json={"username": staff.get("username", "admin"), "password": staff.get("password", "")})
        if r.status_code != 200:
            raise ScenarioError(f"staff login to the admin panel failed: {r.status_code} {r.text[:200]}")

    def prepare(self) -> None:
        self._login()
        p = self.params
        got = self.http.get(f"{self.ctx.front_end_url}/catalogue/{p.product}", timeout=10)
        if got.status_code == 200 and got.json().get("id") == p.product:
            return
        if p.create is None:
            raise ScenarioError(f"product {p.product!r} is not in the catalogue and the action has no 'create'")
        made = self.http.post(f"{self.ctx.front_end_url}/admin/products", json={"id": p.product, **p.create},
                              timeout=10)
        if made.status_code not in (201, 409):
            raise ScenarioError(f"creating product {p.product!r} failed: {made.status_code} {made.text[:200]}")
        self.created = made.status_code == 201

    def cleanup(self) -> None:
        """The product this run created is deleted again: other runs and tests on a reused shop see the
        catalogue they expect."""
        if not getattr(self, "created", False):
            return
        with contextlib.suppress(Exception):
            self._login()
            self.http.delete(f"{self.ctx.front_end_url}/admin/products/{self.params.product}", timeout=10)

    def run(self, n: int) -> dict[str, Any]:
        p = self.params
        value = self.value(n)
        key = f"{p.product}.{p.field}"
        exp = self.ctx.expectations.begin(key, value)
        try:
            r = self.http.patch(f"{self.ctx.front_end_url}/admin/products/{p.product}", json={p.field: value},
                                timeout=10)
            if r.status_code == 401:  # the staff session expired: log in again, once
                self._login()
                r = self.http.patch(f"{self.ctx.front_end_url}/admin/products/{p.product}",
                                    json={p.field: value}, timeout=10)
        except Exception as exc:
            self.ctx.expectations.abandon(key, exp)
            return {"ok": False, "status": None, "error": f"{type(exc).__name__}: {exc}"}
        if r.status_code >= 300:
            self.ctx.expectations.abandon(key, exp)
            return {"ok": False, "status": r.status_code, "error": r.text[:200]}
        self.ctx.expectations.commit(exp, time.time())
        return {"ok": True, "status": r.status_code, "set": {p.field: value}}


# ---- probes --------------------------------------------------------------------------------------------

PROBES: dict[str, type[ProbeKind]] = {}


def probe(kind: str) -> Callable[[type[ProbeKind]], type[ProbeKind]]:
    def register(cls: type[ProbeKind]) -> type[ProbeKind]:
        PROBES[kind] = cls
        cls.kind = kind
        return cls
    return register


@dataclass
class Reading:
    ok: bool
    value_s: float        # what the journey's "latency" is for this probe (here: how stale the reading was)
    detail: str = ""


class ProbeKind:
    kind: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def __init__(self, ctx: ScriptContext, params: Any) -> None:
        self.ctx, self.params = ctx, params

    def read(self, now: float) -> list[Reading]:
        raise NotImplementedError


class FreshnessParams(Params):
    product: str = Field(min_length=1, max_length=40)
    field: Literal["name", "description", "price", "count"]
    via: list[str] = Field(default_factory=lambda: ["front-end"], min_length=1)  # entry deployments to read through
    # A listing that shows the product too (e.g. the home page's /catalogue?size=5&page=1): read as well, since
    # a cache may keep a listing longer than the product's own page.
    list_path: str | None = Field(None, pattern=r"^/catalogue(\?[A-Za-z0-9=&_.-]*)?$")


@probe("catalogue-freshness")
class CatalogueFreshness(ProbeKind):
    """Reads the watched product as an anonymous shopper, through each entry, and judges each reading against
    the operator's newest change of it: a reading is a failure when it has been out of date for longer than
    the profile's propagation budget; the journey's latency is how long it has been out of date (0 if
    fresh). An entry that does not answer is a failure too."""

    Params = FreshnessParams

    def __init__(self, ctx: ScriptContext, params: FreshnessParams) -> None:
        super().__init__(ctx, params)
        self.http = _session()  # one anonymous shopper, who keeps the session cookie the shop gives it

    def _base(self, entry: str) -> str:
        base = self.ctx.front_end_url if entry == "front-end" else self.ctx.record["addresses"].get(entry)
        if not base:
            raise ScenarioError(f"probe entry '{entry}' is not a deployment of this shop")
        return str(base).rstrip("/")

    def _value(self, entry: str, page: str) -> Any:
        """The watched field as one page of one entry shows it; raises with a reason a shopper would give."""
        p = self.params
        path = f"/catalogue/{p.product}" if page == "item" else str(p.list_path)
        r = self.http.get(self._base(entry) + path, timeout=2.0)
        if r.status_code != 200:
            raise ValueError(f"{r.status_code}")
        body = r.json()
        if page == "item":
            return body.get(p.field)
        found = [i for i in body if isinstance(i, dict) and i.get("id") == p.product] if isinstance(body, list) else []
        if not found:
            raise ValueError("the product is not on the listing")
        return found[0].get(p.field)

    def read(self, now: float) -> list[Reading]:
        p = self.params
        out = []
        pages = ["item", "list"] if p.list_path else ["item"]
        for entry in p.via:
            for page in pages:
                try:
                    value = self._value(entry, page)
                except ScenarioError:
                    raise
                except Exception as exc:
                    out.append(Reading(False, 0.0, f"{entry} {page}: {type(exc).__name__}: {exc}"[:200]))
                    continue
                stale = self.ctx.expectations.judge(f"{p.product}.{p.field}", value, time.time())
                out.append(Reading(stale <= self.ctx.propagation_budget_s, stale,
                                   f"{entry} {page}: stale {stale:.1f}s" if stale else ""))
        return out


# ---- the schedule --------------------------------------------------------------------------------------

class ScheduledAction(BaseModel):
    """One operator action in a scenario file (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    kind: str
    start: Phase = "load"
    offset_s: float = Field(0.0, ge=0, le=3600)
    every_s: float | dict[str, float] | None = None  # seconds, or per profile ({fast: 3, standard: 20})
    until: Literal["end", "onset", "handback"] = "end"
    args: dict[str, Any] = Field(default_factory=dict)

    def every(self, profile: str) -> float | None:
        value = self.every_s.get(profile) if isinstance(self.every_s, dict) else self.every_s
        return None if value is None else float(value)


class ScheduledProbe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    kind: str
    journey: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    interval_s: float = Field(1.0, ge=0.2, le=60)
    args: dict[str, Any] = Field(default_factory=dict)


def check_script(actions: list[ScheduledAction], probes: list[ScheduledProbe]) -> list[tuple[tuple[Any, ...], str]]:
    """Problems of a scenario's script, as (field path, message): unknown kinds, bad arguments, bad periods."""
    from sockdrill.errors import did_you_mean

    out: list[tuple[tuple[Any, ...], str]] = []
    kinds: list[tuple[str, list[tuple[str, str, dict[str, Any]]], dict[str, Any]]] = [
        ("actions", [(a.id, a.kind, a.args) for a in actions], dict(ACTIONS)),
        ("probes", [(p.id, p.kind, p.args) for p in probes], dict(PROBES))]
    for key, items, registry in kinds:
        seen: set[str] = set()
        for i, (item_id, kind, args) in enumerate(items):
            if item_id in seen:
                out.append(((key, i, "id"), f"duplicate id {item_id!r}"))
            seen.add(item_id)
            cls = registry.get(kind)
            if cls is None:
                out.append(((key, i, "kind"), f"unknown {key[:-1]} kind '{kind}'" + did_you_mean(kind, registry)))
                continue
            try:
                cls.Params.model_validate(args)
            except ValidationError as exc:
                for err in exc.errors():
                    out.append(((key, i, "args", *err["loc"]), err["msg"].removeprefix("Value error, ")))
    for i, act in enumerate(actions):
        periods = act.every_s.values() if isinstance(act.every_s, dict) else [act.every_s]
        if any(p is not None and not 0.5 <= float(p) <= 3600 for p in periods):
            out.append((("actions", i, "every_s"), "every_s must be between 0.5 and 3600 seconds"))
        if isinstance(act.every_s, dict) and set(act.every_s) - {"fast", "standard"}:
            out.append((("actions", i, "every_s"), "every_s per profile takes 'fast' and 'standard'"))
    return out


class Script:
    """Runs a scenario's actions and probes in threads for the length of a run."""

    def __init__(self, ctx: ScriptContext, actions: list[ScheduledAction], probes: list[ScheduledProbe],
                 probes_path: Path | None = None, recorder: tuple[str, str | None] | None = None) -> None:
        self.ctx = ctx
        self.actions = [(a, ACTIONS[a.kind](ctx, ACTIONS[a.kind].Params.model_validate(a.args))) for a in actions]
        self.probes = [(p, PROBES[p.kind](ctx, PROBES[p.kind].Params.model_validate(p.args))) for p in probes]
        self.probes_path = probes_path
        self.recorder = recorder  # (url, telemetry token): where probe samples are pushed, as Locust's are
        self.phases: dict[str, float] = {}
        self.performed: list[dict[str, Any]] = []  # every action performed: {time, id, kind, n, ok, …}
        self.records: list[dict[str, Any]] = []     # one per probe tick, shaped like the load's records
        self.details: dict[str, list[str]] = {}     # probe id → the last failing readings' details
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __bool__(self) -> bool:
        return bool(self.actions or self.probes)

    def start(self, now: float) -> None:
        """Prepare every action (a failure here is the run's error), then start the clocks: phase 'load'."""
        for spec, act in self.actions:
            try:
                act.prepare()
            except ScenarioError as exc:
                raise ScenarioError(f"scripted action {spec.id} could not start: {exc}") from None
        self.phases["load"] = now
        for spec, act in self.actions:
            self._spawn(f"action-{spec.id}", self._act_loop, spec, act)
        for pspec, prb in self.probes:
            self._spawn(f"probe-{pspec.id}", self._probe_loop, pspec, prb)

    def mark(self, phase: str, at: float) -> None:
        self.phases.setdefault(phase, at)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)
        for _spec, act in self.actions:
            act.cleanup()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=f"sockdrill-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _wait(self, seconds: float) -> bool:
        """Sleep, or return True at once when the script is stopped."""
        return self._stop.wait(max(0.0, seconds))

    def _act_loop(self, spec: ScheduledAction, act: OperatorActionKind) -> None:
        while spec.start not in self.phases:  # the phase it counts from has not come (yet)
            if self._wait(0.2):
                return
        at = self.phases[spec.start] + spec.offset_s
        every = spec.every(self.ctx.profile)
        n = 0
        while not self._wait(at - time.time()):
            if spec.until != "end" and spec.until in self.phases:
                return
            n += 1
            started = time.time()
            try:
                out = act.run(n)
            except Exception as exc:  # a broken action is reported in the run, never a crash of the runner
                out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            with self._lock:
                self.performed.append({"time": started, "id": spec.id, "kind": spec.kind, "n": n, **out})
            if every is None:
                return
            at += every
            if at < time.time():  # an action slower than its period: skip the missed turns
                at = time.time()

    def _probe_loop(self, spec: ScheduledProbe, prb: ProbeKind) -> None:
        series = Series()
        at = time.time()
        while not self._wait(at + spec.interval_s - time.time()):
            now = time.time()
            try:
                readings = prb.read(now)
            except Exception as exc:  # a probe that cannot read is a failed reading, counted
                readings = [Reading(False, 0.0, f"{type(exc).__name__}: {exc}")]
            for r in readings:
                series.add(r.value_s, r.ok)
            end = time.time()
            window = series.take_window(max(end - at, 1e-3))
            record = {"time": round(end, 3), "probe": spec.id, "journeys": {spec.journey: window}}
            failing = [r.detail for r in readings if not r.ok]
            with self._lock:
                self.records.append(record)
                if failing:
                    self.details[spec.id] = failing[-5:]
            self._write(record)
            self._push(record, spec.journey)
            at = end

    def _write(self, record: dict[str, Any]) -> None:
        if self.probes_path is None:
            return
        try:
            with open(self.probes_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError:
            pass  # the file is a copy for reading later: the samples are kept in memory

    def _push(self, record: dict[str, Any], journey: str) -> None:
        if self.recorder is None:
            return
        import urllib.request

        url, token = self.recorder
        w, t = record["journeys"][journey], record["time"]
        labels = {"journey": journey}
        samples = [{"name": JOURNEY_REQUESTS, "labels": labels, "value": float(w["total"]), "time": t},
                   {"name": JOURNEY_FAILURES, "labels": labels, "value": float(w["failures_total"]), "time": t},
                   {"name": JOURNEY_RPS, "labels": labels, "value": float(w["rps"]), "time": t}]
        if w["count"]:
            samples.append({"name": JOURNEY_ERROR_RATIO, "labels": labels, "value": float(w["error_ratio"]),
                            "time": t})
        for q in QUANTILES:
            v = w.get(f"p{round(q * 100)}")
            if v is not None:
                samples.append({"name": JOURNEY_LATENCY, "labels": {**labels, "quantile": str(q)},
                                "value": float(v), "time": t})
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        req = urllib.request.Request(f"{url.rstrip('/')}/v1/ingest", data=json.dumps({"samples": samples}).encode(),
                                     method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=2.0) as resp:
                resp.read()
        except Exception:
            pass  # best effort, as the load's pushes: the run's own samples are kept here

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.records)

    def summary(self, budget_s: float) -> dict[str, Any]:
        """What result.json says of the script: actions performed and failed; per probe, readings, failures
        and the worst staleness, by phase."""
        with self._lock:
            performed, records = list(self.performed), list(self.records)
        marks = sorted(self.phases.items(), key=lambda kv: kv[1])

        def phase_of(t: float) -> str:
            name = "load"
            for phase, at in marks:
                if t >= at:
                    name = phase
            return name

        probes: dict[str, Any] = {}
        for spec, _ in self.probes:
            mine = [r for r in records if r.get("probe") == spec.id]
            by_phase: dict[str, dict[str, Any]] = {}
            for r in mine:
                w = r["journeys"][spec.journey]
                cell = by_phase.setdefault(phase_of(r["time"]), {"readings": 0, "failures": 0, "worst_s": 0.0})
                cell["readings"] += w["count"]
                cell["failures"] += w["failures"]
                cell["worst_s"] = max(cell["worst_s"], float(w.get("p99") or 0.0))
            probes[spec.id] = {"journey": spec.journey, "budget_s": budget_s,
                               "readings": sum(c["readings"] for c in by_phase.values()),
                               "failures": sum(c["failures"] for c in by_phase.values()),
                               "by_phase": by_phase, "last_failures": self.details.get(spec.id, [])}
        return {"operator_actions": {"performed": len(performed), "failed": sum(not p.get("ok") for p in performed)},
                "probes": probes}

    def performed_actions(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.performed)
