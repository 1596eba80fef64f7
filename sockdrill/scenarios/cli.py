"""``sockdrill run``, ``sockdrill report`` and ``sockdrill scenarios list|validate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sockdrill.errors import SockdrillError

console = Console(width=None if sys.stdout.isatty() else 160)
scenarios_app = typer.Typer(help="The scenario catalogue: list and validate.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def run_command(
    target: Annotated[str, typer.Argument(help="SCENARIO[/VARIANT] or all")],
    agent: Annotated[str, typer.Option(help="noop, restart-all, oracle, baseline, llm or module:Class")] = "baseline",
    profile: Annotated[str, typer.Option(help="fast | standard")] = "fast",
    seed: Annotated[int, typer.Option(help="seed of every random choice in the run")] = 1,
    out: Annotated[Path, typer.Option(help="where run directories go")] = Path("runs"),
    fault: Annotated[Path | None, typer.Option(help="a scenario file outside the catalogue")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="reuse the shop running in this data dir")] = None,
    mode: Annotated[str, typer.Option(help="investigation (agent told the impact) | detection")] = "investigation",
    model: Annotated[str | None, typer.Option(help="model name for --agent llm")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print result.json")] = False,
) -> None:
    """Run scenarios end to end against the shop and score the agent."""
    from sockdrill.scenarios.catalogue_loader import load_catalogue, load_scenario_file
    from sockdrill.scenarios.runner import RunOptions, run_variant
    from sockdrill.scenarios.windows import WINDOWS

    if profile not in WINDOWS:
        raise _fail(f"--profile must be one of {', '.join(WINDOWS)}, got {profile!r}", 2)
    if mode not in ("investigation", "detection"):
        raise _fail(f"--mode must be investigation or detection, got {mode!r}", 2)
    try:
        catalogue = load_catalogue()
        scenarios = list(catalogue.scenarios.values())
        if fault is not None:
            extra = load_scenario_file(fault)
            pairs = [(extra, v) for v in extra.variants] if target in ("all", extra.id) else \
                [(extra, extra.variant(target.partition("/")[2]))]
            scenarios.append(extra)
        elif target == "all":
            pairs = [(s, v) for s in catalogue.scenarios.values() for v in s.variants]
        else:
            sc, variants = catalogue.get(target)
            pairs = [(sc, v) for v in variants]
        from sockdrill.agents.base import load_agent

        options: dict[str, Any] = {"model": model} if model and agent == "llm" else {}
        load_agent(agent, **options)  # fail fast on a bad agent name
    except SockdrillError as exc:
        raise _fail(str(exc)) from None
    results = []
    for sc, var in pairs:
        with Progress(f"{sc.id}/{var.id}", enabled=not json_out) as progress:
            try:
                opts = RunOptions(agent=agent, profile=profile, seed=seed, out=out, data_dir=data_dir, mode=mode,
                                  agent_options=options, progress=progress.phase if not json_out else None)
                result = run_variant(sc, var, opts, scenarios)
            except SockdrillError as exc:
                raise _fail(str(exc)) from None
        results.append(result)
        if json_out:
            print(json.dumps(result, indent=2))
        else:
            _summary(result)
    if len(results) > 1 and not json_out:
        _leaderboard(results)
    invalid = [r for r in results if not r.get("valid")]
    if invalid:
        # Scripts (and `make demo`) must notice: an invalid run measured nothing.
        if not json_out:
            Console(stderr=True).print(f"[yellow]{len(invalid)} of {len(results)} runs invalid[/yellow]: "
                                       + "; ".join(f"{r['scenario']}/{r['variant']}: {r.get('invalid_reason')}"
                                                   for r in invalid), highlight=False)
        raise typer.Exit(INVALID_EXIT)


INVALID_EXIT = 3  # documented in the README: a run that was invalid (or errored) is not a success


class Progress:
    """Each phase of a run as it happens, with the time since the run began: a live line on a terminal
    (the finished phases printed above it), plain lines when piped."""

    def __init__(self, title: str, enabled: bool = True) -> None:
        self.title = title
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self._status: Any = None
        self._last: str | None = None

    def __enter__(self) -> Progress:
        if self.live:
            self._status = console.status(f"{self.title}: starting")
            self._status.start()
        elif self.enabled:
            console.print(f"{self.title}: starting", highlight=False)
        return self

    def phase(self, text: str) -> None:
        if not self.enabled:
            return
        if self.live:
            if self._last:
                console.print(f"  {self._last}", highlight=False)
            self._status.update(f"{self.title}: {text}")
        else:
            console.print(f"  {text}", highlight=False)
            console.file.flush()
        self._last = text

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()
            if self._last:
                console.print(f"  {self._last}", highlight=False)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def _summary(r: dict[str, Any]) -> None:
    valid = "[green]valid[/green]" if r["valid"] else f"[yellow]invalid[/yellow] ({r.get('invalid_reason')})"
    console.print(f"[bold]{r['scenario']}/{r['variant']}[/bold] agent={r['agent']} seed={r['seed']} {valid}")
    fp = " (FALSE POSITIVE)" if r["detection"].get("false_positive") else ""
    console.print(f"  detection {_fmt(r['detection'].get('detected'))}{fp} ttd {_fmt(r['detection'].get('ttd_s'))}s · "
                  f"AC@1 {_fmt(r['localization'].get('ac1'))} AC@3 {_fmt(r['localization'].get('ac3'))} · "
                  f"category {_fmt(r['diagnosis'].get('correct'))} · "
                  f"restored {_fmt(r['mitigation'].get('slo_restored'))} ttm {_fmt(r['mitigation'].get('ttm_s'))}s · "
                  f"integrity {_fmt(r['integrity'].get('ok'))} · score {_fmt(r.get('score'))}")
    console.print(f"  report: {r['run_dir']}/report.html")


def _leaderboard(results: list[dict[str, Any]]) -> None:
    table = Table(title="leaderboard")
    for col in ("scenario/variant", "agent", "valid", "detected", "AC@1", "category", "restored", "integrity",
                "score"):
        table.add_column(col)
    for r in results:
        table.add_row(f"{r['scenario']}/{r['variant']}", r["agent"], _fmt(r["valid"]),
                      _fmt(r["detection"].get("detected")), _fmt(r["localization"].get("ac1")),
                      _fmt(r["diagnosis"].get("correct")), _fmt(r["mitigation"].get("slo_restored")),
                      _fmt(r["integrity"].get("ok")), _fmt(r.get("score")))
    console.print(table)
    # Control runs are judged on other terms (1 − penalties): they never pad the fault mean.
    faults = [r["score"] for r in results if r.get("score") is not None and not r.get("control")]
    controls = [r for r in results if r.get("score") is not None and r.get("control")]
    if faults:
        console.print(f"mean score over {len(faults)} valid fault runs: {sum(faults) / len(faults):.3f}")
    if controls:
        fp = sum(1 for r in controls if r["detection"].get("false_positive"))
        mean = sum(r["score"] for r in controls) / len(controls)
        console.print(f"control runs: {len(controls)}, false detections {fp} ({100 * fp / len(controls):.0f} %), "
                      f"mean score {mean:.3f}")


def report_command(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Re-score a recorded run from its journal and re-render its reports."""
    from pydantic import ValidationError

    from sockdrill.evaluate.journal import Journal
    from sockdrill.evaluate.report import write_report
    from sockdrill.evaluate.score import score

    path = run_dir / "journal.json"
    try:
        journal = Journal.model_validate_json(path.read_text())
    except OSError as exc:
        raise _fail(f"{path}: cannot read: {exc.strerror}") from None
    except ValidationError as exc:
        raise _fail(f"{path}: not a run journal: {exc.errors()[0]['msg']}") from None
    result = score(journal)
    data = json.loads(result.model_dump_json())
    data["invalid_reason"] = journal.meta.get("invalid_reason")
    data["notes"] = journal.meta.get("notes", [])
    data["run_dir"] = str(run_dir)
    (run_dir / "result.json").write_text(json.dumps(data, indent=2))
    write_report(journal, result, run_dir)
    _summary(data)


