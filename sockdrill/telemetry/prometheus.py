"""A real Prometheus next to the flight recorder, when the binary is installed (Debian: ``prometheus``).

The recorder starts it (it already knows the targets) with a generated config whose targets come from a
``file_sd`` file the recorder rewrites when pods come and go. Every target carries ``job`` = deployment
name and ``pod``; ``honor_labels`` keeps the ``pod``/``container`` labels the runtime's per-pod metrics
carry. It listens on a free port of 127.0.0.1 (never 9090, which a system instance may hold) and keeps
its TSDB in ``RUN_DIR/prometheus``. It dies with the recorder (SIGTERM on exit, PDEATHSIG otherwise).

With the shop's telemetry token (``sockdrill/cluster/admin.py``), Prometheus scrapes the shop's targets
with it (a ``credentials_file``, 0600) and its own HTTP API asks for it too: ``--web.config.file`` with
one basic-auth user, ``sockdrill``, whose password is the token. Its bcrypt hash uses the lowest cost
(4): the password is 128 random bits, so a slower hash would add no safety, only CPU on every query.
Targets from a ``--targets-file`` (anyone's) are a second job that never gets the token.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sockdrill.cluster.ports import free_port

CHOICES = ("auto", "on", "off")
RESERVED_PORT = 9090


class PrometheusError(RuntimeError):
    pass


def find_prometheus() -> str | None:
    """Path of a ``prometheus`` binary: $SOCKDRILL_PROMETHEUS_BIN, else PATH; None when there is none."""
    env = os.environ.get("SOCKDRILL_PROMETHEUS_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("prometheus")


def choice_from_env() -> str:
    value = os.environ.get("SOCKDRILL_PROMETHEUS", "auto").strip().lower() or "auto"
    return value if value in CHOICES else "auto"


def file_sd(targets: Iterable[Mapping[str, str]]) -> list[dict[str, Any]]:
    """``[{"job","pod","url"}]`` → Prometheus file_sd groups (one per target: each has its own labels)."""
    groups = []
    for t in targets:
        parts = urllib.parse.urlsplit(str(t["url"]))
        if not parts.hostname:
            continue
        labels = {"job": str(t["job"]), "pod": str(t.get("pod", "")), "__metrics_path__": parts.path or "/metrics",
                  "__scheme__": parts.scheme or "http"}
        groups.append({"targets": [f"{parts.hostname}:{parts.port or 80}"], "labels": labels})
    return groups


BASIC_USER = "sockdrill"


def _split(targets: Iterable[Mapping[str, str]]) -> tuple[list[Mapping[str, str]], list[Mapping[str, str]]]:
    """(the shop's own targets, targets from a --targets-file)."""
    ours: list[Mapping[str, str]] = []
    extra: list[Mapping[str, str]] = []
    for t in targets:
        (extra if t.get("source") == "file" else ours).append(t)
    return ours, extra


def write_targets(targets: Iterable[Mapping[str, str]], path: Path) -> bool:
    """Write the file_sd files atomically (Prometheus watches them): the shop's targets to ``path``, the
    others to ``extra.json`` beside it; False when neither changed."""
    ours, extra = _split(targets)
    changed = _write_sd(ours, path)
    return _write_sd(extra, path.parent / "extra.json") or changed


def _write_sd(targets: Iterable[Mapping[str, str]], path: Path) -> bool:
    text = json.dumps(file_sd(targets), indent=1, sort_keys=True)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def write_config(targets: Iterable[Mapping[str, str]], interval: float, path: Path,
                 token_file: Path | None = None, alertmanager: str | None = None) -> Path:
    """Write ``prometheus.yml`` (and its ``targets.json`` and ``extra.json`` beside it); returns the config
    path. ``token_file``: the shop's telemetry token, sent as a bearer token on the shop's scrapes (and as the
    basic-auth password to ``alertmanager``, the URL of the Alertmanager that gets the alerts, if any)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = path.parent / "targets.json"
    write_targets(targets, sd)
    every = f"{max(1, round(interval * 1000))}ms"
    timeout = f"{max(500, round(min(interval, 10) * 800))}ms"
    # JSON is valid YAML: no YAML writer needed, and no quoting surprises.
    (path.parent / "rules").mkdir(exist_ok=True)
    config = {
        "global": {"scrape_interval": every, "scrape_timeout": timeout, "evaluation_interval": every},
        # Rule files dropped here by whoever knows the SLOs (the scenario runner), then a reload (SIGHUP).
        "rule_files": [str(path.parent / "rules" / "*.yml")],
        "scrape_configs": [{
            "job_name": "sockdrill", "honor_labels": True, "scrape_interval": every, "scrape_timeout": timeout,
            "file_sd_configs": [{"files": [str(sd)], "refresh_interval": "30s"}],
            **({"authorization": {"type": "Bearer", "credentials_file": str(token_file)}} if token_file else {}),
        }, {
            "job_name": "extra", "honor_labels": True, "scrape_interval": every, "scrape_timeout": timeout,
            "file_sd_configs": [{"files": [str(path.parent / "extra.json")], "refresh_interval": "30s"}],
        }],
    }
    if alertmanager:
        parts = urllib.parse.urlsplit(alertmanager)
        am: dict[str, Any] = {"static_configs": [{"targets": [parts.netloc]}], "api_version": "v2"}
        if token_file is not None:
            am["basic_auth"] = {"username": BASIC_USER, "password_file": str(token_file)}
        config["alerting"] = {"alertmanagers": [am]}
    path.write_text(json.dumps(config, indent=1))
    return path


def death_signal() -> Any:
    """A preexec_fn that makes the child get SIGTERM when its parent dies (Linux), or None.

    libc is loaded here, in the parent: the child, forked from a threaded process, only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def setup() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


class Prometheus:
    """A running Prometheus child: ``url``, ``query()``, ``stop()``."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, config: Path,
                 headers: dict[str, str] | None = None) -> None:
        self.proc = proc
        self.url = url
        self.config = config
        self.headers = dict(headers or {})  # what its web API asks for (basic auth with the token)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def query(self, expr: str, **kw: Any) -> Any:
        return promql(self.url, expr, headers=self.headers, **kw)

    def reload(self) -> bool:
        """Re-read the configuration and the rule files (SIGHUP); False when it is not running."""
        if self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGHUP)
        return True

    @property
    def rules_dir(self) -> Path:
        return self.config.parent / "rules"

    def update_targets(self, targets: Iterable[Mapping[str, str]]) -> bool:
        return write_targets(targets, self.config.parent / "targets.json")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_prometheus(run_dir: Path, targets: Iterable[Mapping[str, str]], interval: float, *,
                     binary: str | None = None, port: int | None = None, ready_timeout: float = 30.0,
                     retention: str = "7d", token: str | None = None) -> Prometheus:
    """Start Prometheus for this run and wait until it is ready; PrometheusError when it cannot."""
    prom = launch_prometheus(run_dir, targets, interval, binary=binary, port=port, retention=retention,
                             token=token)
    wait_ready(prom, ready_timeout)
    return prom


def launch_prometheus(run_dir: Path, targets: Iterable[Mapping[str, str]], interval: float, *,
                      binary: str | None = None, port: int | None = None, retention: str = "7d",
                      token: str | None = None, alertmanager: str | None = None) -> Prometheus:
    """Start the process (call from the thread that lives as long as it should: PDEATHSIG is per thread).
    ``token``: the shop's telemetry token (scrapes send it; the web API asks for it)."""
    binary = binary or find_prometheus()
    if binary is None:
        raise PrometheusError("no 'prometheus' binary on PATH (Debian/Ubuntu: apt-get install prometheus)")
    root, (token_file, web_args, headers) = server_home(run_dir, "prometheus", token, "scrape.token")
    config = write_config(targets, interval, root / "prometheus.yml", token_file, alertmanager)
    port = port or free_port()
    if port == RESERVED_PORT:
        raise PrometheusError("port 9090 belongs to a system Prometheus; pick another")
    log = open(root / "prometheus.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.retention.time={retention}",
             "--web.enable-lifecycle", *web_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, cwd=str(root),
            preexec_fn=death_signal())
    finally:
        log.close()
    return Prometheus(proc, f"http://127.0.0.1:{port}", config, headers)


def server_home(run_dir: Path, name: str, token: str | None,
                token_name: str) -> tuple[Path, tuple[Path | None, list[str], dict[str, str]]]:
    """``RUN_DIR/name`` (made), and ``token_auth`` there."""
    root = Path(run_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    return root, token_auth(root, token, token_name)


def token_auth(root: Path, token: str | None, token_name: str) -> tuple[Path | None, list[str], dict[str, str]]:
    """For a Prometheus-family server whose web API asks for the telemetry token: (the token in a private file
    named ``token_name`` for the server's own outgoing calls, its ``--web.config.file`` flag with one basic-auth
    user, the headers a client sends). Nothing without a token."""
    if not token:
        return None, [], {}
    import base64

    import bcrypt

    token_file = private_file(root / token_name, token)
    hashed = bcrypt.hashpw(token.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = private_file(root / "web.yml", json.dumps({"basic_auth_users": {BASIC_USER: hashed}}))
    return (token_file, [f"--web.config.file={web}"],
            {"Authorization": "Basic " + base64.b64encode(f"{BASIC_USER}:{token}".encode()).decode()})


def private_file(path: Path, text: str) -> Path:
    """``text`` in a file only its owner reads, created with that mode (never loosened after)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def wait_ready(prom: Prometheus, timeout: float = 30.0) -> None:
    """Block until ``/-/ready`` answers 200; stops it and raises PrometheusError otherwise. (Alertmanager's
    handle too: its log is named after its config, as Prometheus's is.)"""
    logfile = prom.config.parent / (prom.config.stem + ".log")
    what = prom.config.stem
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prom.proc.poll() is not None:
            raise PrometheusError(f"{what} exited at start (code {prom.proc.returncode}); see "
                                  f"{logfile}: {_tail(logfile)}")
        try:
            req = urllib.request.Request(f"{prom.url}/-/ready", headers=prom.headers)
            with urllib.request.urlopen(req, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    prom.stop()
    raise PrometheusError(f"{what} was not ready within {timeout:.0f}s; see {logfile}")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def promql(url: str, expr: str, time_: float | None = None, start: float | None = None, end: float | None = None,
           step: float | None = None, timeout: float = 30.0, headers: Mapping[str, str] | None = None) -> Any:
    """Run PromQL against Prometheus at ``url``: instant (optionally at ``time_``), or a range when
    ``start``/``end`` are given. Returns Prometheus's ``data`` object; PrometheusError with its message."""
    if not expr or not expr.strip():
        raise ValueError("empty PromQL query")
    params: dict[str, Any] = {"query": expr}
    if start is not None or end is not None:
        now = time.time()
        end = now if end is None else end
        start = end - 300 if start is None else start
        params.update(start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step or max((end - start) / 250, 1):g}")
        path = "/api/v1/query_range"
    else:
        if time_ is not None:
            params["time"] = f"{time_:.3f}"
        path = "/api/v1/query"
    data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            raise PrometheusError(f"prometheus answered {exc.code}") from None
        if exc.code in (400, 422):
            raise ValueError(body.get("error", "bad query")) from None
        raise PrometheusError(body.get("error", f"prometheus answered {exc.code}")) from None
    except (urllib.error.URLError, OSError) as exc:
        raise PrometheusError(f"prometheus does not answer at {url}: {exc}") from None
    if body.get("status") != "success":
        raise PrometheusError(body.get("error", "query failed"))
    return body["data"]


def scalar_values(data: Any) -> list[float]:
    """The numbers in an instant-query answer (vector or scalar), NaN dropped."""
    out: list[float] = []
    scalar = data.get("resultType") == "scalar"
    items = [data["result"]] if scalar else [r.get("value") for r in data.get("result", [])]
    for item in items:
        if item:
            with contextlib.suppress(TypeError, ValueError):
                v = float(item[1])
                if v == v:
                    out.append(v)
    return out
