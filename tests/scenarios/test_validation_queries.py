"""Every variant's validation PromQL (what the seed would run to confirm the cause) is a query Prometheus's
own engine evaluates, over metrics the shop really exports. Skipped without promtool (Debian's
``prometheus``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sockdrill.scenarios import load_catalogue

PROMTOOL = shutil.which("promtool")
PACKAGE = Path(__file__).resolve().parents[2] / "sockdrill"
SUFFIXES = ("_bucket", "_count", "_sum")
FUNCTIONS = {"sum", "rate", "max", "min", "avg", "histogram_quantile", "by", "le", "count", "increase", "irate"}


def _queries() -> list[tuple[str, str]]:
    return [(f"{sc.id}/{v.id}", q) for sc in load_catalogue().scenarios.values() for v in sc.variants
            for q in v.validation]


def _metric_names(query: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}", "", re.sub(r"\[[^\]]*\]", "", query))
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels)) - FUNCTIONS
    return {n for n in names if "_" in n}


def test_every_fault_variant_of_the_new_seeds_has_a_validation_query() -> None:
    cat = load_catalogue()
    for sid in ("login-latency", "cart-loss", "profile-updates", "catalogue-staleness", "search-degradation",
                "payment-timeout", "order-inconsistency", "shipping-calculation"):
        assert all(v.validation for v in cat.scenarios[sid].variants), sid


def _generated_names() -> set[str]:
    """Families the PostgreSQL collector names from a column list rather than spelling them out."""
    from sockdrill.telemetry import collectors as c

    return ({f"pg_stat_user_tables_{n}" for n in c.TABLE_COUNTERS + c.TABLE_GAUGES}
            | {f"pg_stat_database_{n}" for n in c.DATABASE_COUNTERS})


def test_validation_queries_name_metrics_the_shop_exports() -> None:
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    generated = _generated_names()
    for ref, query in _queries():
        for name in _metric_names(query):
            base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
            # prometheus_client's counter families are named without the _total their samples carry.
            # (A gauge may end in _count itself, as postgres_exporter's pg_stat_activity_count does.)
            names = {name, base, base.removesuffix("_total")}
            assert names & generated or any(f'"{n}"' in source or f"'{n}'" in source for n in names), (ref, name)


@pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (apt-get install -y prometheus)")
def test_prometheus_evaluates_every_validation_query(tmp_path: Path) -> None:
    queries = _queries()
    assert queries
    (tmp_path / "rules.yml").write_text("groups: []\n")
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": [],
                        "promql_expr_test": [{"expr": q, "eval_time": "1m", "exp_samples": []}
                                             for _ref, q in queries]}]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    res = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
