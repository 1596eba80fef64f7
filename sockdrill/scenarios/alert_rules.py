"""The Prometheus rule file for the shop's journeys: every SLO any scenario declares plus every journey's own
(``guards.py``), with each alert pointing at the runbook of that alert (``runbooks/``).

    sockdrill scenarios rules --profile fast --out slo-rules.yml
    promtool check rules slo-rules.yml
"""

from __future__ import annotations

from sockdrill.scenarios.catalogue_loader import load_catalogue
from sockdrill.scenarios.guards import JOURNEY_TARGETS, journey_slos
from sockdrill.scenarios.runner import RUNBOOK_DIR, to_slo
from sockdrill.slo.rules import prometheus_rules
from sockdrill.slo.slo import SLO, Profile

# (journey, latency or errors) → the runbook of that alert
RUNBOOKS: dict[tuple[str, str], str] = {
    ("login", "latency"): "login-slow", ("login", "errors"): "login-failing",
    ("checkout", "latency"): "checkout-slow", ("checkout", "errors"): "checkout-failing",
    ("checkout-page", "latency"): "checkout-page-slow", ("checkout-page", "errors"): "checkout-page-failing",
    ("cart", "latency"): "cart-degraded", ("cart", "errors"): "cart-degraded",
    ("return-visit", "latency"): "cart-degraded", ("return-visit", "errors"): "cart-degraded",
    ("browse", "latency"): "browse-degraded", ("browse", "errors"): "browse-degraded",
    ("profile-edit", "latency"): "profile-failing", ("profile-edit", "errors"): "profile-failing",
    ("freshness", "latency"): "catalogue-stale", ("freshness", "errors"): "catalogue-stale",
    ("search", "latency"): "search-slow", ("search", "errors"): "search-failing",
    ("order-status", "latency"): "orders-inconsistent", ("order-status", "errors"): "orders-inconsistent",
    ("shipping-quote", "latency"): "delivery-quotes-wrong", ("shipping-quote", "errors"): "delivery-quotes-wrong",
}


def runbook_for(slo: SLO) -> str | None:
    """The runbook id of the alert this SLO raises, if there is one."""
    return RUNBOOKS.get((slo.journey, "errors" if slo.sli == "error_rate" else "latency"))


def shop_slos(objective: float = 0.99) -> list[SLO]:
    """Every SLO of the catalogue's scenarios and of every journey, each once."""
    out: dict[str, SLO] = {}
    for sc in load_catalogue().scenarios.values():
        for o in sc.slo:
            slo = to_slo(o, objective)
            out.setdefault(slo.label, slo)
    for slo in journey_slos(list(JOURNEY_TARGETS), objective):
        out.setdefault(slo.label, slo)
    return list(out.values())


def shop_rules(profile: Profile, runbook_base: str | None = None) -> dict:  # type: ignore[type-arg]
    """The rule file; ``runbook_base`` (default: this installation's runbooks folder, as file:// URLs)."""
    base = (runbook_base or RUNBOOK_DIR.as_uri()).rstrip("/")

    def url(slo: SLO) -> str | None:
        rid = runbook_for(slo)
        return f"{base}/{rid}.md" if rid else None

    return prometheus_rules(shop_slos(), profile, runbook_url=url)


def install_run_rules(record: dict, slos: list[SLO], profile: Profile) -> str | None:  # type: ignore[type-arg]
    """Put a run's SLO rules beside the shop's Prometheus and have it load them, so its alerts follow the run;
    a note when that could not be done (no Prometheus is fine: the built-in evaluator is the reference)."""
    import json
    import urllib.error
    import urllib.request
    from pathlib import Path

    from sockdrill.cluster.admin import telemetry_headers

    run_dir, recorder = record.get("run_dir"), record.get("recorder_url")
    if not run_dir or not recorder:
        return None
    rules_dir = Path(run_dir) / "prometheus" / "rules"
    if not rules_dir.is_dir():
        return None  # this shop runs no Prometheus
    base = RUNBOOK_DIR.as_uri()

    def url(slo: SLO) -> str | None:
        rid = runbook_for(slo)
        return f"{base}/{rid}.md" if rid else None

    unique = list({s.label: s for s in slos}.values())
    try:
        tmp = rules_dir / ".sockdrill-slo.yml.tmp"
        tmp.write_text(json.dumps(prometheus_rules(unique, profile, runbook_url=url)))  # JSON is YAML
        tmp.replace(rules_dir / "sockdrill-slo.yml")
        req = urllib.request.Request(f"{recorder}/v1/prometheus/reload", data=b"", method="POST",
                                     headers=telemetry_headers(record.get("telemetry_token")))
        urllib.request.urlopen(req, timeout=10).read()
    except (OSError, urllib.error.URLError) as exc:
        return f"the run's alert rules were not loaded into Prometheus: {exc}"
    return None
