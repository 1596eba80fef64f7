"""``sockdrill ui``: serve the control room for the runs under a folder, live ones included."""

from __future__ import annotations

import asyncio
import sys
import urllib.parse
from pathlib import Path
from typing import Annotated

import typer


def ui_command(
    runs: Annotated[Path, typer.Argument(help="the runs folder (what `sockdrill run --out` wrote), or one run "
                                         "directory in it")] = Path("runs"),
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0: any free one)", min=0, max=65535)] = 0,
) -> None:
    """The control room: journeys' SLIs and error budgets, alerts, the topology's edge health and the agent's
    actions, for runs in progress (refreshed every 2 s; the fault is never shown) and finished ones.
    Prints its URL, which carries the token the page's API asks for; Ctrl-C stops it."""
    from sockdrill.ui.server import new_token, serve

    path = runs.expanduser().resolve()
    chosen = None
    if (path / "journal.json").is_file() or (path / "live.json").is_file():
        path, chosen = path.parent, path.name
    if not path.is_dir():
        typer.echo(f"error: no runs folder at {runs} (run a scenario first: sockdrill run ... --out {runs})",
                   err=True)
        raise typer.Exit(2)

    def announce(url: str) -> None:
        if chosen:
            url += "&run=" + urllib.parse.quote(chosen)
        print(f"control room for {path}: {url}", flush=True)

    try:
        asyncio.run(serve(path, port, new_token(), announce))
    except OSError as exc:
        typer.echo(f"error: cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        sys.exit(0)
