"""Running an agent in its own process, as its own user, reaching nothing but the tools.

The runner keeps the real ``Tools`` (with the control-plane token, the datastore logins, the audit);
the agent gets a child process (``host.py``) that can only ask for tool calls over a pipe. As root,
the child runs as the system user ``sockdrill-agent`` (not the stores' user, which owns the database
files), in a private empty folder, with a scrubbed environment, from:

- a root-owned, world-readable copy of this Python (stdlib only) in the cache, when the running one is
  not reachable by that user (a pyenv under /root, a venv in a private home);
- an SDK folder with just the agent contract and the built-in agents: no catalogue, no runner, no
  cluster client, so there is nothing of the answer to import;
- for a ``module:Class`` agent, a copy of its top-level module or package (found without running it).

What the agent cannot reach: the run directory and the shop's state (0700, root), the control token
(a 0600 file, never in its environment), other runs' journals, the stores' files (another user).
Agents that need third-party packages speak to sockdrill over MCP instead (``sockdrill mcp``).
Not root (a developer's machine): the child runs as the same user, and the run's notes say so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sockdrill.agents.base import BUILTIN, AgentError
from sockdrill.cluster.pycopy import python_for
from sockdrill.cluster.stores import system_user

AGENT_USER = "sockdrill-agent"
ORACLE_REF = "sockdrill.agents.builtin:Oracle"
SDK_FILES = ("__init__.py", "errors.py", "agents/base.py", "agents/baseline.py", "agents/builtin.py",
             "agents/gaming.py", "agents/llm.py", "agents/host.py", "agents/rca.py", "agents/statistical.py",
             "agents/autopilot.py")
# Variables an agent may need (its model endpoint), passed through when set; nothing else is.
PASS_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "ANTHROPIC_API_KEY", "HTTPS_PROXY",
            "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "TZ")


def agent_user() -> str | None:
    """None when not root; else the agents' system user (not the stores', which owns their files)."""
    return system_user(AGENT_USER, "agents")


def build_sdk(dest: Path) -> Path:
    """Just the agent side of sockdrill, under ``dest/sdk``."""
    pkg = Path(__file__).resolve().parent.parent
    root = dest / "sdk"
    for rel in SDK_FILES:
        out = root / "sockdrill" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pkg / rel, out)
    (root / "sockdrill" / "agents" / "__init__.py").write_text('"""The agent SDK: base, built-in agents, host."""\n')
    return root


def copy_agent_module(ref: str, dest: Path) -> Path | None:
    """The top-level module or package of a ``module:Class`` agent, copied under ``dest/agent``
    (located without importing it: nothing of the agent runs as root)."""
    if BUILTIN.get(ref, ref).startswith("sockdrill.agents."):
        return None
    top = ref.partition(":")[0].split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        raise AgentError(f"cannot find agent module '{top}': {exc}") from None
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise AgentError(f"cannot find agent module '{top}' (is it on the Python path?)")
    root = dest / "agent"
    root.mkdir(parents=True, exist_ok=True)
    if spec.submodule_search_locations:
        src = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(src, root / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    elif spec.origin and spec.origin.endswith(".py"):
        shutil.copy2(spec.origin, root / f"{top}.py")
    else:
        raise AgentError(f"agent module '{top}' is not Python source ({spec.origin})")
    return root


class AgentProcess:
    """One agent run in a child process, served by the runner's ``tools`` until it is done or out of time."""

    def __init__(self, ref: str, options: dict[str, Any], incident: dict[str, Any], tools: Any,
                 log_path: Path, cache_dir: Path, truth: dict[str, Any] | None = None) -> None:
        self.ref, self.options, self.incident, self.tools = ref, options, incident, tools
        self.log_path, self.cache_dir = log_path, cache_dir
        self.truth = truth if BUILTIN.get(ref, ref) == ORACLE_REF else None
        self.error: str | None = None
        self.notes: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.workdir: Path | None = None

    def start(self) -> None:
        user = agent_user()
        self.workdir = Path(tempfile.mkdtemp(prefix="sockdrill-agent-"))
        self.workdir.chmod(0o711)
        paths = [str(build_sdk(self.workdir))]
        extra = copy_agent_module(self.ref, self.workdir)
        if extra is not None:
            paths.append(str(extra))
        home = self.workdir / "home"
        home.mkdir()
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "PYTHONPATH": os.pathsep.join(paths),
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}
        env.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
        if user is None:
            exe, pyenv = Path(sys.executable), dict[str, str]()
            self.notes.append("the agent ran as the same user as sockdrill (not root): it is not isolated")
            preexec = None
        else:
            exe, pyenv = python_for(user, self.cache_dir)
            info = pwd.getpwnam(user)
            for root, dirs, files in os.walk(self.workdir):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), 0, 0)
                    os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
            os.chown(home, info.pw_uid, info.pw_gid)
            os.chmod(home, 0o700)
            uid, gid = info.pw_uid, info.pw_gid

            def preexec() -> None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

        env.update(pyenv)
        log = open(self.log_path, "w")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(
            [str(exe), "-s", "-m", "sockdrill.agents.host"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log, cwd=str(home), env=env, text=True, preexec_fn=preexec,
            start_new_session=True, bufsize=1)
        log.close()
        header = {"agent": self.ref, "options": self.options, "incident": self.incident,
                  "specs": self.tools.specs(), "truth": self.truth}
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(header, default=str) + "\n")
        self.proc.stdin.flush()

    def serve(self, budget_s: float) -> None:
        """Answer the child's calls until it says done, exits, or overruns ``budget_s`` (then it is killed)."""
        assert self.proc is not None and self.proc.stdout is not None and self.proc.stdin is not None
        deadline = time.time() + budget_s
        timer = threading.Timer(budget_s + 5, self._overrun)
        timer.daemon = True
        timer.start()
        try:
            for line in self.proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    self.error = f"the agent broke the tool protocol: {line[:120]!r}"
                    break
                op = msg.get("op") if isinstance(msg, dict) else None
                if op == "done":
                    self.error = msg.get("error")
                    break
                if op == "call" and isinstance(msg.get("args"), dict):
                    result = self.tools.call(str(msg.get("name", "")), **msg["args"]) \
                        if time.time() <= deadline + 5 else {"ok": False, "error": "time budget exhausted"}
                elif op == "tokens":
                    self.tools.count_tokens(int(msg.get("prompt", 0)), int(msg.get("completion", 0)))
                    result = {"ok": True}
                else:
                    result = {"ok": False, "error": "unknown request (call, tokens or done)"}
                try:
                    self.proc.stdin.write(json.dumps({"result": result, "steps": self.tools.steps}, default=str)
                                          + "\n")
                    self.proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    break
        finally:
            timer.cancel()
            self.stop()

    def _overrun(self) -> None:
        self.notes.append("the agent overran its time budget and was stopped; its later calls were refused")
        self.tools.deadline = 0.0
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.returncode not in (0, None, -9) and self.error is None:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:] if self.log_path.exists() else []
            self.error = f"the agent process exited with code {self.proc.returncode}: {' | '.join(tail)}"
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
