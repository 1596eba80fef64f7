"""Run Locust headless in its own process and hand back what customers saw.

``run_load(...)`` blocks until the run ends (its duration, its request limit, or ``stop_event``) and
returns a ``LoadSummary``; ``start_load(...)`` returns a ``LoadRun`` at once, for a scenario that keeps
load going in the background and stops it early. The Locust process gets its ``LoadConfig`` through
the environment, streams one JSON record per second to ``stats_path`` (and to the recorder, if any)
and writes its summary to a file this module reads back. This module never imports locust.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sockdrill.cluster.admin import TELEMETRY_TOKEN_ENV
from sockdrill.errors import SockdrillError
from sockdrill.load.choices import account_for
from sockdrill.load.config import ENV_VAR, LoadConfig, parse_mix
from sockdrill.load.sli import LoadSummary

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
START_GRACE_S = 30.0   # Locust's own start-up, on top of the run's duration
STOP_GRACE_S = 10.0    # after SIGTERM, time to flush and write the summary before SIGKILL


class LoadError(SockdrillError):
    """The load generator could not be started, or ended without a summary."""


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _basic_login(host: str, username: str, password: str, timeout: float = 5.0) -> bool:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    req = urllib.request.Request(host.rstrip("/") + "/login", headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def probe_accounts(host: str, data_seed: int, needed: int) -> int:
    """How many generated accounts (up to ``needed``) log in: 0 means use the seeded accounts.
    A handful of logins: one for user 0, one for user ``needed-1``, then a binary search."""
    def ok(i: int) -> bool:
        return _basic_login(host, *account_for(i, needed, data_seed))

    if needed < 1 or not ok(0):
        return 0
    if ok(needed - 1):
        return needed
    lo, hi = 0, needed - 1  # lo logs in, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo + 1


def shop_target(data_dir: Path | None = None) -> dict[str, Any]:
    """The running shop as a load target: its front-end URL, recorder URL and generated users."""
    from sockdrill.cluster.client import RuntimeClient
    from sockdrill.cluster.state import read_json, state_dir

    rc = RuntimeClient.connect(data_dir)
    url = rc.record.get("front_end_url")
    if not url:
        raise LoadError("the running shop has no front-end to send load to")
    config = read_json(state_dir(rc.data_dir) / "config.json")
    config = config if isinstance(config, dict) else {}
    pod_env = config.get("pod_env") or {}
    try:
        accounts = int(pod_env.get("SOCKDRILL_DATA_USERS", 0) or 0)
    except (TypeError, ValueError):
        accounts = 0
    return {"host": url, "recorder_url": rc.record.get("recorder_url"),
            "telemetry_token": rc.record.get("telemetry_token"), "accounts": accounts,
            "data_seed": int(config.get("seed", 1) or 1), "data_dir": str(rc.data_dir),
            "user_db_url": (rc.record.get("addresses") or {}).get("user-db"),
            "carrier_url": (rc.record.get("addresses") or {}).get("carrier-api") or ""}


def ensure_accounts(user_db_url: str, needed: int) -> int:
    """Grow the local shop's generated users to at least ``needed`` (one account per simulated user, so
    two shoppers never edit one basket) and return how many there are."""
    import asyncio

    from sockdrill.shop.user import ensure_generated_users, generated_user_count

    async def grow() -> int:
        await ensure_generated_users(user_db_url, needed)
        return await generated_user_count(user_db_url)

    import asyncpg

    try:
        return asyncio.run(grow())
    except (OSError, ValueError, asyncpg.PostgresError) as exc:
        raise LoadError(f"could not create {needed} shopper accounts in user-db: {exc}") from None


class LoadRun:
    """A Locust process running one load: ``stop()`` ends it early, ``wait()`` returns its summary."""

    def __init__(self, config: LoadConfig, workdir: Path, keep_workdir: bool, telemetry_token: str | None = None
                 ) -> None:
        self.config = config
        self.workdir = workdir
        self._keep = keep_workdir
        self._stopped = False
        self._summary: LoadSummary | None = None
        self.log_path = workdir / "locust.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        env[ENV_VAR] = config.to_json()
        env["PYTHONUNBUFFERED"] = "1"
        env.pop(TELEMETRY_TOKEN_ENV, None)
        if telemetry_token:  # the shop's recorder asks for it on /v1/ingest; never in the (logged) config
            env[TELEMETRY_TOKEN_ENV] = telemetry_token
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", config.host,
               "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]
        with open(self.log_path, "wb") as log:
            # cwd = workdir: Locust would otherwise read a locust.conf or pyproject.toml it finds there.
            self.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        self.started = time.monotonic()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def records(self) -> list[dict[str, Any]]:
        """The per-second records streamed so far."""
        return read_records(self.config.stats_path) if self.config.stats_path else []

    def stop(self) -> None:
        """End the run now; the Locust process still flushes its last second and writes its summary."""
        if self.proc.poll() is None:
            self._stopped = True
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wait(self, stop_event: threading.Event | None = None) -> LoadSummary:
        if self._summary is not None:
            return self._summary
        deadline = self.started + self.config.duration + START_GRACE_S
        try:
            while self.proc.poll() is None:
                if stop_event is not None and stop_event.is_set():
                    self.stop()
                    break
                if time.monotonic() > deadline:  # the shape should have ended it: never run unbounded
                    self.stop()
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            self.stop()
        try:
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            self._summary = self._read_summary()
        finally:
            if not self._keep:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return self._summary

    def _read_summary(self) -> LoadSummary:
        path = Path(str(self.config.summary_path))
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            tail = " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-8:]) \
                if self.log_path.exists() else ""
            raise LoadError(f"the load generator ended (code {self.proc.returncode}) without a summary: "
                            f"{tail or 'no output'}") from None
        summary = LoadSummary.from_dict(data)
        if self._stopped or summary.stop_reason == "stopped":
            summary.stopped_early, summary.stop_reason = True, "stopped"
        if not self._keep and summary.stats_path and Path(summary.stats_path).parent == self.workdir:
            summary.stats_path = None  # it lived in the run's temporary directory
        return summary


def read_records(path: str | Path) -> list[dict[str, Any]]:
    out = []
    try:
        with open(path) as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written right now
    except OSError:
        pass
    return out


def start_load(
    host: str | None = None,
    journeys: dict[str, int] | str | None = None,
    users: int = 5,
    spawn_rate: float = 5.0,
    duration: float = 60.0,
    shape: str = "steady",
    peak_users: int | None = None,
    seed: int = 1,
    recorder_url: str | None = None,
    *,
    data_dir: Path | None = None,
    think: tuple[float, float] = (0.5, 1.5),
    timeout: float = 10.0,
    max_requests: int | None = None,
    accounts: int | None = None,
    data_seed: int | None = None,
    stats_path: str | Path | None = None,
    choices_path: str | Path | None = None,
    return_after: float = 30.0,
    entries: list[str] | None = None,
) -> LoadRun:
    """Start a load run in the background. ``host=None`` = the running shop's front-end (which must be on
    this machine); an explicit ``host`` may point anywhere. Raises LoadError/ValueError on bad input."""
    target: dict[str, Any] = {}
    if host is None:
        target = shop_target(data_dir)
        host = target["host"]
        if not is_loopback(host):
            raise LoadError(f"the shop's front-end {host} is not on this machine; pass --host to load it anyway")
    else:
        try:  # an explicit host that is the local shop still gets its recorder and accounts
            found = shop_target(data_dir)
            if found["host"].rstrip("/") == host.rstrip("/"):
                target = found
        except SockdrillError:
            pass
    mix = parse_mix(journeys) if isinstance(journeys, str) else journeys
    config = LoadConfig(
        host=host.rstrip("/"), users=users, spawn_rate=spawn_rate, duration=duration, shape=shape,
        peak_users=peak_users, seed=seed, think=think, timeout=timeout, max_requests=max_requests,
        return_after=return_after, entries=[e.rstrip("/") for e in entries or []],
        recorder_url=recorder_url if recorder_url is not None else target.get("recorder_url"),
        data_seed=data_seed if data_seed is not None else int(target.get("data_seed", 1)),
        carrier_url=str(target.get("carrier_url") or "").rstrip("/"),
    )
    if mix is not None:
        config.mix = dict(mix)
    config.validate()
    if accounts is not None:
        config.accounts = accounts
    elif target.get("user_db_url") and int(target.get("accounts", 0)) < config.peak:
        config.accounts = ensure_accounts(target["user_db_url"], config.peak)
    elif "accounts" in target:
        config.accounts = int(target["accounts"])
    else:
        config.accounts = probe_accounts(config.host, config.data_seed, config.peak)
    config.validate()
    workdir = Path(tempfile.mkdtemp(prefix="sockdrill-load-"))
    config.summary_path = str(workdir / "summary.json")
    config.stats_path = str(stats_path) if stats_path is not None else str(workdir / "stats.jsonl")
    config.choices_path = str(choices_path) if choices_path is not None else None
    if stats_path is not None:
        Path(stats_path).parent.mkdir(parents=True, exist_ok=True)
    # The shop's token goes only to the shop's own recorder, not to one the caller named.
    token = target.get("telemetry_token") if config.recorder_url == target.get("recorder_url") else None
    return LoadRun(config, workdir, keep_workdir=False, telemetry_token=token)


def run_load(
    host: str | None = None,
    journeys: dict[str, int] | str | None = None,
    users: int = 5,
    spawn_rate: float = 5.0,
    duration: float = 60.0,
    shape: str = "steady",
    peak_users: int | None = None,
    seed: int = 1,
    recorder_url: str | None = None,
    stop_event: threading.Event | None = None,
    **options: Any,
) -> LoadSummary:
    """Run load until its duration (or request limit) is over, or ``stop_event`` is set."""
    run = start_load(host, journeys, users, spawn_rate, duration, shape, peak_users, seed, recorder_url, **options)
    return run.wait(stop_event)
