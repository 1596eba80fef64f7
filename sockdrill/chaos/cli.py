"""``sockdrill chaos``: kinds, inject, status, clear, render — thin verbs over the controller's routes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sockdrill.errors import SockdrillError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Inject, list, clear and render faults.")
console = Console()
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="the runtime's data directory")]
Params = Annotated[list[str], typer.Option("--param", "-p", help="NAME=VALUE (JSON values allowed), repeatable")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)  # one line, unwrapped: scripts grep it
    return typer.Exit(code)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _fail(f"--param must look like NAME=VALUE, got {item!r}", 2)
        out[key.strip()] = _value(value.strip())
    return out


def _fault(kind: str, target: str, params: list[str], duration: str, pod: str | None, mode: str,
           schedule: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": kind, "target": target, "params": _params(params), "duration": duration,
                            "mode": mode}
    if pod:
        data["pod"] = pod
    if schedule:
        data["schedule"] = schedule
    return data


def _client(data_dir: Path | None) -> Any:
    from sockdrill.cluster.client import RuntimeClient

    return RuntimeClient.connect(data_dir)


@app.command("kinds")
def kinds(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the fault kinds with their parameters."""
    from sockdrill.chaos.kinds import describe_kinds

    data = describe_kinds()
    if json_out:
        console.print_json(json.dumps(data))
        return
    table = Table(title="fault kinds")
    for col in ("kind", "target", "params", "renders as", "summary"):
        table.add_column(col)
    for k in data:
        params = ", ".join(f"{n}={v.get('default')}" for n, v in k["params"].items()) or "-"
        table.add_row(k["kind"] + ("" if k["local"] else " (render only)"), k["target"], params,
                      k["chaos_mesh"], k["summary"])
    console.print(table)


@app.command("inject")
def inject(
    kind: Annotated[str, typer.Argument(help="a fault kind, e.g. network.delay (see `chaos kinds`)")],
    target: Annotated[str, typer.Option("--target", "-t", help="deployment, or edge src->dst / *->dst / src->*")],
    param: Params = [],  # noqa: B006
    duration: Annotated[str, typer.Option(help="how long, e.g. 60s, 5m")] = "60s",
    pod: Annotated[str | None, typer.Option(help="only this pod")] = None,
    mode: Annotated[str, typer.Option(help="all | one (one pod, drawn with the run's seed)")] = "all",
    json_out: Annotated[bool, typer.Option("--json", help="print the fault record as JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """Inject a fault; prints its id. It is reverted after --duration even if this command is killed."""
    from sockdrill.chaos.spec import parse_fault

    data = _fault(kind, target, param, duration, pod, mode)
    try:
        parse_fault(data)  # the same validation as the runtime's, before any connection
        result = _client(data_dir).post("/v1/chaos/inject", data)
    except SockdrillError as exc:
        raise _fail(str(exc)) from None
    if json_out:
        console.print_json(json.dumps(result, default=str))
    else:
        print(result["id"])


@app.command("status")
def status(json_out: Annotated[bool, typer.Option("--json")] = False, data_dir: DataDir = None) -> None:
    """Active faults (the operator's view; agents never see this)."""
    try:
        faults = _client(data_dir).get("/v1/chaos/faults")
    except SockdrillError as exc:
        raise _fail(str(exc)) from None
    if json_out:
        console.print_json(json.dumps(faults, default=str))
        return
    if not faults:
        console.print("no active faults")
        return
    table = Table(title="active faults")
    for col in ("id", "kind", "target", "params", "remaining"):
        table.add_column(col)
    for f in faults:
        target = f["target"] + (f" ({f['pod']})" if f.get("pod") else "")
        table.add_row(f["id"], f["kind"], target, json.dumps(f["params"]), f"{f['remaining_s']:.1f}s")
    console.print(table)


@app.command("clear")
def clear(fault_id: Annotated[str | None, typer.Argument(help="a fault id (default: every fault)")] = None,
          data_dir: DataDir = None) -> None:
    """Revert one fault, or all of them."""
    try:
        body = {"id": fault_id} if fault_id else {}
        result = _client(data_dir).post("/v1/chaos/clear", body)
    except SockdrillError as exc:
        raise _fail(str(exc)) from None
    cleared = result.get("cleared", [])
    console.print(f"reverted {len(cleared)} fault(s)" + (": " + ", ".join(cleared) if cleared else ""))


@app.command("render")
def render(
    spec_file: Annotated[Path | None, typer.Argument(help="YAML: a fault, a list, or {faults: [...]}")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="render one fault given on the command line")] = None,
    target: Annotated[str | None, typer.Option("--target", "-t")] = None,
    param: Params = [],  # noqa: B006
    duration: Annotated[str, typer.Option()] = "60s",
    pod: Annotated[str | None, typer.Option()] = None,
    mode: Annotated[str, typer.Option()] = "all",
    schedule: Annotated[str | None, typer.Option(help="recur: cron or @every 10m (a Chaos Mesh Schedule)")] = None,
    namespace: Annotated[str, typer.Option()] = "sock-shop",
    selector_style: Annotated[str, typer.Option(help="upstream (name: <svc>) | sockdrill")] = "upstream",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """Write Kubernetes manifests (Chaos Mesh objects, or kubectl Jobs) for faults."""
    import yaml

    from sockdrill.chaos.render import RenderOptions, render_faults, to_yaml
    from sockdrill.chaos.spec import load_faults, parse_fault

    if selector_style not in ("upstream", "sockdrill"):
        raise _fail(f"--selector-style must be upstream or sockdrill, got {selector_style!r}", 2)
    if (spec_file is None) == (kind is None):
        raise _fail("give a SPEC.yaml or --kind (with --target), not both", 2)
    try:
        if spec_file is not None:
            try:
                doc = yaml.safe_load(spec_file.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise _fail(f"cannot read {spec_file}: {exc}", 2) from None
            specs = load_faults(doc)
        else:
            if not target:
                raise _fail("--kind needs --target", 2)
            specs = [parse_fault(_fault(kind or "", target, param, duration, pod, mode, schedule))]
        text = to_yaml(render_faults(specs, RenderOptions(namespace=namespace,
                                                          selector_style=selector_style)))  # type: ignore[arg-type]
    except SockdrillError as exc:
        raise _fail(str(exc), 2) from None
    if output:
        output.write_text(text)
        err.print(f"wrote {output}", highlight=False)
    else:
        print(text, end="")
