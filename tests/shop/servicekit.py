"""Test helpers: run a shop service as a real subprocess, talk HTTP to it, use a scratch PostgreSQL database.

    with scratch_database("cat") as db_url, \
            ServiceProcess("catalogue", {"SOCKDRILL_URL_CATALOGUE_DB": db_url}) as svc:
        resp = request("GET", svc.url + "/catalogue")
        assert resp.status == 200 and resp.json()[0]["name"] == "Holy"

PostgreSQL: ``SOCKDRILL_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``, the development
machine's server). ``require_postgres()`` skips a test module when it is not reachable.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
PG_ADMIN_URL = os.environ.get("SOCKDRILL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- HTTP --------------------------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def request(method: str, url: str, *, json_body: Any = None, body: bytes | str | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 15.0) -> Response:
    """One HTTP request; never raises on an error status (the test asserts it)."""
    data: bytes | None
    hdrs = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    else:
        data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            # http.client's headers are case-insensitive, unlike a dict
            return Response(resp.status, cast(Mapping[str, str], resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, cast(Mapping[str, str], exc.headers), exc.read())


# ---- service subprocess ----------------------------------------------------------------------------

class ServiceProcess:
    """``python -m sockdrill.shop NAME`` on a free port, started and stopped around a test."""

    def __init__(self, name: str, env: Mapping[str, str] | None = None, *, port: int | None = None,
                 ready_timeout: float = 60.0, require_ok: bool = True) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        self.ready_timeout = ready_timeout
        # False: any 200 from /health is ready, for tests that start a service with a dependency down on purpose
        self.require_ok = require_ok
        self.proc: subprocess.Popen[bytes] | None = None
        self.db_url = self.extra_env.get(f"SOCKDRILL_URL_{name.upper().replace('-', '_')}_DB", "")
        fd, self._log_name = tempfile.mkstemp(prefix=f"sockdrill-{name}-", suffix=".log")
        os.close(fd)

    @property
    def log_path(self) -> str:
        return self._log_name

    def logs(self) -> str:
        return Path(self._log_name).read_text(errors="replace")

    def start(self, *, wait: bool = True) -> ServiceProcess:
        """Start the process; ``wait=False`` returns at once (boot several, then ``wait_healthy()`` each)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOCKDRILL_")}
        env.update({"PORT": str(self.port), "PYTHONUNBUFFERED": "1", **self.extra_env})
        with open(self._log_name, "ab") as log:
            self.proc = subprocess.Popen([str(PYTHON), "-m", "sockdrill.shop", self.name], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                resp = request("GET", self.url + "/health", timeout=2)
                if resp.status == 200 and not self.require_ok:
                    return
                items = resp.json().get("health", []) if resp.status == 200 else []
                if items and all(i.get("status") == "OK" for i in items):
                    return
                last = f"{resp.status} {resp.body[:300]!r}"
            except (OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not healthy after {self.ready_timeout}s ({last}):\n"
                           f"{self.logs()[-4000:]}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def close(self) -> None:
        """Stop the process and remove its log (what leaving the ``with`` block does)."""
        self.stop()
        try:
            os.unlink(self._log_name)
        except OSError:
            pass

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()


# ---- PostgreSQL ----------------------------------------------------------------------------------------

def database_url(name: str) -> str:
    """The URL of database ``name`` on the test PostgreSQL server."""
    parts = urlsplit(PG_ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_available() -> bool:
    try:
        asyncio.run(_admin("SELECT 1"))
        return True
    except Exception:
        return False


def require_postgres() -> None:
    """Skip the calling test module when the development PostgreSQL is not reachable."""
    import pytest

    if not postgres_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}", allow_module_level=True)


@contextmanager
def scratch_database(prefix: str = "test") -> Iterator[str]:
    """A new, empty database with a unique name; yields its URL and drops it afterwards."""
    name = f"sockdrill_{prefix}_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield database_url(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def db_run(url: str, sql: str, *args: Any, setup: str | None = None) -> list[dict[str, Any]]:
    """Run one statement on ``url`` (after ``setup``, e.g. a SET) and return its rows as dicts."""
    import asyncpg

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            if setup:
                await conn.execute(setup)
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(go())


@contextmanager
def machine_redis(url: str) -> Iterator[Any]:
    """A dedicated database of this machine's Redis (tests skip without one), flushed before and after."""
    import pytest
    import redis

    r = redis.Redis.from_url(url)
    try:
        r.ping()
    except redis.RedisError as exc:
        pytest.skip(f"needs this machine's Redis at 127.0.0.1:6379: {exc}")
    r.flushdb()
    try:
        yield r
    finally:
        r.flushdb()
        r.close()
