"""Running one scenario variant end to end and scoring it.

The phases (each marked in the run journal): reset or bring up the shop → set up data, replicas,
limits and knobs → start the load → warm up → verify the SLO holds (a) → inject the faults at a seeded
moment → verify the symptom appears (b; otherwise the run is invalid and not scored) → give the agent
the incident and its tools while the load keeps running → watch for recovery over a window → revert
every fault → run the data-integrity checks → stop the load → score → write the run directory
(result.json, journal.json, report.md, report.html, load.jsonl, agent-audit.jsonl).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from sockdrill.cluster import client as cluster_client
from sockdrill.cluster.client import RuntimeClient
from sockdrill.cluster.ports import free_port, port_in_use
from sockdrill.errors import ScenarioError, SockdrillError
from sockdrill.scenarios.reset import MIN_USERS as BASE_USERS  # generated users every run has at least
from sockdrill.scenarios.schema import Load, Objective, Scenario, Variant
from sockdrill.scenarios.windows import WINDOWS, Windows
from sockdrill.slo.sli import SliSample
from sockdrill.slo.slo import SLO, evaluate

RESERVED_USERS = 10  # the last generated users are the runner's own shoppers (sentinels), never the load's


def samples_from_records(records: list[dict[str, Any]]) -> list[SliSample]:
    """Load-generator per-second records → SLI samples (an interval ends at the record's time)."""
    out = []
    for rec in records:
        t = float(rec["time"]) - 1.0
        for journey, w in rec.get("journeys", {}).items():
            out.append(SliSample(time=t, journey=journey, requests=int(w.get("count", 0)),
                                 failures=int(w.get("failures", 0)), p50=w.get("p50"), p95=w.get("p95"),
                                 p99=w.get("p99")))
    return out


def to_slo(obj: Objective, objective: float) -> SLO:
    assert obj.below is not None
    return SLO(obj.journey, obj.sli, obj.below, objective=objective)


def symptom_seen(objectives: list[Objective], samples: list[SliSample], start: float, end: float) -> str | None:
    """The first symptom objective met over [start, end), as text, or None."""
    for obj in objectives:
        assert obj.above is not None
        rows = [s for s in samples if s.journey == obj.journey and start <= s.time < end]
        if not rows:
            continue
        requests = sum(s.requests for s in rows)
        if obj.sli == "error_rate":
            value = sum(s.failures for s in rows) / requests if requests else None
        elif obj.sli == "throughput":
            value = requests / max(1.0, end - start)
        else:
            key = obj.sli.split("_")[1]
            vals = [getattr(s, key) for s in rows if getattr(s, key) is not None]
            value = max(vals) if vals else None
            # A journey so slow that nothing completes in the window is the symptom at its worst.
            if value is None and requests == 0 and len(rows) >= 2:
                value = float("inf")
        if value is not None and value > obj.above:
            seen = "none completed" if value == float("inf") else f"observed {value:.3g}"
            return f"{obj.text()} ({seen})"
    return None


@dataclass
class RunOptions:
    agent: str = "noop"
    profile: str = "fast"
    seed: int = 1
    out: Path = Path("runs")
    data_dir: Path | None = None  # an already running shop to reuse (reset first); None: a fresh one
    mode: str = "investigation"   # or "detection": the agent is told nothing
    agent_options: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] | None = None
    agent_budget_s: float | None = None  # the profile's on-call time unless set (a shorter drill, a test)


# The phases a run in progress shows in the control room, by the start of what ``say`` reports.
LIVE_FILE = "live.json"
IN_PROGRESS_PREFIX = ".run-"  # a run's private folder until it is done and gets its descriptive name
LIVE_PHASES = (("bringing", "starting the shop"), ("shop up", "resetting the shop"), ("data loaded", "warming up"),
               ("baseline", "baseline"), ("injecting", "incident"), ("symptom seen", "incident"),
               ("agent", "on call"), ("watching", "recovery"), ("checking", "checking data"),
               ("taking", "finishing"), ("scoring", "scoring"))


