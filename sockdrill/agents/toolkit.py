"""What every room of the agent's tools shares: the run context, dispatch (registry check, step and
time budgets, audit), the runtime client and small argument and output helpers.

The rooms add the tools themselves: ``observe.py`` (what an on-call engineer reads), ``act.py`` (what
they may change; audited) and ``submit.py`` (the answer); ``tools.py`` puts them together as ``Tools``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sockdrill.agents.registry import TOOLS, check_args
from sockdrill.errors import SockdrillError, ToolError, did_you_mean

MAX_REPLICAS = 8
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(value: str, what: str) -> str:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ToolError(f"{what} must be a plain SQL identifier (lower-case letters, digits, _), got {value!r}")
    return value


QUEUE_GROUP = "queue-master"
DLQ_SUFFIX = ".dlq"
_DROP_LABELS = ("job", "namespace", "container", "instance", "datname", "schemaname")


def _paging(offset: int, limit: int, cap: int) -> tuple[int, int]:
    if offset < 0:
        raise ToolError(f"offset must be 0 or more, got {offset}")
    if limit < 1:
        raise ToolError(f"limit must be at least 1, got {limit}")
    return int(offset), min(int(limit), cap)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _num(v: float) -> float:
    """Four significant digits: enough to compare, short in an LLM's context."""
    if not math.isfinite(v) or v == 0:
        return 0.0 if not math.isfinite(v) else v
    return float(f"{v:.4g}")


def _clean_labels(labels: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in labels.items()
            if k not in _DROP_LABELS and not (k == "pod" and v == "supervisor") and k != "__name__"}


def _matchers(labels: dict[str, Any] | None) -> list[str]:
    out = []
    for k, v in (labels or {}).items():
        if not isinstance(k, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k):
            raise ToolError(f"label names are identifiers, got {k!r}")
        text = str(v)
        out.append(f"{k}=~{text[1:]}" if text.startswith("~") else f"{k}={text}")
    return out


_NOISE = re.compile(r"\b[0-9a-f]{8,}\b|\b\d+(\.\d+)?\b")


def _normalise_message(msg: str) -> str:
    """Group messages that differ only in ids and numbers."""
    return _short(_NOISE.sub("#", msg), 160)


def _compact_line(line: str) -> str:
    """A JSON log line as 'time level pod: message {fields}', cut to 400 characters."""
    try:
        rec = json.loads(line)
    except ValueError:
        return _short(line, 400)
    if not isinstance(rec, dict):
        return _short(line, 400)
    ts = str(rec.get("ts", rec.get("time", "")))[11:23]
    fields = rec.get("fields") or {}
    extra = f" {json.dumps(fields, separators=(',', ':'))}" if fields and fields.get("kind") != "access" else ""
    return _short(f"{ts} {rec.get('level', '')} {rec.get('pod', '')}: {rec.get('message', '')}{extra}", 400)


def _queue_name() -> str:
    from sockdrill.shop.queue import queue_name

    return queue_name()


_STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


def _streams(r: Any) -> list[str]:
    """Every stream on a Redis store (its dead-letter streams included), sorted."""
    return sorted(_s(k) for k in r.scan_iter(count=500, _type="stream"))


def _stream_and_group(r: Any, queue: str) -> tuple[str, str | None]:
    """The stream a queue tool works on (the shipping queue unless named) and its consumer group: the shipping
    queue's own, or the stream's one group (None when it has none). A name that is not a stream there is an
    error listing the streams that are."""
    name = queue or _queue_name()
    if queue:
        if not isinstance(queue, str) or not _STREAM_NAME.match(queue):
            raise ToolError(f"queue must be a stream name (letters, digits, . _ : -), got {queue!r}")
        try:
            kind = _s(r.type(name))
        except _redis_errors() as exc:
            raise ToolError(f"cannot read the queue store: {exc}") from None
        if kind != "stream":
            known = _streams(r)
            raise ToolError(f"no stream '{name}' on this queue store; streams: {', '.join(known) or 'none'}"
                            + did_you_mean(name, known))
    try:
        groups = [_s(g["name"]) for g in r.xinfo_groups(name)]
    except _redis_errors():
        groups = []
    if name == _queue_name() or QUEUE_GROUP in groups:
        return name, QUEUE_GROUP
    return name, groups[0] if len(groups) == 1 else (None if not groups else sorted(groups)[0])


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Submission:
    time: float
    detected: bool
    root_causes: list[str]
    category: str | None
    summary: str


@dataclass
class ToolContext:
    """What the tools need from the run: the runtime, where to audit, and the SLI source."""

    data_dir: Path
    audit_path: Path | None = None
    max_steps: int = 200
    slo_status: Callable[[], dict[str, Any]] | None = None
    alerts: Callable[[], list[dict[str, Any]]] | None = None
    runbooks: dict[str, str] = field(default_factory=dict)  # id → markdown
    # The run's own telemetry begins here (its reset): nothing older is shown, so an earlier run's
    # fault on a reused shop cannot look like this one's.
    scope_start: float | None = None


