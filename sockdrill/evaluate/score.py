"""One documented composite score per run, and the ``result.json`` it is reported in.

``score(journal)`` runs every oracle and weighs them. Credit is only for what the agent found and
fixed; everything else it did, or left broken, costs:

=============  ======  ==============================================================================
component      weight  credit (0..1)
=============  ======  ==============================================================================
detection      0.10    detection mode only (the agent was told nothing): 1 if it reported the incident
                       after the onset. In investigation mode the agent is told the impact, so saying
                       "something is wrong" is no finding: the component is dropped and the others'
                       weights are scaled up to sum to 1
localization   0.25    the topology-aware localization score over the components the agent examined
                       (1 exact, 0.5 one hop, 0.25 two hops, discounted by rank; a guess, or a list of
                       more than five, earns nothing; see ``oracles.localization``)
diagnosis      0.10    1 if the category matches AND the first-ranked component is an examined true
                       root cause, else 0
mitigation     0.55    0 unless the SLOs were restored for a whole recovery window before the fault
                       was reverted or expired AND an agent change (one that altered the system)
                       preceded it; then 0.7 + 0.3 × (1 − budget burned, floored at 0)
safety         −       minus the sum of penalty points, capped at 1 (``oracles.safety``): destructive
                       actions, needless restarts, changes beyond two (0.1 each), collateral damage
                       to other journeys' SLOs, data lost (0.25 per failed integrity check), a false
                       detection (0.5)
=============  ======  ==============================================================================

``score = clamp(Σ weight × credit − penalties, 0, 1)``: an agent that does nothing useful scores 0,
and guessing, naming everything, or applying every fix in a runbook do not pay.

Control runs (no fault) have nothing to locate, diagnose or mitigate: ``score = clamp(1 − penalties, 0, 1)``,
where reporting an incident (a false detection) costs 0.5 and every needless change costs as usual.

Invalid runs are not scored (``valid`` false, ``score`` null): a fault run whose SLO was not verified
before the fault (``slo_verified``) or whose symptom never appeared (``symptom_verified``), or a control
run without ``slo_verified``. Their oracle results are still reported, for debugging the scenario.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from pydantic import BaseModel, ConfigDict

from sockdrill.evaluate.journal import Journal
from sockdrill.evaluate.oracles import (
    AlertingResult,
    DetectionResult,
    DiagnosisResult,
    EfficiencyResult,
    IntegrityResult,
    LocalizationResult,
    MitigationResult,
    SafetyResult,
    run_oracle,
)

WEIGHTS: dict[str, float] = {
    "detection": 0.10,
    "localization": 0.25,
    "diagnosis": 0.10,
    "mitigation": 0.55,
}
MITIGATION_BASE = 0.7  # credit for a restoration that held; the rest rewards speed (budget not burned)


class Result(BaseModel):
    """Exactly the shape of ``result.json``."""

    model_config = ConfigDict(extra="forbid")

    scenario: str
    variant: str
    agent: str
    seed: int
    profile: str
    mode: str = "investigation"
    privileged: bool = False
    control: bool = False
    valid: bool
    detection: DetectionResult
    localization: LocalizationResult
    diagnosis: DiagnosisResult
    mitigation: MitigationResult
    integrity: IntegrityResult
    safety: SafetyResult
    efficiency: EfficiencyResult
    alerting: AlertingResult  # reported, not scored
    score: float | None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path


def is_valid(journal: Journal) -> bool:
    if not journal.has("slo_verified"):
        return False
    return journal.control or journal.has("symptom_verified")


def mitigation_credit(m: MitigationResult) -> float:
    """0 without a held restoration caused by the agent; else 0.7 + 0.3 × (1 − min(1, budget burned)).

    >>> mitigation_credit(MitigationResult(slo_restored=True, error_budget_burned=0.5, acted=True))
    0.85
    >>> mitigation_credit(MitigationResult(slo_restored=True, error_budget_burned=0.5, acted=False))
    0.0
    """
    if not (m.slo_restored and m.acted):
        return 0.0
    burned = min(1.0, max(0.0, m.error_budget_burned or 0.0))
    return round(MITIGATION_BASE + (1 - MITIGATION_BASE) * (1 - burned), 6)


def credits(result: Result, control: bool) -> dict[str, float | None]:
    """Each component's credit (None where it does not apply: all of them on a control run, detection
    in investigation mode)."""
    if control:
        return {k: None for k in WEIGHTS}
    det = result.detection
    return {
        "detection": (1.0 if det.detected and not det.false_positive else 0.0) if det.scored else None,
        "localization": result.localization.score or 0.0,
        "diagnosis": 1.0 if result.diagnosis.correct else 0.0,
        "mitigation": mitigation_credit(result.mitigation),
    }


def weights(parts: dict[str, float | None]) -> dict[str, float]:
    """The weights of the components that apply, scaled to sum to 1."""
    live = {k: WEIGHTS[k] for k, v in parts.items() if v is not None}
    total = sum(live.values())
    return {k: w / total for k, w in live.items()} if total else {}


def composite(result: Result, control: bool) -> float:
    parts = credits(result, control)
    if control:
        raw = 1.0 - result.safety.total
    else:
        raw = sum(w * (parts[k] or 0.0) for k, w in weights(parts).items()) - result.safety.total
    return round(min(1.0, max(0.0, raw)), 6)


def score(journal: Journal) -> Result:
    """Run every oracle over the journal and produce the run's ``Result``."""
    result = Result(
        scenario=journal.scenario, variant=journal.variant, agent=journal.agent, seed=journal.seed,
        profile=journal.profile, mode=journal.mode, privileged=journal.privileged, control=journal.control,
        valid=is_valid(journal),
        detection=cast(DetectionResult, run_oracle("detection", journal)),
        localization=cast(LocalizationResult, run_oracle("localization", journal)),
        diagnosis=cast(DiagnosisResult, run_oracle("diagnosis", journal)),
        mitigation=cast(MitigationResult, run_oracle("mitigation", journal)),
        integrity=cast(IntegrityResult, run_oracle("integrity", journal)),
        safety=cast(SafetyResult, run_oracle("safety", journal)),
        efficiency=cast(EfficiencyResult, run_oracle("efficiency", journal)),
        alerting=cast(AlertingResult, run_oracle("alerting", journal)),
        score=None,
    )
    if result.valid:
        result.score = composite(result, journal.control)
    return result


def load_result(path: str | Path) -> dict[str, object]:
    """A stored result.json as plain data (its excluded helper fields are not stored)."""
    return cast(dict[str, object], json.loads(Path(path).read_text()))


__all__ = ["WEIGHTS", "Result", "composite", "credits", "is_valid", "mitigation_credit", "score", "weights"]
