"""The Prometheus rules for journey SLOs: promtool accepts them, and its rule unit tests show each alert fires
on a burning series and stays quiet on a healthy one. Skipped without promtool (Debian's ``prometheus``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sockdrill.slo.rules import alert_name, prometheus_rules, window_text
from sockdrill.slo.slo import PROFILES, SLO

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (apt-get install -y prometheus)")

LOGIN = [SLO("login", "error_rate", 0.01), SLO("login", "latency_p95", 1.0)]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _expected(rules: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [{"exp_labels": {**r["labels"]}, "exp_annotations": r["annotations"]}
            for g in rules["groups"] for r in g["rules"] if r.get("alert") == name]


def test_windows_are_promql_durations() -> None:
    assert [window_text(s) for s in (10, 30, 360, 300, 1800, 21600)] == ["10s", "30s", "6m", "5m", "30m", "6h"]


@needs_promtool
@pytest.mark.parametrize("profile", ["fast", "standard"])
def test_promtool_checks_the_rules_and_each_alert_fires_only_on_a_burn(profile: str, tmp_path: Path) -> None:
    rules = prometheus_rules(LOGIN, PROFILES[profile], runbook_url=lambda s: f"https://runbooks.example/{s.journey}")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    checked = _promtool("check", "rules", str(tmp_path / "rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Samples every second (fast) or 15 s (standard) for an hour: 10 journeys a second; burning = 20 % fail and
    # p95 at 2 s.
    step, n = ("1s", 3600) if profile == "fast" else ("15s", 240)
    per = 10 if profile == "fast" else 150
    at = "70s" if profile == "fast" else "59m"
    count = f"0+{per}x{n}"

    def case(failures: str, p95: str, firing: bool) -> dict[str, Any]:
        return {
            "interval": step,
            "input_series": [
                {"series": 'journey_requests_total{journey="login"}', "values": count},
                {"series": 'journey_failures_total{journey="login"}', "values": failures},
                {"series": 'journey_latency_seconds{journey="login",quantile="0.95"}', "values": p95},
            ],
            "alert_rule_test": [{"eval_time": at, "alertname": name,
                                 "exp_alerts": _expected(rules, name) if firing else []}
                                for name in ("LoginErrorRateBurn", "LoginLatencyP95Burn")],
        }

    tests = {"rule_files": ["rules.yml"], "evaluation_interval": step,
             "tests": [case(f"0+{per // 5}x{n}", f"2+0x{n}", True), case(f"0+0x{n}", f"0.2+0x{n}", False)]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", str(tmp_path / "tests.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(_expected(rules, "LoginErrorRateBurn")) == 3  # page (two windows) and ticket


@needs_promtool
def test_the_shop_rule_file_checks_and_every_runbook_url_resolves(tmp_path: Path) -> None:
    out = tmp_path / "shop-rules.yml"
    from typer.testing import CliRunner

    from sockdrill.cli import app

    res = CliRunner().invoke(app, ["scenarios", "rules", "--profile", "fast", "--out", str(out)])
    assert res.exit_code == 0, res.output
    checked = _promtool("check", "rules", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = yaml.safe_load(out.read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    journeys = {r["labels"]["journey"] for r in alerts}
    assert {"login", "checkout", "cart", "browse", "return-visit", "profile-edit"} <= journeys
    urls = {r["annotations"]["runbook_url"] for r in alerts if "runbook_url" in r["annotations"]}
    assert urls and all(Path(u.removeprefix("file://")).is_file() for u in urls), urls


@needs_promtool
def test_prometheus_and_the_built_in_evaluator_agree_on_one_recording(tmp_path: Path) -> None:
    """One recording (standard profile, a sample every 15 s: 30 min healthy, 40 min at 20 % errors and p95 2 s,
    40 min healthy again), judged by the built-in evaluator (``alerts.firing``) and by Prometheus running the
    generated rules: the same alerts fire at each moment, well inside each stretch."""
    from sockdrill.slo.alerts import firing, rules_for
    from sockdrill.slo.sli import SliSample

    profile = PROFILES["standard"]
    step, total = 15, 110 * 60
    burning = range(30 * 60, 70 * 60)
    samples = [SliSample(t, "login", 150, 30 if t in burning else 0, p95=2.0 if t in burning else 0.2,
                         interval_s=step) for t in range(0, total, step)]
    rules = prometheus_rules(LOGIN, profile)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    requests = failures = 0
    req_values, fail_values, p95_values = [], [], []
    for s in samples:
        requests += s.requests
        failures += s.failures
        req_values.append(str(requests))
        fail_values.append(str(failures))
        p95_values.append(str(s.p95))
    cases = []
    for minute in (25, 65, 110 - 1):
        at = minute * 60
        for slo in LOGIN:
            expected = []
            for rule in rules_for(profile):
                # the built-in answer, with the same floor on windows as the generated rules (10 s)
                floored = type(rule)(rule.name, max(rule.long_window_s, 10), max(rule.short_window_s, 10),
                                     rule.burn_rate, rule.severity)
                if firing(slo, samples, at, floored):
                    expected.append(next(
                        {"exp_labels": r["labels"], "exp_annotations": r["annotations"]}
                        for g in rules["groups"] for r in g["rules"]
                        if r.get("alert") and r["labels"]["slo"] == slo.label and r["labels"]["window"] == rule.name))
            cases.append({"eval_time": f"{minute}m", "alertname": alert_name(slo), "exp_alerts": expected})
    assert any(c["exp_alerts"] for c in cases) and any(not c["exp_alerts"] for c in cases)
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": f"{step}s", "tests": [{
        "interval": f"{step}s",
        "input_series": [
            {"series": 'journey_requests_total{journey="login"}', "values": " ".join(req_values)},
            {"series": 'journey_failures_total{journey="login"}', "values": " ".join(fail_values)},
            {"series": 'journey_latency_seconds{journey="login",quantile="0.95"}', "values": " ".join(p95_values)},
        ],
        "alert_rule_test": cases}]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False, width=10_000))
    result = _promtool("test", "rules", str(tmp_path / "tests.yml"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
