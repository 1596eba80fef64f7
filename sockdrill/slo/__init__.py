"""Journey SLOs: SLIs from client-side samples, SLO evaluation, error budgets, burn-rate alerts.

Pure functions only (no processes, no network); the scenario runner and evaluate/ call them.
"""

from sockdrill.slo.alerts import WORKBOOK_RULES, Alert, BurnRateRule, alert_timeline, firing, first_alert, rules_for
from sockdrill.slo.sli import SLI_KINDS, SliKind, SliSample
from sockdrill.slo.slo import (
    PROFILES,
    SEED_SLOS,
    SLO,
    Evaluation,
    Profile,
    Restore,
    budget_burned,
    burn_rate,
    error_budget,
    evaluate,
    get_profile,
    time_to_restore,
    violation_seconds,
)

__all__ = [
    "PROFILES",
    "SEED_SLOS",
    "SLI_KINDS",
    "SLO",
    "WORKBOOK_RULES",
    "Alert",
    "BurnRateRule",
    "Evaluation",
    "Profile",
    "Restore",
    "SliKind",
    "SliSample",
    "alert_timeline",
    "budget_burned",
    "burn_rate",
    "error_budget",
    "evaluate",
    "firing",
    "first_alert",
    "get_profile",
    "rules_for",
    "time_to_restore",
    "violation_seconds",
]