class ToolsBase:
    """Dispatch, audit and the helpers every room uses; ``Tools`` is the whole tool set."""

    def __init__(self, ctx: ToolContext) -> None:
        from sockdrill.cluster.client import RuntimeClient

        self.ctx = ctx
        self.client = RuntimeClient.connect(ctx.data_dir)
        self.steps = 0
        self.submission: Submission | None = None
        self.mitigation_done_at: float | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.deadline: float | None = None  # unix time after which calls are refused (set by the runner)
        self.actions: list[dict[str, Any]] = []
        self.audit_records: list[dict[str, Any]] = []
        self._interval: float | None = None

    # ---- dispatch ---------------------------------------------------------------------------
    def specs(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "kind": s.kind, "description": s.description, "parameters": s.parameters}
                for s in TOOLS.values()]

    def call(self, name: str, /, **args: Any) -> dict[str, Any]:
        """Run a tool by name; errors come back as ``{"ok": false, "error": ...}`` (one step spent)."""
        started = time.time()
        spec = TOOLS.get(name)
        if spec is None:
            result: dict[str, Any] = {"ok": False, "error": f"no tool '{name}'" + did_you_mean(name, TOOLS)}
        elif self.steps >= self.ctx.max_steps:
            result = {"ok": False, "error": f"step budget of {self.ctx.max_steps} exhausted"}
        elif self.deadline is not None and started > self.deadline:
            result = {"ok": False, "error": "time budget exhausted"}
        else:
            problems = check_args(spec, args)
            if problems:
                result = {"ok": False, "error": "; ".join(problems)}
            else:
                try:
                    out = getattr(self, spec.func_name)(**args)
                    result = {"ok": True, "result": out}
                except SockdrillError as exc:
                    result = {"ok": False, "error": str(exc)}
                except Exception as exc:  # any failure is the agent's answer, and audited, never a crash
                    result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.steps += 1
        self._audit(name, args, result, started, spec.kind if spec else "unknown")
        return result

    def _audit(self, name: str, args: dict[str, Any], result: dict[str, Any], started: float, kind: str) -> None:
        rec = {"time": started, "tool": name, "kind": kind, "args": args, "ok": result.get("ok", False),
               "error": result.get("error"), "elapsed_s": round(time.time() - started, 4)}
        if kind == "act":
            rec["result"] = result.get("result")
            # Only a call that changed the system counts as acting (no dry run, no value set to itself).
            out = result.get("result")
            rec["changed"] = bool(result.get("ok")) and not (isinstance(out, dict) and out.get("changed") is False)
            self.actions.append(rec)
        self.audit_records.append(rec)
        if self.ctx.audit_path is not None:
            self.ctx.audit_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.ctx.audit_path, "a") as fh:
                fh.write(json.dumps(rec, default=str) + "\n")

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(path, body)

    def _address(self, service: str) -> str:
        addresses = self.client.record.get("addresses") or {}
        if service not in addresses:
            raise ToolError(f"unknown service '{service}'" + did_you_mean(service, addresses))
        return str(addresses[service])

    def _kind_of(self, service: str) -> str:
        return str(self.client.get(f"/v1/describe/{service}")["kind"])

    def _since(self, since_s: float, end: float | None = None) -> float:
        """A look-back window (seconds before ``end``, default now) cut at the run's scope start."""
        since = max(1.0, float(since_s))
        if self.ctx.scope_start is not None:
            since = min(since, max(1.0, (end or time.time()) - self.ctx.scope_start))
        return since

    @staticmethod
    def _third_party(described: dict[str, Any]) -> bool:
        return "third-party" in str(described.get("role", ""))

    def _own_service(self, service: str) -> None:
        """Config tools work on the shop's services, not on a third party's (the payment gateway)."""
        if self._third_party(self.client.get(f"/v1/describe/{service}")):
            raise ToolError(f"'{service}' is a third-party service: its configuration is not ours to change")

    def _redis(self, service: str) -> Any:
        import redis

        if self._kind_of(service) != "redis":
            raise ToolError(f"'{service}' is not a Redis datastore")
        return redis.Redis.from_url(self._address(service), socket_timeout=5)

    def _pg(self, service: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(conn)`` on a PostgreSQL datastore, as its operator (a session of its own for the call)."""
        import asyncpg

        if self._kind_of(service) != "postgres":
            raise ToolError(f"'{service}' is not a PostgreSQL datastore")
        url = self._address(service)

        async def run() -> Any:
            conn = await asyncpg.connect(url, timeout=5)
            try:
                return await fn(conn)
            finally:
                await conn.close()

        return asyncio.run(run())

    def count_tokens(self, prompt: int, completion: int) -> None:
        """LLM agents report what each model call cost; it lands in the run's efficiency score."""
        self.tokens_in += int(prompt)
        self.tokens_out += int(completion)
