"""``sockdrill agent ...`` (play the agent by hand) and ``sockdrill mcp`` (serve the tools over MCP).

Both use the same ``Tools`` as the Python API, against the shop running in ``--data-dir``; every call
is written to the session's audit log (``RUN/agent-audit.jsonl``).

    sockdrill agent tools
    sockdrill agent call metrics --arg name=http_request_duration_seconds --arg fn=p95 --arg by=service
    sockdrill agent call set_config --arg service=orders --arg 'knobs={"payment_timeout_s": 5}'
    sockdrill agent submit --detected --cause user-db --cause user --category query_inefficiency
    sockdrill mcp --http --port 8765
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sockdrill.errors import SockdrillError

agent_app = typer.Typer(help="Play the agent: list tools, call one, submit a diagnosis.", no_args_is_help=True)
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="the running shop's data dir "
                                              "(default: $SOCKDRILL_DATA_DIR)")]
RunDir = Annotated[Path | None, typer.Option("--run", help="session folder for the audit log "
                                             "(default: DATA_DIR/agent-sessions/<time>)")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _session_dir(data_dir: Path, run: Path | None) -> Path:
    if run is not None:
        return run
    base = data_dir / "agent-sessions"
    # One folder per day keeps a person's successive `agent call`s in one audit log.
    return base / time.strftime("%Y%m%d", time.gmtime())


def open_tools(data_dir: Path | None, run: Path | None, max_steps: int = 10_000) -> Any:
    from sockdrill.agents.tools import ToolContext, Tools
    from sockdrill.cluster.client import default_data_dir

    root = data_dir or default_data_dir()
    session = _session_dir(root, run)
    ctx = ToolContext(data_dir=root, audit_path=session / "agent-audit.jsonl", max_steps=max_steps,
                      runbooks=_runbooks())
    try:
        return Tools(ctx)
    except SockdrillError as exc:
        raise _fail(str(exc)) from None


def _runbooks() -> dict[str, str]:
    from sockdrill.scenarios.runner import collect_runbooks

    return collect_runbooks()


def parse_arg(item: str, schema: dict[str, Any] | None = None) -> tuple[str, Any]:
    """``k=v``, read by the parameter's type in the tool's schema: text for strings (``service=123`` stays
    "123"), JSON for numbers, booleans, lists and objects (a clear error when it is not); without a
    schema, JSON when it parses, else text."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise _fail(f"--arg must look like NAME=VALUE, got {item!r}", 2)
    key = key.strip()
    kind = ((schema or {}).get("properties", {}).get(key) or {}).get("type")
    if kind == "string":
        return key, raw
    try:
        value: Any = json.loads(raw)
    except ValueError:
        if kind in ("integer", "number", "boolean", "array", "object"):
            example = {"integer": "3", "number": "0.5", "boolean": "true", "array": '["a","b"]',
                       "object": '{"k": 1}'}[kind]
            raise _fail(f"--arg {key}: expected a {kind} (e.g. {key}={example}), got {raw!r}", 2) from None
        value = raw
    return key, value


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json or not sys.stdout.isatty():
        print(json.dumps(result, indent=1, default=str))
    else:
        Console().print_json(json.dumps(result, default=str))


@agent_app.command("tools")
def tools_command(json_out: Annotated[bool, typer.Option("--json", help="print the full schemas")] = False) -> None:
    """Every tool with its kind and description."""
    from sockdrill.agents.registry import all_tools

    specs = all_tools()
    if json_out:
        print(json.dumps([{"name": s.name, "kind": s.kind, "description": s.description,
                           "parameters": s.parameters} for s in specs.values()], indent=1))
        return
    for s in specs.values():
        args = ", ".join(f"{k}{'' if k in s.parameters.get('required', []) else '?'}"
                         for k in s.parameters["properties"])
        print(f"{s.kind:8} {s.name}({args})\n         {s.description}")


@agent_app.command("call")
def call_command(
    name: Annotated[str, typer.Argument(help="the tool")],
    arg: Annotated[list[str], typer.Option("--arg", help="NAME=VALUE (JSON or text), repeatable")] = [],  # noqa: B006
    data_dir: DataDir = None,
    run: RunDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="plain JSON output")] = False,
) -> None:
    """Call one tool against the running shop (audited)."""
    from sockdrill.agents.registry import all_tools

    spec = all_tools().get(name)
    args = dict(parse_arg(a, spec.parameters if spec else None) for a in arg)
    tools = open_tools(data_dir, run)
    result = tools.call(name, **args)
    _print(result, json_out)
    if not result.get("ok"):
        raise typer.Exit(1)


@agent_app.command("submit")
def submit_command(
    detected: Annotated[bool, typer.Option("--detected/--not-detected", help="is something wrong?")] = True,
    cause: Annotated[list[str], typer.Option("--cause", help="a root-cause component, best first; repeatable")] = [],  # noqa: B006
    category: Annotated[str, typer.Option(help="a diagnosis category (see: agent call categories)")] = "",
    summary: Annotated[str, typer.Option(help="what you found and did")] = "",
    mitigated: Annotated[bool, typer.Option("--mitigated", help="also say the problem is mitigated")] = False,
    data_dir: DataDir = None,
    run: RunDir = None,
) -> None:
    """Submit a diagnosis (and optionally the mitigation-done signal)."""
    tools = open_tools(data_dir, run)
    result = tools.call("submit", detected=detected, root_causes=list(cause), category=category, summary=summary)
    if result.get("ok") and mitigated:
        result = tools.call("mitigation_done")
    _print(result, True)
    if not result.get("ok"):
        raise typer.Exit(1)


def mcp_command(
    data_dir: DataDir = None,
    run: RunDir = None,
    http: Annotated[bool, typer.Option("--http", help="streamable HTTP on 127.0.0.1 instead of stdio")] = False,
    port: Annotated[int, typer.Option(help="HTTP port (0: a free one)", min=0, max=65535)] = 0,
    max_steps: Annotated[int, typer.Option(help="tool-call budget of the session", min=1)] = 10_000,
) -> None:
    """Serve the agent tools over MCP (stdio, or streamable HTTP with a per-run bearer token)."""
    import anyio

    from sockdrill.agents.mcp_server import new_token, serve_http, serve_stdio

    tools = open_tools(data_dir, run, max_steps=max_steps)
    session = tools.ctx.audit_path.parent if tools.ctx.audit_path else Path(".")
    if not http:
        anyio.run(serve_stdio, tools)
        return
    from sockdrill.cluster.ports import free_port

    token = new_token()
    chosen = port or free_port()

    def ready(url: str) -> None:
        # The token goes to stderr and to a 0600 file, never into a URL.
        err.print(f"MCP (streamable HTTP) at {url}\nAuthorization: Bearer {token}\n"
                  f"(also in {session / 'mcp.json'})", highlight=False)

    anyio.run(lambda: serve_http(tools, chosen, token, session / "mcp.json", ready))
