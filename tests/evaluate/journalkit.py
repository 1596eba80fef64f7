"""Hand-built journals for the oracle, score and report tests.

One login incident on the fast profile (recovery window 10 s), times relative to T0:
warm-up at 0, SLO verified at 20, fault onset at 30, symptom verified at 35, agent start at 36,
fault revert at ``revert_at`` (100), end at ``end_at`` (120). Login p95 is 0.2 s when healthy and
3 s with 20 % failures while broken; browse and checkout stay healthy unless told otherwise.
"""

from __future__ import annotations

from typing import Any

from sockdrill.evaluate.journal import GroundTruth, IntegrityCheck, Journal, Tokens, Topology
from sockdrill.slo import SLO, SliSample

T0 = 1_700_000_000.0
LOGIN = SLO("login", "latency_p95", 1.0, name="login-latency")
GUARDS = [SLO("browse", "latency_p95", 1.0), SLO("checkout", "error_rate", 0.01)]
TRUTH = GroundTruth(root_cause_components=["user-db"], category="query_inefficiency",
                    propagation_path=["user-db", "user", "front-end"])
TOPOLOGY = Topology.from_manifest()


def healthy(t: float, journey: str, requests: int = 10) -> SliSample:
    return SliSample(T0 + t, journey, requests, 0, p50=0.05, p95=0.2, p99=0.3)


def broken(t: float, journey: str, requests: int = 10) -> SliSample:
    return SliSample(T0 + t, journey, requests, requests // 5, p50=1.5, p95=3.0, p99=4.0)


def build(
    agent: str = "oracle",
    *,
    control: bool = False,
    broken_until: float | None = 50,        # login is broken from onset until this time (None: until revert)
    actions: list[dict[str, Any]] | None = None,
    submit: dict[str, Any] | None = None,
    revert_at: float = 100,
    end_at: float = 120,
    collateral: tuple[str, float, float] | None = None,  # (journey, from, to): broken there too
    integrity: list[IntegrityCheck] | None = None,
    markers: tuple[str, ...] | None = None,
) -> Journal:
    j = Journal(scenario="login-slow", variant="no-index", agent=agent, seed=7, profile="fast", control=control,
                slos=[LOGIN], guard_slos=list(GUARDS), ground_truth=None if control else TRUTH.model_copy(deep=True),
                topology=TOPOLOGY, tokens=Tokens(input=1200, output=300))
    kinds = markers if markers is not None else (
        ("warmup_start", "slo_verified", "agent_start", "end") if control else
        ("warmup_start", "slo_verified", "fault_onset", "symptom_verified", "agent_start", "fault_revert", "end"))
    at = {"warmup_start": 0, "slo_verified": 20, "fault_onset": 30, "symptom_verified": 35, "agent_start": 36,
          "fault_revert": revert_at, "end": end_at}
    for kind in kinds:
        j.mark(kind, T0 + at[kind])
    for a in actions or []:
        j.action(T0 + a["t"], a["tool"], a.get("args", {}), a.get("result"), a.get("ok", True), a.get("mutating"))
    if submit is not None:
        j.submit(T0 + submit["t"], submit.get("detected", True), submit.get("ranked", []), submit.get("category"),
                 submit.get("summary", ""))
    bad_to = revert_at if broken_until is None else broken_until
    rows = []
    for t in range(end_at):
        login_bad = not control and 30 <= t < bad_to
        rows.append(broken(t, "login") if login_bad else healthy(t, "login"))
        for g in ("browse", "checkout"):
            hurt = collateral is not None and collateral[0] == g and collateral[1] <= t < collateral[2]
            rows.append(broken(t, g) if hurt else healthy(t, g))
    j.add_samples(rows)
    j.load_failures = sum(s.failures for s in rows)
    j.integrity = integrity if integrity is not None else [
        IntegrityCheck(name="carts_survive", ok=True, detail="3 cart items checked, all intact"),
        IntegrityCheck(name="charges_matched", ok=None, detail="not applicable: no payment ledger configured")]
    return j


def oracle_run() -> Journal:
    """A correct agent: looks, creates the missing index at t=46 (login is good from 48), submits at 47."""
    return build("oracle", broken_until=48, actions=[
        {"t": 40, "tool": "get_metrics", "args": {"service": "user"}, "result": {"p95": 3.0}},
        {"t": 44, "tool": "describe", "args": {"name": "user-db"}},
        {"t": 46, "tool": "create_index", "args": {"store": "user-db", "table": "customers", "column": "username"},
         "result": "CREATE INDEX"},
    ], submit={"t": 47, "ranked": ["user-db", "user"], "category": "missing_index", "summary": "seq scan on login"})


def noop_run() -> Journal:
    return build("noop", broken_until=None, submit={"t": 90, "detected": False})


def restart_all_run() -> Journal:
    names = [d for d in TOPOLOGY.deployments]
    actions = [{"t": 40 + i * 0.5, "tool": "restart", "args": {"name": n}} for i, n in enumerate(names)]
    return build("restart-all", broken_until=None, actions=actions,
                 submit={"t": 60, "detected": True, "ranked": names[:3], "category": "process_crash"})
