"""Benchmark of the flight recorder: its CPU (share of one core) and its storage per minute, at the
default 5 s interval, with the shop under load.

    python -m sockdrill.bench.recorder [--duration 60] [--interval 5] [--concurrency 8] [--json]

It brings a fresh shop up in a temporary data dir (its own recorder disabled), starts one recorder of
its own (Prometheus off, so the figure is the recorder's alone), drives browse + login traffic at the
front-end for ``--duration`` seconds, and reads the recorder's CPU time from ``/proc`` and the size of
``RUN_DIR/telemetry``. :func:`drive` is the small load generator the telemetry tests use too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sockdrill.cluster.admin import TELEMETRY_TOKEN_ENV, telemetry_headers


async def drive(url: str, seconds: float, concurrency: int = 4, users: int = 200, seed: int = 1,
                bad_login_share: float = 0.1) -> dict[str, int]:
    """Browse the catalogue and log in (Basic auth, generated users) at ``url`` for ``seconds``."""
    import aiohttp

    from sockdrill.shop.data.generate import credentials

    rng = random.Random(seed)
    counts = {"requests": 0, "errors": 0, "logins": 0}
    deadline = time.monotonic() + seconds
    auths = []
    for i in range(min(users, 50)) if users else []:
        name, pw = credentials(i, seed)
        auths.append("Basic " + base64.b64encode(f"{name}:{pw}".encode()).decode())
    bad = "Basic " + base64.b64encode(b"nobody:wrong").decode()

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            r = rng.random()
            if r < 0.4 and auths:
                auth = bad if rng.random() < bad_login_share else rng.choice(auths)
                path, headers = "/login", {"Authorization": auth}
                counts["logins"] += 1
            elif r < 0.8:
                path, headers = "/catalogue?size=5", {}
            else:
                path, headers = "/catalogue/size", {}
            try:
                async with session.get(url + path, headers=headers) as resp:
                    await resp.read()
                    counts["requests"] += 1
                    if resp.status >= 500:
                        counts["errors"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                counts["errors"] += 1
                await asyncio.sleep(0.05)

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return counts


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _db_bytes(run_dir: Path) -> int:
    """Bytes the store's data takes (pages in use, WAL included): file sizes would count the WAL's
    preallocated, reused space."""
    import sqlite3

    from sockdrill.telemetry.store import db_path

    db = sqlite3.connect(f"file:{db_path(run_dir)}?mode=ro", uri=True)
    try:
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()


def start_recorder(run_dir: Path, control_url: str, token: str, logs_dir: Path, interval: float,
                   prometheus: str = "off", extra: list[str] | None = None,
                   port: int | None = None, telemetry_token: str = "") -> tuple[subprocess.Popen[bytes], str]:
    """Start a recorder process and wait for its /health; returns (process, url). ``telemetry_token``: the
    shop's (``rc.record["telemetry_token"]``), without which the shop's pods refuse its scrapes."""
    from sockdrill.cluster.ports import free_port

    port = port or free_port()
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "recorder.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        # The token goes in the environment: a command line is readable by every local user.
        proc = subprocess.Popen(
            [sys.executable, "-m", "sockdrill.telemetry.recorder", str(run_dir), "--control-url", control_url,
             "--port", str(port), "--interval", f"{interval:g}", "--logs-dir", str(logs_dir),
             "--prometheus", prometheus, *(extra or [])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env={**os.environ, "SOCKDRILL_CONTROL_TOKEN": token, TELEMETRY_TOKEN_ENV: telemetry_token})
    finally:
        log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the recorder exited (code {proc.returncode}); see {run_dir / 'recorder.log'}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the recorder did not answer /health within 20s")


def stop_recorder(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_recorder(duration: float = 60.0, interval: float = 5.0, concurrency: int = 8) -> dict[str, Any]:
    from sockdrill.cluster import client
    from sockdrill.cluster.ports import free_port
    from sockdrill.shop.manifest import shop_deployments

    data_dir = Path(tempfile.mkdtemp(prefix="sockdrill-bench-recorder-"))
    os.chmod(data_dir, 0o711)
    old = os.environ.get("SOCKDRILL_RECORDER")
    os.environ["SOCKDRILL_RECORDER"] = "off"  # the plugin's own recorder would share the CPU
    try:
        port = free_port()  # known before the pods start: their spans go to our recorder
        rc, _ = client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=180,
                          pod_env={"SOCKDRILL_DATA_USERS": "200", "SOCKDRILL_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
        run_dir = data_dir / "bench-run"
        token = str(rc.record.get("telemetry_token") or "")
        proc, url = start_recorder(run_dir, rc.base, rc.token, data_dir / "logs", interval, port=port,
                                   telemetry_token=token)
        try:
            time.sleep(interval + 1)  # first scrape: every series gets created (not steady state)
            cpu0, size0, t0 = _cpu_seconds(proc.pid), _db_bytes(run_dir), time.monotonic()
            counts = asyncio.run(drive(rc.record["front_end_url"], duration, concurrency))
            time.sleep(1.5)  # let the last flush land
            cpu1, size1, t1 = _cpu_seconds(proc.pid), _db_bytes(run_dir), time.monotonic()
            req = urllib.request.Request(url + "/health", headers=telemetry_headers(token))
            with urllib.request.urlopen(req, timeout=5) as resp:
                health = json.loads(resp.read())
        finally:
            stop_recorder(proc)
        elapsed = t1 - t0
        stats = health["stats"]
        rps = counts["requests"] / duration
        per_minute = (size1 - size0) / elapsed * 60
        return {
            "interval_s": interval, "duration_s": round(elapsed, 1), "targets": health["targets"],
            "requests_per_s": round(rps, 1),
            "recorder_cpu_share_of_one_core": round((cpu1 - cpu0) / elapsed, 4),
            "storage_bytes_per_minute": int(per_minute),
            # How storage grows with traffic (issue 19): spans and log lines scale with requests, samples do not.
            "storage_mb_per_minute_per_100_rps": round(per_minute / 1e6 / rps * 100, 2) if rps else None,
            "samples_per_scrape": round(stats["samples"] / max(1, stats["scrapes"]) * health["targets"]),
            "log_lines": stats["log_lines"], "spans": stats["spans"],
        }
    finally:
        client.down(data_dir)
        if old is None:
            os.environ.pop("SOCKDRILL_RECORDER", None)
        else:
            os.environ["SOCKDRILL_RECORDER"] = old
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sockdrill.bench.recorder", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = bench_recorder(args.duration, args.interval, args.concurrency)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:34} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
