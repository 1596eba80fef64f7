"""``sockdrill load``: send customer journeys at the shop and print what customers saw."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sockdrill.errors import SockdrillError
from sockdrill.load.config import parse_duration, parse_mix, parse_think
from sockdrill.load.shapes import SHAPES
from sockdrill.load.sli import DEFAULT_MIX, LoadSummary

console = Console()
err = Console(stderr=True)

DEFAULT_JOURNEYS = ",".join(f"{k}:{v}" for k, v in DEFAULT_MIX.items())


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _default_stats_path(data_dir: Path | None) -> Path | None:
    from sockdrill.cluster.client import default_data_dir

    root = (data_dir or default_data_dir()) / "runs" / "load"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return root / f"load-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"


def last_record(path: str | None) -> dict[str, Any] | None:
    """The newest per-second record of a stats stream (reads only the file's tail)."""
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 65536))
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)  # type: ignore[no-any-return]
        except ValueError:
            continue
    return None


def _interrupt(*_args: Any) -> None:
    raise KeyboardInterrupt


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_summary(summary: LoadSummary, out: Console = console) -> None:
    title = (f"load on {summary.host}: {summary.shape}, seed {summary.seed}, {summary.duration_s:.1f}s, "
             f"peak {summary.peak_users} users ({summary.stop_reason})")
    table = Table(title=title)
    for col in ("journey", "runs", "failed", "declined", "error %", "per s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "journey" else "right")
    for name, j in summary.journeys.items():
        colour = "red" if j["failures"] else "green"
        table.add_row(name, str(j["count"]), f"[{colour}]{j['failures']}[/{colour}]", str(j["declines"]),
                      f"{100 * j['error_rate']:.2f}", f"{j['rate']:.2f}", _ms(j["p50_ms"]), _ms(j["p95_ms"]),
                      _ms(j["p99_ms"]))
    out.print(table)
    steps = Table(title="steps")
    for col in ("step", "requests", "failed", "error %", "p50 ms", "p95 ms", "p99 ms"):
        steps.add_column(col, justify="left" if col == "step" else "right")
    for name, s in summary.steps.items():
        steps.add_row(name, str(s["count"]), str(s["failures"]), f"{100 * s['error_rate']:.2f}", _ms(s["p50_ms"]),
                      _ms(s["p95_ms"]), _ms(s["p99_ms"]))
    out.print(steps)
    for why, count in list(summary.errors.items())[:10]:
        out.print(f"[red]{count}×[/red] {why}", highlight=False, markup=True)
    out.print(f"{summary.requests} requests ({summary.rps:.1f}/s), {summary.request_failures} failed; "
              f"generator CPU {summary.generator_cpu_s:.2f}s"
              + (f"; per-second stats in {summary.stats_path}" if summary.stats_path else ""), highlight=False)


def load(
    journeys: Annotated[str, typer.Option(help="journeys and weights, e.g. browse:5,login:2,checkout:1 "
                                          "(browse, login, cart, checkout, order-status, classic)")]
    = DEFAULT_JOURNEYS,
    users: Annotated[int, typer.Option(help="simulated users (the normal level for ramp/spike/step)",
                                       min=1, max=10_000)] = 5,
    spawn_rate: Annotated[float, typer.Option(help="users started per second", min=0.01)] = 5.0,
    duration: Annotated[str, typer.Option(help="how long to run, e.g. 60s, 5m")] = "60s",
    shape: Annotated[str, typer.Option(help=f"load shape: {' | '.join(SHAPES)}")] = "steady",
    peak_users: Annotated[int | None, typer.Option(help="users at the peak (ramp/spike/step; default 3x users)",
                                                   min=1, max=10_000)] = None,
    seed: Annotated[int, typer.Option(help="seed of every random choice the users make")] = 1,
    host: Annotated[str | None, typer.Option(help="target URL (default: the running shop's front-end)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    think: Annotated[str, typer.Option(help="seconds a user waits between journeys, e.g. 1 or 0.5-2")] = "0.5-1.5",
    requests: Annotated[int | None, typer.Option(help="stop after about this many requests", min=1)] = None,
    timeout: Annotated[float, typer.Option(help="client timeout per request, seconds", min=0.1)] = 10.0,
    accounts: Annotated[int | None, typer.Option(help="generated users in the shop (default: from the "
                                                 "runtime, else probed with logins)", min=0)] = None,
    stats_file: Annotated[Path | None, typer.Option(help="where the per-second stats go (JSON lines)")] = None,
    recorder_url: Annotated[str | None, typer.Option(help="flight recorder to push to (default: the runtime's)")]
    = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="the runtime's data dir")] = None,
    return_after: Annotated[str, typer.Option(help="how long a returning shopper (return-visit) stays away, "
                                              "e.g. 30s, 30m")] = "30s",
) -> None:
    """Run customer journeys against the shop (Locust, headless) and print their latency and failures."""
    from sockdrill.load.runner import start_load

    try:
        mix = parse_mix(journeys)
        seconds = parse_duration(duration)
        think_range = parse_think(think)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        away = parse_duration(return_after)
        if away <= 0:
            raise ValueError("it must be more than 0 s")
    except ValueError as exc:
        raise _fail(f"--return-after: {exc}") from None
    if shape not in SHAPES:
        from sockdrill.errors import did_you_mean

        raise _fail(f"--shape: unknown shape '{shape}'" + did_you_mean(shape, SHAPES))
    if peak_users is not None and peak_users < users:
        raise _fail(f"--peak-users ({peak_users}) must be at least --users ({users})")
    if host is not None and not host.startswith(("http://", "https://")):
        raise _fail(f"--host must be an http(s) URL like http://127.0.0.1:8079, got {host!r}")
    stats_path = stats_file if stats_file is not None else _default_stats_path(data_dir)
    try:
        run = start_load(host, mix, users, spawn_rate, seconds, shape, peak_users, seed, recorder_url,
                         data_dir=data_dir, think=think_range, timeout=timeout, max_requests=requests,
                         accounts=accounts, stats_path=stats_path, return_after=away)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except SockdrillError as exc:
        raise _fail(str(exc), 1) from None
    available = run.config.accounts or 3
    if run.config.peak > available:
        err.print(f"warning: {run.config.peak} users share {available} accounts "
                  f"({'generated' if run.config.accounts else 'seeded'}); carts may clash. "
                  "Start the shop with more --users.", highlight=False)
    # A SIGTERM to the CLI stops the run like Ctrl-C does (the Locust child has its own session).
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if json_out:
            summary = run.wait()
        else:
            with console.status("load starting…") as spinner:
                while run.running:
                    rec = last_record(run.config.stats_path)
                    if rec:
                        failed = sum(j["failures"] for j in rec["journeys"].values())
                        spinner.update(f"load: {rec['elapsed']:.0f}/{seconds:.0f}s, {rec['users']} users, "
                                       f"{rec['requests']['rps']:.0f} req/s, {failed} failed journeys this second")
                    time.sleep(0.5)
                summary = run.wait()
    except KeyboardInterrupt:
        run.stop()
        summary = run.wait()
    except SockdrillError as exc:
        raise _fail(str(exc), 1) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if json_out:
        console.print_json(json.dumps(summary.to_dict()))
    else:
        print_summary(summary)
