"""How long each phase of a run lasts, per profile. ``fast`` keeps CI short; ``standard`` is game-day pace."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Windows:
    warmup_s: float          # load running, nothing judged (connections, caches, JIT-less Python warming)
    baseline_s: float        # the SLO must hold over this window before the fault
    settle_timeout_s: float  # ... and a shop still settling (fresh, just reset) gets this much longer for it
    fault_offset_s: tuple[float, float]  # the fault lands at a seeded moment in this range after the baseline
    symptom_timeout_s: float  # the symptom must appear within this time of the onset, or the run is invalid
    symptom_window_s: float  # ... judged over windows this long
    agent_budget_s: float    # wall time the agent gets
    max_steps: int           # tool calls the agent gets
    recovery_window_s: float  # the SLO must hold this long again (under load) to count as restored
    recovery_timeout_s: float  # how long after the agent the runner waits for that
    objective: float         # share of good intervals an SLO needs over a window
    return_after_s: float    # how long a returning shopper stays away (the seed's "30+ minutes", compressed)
    propagation_budget_s: float  # an operator's change must reach every shopper within this (probes judge it)


WINDOWS: dict[str, Windows] = {
    "fast": Windows(warmup_s=2, baseline_s=5, settle_timeout_s=40, fault_offset_s=(0.5, 1.5), symptom_timeout_s=15,
                    symptom_window_s=3, agent_budget_s=45, max_steps=60, recovery_window_s=6,
                    recovery_timeout_s=12, objective=0.8, return_after_s=6,
                    propagation_budget_s=5),
    "standard": Windows(warmup_s=30, baseline_s=60, settle_timeout_s=240, fault_offset_s=(10, 60),
                        symptom_timeout_s=120,
                        symptom_window_s=30, agent_budget_s=900, max_steps=200, recovery_window_s=120,
                        recovery_timeout_s=300, objective=0.95, return_after_s=180,
                        propagation_budget_s=60),  # the seed's "within 1 minute"
}
