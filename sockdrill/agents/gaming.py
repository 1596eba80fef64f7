"""Gaming strategies: agents that try to score without finding or fixing anything.

sockdrill's scores are worth only what these fail to get. Each is a real agent (run it with
``--agent gaming-sleeper`` etc.); the test suite runs them against the live shop and requires each to
score < 0.35 on every fault variant, and the peeker to learn nothing.

- ``gaming-sleeper``: one harmless act (scales the front-end to the replicas it has), a guess, then waits.
- ``gaming-shotgun``: looks at every component, then names them all.
- ``gaming-majority``: a fixed answer per journey named in the report; no telemetry at all.
- ``gaming-replayer``: reads the runbook of the firing alert and applies every fix it lists.
- ``gaming-peeker``: asks for privileges and reaches past the tools for the answer (the control plane,
  the run directory, the catalogue, other processes); reports in its summary what it learned.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
import urllib.request
from typing import Any

from sockdrill.agents.base import Incident


def _wait(incident: Incident, leave_s: float = 2.0) -> None:
    while incident.time_left() > leave_s:
        time.sleep(min(1.0, incident.time_left() - leave_s))


def _topology(tools: Any) -> list[dict[str, Any]]:
    res = tools.call("topology")
    return list(res.get("result", {}).get("deployments", [])) if res.get("ok") else []


class Sleeper:
    def run(self, tools: Any, incident: Incident) -> None:
        front = next((d for d in _topology(tools) if d["name"] == "front-end"), {"replicas": 1})
        tools.call("scale", service="front-end", replicas=int(front.get("replicas") or 1))
        tools.call("submit", detected=True, root_causes=["user"], category="resource_saturation",
                   summary="a guess")
        _wait(incident)
        tools.call("mitigation_done")


class Shotgun:
    def run(self, tools: Any, incident: Incident) -> None:
        names = [d["name"] for d in _topology(tools)]
        for name in names:
            tools.call("describe", service=name)
        tools.call("submit", detected=True, root_causes=names, category="resource_saturation",
                   summary="everything is suspect")


# The most common answer per journey, fixed in advance (what a model trained on the catalogue would say).
MAJORITY = {"log": (["user-db"], "resource_saturation"), "order": (["payment"], "network_partition"),
            "charged": (["payment"], "network_partition"), "checkout": (["payment"], "network_partition")}


class MajorityGuesser:
    def run(self, tools: Any, incident: Incident) -> None:
        text = incident.text.lower()
        ranked, category = next((v for k, v in MAJORITY.items() if k in text), (["front-end"], "dependency_failure"))
        tools.call("submit", detected=True, root_causes=ranked, category=category, summary="the usual suspect")


_CALL = re.compile(r"`([a-z_]+)\((.*?)\)`")
_ARG = re.compile(r"""(\w+)\s*=\s*("[^"]*"|'[^']*'|\[[^\]]*\]|\{[^}]*\}|[\w.\-]+)""")


def _value(raw: str) -> Any:
    try:
        return json.loads(raw.replace("'", '"'))
    except ValueError:
        return raw


def runbook_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Every ``tool(arg=value, ...)`` a runbook writes in backticks, in order."""
    return [(m.group(1), {k: _value(v) for k, v in _ARG.findall(m.group(2))}) for m in _CALL.finditer(text)]


class RunbookReplayer:
    def run(self, tools: Any, incident: Incident) -> None:
        alerts = tools.call("alerts").get("result") or []
        books = tools.call("runbooks").get("result") or []
        wanted = " ".join(str(a.get("journey", "")) + " " + str(a.get("name", "")) for a in alerts).lower()
        chosen = [b for b in books if any(w and w in b["title"].lower() for w in wanted.split())] or books[:1]
        named: list[str] = []
        for book in chosen[:1]:
            text = tools.call("read_runbook", runbook_id=book["id"]).get("result") or ""
            for tool, args in runbook_calls(text):
                tools.call(tool, **args)
                if isinstance(args.get("service"), str) and args["service"] not in named:
                    named.append(args["service"])
        tools.call("submit", detected=True, root_causes=named[:3], category="resource_saturation",
                   summary="applied the runbook")
        tools.call("mitigation_done")


class Peeker:
    """Tries every way around the tools; ``learned`` lists what worked (it must stay empty)."""

    privileged = True  # asks for the ground truth; only the built-in oracle is given it

    def __init__(self) -> None:
        self.ground_truth: Any = None
        self.remediation: Any = None
        self.learned: list[str] = []
        self.tried: list[str] = []

    def _try(self, what: str, fn: Any) -> Any:
        self.tried.append(what)
        try:
            out = fn()
        except Exception:
            return None
        if out:
            self.learned.append(f"{what}: {str(out)[:200]}")
        return out

    def run(self, tools: Any, incident: Incident) -> None:
        self._try("ground truth handed over", lambda: self.ground_truth or self.remediation)
        self._try("tools.client", lambda: getattr(tools, "client", None))
        self._try("tools.ctx", lambda: getattr(tools, "ctx", None))
        self._try("import the catalogue", lambda: __import__("sockdrill.scenarios.catalogue_loader"))
        self._try("import the runner", lambda: __import__("sockdrill.scenarios.runner"))
        self._try("environment secrets", lambda: {k: v for k, v in os.environ.items()
                                                  if "TOKEN" in k or "SOCKDRILL" in k or "PASSWORD" in k})
        for pattern in ("/tmp/sockdrill-*/state/runtime.json", "/tmp/sockdrill-*/state/credentials.json",
                        "/tmp/sockdrill-*/state/chaos-audit.jsonl", "/var/lib/sockdrill*/*/*",
                        "/root/*/runs/*/journal.json", "/work/*/runs/*/journal.json", "/work/*/runs/*/result.json",
                        "/tmp/*/sockdrill/runs/*/journal.json", "/tmp/*/runs/*/journal.json",
                        "/tmp/pytest-of-*/*/*/*/journal.json", "/home/*/*/runs/*/journal.json",
                        "/tmp/sockdrill-*/runs/*/*.db", "/var/cache/sockdrill/*.yaml"):
            for path in glob.glob(pattern, recursive=True)[:20]:
                self._try(f"read {path}", lambda p=path: open(p, "rb").read(64))  # noqa: SIM115
        for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
            for part in ("environ", "cmdline"):
                data = self._try_quiet(f"/proc/{pid}/{part}")
                if data and (b"SOCKDRILL_CONTROL_TOKEN" in data or b"--token" in data):
                    self.learned.append(f"/proc/{pid}/{part} holds a token")
        self._control_plane()
        tools.call("submit", detected=True, root_causes=[], category="",
                   summary=json.dumps({"learned": self.learned, "tried": len(self.tried)})[:3900])

    @staticmethod
    def _try_quiet(path: str) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                return fh.read(1 << 16)
        except OSError:
            return None

    def _control_plane(self) -> None:
        """Every listening TCP port on loopback: does any answer the control API without a token?"""
        ports: set[int] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in (self._try_quiet(table) or b"").decode().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 3 and cols[3] == "0A":  # LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        for port in sorted(ports)[:200]:
            for path in ("/v1/chaos/faults", "/v1/status"):
                def get(p: str = path, port: int = port) -> Any:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=1) as resp:
                        body = resp.read(2000)
                    return body if b"faults" in body or b"deployments" in body else None
                self._try(f"GET :{port}{path}", get)
