"""The ``sockdrill`` command: thin verbs over the library; errors are one line and a non-zero exit."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sockdrill.errors import SockdrillError
from sockdrill.load.cli import load as load_command

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="sockdrill: a proving ground for SRE agents on a local Sock Shop.")
# Piped output is not cut to 80 columns: tables stay whole for scripts and logs.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="where the runtime keeps its state and data "
                                              "(default: $SOCKDRILL_DATA_DIR, /var/lib/sockdrill as root)")]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise fail(f"{what} must look like NAME=VALUE, got {item!r}", 2)
        out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------------------------------------- up/down
@app.command()
def up(
    replicas: Annotated[list[str], typer.Option("--replicas", help="SVC=N, repeatable")] = [],  # noqa: B006
    port: Annotated[int, typer.Option(help="front-end port on 127.0.0.1", min=1, max=65535)] = 8079,
    data_dir: DataDir = None,
    fresh: Annotated[bool, typer.Option(help="wipe stored data first")] = False,
    users: Annotated[int, typer.Option(help="generated users to add to user-db", min=0, max=2_000_000)] = 0,
    products: Annotated[int, typer.Option(help="generated products to add", min=0, max=200_000)] = 0,
    seed: Annotated[int, typer.Option(help="seed for generated data and mesh randomness")] = 1,
    amqp_url: Annotated[str | None, typer.Option(help="use this RabbitMQ for the shipping queue")] = None,
    store_url: Annotated[list[str], typer.Option("--store-url", help="STORE=URL: an external store "
                                                 "replaces the embedded one")] = [],  # noqa: B006
    timeout: Annotated[float, typer.Option(help="seconds to wait for readiness", min=1)] = 120.0,
    json_out: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
    prometheus: Annotated[str, typer.Option(help="auto | on | off: run Prometheus beside the flight recorder "
                                            "(auto: when the binary is installed)")] = "auto",
) -> None:
    """Bring the whole shop up and return once every pod is ready."""
    import os

    if prometheus not in ("auto", "on", "off"):
        raise fail(f"--prometheus must be auto, on or off, got {prometheus!r}", 2)
    if prometheus == "on":
        from sockdrill.telemetry.prometheus import find_prometheus

        if find_prometheus() is None:
            raise fail("--prometheus on: no 'prometheus' binary on PATH (apt-get install prometheus)", 2)
    os.environ["SOCKDRILL_PROMETHEUS"] = prometheus  # inherited by the supervisor, then by the recorder
    from sockdrill.cluster import client
    from sockdrill.shop.manifest import service_names, shop_deployments

    reps = {k: _int(v, f"--replicas {k}") for k, v in _pairs(replicas, "--replicas").items()}
    known = service_names()
    for name in reps:
        if name not in known:
            from sockdrill.errors import did_you_mean

            raise fail(f"--replicas: unknown service '{name}'" + did_you_mean(name, known), 2)
    externals = _pairs(store_url, "--store-url")
    if amqp_url is not None and not amqp_url.startswith(("amqp://", "amqps://")):
        raise fail(f"--amqp-url must start with amqp://, got {amqp_url!r}", 2)
    env = {"SOCKDRILL_DATA_USERS": str(users), "SOCKDRILL_DATA_PRODUCTS": str(products)}
    try:
        specs = shop_deployments(replicas=reps, front_end_port=port, amqp_url=amqp_url, external=externals)
        stores = {s.name for s in specs if s.kind != "service"}
        for name in externals:
            if name not in stores:
                from sockdrill.errors import did_you_mean

                raise fail(f"--store-url: '{name}' is not a store" + did_you_mean(name, stores), 2)
        started = time.monotonic()
        with console.status("starting the shop…") as spinner:
            def progress(status: dict[str, Any]) -> None:
                deps = status["deployments"]
                ready = sum(1 for d in deps if d["ready_replicas"] >= d["replicas"] or d["external"])
                spinner.update(f"starting the shop… {ready}/{len(deps)} deployments ready")

            rc, already = client.up(specs, data_dir=data_dir, seed=seed, fresh=fresh, timeout=timeout,
                                    pod_env=env, progress=progress)
    except SockdrillError as exc:
        raise fail(str(exc)) from None
    url = rc.record.get("front_end_url")
    if json_out:
        # Addresses without their passwords: this output ends up in terminals, logs and CI transcripts.
        from sockdrill.cluster.state import without_password

        console.print_json(json.dumps({"already_up": already, "front_end_url": url,
                                       "addresses": {k: without_password(str(v)) for k, v in
                                                     rc.record.get("addresses", {}).items()}}))
        return
    if already:
        console.print(f"The shop is already up at {url} (data dir {rc.data_dir}).")
        return
    console.print(f"[green]The shop is up[/green] at {url}  ({time.monotonic() - started:.1f}s, "
                  f"data dir {rc.data_dir})")


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise fail(f"{what} must be an integer, got {value!r}", 2) from None


@app.command()
def down(data_dir: DataDir = None,
         purge: Annotated[bool, typer.Option(help="also delete the shop's data: stores, logs, recorded "
                                             "telemetry and state in the data dir, and its PostgreSQL "
                                             "clusters kept outside it")] = False,
         purge_cache: Annotated[bool, typer.Option(help="also delete the machine's cache (the PostgreSQL "
                                                   "binaries and template, generated images, the interpreter "
                                                   "and code copies the agents' and pods' users "
                                                   "run)")] = False) -> None:
    """Stop everything and leave no process, listener, cgroup or fault behind."""
    import shutil

    from sockdrill.cluster import client

    try:
        done = client.down(data_dir, purge=purge)
    except SockdrillError as exc:
        raise fail(str(exc)) from None
    stopped = [d for d in done if not d.startswith("data removed")]
    console.print("The shop is down." if stopped else "Nothing was running.")
    if purge:
        console.print(f"Removed the shop's data ({client.default_data_dir() if data_dir is None else data_dir}).")
    if purge_cache:
        cache = client.default_cache_dir()
        shutil.rmtree(cache, ignore_errors=True)
        console.print(f"Removed the cache ({cache}).")


# ---------------------------------------------------------------------------------------------- views
def _connect(data_dir: Path | None) -> Any:
    from sockdrill.cluster.client import RuntimeClient

    try:
        return RuntimeClient.connect(data_dir)
    except SockdrillError as exc:
        raise fail(str(exc)) from None


def _call(data_dir: Path | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    rc = _connect(data_dir)
    try:
        return rc.call(method, path, body)
    except SockdrillError as exc:
        raise fail(str(exc)) from None


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "Ki", "Mi", "Gi"):
        if n < 1024:
            return f"{n:.0f}{unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n:.1f}Ti"


@app.command()
def status(data_dir: DataDir = None,
           json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Deployments, their pods (pid, ready, restarts, limits) and host addresses."""
    data = _call(data_dir, "GET", "/v1/status")
    if json_out:
        console.print_json(json.dumps(data, default=str))
        return
    table = Table(title=f"sockdrill — {'ready' if data['ready'] else 'NOT ready'}")
    for col in ("deployment", "pod", "status", "ready", "pid", "restarts", "cpu", "mem", "address"):
        table.add_column(col, overflow="fold")
    for dep in data["deployments"]:
        lim = dep["limits"]
        cpu = f"{lim['cpu_millicores']}m" if lim["cpu_millicores"] else "-"
        mem = _fmt_bytes(lim["memory_bytes"]) if lim["memory_bytes"] else "-"
        if dep["external"]:
            table.add_row(dep["name"], "(external)", "-", "-", "-", "-", "-", "-", dep["address"] or "")
        for i, pod in enumerate(dep["pods"]):
            table.add_row(dep["name"] if i == 0 else "", pod["name"], pod["status"], "yes" if pod["ready"] else "no",
                          str(pod["pid"] or "-"), str(pod["restarts"]), cpu, mem, dep["address"] if i == 0 else "")
    console.print(table)