class Run:
    """One variant, one agent, one seed."""

    def __init__(self, scenario: Scenario, variant: Variant, opts: RunOptions, runbooks: dict[str, str]) -> None:
        from sockdrill.evaluate.journal import GroundTruth, Journal, Topology

        if opts.profile not in WINDOWS:
            from sockdrill.errors import did_you_mean

            raise ScenarioError(f"unknown profile '{opts.profile}'" + did_you_mean(opts.profile, WINDOWS))
        self.scenario, self.variant, self.opts = scenario, variant, opts
        self.win: Windows = WINDOWS[opts.profile]
        if opts.agent_budget_s is not None:
            if not 5 <= opts.agent_budget_s <= 3600:
                raise ScenarioError(f"the agent's budget must be 5-3600 s, got {opts.agent_budget_s:g}")
            self.win = replace(self.win, agent_budget_s=float(opts.agent_budget_s))
        self.rng = random.Random(f"{opts.seed}:{scenario.id}/{variant.id}")
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        # Resolved now: child processes (Locust, the recorder) run in other working directories.
        name = f"{stamp}-{scenario.id}-{variant.id}-{opts.agent.replace(':', '_')}-s{opts.seed}"
        out = Path(opts.out).expanduser().resolve()
        out.mkdir(parents=True, exist_ok=True)
        self.final_dir = out / name
        # While the agent is on call the run lives in a private folder with a name that says nothing (the
        # descriptive name would tell a listing of runs/ the scenario); it gets its name when it is done.
        self.dir = Path(tempfile.mkdtemp(dir=out, prefix=IN_PROGRESS_PREFIX))
        self.dir.chmod(0o700)
        self.runbooks = runbooks
        self.slos = [to_slo(o, self.win.objective) for o in scenario.slo]
        from sockdrill.scenarios.guards import guard_slos, journey_slos

        journeys = list(scenario.load_for(variant).journeys) + (list(variant.surge.journeys) if variant.surge else [])
        self.dashboard_slos = journey_slos(journeys, self.win.objective)  # what the agent is shown
        # A probe's journey (scenario-wide, so no tell of the variant) is shown with the scenario's SLOs on it.
        probe_journeys = {p.journey for p in scenario.probes}
        self.dashboard_slos += [s for s in self.slos if s.journey in probe_journeys]
        gt = variant.ground_truth
        if opts.mode not in ("investigation", "detection"):
            raise ScenarioError(f"unknown mode '{opts.mode}' (investigation or detection)")
        self.journal = Journal(
            scenario=scenario.id, variant=variant.id, agent=opts.agent, seed=opts.seed, profile=opts.profile,
            control=scenario.control, mode=opts.mode,  # type: ignore[arg-type]
            slos=self.slos, guard_slos=guard_slos(self.slos, journeys, self.win.objective),
            recovery_window_s=self.win.recovery_window_s,
            ground_truth=GroundTruth(root_cause_components=gt.root_cause, category=gt.category,
                                     propagation_path=gt.propagation) if gt else None,
            topology=Topology.from_manifest(),
        )
        self.client: RuntimeClient | None = None
        self.own_data_dir: Path | None = None
        self.fault_ids: list[str] = []
        self.load_run: Any = None
        self.surge_run: Any = None
        self.notes: list[str] = []
        self.sentinels: list[dict[str, Any]] = []
        self.users_total = BASE_USERS
        self.t0 = time.time()
        self.scope_start: float | None = None  # the run's own telemetry begins at its reset
        self.published_before: int | None = None  # the shipping queue's counter when the load started
        self.script: Any = None  # the scenario's operator actions and probes (scripted.Script), while running
        self.script_summary: dict[str, Any] | None = None  # what they did, for result.json

    # ---- helpers ----------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """Report a phase as it starts, with the time since the run began."""
        if self.opts.progress:
            self.opts.progress(f"[{time.time() - self.t0:6.1f}s] {text}")
        self.write_live(text)

    def write_live(self, text: str) -> None:
        """What the control room (``sockdrill ui``) may show of a run in progress: the phase by a fixed name,
        the profile and where the shop is. Never the scenario, the variant or the fault."""
        phase = next((name for prefix, name in LIVE_PHASES if text.startswith(prefix)), None)
        if phase is None:
            return
        live = {"phase": phase, "started": self.t0, "profile": self.opts.profile, "updated": time.time(),
                "data_dir": str(self.client.data_dir) if self.client is not None else None}
        tmp = self.dir / ".live.json.tmp"
        try:
            tmp.write_text(json.dumps(live))
            tmp.replace(self.dir / LIVE_FILE)
        except OSError:
            pass  # the control room is a view: a run never fails for it

    def check_load(self) -> None:
        """A load generator that died is a run error showing its log, never a silent SLO failure."""
        for name, run in (("load", self.load_run), ("surge", self.surge_run)):
            if run is None or run.running or getattr(run, "_stopped", False):
                continue
            try:
                lines = run.log_path.read_text(errors="replace").strip().splitlines()
            except OSError:
                lines = []
            tail = " | ".join(ln.strip() for ln in lines[-6:]) or "no output"
            raise ScenarioError(f"the {name} generator (Locust) exited with code {run.proc.returncode} "
                                f"during the run: {tail}")

    def samples(self) -> list[SliSample]:
        recs: list[dict[str, Any]] = []
        for run in (self.load_run, self.surge_run):
            if run is not None:
                recs.extend(run.records())
        if self.script is not None:
            recs.extend(self.script.snapshot())
        return samples_from_records(recs)

    def start_script(self) -> None:
        """The scenario's operator actions and probes, clocked from the load's start (scripted.py)."""
        if not (self.scenario.actions or self.scenario.probes):
            return
        from sockdrill.scenarios.scripted import Script, ScriptContext

        assert self.client is not None
        record = self.client.record
        ctx = ScriptContext(front_end_url=record["front_end_url"], record=record, profile=self.opts.profile,
                            propagation_budget_s=self.win.propagation_budget_s)
        recorder = (record["recorder_url"], record.get("telemetry_token")) if record.get("recorder_url") else None
        self.script = Script(ctx, self.scenario.actions, self.scenario.probes, probes_path=self.dir / "probes.jsonl",
                             recorder=recorder)
        self.script.start(time.time())

    def script_phase(self, phase: str, at: float) -> None:
        if self.script is not None:
            self.script.mark(phase, at)

    def stop_script(self) -> None:
        if self.script is None:
            return
        self.script.stop()
        for done in self.script.performed_actions():
            detail = {("action_kind" if k == "kind" else k): v for k, v in done.items() if k != "time"}
            self.journal.mark("operator_action", done["time"], **detail)
        summary = self.script.summary(self.win.propagation_budget_s)
        self.script_summary = summary
        failed = summary["operator_actions"]["failed"]
        if failed:
            self.notes.append(f"{failed} of {summary['operator_actions']['performed']} scripted operator actions "
                              "failed (see the journal's operator_action markers)")

    def slo_holds(self, start: float, end: float) -> tuple[bool, list[str]]:
        samples = self.samples()
        failing = []
        for slo in self.slos:
            if not evaluate(slo, samples, start, end).holds(min_coverage=0.5):
                failing.append(slo.label)
        return not failing, failing

    # ---- phases ------------------------------------------------------------------------------------
    def bring_up(self) -> None:
        setup = self.scenario.setup_for(self.variant)
        users = max(BASE_USERS, setup.users)
        if self.opts.data_dir is not None:
            self.client = RuntimeClient.connect(self.opts.data_dir)
            return
        from sockdrill.shop.manifest import FRONT_END_PORT, shop_deployments

        self.own_data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-run-"))
        self.own_data_dir.chmod(0o711)
        port = FRONT_END_PORT if not port_in_use(FRONT_END_PORT) else free_port()
        self.say("bringing a fresh shop up")
        self.client, _ = cluster_client.up(
            shop_deployments(front_end_port=port), data_dir=self.own_data_dir, seed=1, timeout=180,
            pod_env={"SOCKDRILL_DATA_USERS": str(users), "SOCKDRILL_SCRAPE_INTERVAL":
                     "1" if self.opts.profile == "fast" else "5"})

    def reset(self) -> None:
        """Put a reused shop back to its defaults: no faults, default replicas, no limits, default knobs."""
        from sockdrill.scenarios.reset import reset_shop

        assert self.client is not None
        done = reset_shop(self.client, self.scenario.setup_for(self.variant))
        self.users_total = int(done.get("users", BASE_USERS))
        from sockdrill.scenarios.alert_rules import install_run_rules
        from sockdrill.slo.alerts import alerting_slo
        from sockdrill.slo.slo import get_profile

        note = install_run_rules(self.client.record, [alerting_slo(s) for s in [*self.slos, *self.dashboard_slos]],
                                 get_profile(self.opts.profile))
        if note:
            self.notes.append(note)
        self.scope_start = time.time()
        self.journal.mark("reset", self.scope_start)

    def start_load(self, load: Load, stats_name: str, seed_offset: int = 0) -> Any:
        from sockdrill.load.runner import start_load

        assert self.client is not None
        record = self.client.record
        load = load.for_profile(self.opts.profile)
        entries = [record["front_end_url"] if e == "front-end" else record["addresses"][e] for e in load.entry_list()]
        return start_load(
            self.client.record["front_end_url"], journeys=dict(load.journeys), users=load.users,
            spawn_rate=load.spawn_rate, duration=3600, shape=load.shape, peak_users=load.peak_users,
            seed=self.opts.seed + seed_offset, data_dir=self.client.data_dir,
            think=cast(tuple[float, float], tuple(load.think_s)), accounts=max(1, self.users_total - RESERVED_USERS),
            stats_path=self.dir / stats_name, timeout=10.0, return_after=self.win.return_after_s,
            entries=entries if load.entry != {"front-end": 1} else None)

    def wait_until(self, seconds: float) -> None:
        """Sleep ``seconds``, checking every half second that the load is still running."""
        end = time.time() + max(0.0, seconds)
        while True:
            self.check_load()
            left = end - time.time()
            if left <= 0:
                return
            time.sleep(min(0.5, left))

    def inject(self) -> float:
        assert self.client is not None
        onset: float | None = None
        for raw in self.variant.faults:
            body = dict(raw)
            # A fault lasts until the runner reverts it after the recovery check: one that expired
            # inside the agent's budget would "recover" with no fix at all.
            body["duration"] = f"{int(self.fault_hold_s())}s"
            out = self.client.post("/v1/chaos/inject", body)
            self.fault_ids.append(out["id"])
            t = float(out.get("onset") or time.time())
            onset = t if onset is None else min(onset, t)
        if self.variant.surge is not None:
            self.surge_run = self.start_load(self.variant.surge, "surge.jsonl", seed_offset=1000)
            started = self.surge_started()
            onset = started if onset is None else min(onset, started)
        return onset if onset is not None else time.time()

    def observation_delay_s(self) -> float:
        """How long after a fix its effect can first show in the SLOs: a returning shopper who left before the
        fix comes back one absence later (return-visit), so the recovery wait is that much longer."""
        return self.win.return_after_s if any(s.journey == "return-visit" for s in self.slos) else 0.0

    def symptom_timeout_s(self) -> float:
        """How long the symptom may take to show: the profile's time, and one absence more where it is seen by
        returning shoppers (a cart lost now is found missing one absence later)."""
        delay = self.win.return_after_s if any(o.journey == "return-visit" for o in self.symptoms()) else 0.0
        return self.win.symptom_timeout_s + delay

    def fault_hold_s(self) -> float:
        """Longer than anything that can follow an injection: two symptom waits and a settle between them,
        the agent's budget and the recovery timeout, with a margin."""
        w = self.win
        return (2 * self.symptom_timeout_s() + w.baseline_s + w.settle_timeout_s + w.agent_budget_s + 5
                + w.recovery_timeout_s + self.observation_delay_s() + 120)

    def mark_expiries(self) -> None:
        """Faults of this run that ended by themselves before the revert (the chaos audit says so) end the
        incident there: no recovery after it is the agent's."""
        from sockdrill.cluster.state import state_dir

        assert self.client is not None
        ids = set(self.fault_ids)
        if not ids:
            return
        try:
            lines = (state_dir(self.client.data_dir) / "chaos-audit.jsonl").read_text().splitlines()
        except OSError:
            return
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "revert" and rec.get("id") in ids and rec.get("reason") == "expiry":
                self.journal.mark("fault_expired", float(rec["time"]), id=rec["id"])
                self.notes.append(f"fault {rec['id']} expired before the runner reverted it")

    def surge_started(self, timeout: float = 30.0) -> float:
        """When the surge's first requests went out: Locust's own start-up (seconds on a busy machine) is
        not part of the symptom's time budget."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check_load()
            for rec in self.surge_run.records() if self.surge_run is not None else []:
                if any(int(w.get("count", 0)) for w in rec.get("journeys", {}).values()):
                    return float(rec["time"]) - 1.0
            time.sleep(0.2)
        raise ScenarioError(f"the surge load sent no request within {timeout:g}s of its start")

    def revert(self) -> None:
        assert self.client is not None
        self.mark_expiries()
        ids, self.fault_ids = self.fault_ids, []
        for fid in ids:
            try:
                self.client.post("/v1/chaos/clear", {"id": fid})
            except SockdrillError as exc:
                self.notes.append(f"revert of {fid}: {exc}")
        if self.surge_run is not None:
            self.surge_run.stop()

    def run_agent(self) -> dict[str, Any]:
        """The agent runs in its own process as its own user (``agents/sandbox.py``); this process keeps
        the tools, answers its calls and audits them."""
        from sockdrill.agents.base import BUILTIN
        from sockdrill.agents.sandbox import ORACLE_REF, AgentProcess
        from sockdrill.agents.tools import ToolContext, Tools
        from sockdrill.cluster.stores import _cache_dir_of
        from sockdrill.scenarios.observe import alerts_provider, slo_status_provider

        assert self.client is not None
        # Only the built-in oracle (the ceiling that proves a fix scores) is handed the ground truth.
        truth = None
        if BUILTIN.get(self.opts.agent, self.opts.agent) == ORACLE_REF:
            gt = self.variant.ground_truth
            truth = {"ground_truth": gt.model_dump() if gt and not self.scenario.control else None,
                     "remediation": [a.model_dump() for a in self.variant.remediation]}
            self.journal.privileged = True
        now = time.time()
        ctx = ToolContext(data_dir=self.client.data_dir, audit_path=self.dir / "agent-audit.jsonl",
                          max_steps=self.win.max_steps, runbooks=self.runbooks,
                          # Every journey's SLOs, as on an SRE's dashboard: which one burns is the finding.
                          slo_status=slo_status_provider(self, self.dashboard_slos),
                          alerts=alerts_provider(self, self.dashboard_slos),
                          scope_start=self.scope_start)
        tools = Tools(ctx)
        tools.deadline = now + self.win.agent_budget_s
        text = "" if self.opts.mode == "detection" else self.scenario.impact
        incident = {"mode": self.opts.mode, "text": text, "started": now, "deadline": now + self.win.agent_budget_s,
                    "budget_steps": self.win.max_steps}
        proc = AgentProcess(self.opts.agent, self.opts.agent_options, incident, tools, self.dir / "agent.log",
                            _cache_dir_of(self.client.data_dir), truth=truth)
        try:
            proc.start()
            proc.serve(self.win.agent_budget_s)
        except SockdrillError as exc:
            proc.stop()
            proc.error = proc.error or str(exc)
        self.notes.extend(proc.notes)
        return {"tools": tools, "error": proc.error}

    def wait_recovery(self, since: float) -> float | None:
        """When every SLO was restored for a whole recovery window (the mitigation oracle's own test,
        ``time_to_restore``), or None by the timeout."""
        from sockdrill.slo.slo import time_to_restore

        deadline = time.time() + self.win.recovery_timeout_s + self.observation_delay_s()
        w = self.win.recovery_window_s
        while time.time() < deadline:
            self.wait_until(1.0)
            now = time.time()
            samples = self.samples()
            restores = [time_to_restore(slo, samples, since=since, until=now, window_s=w) for slo in self.slos]
            if all(r.restored for r in restores):
                return max(r.at for r in restores if r.at is not None)
        return None

    # ---- the whole run -----------------------------------------------------------------------------
    def settle(self) -> tuple[bool, list[str], float]:
        """Wait, within the profile's bound, until the SLO holds over a whole baseline window: a fresh
        or just-reset shop (new limits, replaced pods, cold caches) may need a while. Returns whether it
        held, what failed last, and how long settling took beyond the first window."""
        w = self.win.baseline_s
        b0 = time.time()
        deadline = b0 + w + self.win.settle_timeout_s
        self.wait_until(w)
        while True:
            now = time.time()
            ok, failing = self.slo_holds(now - w, now)
            if ok or now >= deadline:
                return ok, failing, max(0.0, now - b0 - w)
            self.wait_until(1.0)

    def onset_with_symptom(self) -> tuple[float | None, str | None]:
        """Inject the faults and wait for the symptom. A fault whose symptom does not show in time is
        reverted, the shop given time to settle, and injected once more (said in the run's notes);
        returns (onset, symptom) of the attempt that showed it, or (onset, None)."""
        onset: float | None = None
        for attempt in (1, 2):
            self.say("injecting the fault" if attempt == 1 else "injecting the fault again (second attempt)")
            onset = self.inject()
            symptom = self.wait_symptom(onset)
            if symptom is not None:
                return onset, symptom
            if attempt == 2:
                break
            self.notes.append(f"the symptom did not appear within {self.symptom_timeout_s():g}s of the first "
                              "onset; the fault was reverted and injected again")
            self.revert()
            if self.surge_run is not None:
                with contextlib.suppress(SockdrillError):
                    self.surge_run.wait()  # reaped, its temporary folder removed; a new surge comes with the fault
            self.surge_run = None
            ok, _failing, _ = self.settle()
            if not ok:
                break
        return onset, None

    def execute(self) -> dict[str, Any]:
        j = self.journal
        meta: dict[str, Any] = {"run_dir": str(self.dir), "windows": self.win.__dict__}
        invalid_reason = None
        j.mark("run_start", self.t0)
        try:
            self.bring_up()
            j.mark("shop_ready", time.time())
            self.say("shop up; resetting it and loading data")
            self.reset()
            from sockdrill.scenarios.integrity_setup import prepare_sentinels, queue_published

            load = self.scenario.load_for(self.variant)
            self.published_before = queue_published(self.client)  # type: ignore[arg-type]
            self.say(f"data loaded ({self.users_total} shoppers); starting the load and warming up")
            self.load_run = self.start_load(load, "load.jsonl")
            self.start_script()
            start = time.time()
            j.mark("warmup_start", start)
            self.sentinels = prepare_sentinels(self.client, self.users_total)  # type: ignore[arg-type]
            self.wait_until(start + self.win.warmup_s - time.time())
            self.say("baseline: the SLO must hold before the fault")
            ok, failing, settle_s = self.settle()
            meta["settle_s"] = round(settle_s, 1)
            if not ok:
                waited = settle_s + self.win.baseline_s
                invalid_reason = (f"the SLO did not hold before the fault (waited {waited:.0f}s for the shop to "
                                  f"settle): {', '.join(failing)}")
            else:
                j.mark("settled", time.time(), settle_s=round(settle_s, 1))
                j.mark("slo_verified", time.time())
            handed_back: float | None = None
            if invalid_reason is None and not self.scenario.control:
                self.wait_until(self.rng.uniform(*self.win.fault_offset_s))
                onset, symptom = self.onset_with_symptom()
                j.mark("fault_onset", onset or time.time(), faults=len(self.fault_ids))
                self.script_phase("onset", onset or time.time())
                if symptom is None:
                    invalid_reason = (f"the symptom did not appear within {self.symptom_timeout_s():g}s of the "
                                      f"fault, twice: {', '.join(o.text() for o in self.symptoms())}")
                else:
                    self.say(f"symptom seen: {symptom}")
                    j.mark("symptom_verified", time.time(), symptom=symptom)
            if invalid_reason is None:
                self.say(f"agent {self.opts.agent} on call (budget {self.win.agent_budget_s:g}s)")
                a0 = time.time()
                j.mark("agent_start", a0)
                self.script_phase("agent", a0)
                outcome = self.run_agent()
                handed_back = time.time()
                self.script_phase("handback", handed_back)
                tools = outcome["tools"]
                if outcome["error"]:
                    meta["agent_error"] = outcome["error"]
                self._journal_agent(tools)
                self.say("watching for recovery")
                first_change = min((r["time"] for r in tools.actions if r.get("changed")), default=a0)
                restored_at = self.wait_recovery(first_change)
                if restored_at is not None:
                    j.mark("recovery_verified", restored_at)
            if (not self.scenario.control and self.fault_ids) or self.surge_run is not None:
                j.mark("fault_revert", time.time())
            self.revert()
            self.say("checking data integrity")
            from sockdrill.scenarios.integrity_setup import run_integrity

            try:
                j.integrity = run_integrity(self.client, self.sentinels, start,  # type: ignore[arg-type]
                                            self.published_before)
                from sockdrill.load.runner import read_records
                from sockdrill.scenarios.integrity_setup import customers_saw

                j.integrity += customers_saw(read_records(self.dir / "load.jsonl"), start, handed_back)
            except Exception as exc:  # a broken check is reported in the run, never a lost run
                self.notes.append(f"integrity checks failed to run: {type(exc).__name__}: {exc}")
            from sockdrill.telemetry.alertmanager import fetch_notifications

            delivered = fetch_notifications(self.client.record, self.scope_start or start)  # type: ignore[union-attr]
            if delivered and delivered.get("alertmanager"):  # the pages as Alertmanager delivered them
                j.alertmanager = delivered["notifications"]
        except SockdrillError as exc:
            invalid_reason = invalid_reason or f"run error: {exc}"
            self.notes.append(str(exc))
        finally:
            self.revert_quietly()
            self.stop_script()
            # Both loads are waited for: wait() reaps the Locust process and removes its temporary folder
            # (a surge that was only stopped left a /tmp/sockdrill-load-* folder behind every run).
            for name, run in (("load", self.load_run), ("surge", self.surge_run)):
                if run is None:
                    continue
                run.stop()
                try:
                    run.wait()
                except SockdrillError as exc:
                    self.notes.append(f"{name}: {exc}")
            j.add_samples(self.samples())
            j.mark("end", time.time())
            self.save_telemetry()
            if self.own_data_dir is not None:
                self.say("taking the shop down")
                cluster_client.down(self.own_data_dir, purge=True)
                shutil.rmtree(self.own_data_dir, ignore_errors=True)
        meta["invalid_reason"] = invalid_reason
        meta["notes"] = self.notes
        if self.script_summary is not None:
            meta["script"] = self.script_summary
        j.meta = meta
        self.say("scoring")
        return self.finish()

    def save_telemetry(self) -> None:
        """Copy this run's slice of the recorder's store into the run directory (``export`` and ``report``
        then work after the shop is gone)."""
        from sockdrill.telemetry.slice import copy_slice
        from sockdrill.telemetry.store import db_path

        source = (self.client.record.get("run_dir") if self.client is not None else None)
        if not source:
            self.notes.append("no telemetry was recorded (the shop has no flight recorder)")
            return
        try:
            copy_slice(db_path(Path(source)), self.dir, self.t0, time.time())
        except Exception as exc:  # the run is still written without it
            self.notes.append(f"telemetry could not be copied into the run: {type(exc).__name__}: {exc}")

    def revert_quietly(self) -> None:
        try:
            if self.client is not None:
                self.revert()
        except Exception as exc:  # the run must still be written
            self.notes.append(f"revert: {exc}")

    def symptoms(self) -> list[Objective]:
        sym = self.scenario.symptom_for(self.variant)
        return list(sym.any) if sym else []

    def wait_symptom(self, onset: float) -> str | None:
        deadline = onset + self.symptom_timeout_s()
        w = self.win.symptom_window_s
        while time.time() < deadline:
            self.wait_until(1.0)
            now = time.time()
            seen = symptom_seen(self.symptoms(), self.samples(), max(onset, now - w), now)
            if seen:
                return seen
        return None

    def _journal_agent(self, tools: Any) -> None:
        from sockdrill.evaluate.journal import Tokens

        j = self.journal
        for rec in tools.audit_records:
            if rec["tool"] in ("submit", "mitigation_done"):
                continue
            j.action(rec["time"], rec["tool"], rec["args"], rec.get("result") if rec["kind"] == "act" else None,
                     ok=rec["ok"], mutating=rec["kind"] == "act" and bool(rec.get("changed", True)))
        sub = tools.submission
        if sub is not None:
            j.submit(sub.time, sub.detected, sub.root_causes, sub.category, sub.summary)
        if tools.mitigation_done_at is not None:
            j.mark("mitigation_done", tools.mitigation_done_at)
        if tools.tokens_in or tools.tokens_out:
            j.tokens = Tokens(input=tools.tokens_in, output=tools.tokens_out)

    def finish(self) -> dict[str, Any]:
        from sockdrill.evaluate.report import write_report
        from sockdrill.evaluate.score import score

        j = self.journal
        final = self.final_dir
        n = 1
        while final.exists():
            n += 1
            final = self.final_dir.with_name(f"{self.final_dir.name}-{n}")
        j.meta["run_dir"] = str(final)
        (self.dir / LIVE_FILE).unlink(missing_ok=True)
        (self.dir / "journal.json").write_text(j.to_json())
        result = score(j)
        data = json.loads(result.model_dump_json())
        data["invalid_reason"] = j.meta.get("invalid_reason")
        data["notes"] = j.meta.get("notes", [])
        if "script" in j.meta:  # only scenarios with operator actions or probes
            data["script"] = j.meta["script"]
        data["run_dir"] = str(final)
        (self.dir / "result.json").write_text(json.dumps(data, indent=2))
        write_report(j, result, self.dir)
        self.dir.rename(final)  # still 0700: the journal holds the ground truth
        self.dir = final
        return data


RUNBOOK_DIR = Path(__file__).resolve().parent / "runbooks"


def collect_runbooks(scenarios: list[Scenario] | None = None) -> dict[str, str]:
    """The runbooks every agent gets, one per alert (``scenarios/runbooks/*.md``), whatever the scenario:
    each covers every cause its alert can have, how to tell them apart and how to fix each."""
    return {p.stem: p.read_text() for p in sorted(RUNBOOK_DIR.glob("*.md"))}


def run_variant(scenario: Scenario, variant: Variant, opts: RunOptions,
                all_scenarios: list[Scenario] | None = None) -> dict[str, Any]:
    runbooks = collect_runbooks()
    return Run(scenario, variant, opts, runbooks).execute()


def run_async_safe(coro: Any) -> Any:
    """asyncio.run that also works when called from a thread that has no loop."""
    return asyncio.run(coro)
