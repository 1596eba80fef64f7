"""The agent's own process: it runs one agent against tools it can only reach through its parent.

``python -m sockdrill.agents.host`` is started by the runner (``sandbox.py``) as an unprivileged user,
in an empty private folder, with a scrubbed environment and nothing of sockdrill but this SDK (the agent
contract, the built-in agents). It speaks a thin JSON-lines protocol over the pipes it was started with:

- the parent's first line: ``{"agent", "options", "incident", "specs", "truth"}`` (``truth`` only for
  the built-in oracle);
- then, per tool call, the child writes ``{"op": "call", "name", "args"}`` and reads
  ``{"result": {...}, "steps": n}``; ``{"op": "tokens", ...}`` reports an LLM's usage;
- finally ``{"op": "done", "error": null | "..."}``.

The agent's own prints go to stderr (the run's ``agent.log``), never into the protocol.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import IO, Any


class ToolCallError(Exception):
    """A tool answered ``ok: false`` to a method-style call (``tools.describe(...)``)."""


class RemoteTools:
    """What an agent holds: ``call(name, **args)``, the tool specs, and method-style calls."""

    def __init__(self, inp: IO[str], out: IO[str], specs: list[dict[str, Any]]) -> None:
        self._in, self._out = inp, out
        self._specs = specs
        self._names = {s["name"] for s in specs}
        self.steps = 0
        self.submission: dict[str, Any] | None = None
        self.mitigation_done_at: float | None = None

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        self._out.write(json.dumps(message, default=str) + "\n")
        self._out.flush()
        line = self._in.readline()
        if not line:
            raise SystemExit("the runner closed the tool channel")
        return dict(json.loads(line))

    def specs(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self._specs]

    def call(self, name: str, /, **args: Any) -> dict[str, Any]:
        """Run a tool by name; errors come back as ``{"ok": false, "error": ...}`` (one step spent)."""
        reply = self._ask({"op": "call", "name": name, "args": args})
        self.steps = int(reply.get("steps", self.steps + 1))
        result = dict(reply.get("result") or {"ok": False, "error": "no answer"})
        if result.get("ok") and name == "submit":
            self.submission = {"time": time.time(), **args}
        if result.get("ok") and name == "mitigation_done":
            self.mitigation_done_at = time.time()
        return result

    def count_tokens(self, prompt: int, completion: int) -> None:
        self._ask({"op": "tokens", "prompt": int(prompt), "completion": int(completion)})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._names:
            raise AttributeError(name)

        def method(**args: Any) -> Any:
            res = self.call(name, **args)
            if not res.get("ok"):
                raise ToolCallError(str(res.get("error")))
            return res.get("result")

        return method


def main() -> int:
    # The protocol keeps the pipes it was given; the agent's stdout goes to stderr from here on.
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    header = json.loads(proto_in.readline() or "{}")
    from sockdrill.agents.base import Incident, load_agent

    error = None
    try:
        agent = load_agent(header["agent"], **(header.get("options") or {}))
        truth = header.get("truth")
        if truth is not None:  # only ever sent for the built-in oracle
            agent.ground_truth = truth.get("ground_truth")
            agent.remediation = truth.get("remediation", [])
        tools = RemoteTools(proto_in, proto_out, header.get("specs") or [])
        agent.run(tools, Incident(**header["incident"]))
    except SystemExit:
        raise
    except BaseException as exc:  # an agent's crash ends its turn; the runner records it
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    try:
        proto_out.write(json.dumps({"op": "done", "error": error}) + "\n")
        proto_out.flush()
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
