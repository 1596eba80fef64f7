"""How our runs score with RCAEval's own RCA methods (BARO, NSigma), as an outside reference.

    sockdrill bench rcaeval RUN_DIR... --python /path/to/rcaeval-venv/bin/python

Each fault run is exported in RCAEval's layout (``sockdrill export --format rcaeval``: a ``time`` column and
``<service>_<metric>`` columns) and handed, with its fault onset as ``inject_time``, to RCAEval's code, run by an
interpreter that has it: RCAEval pins many packages, so it stays out of sockdrill's own install. To make one:

    python3 -m venv rcaeval && rcaeval/bin/pip install --no-deps RCAEval && \\
        rcaeval/bin/pip install numpy pandas scikit-learn requests tqdm matplotlib networkx causal-learn

A method's ranking of columns becomes a ranking of services (each service at its best column's place); AC@k is
whether a true root cause is among the first k. Runs of held-out faults (scenario ids ``held-…``, as in
``bench/agents.py``) are counted apart from the catalogue's; control and invalid runs are skipped.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from sockdrill.errors import SockdrillError

METHODS = ("baro", "nsigma")

SCRIPT = r"""
import json, sys
import pandas as pd
from RCAEval.e2e import nsigma
from RCAEval.e2e.baro import baro

job = json.load(sys.stdin)
methods = {"baro": baro, "nsigma": nsigma}
out = {}
for name in job["methods"]:
    data = pd.read_csv(job["csv"])
    try:
        res = methods[name](data, inject_time=job["inject_time"], dataset="sockdrill")
        out[name] = {"ranks": [str(c) for c in res["ranks"]]}
    except Exception as exc:
        out[name] = {"error": "%s: %s" % (type(exc).__name__, exc)}
print(json.dumps(out))
"""


class RcaevalError(SockdrillError):
    """RCAEval could not be run."""


def service_ranking(columns: list[str]) -> list[str]:
    """``['carts_cpu', 'user_latency-90', 'carts_mem']`` → ``['carts', 'user']``: each service at its first place."""
    out: list[str] = []
    for col in columns:
        svc = col.rsplit("_", 1)[0] if "_" in col else col
        if svc and svc != "time" and svc not in out:
            out.append(svc)
    return out


def check_python(python: str) -> None:
    """RcaevalError (with how to make one) unless ``python`` can import RCAEval's methods."""
    try:
        proc = subprocess.run([python, "-c", "from RCAEval.e2e import nsigma; from RCAEval.e2e.baro import baro"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RcaevalError(f"--python {python}: cannot run it: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RcaevalError(f"--python {python} cannot import RCAEval ({last}); see `sockdrill bench rcaeval "
                           "--help` for how to make an interpreter that can")


def score_run(run_dir: Path, python: str, methods: tuple[str, ...] = METHODS) -> dict[str, Any] | None:
    """One run's rankings and AC@1/AC@3 per method; None for a control or invalid run."""
    from sockdrill.evaluate.journal import Journal
    from sockdrill.telemetry.export import export_rcaeval

    journal = Journal.load(run_dir / "journal.json")
    result = json.loads((run_dir / "result.json").read_text())
    onset = journal.onset
    if journal.control or journal.ground_truth is None or onset is None or not result.get("valid"):
        return None
    truth = list(journal.ground_truth.root_cause_components)
    with tempfile.TemporaryDirectory(prefix="sockdrill-rcaeval-") as tmp:
        csv = export_rcaeval(run_dir, Path(tmp) / "data.csv")
        job = json.dumps({"csv": str(csv), "inject_time": int(onset), "methods": list(methods)})
        try:
            proc = subprocess.run([python, "-c", SCRIPT], input=job, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RcaevalError(f"RCAEval on {run_dir.name}: {exc}") from None
    if proc.returncode != 0:
        raise RcaevalError(f"RCAEval on {run_dir.name} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    out: dict[str, Any] = {"run": run_dir.name, "scenario": journal.scenario, "variant": journal.variant,
                           "truth": truth, "held_out": journal.scenario.startswith("held-")}
    for name in methods:
        got = answers.get(name, {})
        if "error" in got:
            out[name] = {"error": got["error"]}
            continue
        ranked = service_ranking(got.get("ranks", []))
        out[name] = {"ranked": ranked[:5], "ac1": bool(set(ranked[:1]) & set(truth)),
                     "ac3": bool(set(ranked[:3]) & set(truth))}
    return out


def summarise(rows: list[dict[str, Any]], methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """AC@1 and AC@3 per method, catalogue and held-out apart (a run a method failed on counts as a miss)."""
    out: dict[str, Any] = {}
    for part, held in (("catalogue", False), ("held_out", True)):
        these = [r for r in rows if r["held_out"] == held]
        out[part] = {"runs": len(these)}
        for name in methods:
            ok = [r[name] for r in these if "error" not in r[name]]
            out[part][name] = {
                "ac1": round(sum(x["ac1"] for x in ok) / len(these), 3) if these else None,
                "ac3": round(sum(x["ac3"] for x in ok) / len(these), 3) if these else None,
                "failed": len(these) - len(ok)}
    return out


def bench(run_dirs: list[Path], python: str, methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    check_python(python)
    rows = [r for d in run_dirs if (r := score_run(d, python, methods)) is not None]
    return {"runs": rows, "summary": summarise(rows, methods)}
