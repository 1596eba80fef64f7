"""What the runner shows the agent about user impact: SLO status and burn-rate alerts, from the
client-side journey SLIs of the load it drives (the same numbers customers experience). Where the shop runs
Alertmanager, the alerts are the ones it delivered (Prometheus evaluating the run's rules, routed to the
recorder's webhook), as an on-call engineer's pager gets them; otherwise the built-in evaluator's."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from sockdrill.slo.alerts import alerting_slo, firing, rules_for
from sockdrill.slo.slo import SLO, evaluate, get_profile


def _current(slo: SLO, samples: list[Any], start: float, end: float) -> float | None:
    rows = [s for s in samples if s.journey == slo.journey and start <= s.time < end]
    if not rows:
        return None
    if slo.sli == "error_rate":
        n = sum(s.requests for s in rows)
        return round(sum(s.failures for s in rows) / n, 4) if n else None
    if slo.sli == "throughput":
        return round(sum(s.requests for s in rows) / max(1.0, end - start), 3)
    key = slo.sli.split("_")[1]
    vals = [getattr(s, key) for s in rows if getattr(s, key) is not None]
    return round(max(vals), 4) if vals else None


def slo_status_provider(run: Any, slos: list[SLO]) -> Callable[[], dict[str, Any]]:
    window = 10.0 if run.opts.profile == "fast" else 120.0

    def status() -> dict[str, Any]:
        now = time.time()
        samples = run.samples()
        out = []
        for slo in slos:
            ev = evaluate(slo, samples, now - window, now)
            value = _current(slo, samples, now - window, now)
            out.append({"slo": slo.label, "journey": slo.journey, "sli": slo.sli, "threshold": slo.threshold,
                        "current": None if value is None or math.isinf(value) else value,
                        "holds": ev.holds(min_coverage=0.5), "window_s": window,
                        "good_share": None if ev.compliance is None else round(ev.compliance, 3)})
        return {"time": now, "slos": out}

    return status


def alerts_provider(run: Any, slos: list[SLO]) -> Callable[[], list[dict[str, Any]]]:
    from sockdrill.telemetry.alertmanager import fetch_notifications, firing_now

    rules = rules_for(get_profile(run.opts.profile))
    slos = [alerting_slo(s) for s in slos]
    labels = {s.label for s in slos}

    def delivered() -> list[dict[str, Any]] | None:
        got = fetch_notifications(run.client.record, run.scope_start or 0.0) if run.client is not None else None
        if not got or not got.get("alertmanager"):
            return None
        return [{"alert": n["labels"].get("alertname"), "journey": n["labels"].get("journey"),
                 "slo": n["labels"]["slo"], "rule": n["labels"].get("window"), "severity": n["labels"].get("severity"),
                 "summary": n["annotations"].get("summary"), "since": n.get("starts_at"), "source": "alertmanager"}
                for n in firing_now(got["notifications"]) if n["labels"].get("slo") in labels]

    def alerts() -> list[dict[str, Any]]:
        paged = delivered()
        if paged is not None:
            return paged
        now = time.time()
        samples = run.samples()
        out = []
        for slo in slos:
            for rule in rules:
                if firing(slo, samples, now, rule):
                    out.append({"alert": "SLOBurnRate", "journey": slo.journey, "slo": slo.label, "rule": rule.name,
                                "severity": rule.severity, "burn_rate_over": rule.burn_rate, "source": "sockdrill"})
        return out

    return alerts