@scenarios_app.command("list")
def list_command() -> None:
    """Every scenario and variant of the catalogue."""
    from sockdrill.scenarios.catalogue_loader import load_catalogue

    try:
        catalogue = load_catalogue()
    except SockdrillError as exc:
        raise _fail(str(exc)) from None
    table = Table(title="scenario catalogue")
    for col in ("id", "seed", "variant", "title", "category"):
        table.add_column(col, overflow="fold")
    for sc in catalogue.scenarios.values():
        for i, v in enumerate(sc.variants):
            table.add_row(f"{sc.id} v{sc.version}" if i == 0 else "", str(sc.seed or "-") if i == 0 else "", v.id,
                          v.title, v.ground_truth.category if v.ground_truth else "-")
    console.print(table)


@scenarios_app.command("validate")
def validate_command(files: Annotated[list[Path], typer.Argument(help="scenario files")]) -> None:
    """Check scenario files against the schema and the code that would run them (all errors at once)."""
    from sockdrill.scenarios.catalogue_loader import load_scenario_file

    errors = []
    for f in files:
        try:
            sc = load_scenario_file(f)
            console.print(f"{f}: ok ({len(sc.variants)} variants)")
        except SockdrillError as exc:
            errors.append(str(exc))
    if errors:
        raise _fail("\n".join(errors))


@scenarios_app.command("rules")
def rules_command(
    profile: Annotated[str, typer.Option(help="time scale of the alert windows: fast or standard")] = "standard",
    out: Annotated[Path | None, typer.Option(help="write the rule file here (default: print it)")] = None,
    runbook_base: Annotated[str | None, typer.Option(help="URL prefix of the runbooks (default: this "
                                                     "installation's runbooks folder as file:// URLs)")] = None,
) -> None:
    """Prometheus recording and alerting rules (multi-window burn rates) for every journey SLO."""
    import yaml

    from sockdrill.scenarios.alert_rules import shop_rules
    from sockdrill.slo.slo import get_profile

    try:
        rules = shop_rules(get_profile(profile), runbook_base)
    except SockdrillError as exc:
        raise _fail(str(exc), 2) from None
    text = yaml.safe_dump(rules, sort_keys=False, width=200)
    if out is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        raise _fail(f"--out: cannot write {out}: {exc.strerror}") from None
    n = sum(len(g["rules"]) for g in rules["groups"])
    console.print(f"{out}: {n} rules ({profile} profile)")


@scenarios_app.command("dashboards")
def dashboards_command(
    out: Annotated[Path, typer.Option(help="folder for the dashboards' JSON files (Grafana provisioning)")],
) -> None:
    """Grafana dashboards as code: one per key user journey and one for the platform."""
    import json

    from sockdrill.scenarios.dashboards import all_dashboards

    try:
        boards = all_dashboards()
        out.mkdir(parents=True, exist_ok=True)
        for name, board in boards.items():
            (out / name).write_text(json.dumps(board, indent=2) + "\n")
    except OSError as exc:
        raise _fail(f"--out: cannot write to {out}: {exc.strerror}") from None
    except SockdrillError as exc:
        raise _fail(str(exc)) from None
    console.print(f"{out}: {len(boards)} dashboards ({', '.join(sorted(boards))})")