@app.command("admin-panel")
def admin_panel(data_dir: DataDir = None) -> None:
    """Where the shop's staff admin panel is and its login (the operator's: read from state/runtime.json)."""
    rc = _connect(data_dir)
    staff = rc.record.get("staff") or {}
    url = rc.record.get("front_end_url")
    if not staff.get("password") or not url:
        raise fail("this shop has no staff login recorded (it was started by an older sockdrill: restart it)")
    console.print(f"{url}/admin.html  user [bold]{staff.get('username', 'admin')}[/bold]  password "
                  f"[bold]{staff['password']}[/bold]", markup=True, highlight=False)


@app.command()
def doctor(data_dir: DataDir = None,
           json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Who may read the shop's secrets and folders, and which user each pod runs as (exit 1 on a problem)."""
    from sockdrill.cluster.client import default_data_dir
    from sockdrill.cluster.state import security_report

    report = security_report((data_dir or default_data_dir()).expanduser().resolve())
    if json_out:
        console.print_json(json.dumps(report, default=str))
    else:
        table = Table(title=f"sockdrill doctor — {report['data_dir']}")
        for col in ("path", "holds", "mode", "owner", "ok"):
            table.add_column(col, overflow="fold")
        for p in report["paths"]:
            if p["exists"]:
                table.add_row(p["path"], p["what"], p["mode"], p["owner"], "yes" if p["ok"] else "NO")
        console.print(table)
        procs = Table(title="processes")
        for col in ("name", "role", "pid", "user"):
            procs.add_column(col)
        for p in report["processes"]:
            procs.add_row(p["name"], p["role"], str(p["pid"]), p["user"])
        console.print(procs)
        for note in report["notes"]:
            console.print(f"note: {note}", highlight=False)
        for problem in report["problems"]:
            err.print(f"[red]problem:[/red] {problem}", highlight=False)
        if report["ok"]:
            console.print("[green]no problem found[/green]")
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def describe(service: str, data_dir: DataDir = None) -> None:
    """Everything about one deployment: pods, readiness, restarts, limits, knobs, env."""
    console.print_json(json.dumps(_call(data_dir, "GET", f"/v1/describe/{service}"), default=str))


# ---------------------------------------------------------------------------------------------- actions
@app.command()
def restart(target: Annotated[str, typer.Argument(help="SVC or SVC/POD")], data_dir: DataDir = None) -> None:
    """Replace a pod, or roll every pod of a deployment."""
    dep, _, pod = target.partition("/")
    body: dict[str, Any] = {"deployment": dep}
    if pod:
        body["pod"] = pod
    out = _call(data_dir, "POST", "/v1/restart", body)
    console.print(f"restarted {', '.join(out['restarted'])}")


@app.command()
def scale(service: str, replicas: Annotated[int, typer.Argument(min=0, max=16)], data_dir: DataDir = None) -> None:
    """Set the number of pods of a service."""
    out = _call(data_dir, "POST", "/v1/scale", {"deployment": service, "replicas": replicas})
    console.print(f"{service}: {out['before']} → {out['replicas']} replicas")


@app.command()
def limits(
    service: str,
    cpu: Annotated[str | None, typer.Option(help="CPU limit, e.g. 100m or 0.5")] = None,
    memory: Annotated[str | None, typer.Option(help="memory limit, e.g. 256Mi")] = None,
    clear: Annotated[bool, typer.Option(help="remove both limits")] = False,
    data_dir: DataDir = None,
) -> None:
    """Set or clear CPU/memory limits of every pod of a deployment (cgroups)."""
    if cpu is None and memory is None and not clear:
        raise fail("give --cpu and/or --memory, or --clear", 2)
    out = _call(data_dir, "POST", "/v1/limits", {"deployment": service, "cpu": cpu, "memory": memory,
                                                 "clear": clear})
    lim = out["limits"]
    cpu_text = f"{lim['cpu_millicores']}m" if lim["cpu_millicores"] else "unlimited"
    mem_text = _fmt_bytes(lim["memory_bytes"]) if lim["memory_bytes"] else "unlimited"
    console.print(f"{service}: cpu {cpu_text}, memory {mem_text}")


config_app = typer.Typer(help="Service knobs: show, set (live) and roll back.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(service: str, data_dir: DataDir = None) -> None:
    """The knobs a deployment has been given (defaults are not listed)."""
    console.print_json(json.dumps(_call(data_dir, "GET", f"/v1/describe/{service}")["knobs"]))


@config_app.command("set")
def config_set(service: str, knobs: Annotated[list[str], typer.Argument(help="KNOB=VALUE ...")],
               data_dir: DataDir = None) -> None:
    """Change knobs on every pod now; new pods inherit them."""
    values: dict[str, Any] = {}
    for k, v in _pairs(knobs, "knob").items():
        try:
            values[k] = json.loads(v)
        except ValueError:
            values[k] = v
    out = _call(data_dir, "POST", "/v1/config", {"deployment": service, "knobs": values})
    console.print(f"{service}: {json.dumps(out['knobs'])}")


@config_app.command("rollback")
def config_rollback(service: str, data_dir: DataDir = None) -> None:
    """Undo the last knob change."""
    out = _call(data_dir, "POST", "/v1/config/rollback", {"deployment": service})
    console.print(f"{service}: restored {json.dumps(out['restored'])}")


# ---------------------------------------------------------------------------------------------- logs
@app.command()
def logs(
    service: str,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="keep printing new lines")] = False,
    grep: Annotated[str | None, typer.Option(help="only lines containing this text")] = None,
    level: Annotated[str | None, typer.Option(help="only this level or worse (info, warning, error)")] = None,
    since: Annotated[str | None, typer.Option(help="only the last DURATION, e.g. 5m, 30s")] = None,
    tail: Annotated[int, typer.Option(help="lines to show before following", min=0)] = 200,
    data_dir: DataDir = None,
) -> None:
    """Print a deployment's pod logs (JSON lines for services, raw text for stores)."""
    from sockdrill.cluster.client import default_data_dir
    from sockdrill.cluster.logfiles import LogFilter, follow_files, pod_log_files, read_lines

    root = data_dir or default_data_dir()
    files = pod_log_files(root, service)
    if not files:
        from sockdrill.shop.manifest import shop_deployments

        names = {d.name for d in shop_deployments()}
        if service not in names:
            from sockdrill.errors import did_you_mean

            raise fail(f"unknown service '{service}'" + did_you_mean(service, names))
        raise fail(f"no logs for '{service}' under {root / 'logs'}")
    try:
        filt = LogFilter.build(grep=grep, level=level, since=since)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    for line in read_lines(files, filt, tail):
        sys.stdout.write(line + "\n")
    if follow:
        try:
            for line in follow_files(files, filt):
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass


# ---------------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    scenario: Annotated[str, typer.Option(help="the variant to run")] = "order-failure/payment-timeout-config",
    agent: Annotated[str, typer.Option(help="the agent on call")] = "baseline",
    out: Annotated[Path, typer.Option(help="where the run directory goes")] = Path("runs"),
    fault: Annotated[Path | None, typer.Option(help="a scenario file outside the catalogue "
                                               "(--scenario then names its id/variant)")] = None,
) -> None:
    """One scenario end to end on a fresh shop (up, load, fault, agent, score, report, down).
    Exits non-zero (3) when the run was invalid or errored."""
    from sockdrill.scenarios.cli import run_command

    console.print(f"sockdrill demo: {scenario} with the {agent} agent, fast profile "
                  "(a fresh shop comes up and goes down again)")
    run_command(target=scenario, agent=agent, profile="fast", seed=1, out=out, fault=fault, data_dir=None,
                mode="investigation", model=None, json_out=False)


# ---------------------------------------------------------------------------------------------- bench
@app.command()
def bench(
    what: Annotated[str, typer.Argument(help="runtime | shop | load | chaos | recorder | tracing | agents | "
                                        "autopilot | scenarios | validity | soak | headroom | scale | all | "
                                        "rcaeval")] = "all",
    runs: Annotated[list[Path] | None, typer.Argument(help="rcaeval: the run directories to rank")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    duration: Annotated[float, typer.Option(help="seconds per measurement", min=1, max=600)] = 5.0,
    python: Annotated[str | None, typer.Option(help="rcaeval: an interpreter that has RCAEval (see "
                                               "sockdrill/bench/rcaeval.py for how to make one)")] = None,
) -> None:
    """Measure the figures in the README on this machine."""
    from sockdrill.bench import BENCHES, run_benches

    if what == "rcaeval":
        _bench_rcaeval(runs or [], python, json_out)
        return

    names = list(BENCHES) if what == "all" else [what]
    for name in names:
        if name not in BENCHES:
            from sockdrill.errors import did_you_mean

            raise fail(f"unknown benchmark '{name}'" + did_you_mean(name, BENCHES), 2)
    try:
        results = run_benches(names, duration=duration, console=None if json_out else console)
    except SockdrillError as exc:
        raise fail(str(exc)) from None
    if json_out:
        console.print_json(json.dumps(results, default=str))


def _bench_rcaeval(runs: list[Path], python: str | None, json_out: bool) -> None:
    from sockdrill.bench.rcaeval import METHODS
    from sockdrill.bench.rcaeval import bench as rcaeval

    if not runs or not python:
        raise fail("bench rcaeval needs run directories and --python (an interpreter that has RCAEval)", 2)
    missing = [str(r) for r in runs if not (r / "journal.json").is_file()]
    if missing:
        raise fail(f"not run directories (no journal.json): {', '.join(missing)}", 2)
    try:
        results = rcaeval(runs, python)
    except SockdrillError as exc:
        raise fail(str(exc)) from None
    if json_out:
        console.print_json(json.dumps(results, default=str))
        return
    table = Table(title=f"RCAEval's methods on {len(results['runs'])} fault runs")
    for col in ("part", "runs", *(f"{m} AC@1 / AC@3" for m in METHODS)):
        table.add_column(col)
    for part, row in results["summary"].items():
        table.add_row(part, str(row["runs"]), *(f"{row[m]['ac1']} / {row[m]['ac3']}"
                                                + (f" ({row[m]['failed']} failed)" if row[m]["failed"] else "")
                                                for m in METHODS))
    console.print(table)


app.command("load")(load_command)

from sockdrill.chaos.cli import app as chaos_app  # noqa: E402 - the chaos room's verbs

app.add_typer(chaos_app, name="chaos")


from sockdrill.scenarios.cli import report_command, run_command, scenarios_app  # noqa: E402

app.command("run")(run_command)
app.command("report")(report_command)
app.add_typer(scenarios_app, name="scenarios")


from sockdrill.agents.cli import agent_app, mcp_command  # noqa: E402 - the agent's tools by hand and over MCP

app.add_typer(agent_app, name="agent")
app.command("mcp")(mcp_command)

from sockdrill.telemetry.cli import register as register_telemetry  # noqa: E402 - metrics, traces, export

register_telemetry(app)

from sockdrill.ui.cli import ui_command  # noqa: E402 - the control room

app.command("ui")(ui_command)


def main() -> None:
    try:
        app()
    except SockdrillError as exc:  # anything a command did not catch itself
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
