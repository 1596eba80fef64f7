"""Issue 14: the live shop resists other local users, its own services and raw clients.

Each finding is attacked the way the review found it: as another local user (``nobody``, through
``setpriv``, running the system's Python with the standard library only, since the virtualenv is root's)
or with a raw client, and each attack must be refused with the shop still healthy afterwards.

Where each finding of the issue is attacked (here unless a module is named):
1. control plane: ``test_nobody_cannot_read_the_token_or_any_state``, ``test_no_secret_on_any_command_line``,
   ``test_env_refuses_what_changes_the_code_a_pod_runs``, ``test_state_files_are_created_private_never_chmod_after``
   (``mcp.json`` too: tests/agents/test_mcp.py), pods as an unprivileged user:
   ``test_a_service_pod_runs_unprivileged_and_reaches_only_its_own_state``; telemetry around the tools:
   ``test_telemetry_answers_only_its_token``.
2. Redis: ``test_redis_refuses_another_local_user``, ``test_redis_users_the_services_and_the_runtime``.
3. an agent reaching for the answer: tests/scenarios/test_gaming.py ``test_the_peeker_learns_nothing``,
   tests/agents/test_isolation.py.
4. PostgreSQL: ``test_postgres_refuses_another_local_user``, ``test_postgres_services_role_owns_its_database_only``,
   ``test_a_store_from_an_older_version_is_secured_on_its_next_start``.
5. raw paths: tests/shop/test_frontend.py ``test_a_path_never_climbs_to_another_resource``, and every route of
   every service in tests/shop/test_fuzz.py.
6. unaudited changes: tests/agents/test_tools.py ``test_a_tool_checks_every_argument_before_it_changes_anything``,
   ``test_audit_log_records_every_call``.
7. a regex that stalls the recorder: tests/agents/test_tools.py
   ``test_a_backtracking_regex_does_not_stall_the_recorder``.
8. token comparison: constant-time everywhere (``secrets.compare_digest``/``hmac.compare_digest``); a timing
   attack is not reproduced in a test (it would measure noise on a busy machine).
9. non-finite knobs: tests/shop/test_knobs_finite.py.
10. ``down`` and pid reuse: tests/cluster/test_state.py ``test_a_record_without_a_start_time_is_never_ours``.
11. CLI arguments by schema: tests/agents/test_tools.py ``test_cli_arguments_are_read_by_the_tool_s_schema``.
Reports: ``test_doctor_reports_modes_and_pod_users``, ``test_doctor_flags_what_an_older_version_left_open``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
import redis

from sockdrill.cluster import client, podrun, stores
from sockdrill.cluster.spec import DeploymentSpec
from sockdrill.cluster.state import private_dir, read_json, security_report, state_dir, write_json
from tests.conftest import Shop, make_data_dir, wait_for

SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON)
                                or shutil.which("setpriv") is None,
                                reason="needs root, setpriv and a system python3 to act as another user")


def as_nobody(code: str, timeout: float = 30, args: list[str] | None = None) -> Any:
    """Run ``code`` (standard library only) as the user nobody; it prints one JSON value."""
    res = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", SYSTEM_PYTHON, "-I", "-c", code,
         *(args or [])],
        capture_output=True, text=True, timeout=timeout, cwd="/", env={"PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def pod(shop: Shop, name: str) -> dict[str, Any]:
    return shop.describe(name)["pods"][0]


def pod_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def healthy(shop: Shop) -> None:
    wait_for(lambda: shop.status()["ready"], timeout=60)
    with urllib.request.urlopen(shop.url + "/catalogue?size=3", timeout=10) as resp:
        assert resp.status == 200 and len(json.loads(resp.read())) == 3


def secrets_of(data_dir: Path) -> list[str]:
    sdir = state_dir(data_dir)
    creds = read_json(sdir / stores.CREDENTIALS_FILE)
    record = read_json(sdir / "runtime.json")
    return [record["token"], record["telemetry_token"]] + [pw for entry in creds.values() for pw in entry.values()]


# ---- 1. the control plane: token and state files, command lines, /v1/env -----------------------------
READ_AS_NOBODY = r"""
import json, os, sys
out = {}
for path in sys.argv[1:]:
    try:
        with open(path) as fh:
            out[path] = "read:" + fh.read(64)
    except OSError as exc:
        out[path] = type(exc).__name__
    try:
        out[path + " (listing)"] = sorted(os.listdir(path))
    except OSError as exc:
        out[path + " (listing)"] = type(exc).__name__
print(json.dumps(out))
"""


def test_nobody_cannot_read_the_token_or_any_state(shop: Shop) -> None:
    sdir = state_dir(shop.data_dir)
    assert stat.S_IMODE(sdir.stat().st_mode) == 0o700
    for name in ("runtime.json", "config.json", "pods.json", "credentials.json", "pgpass"):
        assert stat.S_IMODE((sdir / name).stat().st_mode) == 0o600, name
    for folder in ("runs", "logs"):
        assert stat.S_IMODE((shop.data_dir / folder).stat().st_mode) == 0o700, folder
    runs = [str(p) for p in (shop.data_dir / "runs").iterdir()]
    targets = [str(sdir), str(sdir / "runtime.json"), str(sdir / "credentials.json"), str(sdir / "pgpass"),
               str(shop.data_dir / "runs"), *runs]
    seen = as_nobody(READ_AS_NOBODY.replace("sys.argv[1:]", json.dumps(targets)))
    for path in targets:
        assert seen[path] in ("PermissionError", "IsADirectoryError"), (path, seen[path])
        assert seen[path + " (listing)"] in ("PermissionError", "NotADirectoryError"), (path, seen)
    # Without the token, the control API refuses everything (here: the env change of the attack).
    req = urllib.request.Request(shop.client.base + "/v1/env", method="POST",
                                 data=json.dumps({"deployment": "payment", "env": {"X": "1"}}).encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401
    healthy(shop)


CMDLINES_AS_NOBODY = r"""
import json, os
out = {}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                out[pid] = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
environ = {}
for pid in RECORDER_AND_PODS:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            environ[pid] = "read"
    except OSError as exc:
        environ[pid] = type(exc).__name__
print(json.dumps({"cmdlines": out, "environ": environ}))
"""


def test_no_secret_on_any_command_line(shop: Shop) -> None:
    """The token used to be on the recorder's command line, world-readable in /proc/PID/cmdline."""
    record = read_json(state_dir(shop.data_dir) / "runtime.json")
    recorder = record["recorder"]["pid"]
    pods = [p["pid"] for d in shop.status()["deployments"] for p in d["pods"]]
    seen = as_nobody(CMDLINES_AS_NOBODY.replace("RECORDER_AND_PODS", json.dumps([recorder, *pods])))
    assert str(recorder) in seen["cmdlines"] and "sockdrill.telemetry.recorder" in seen["cmdlines"][str(recorder)]
    for secret in secrets_of(shop.data_dir):
        leaks = [cmd for cmd in seen["cmdlines"].values() if secret in cmd]
        assert not leaks, leaks
    # The token and the services' logins travel in environments, which only their user may read.
    assert set(seen["environ"].values()) == {"PermissionError"}, seen["environ"]
    assert pod_environ(recorder)["SOCKDRILL_CONTROL_TOKEN"] == record["token"]
    # ... and the recorder, given the token that way, still reads its targets from the control API.
    # Waited for until more than three: a scrape right after the shop came up may list the few pods ready then.
    assert wait_for(lambda: (_json(record["recorder_url"] + "/health", shop.telemetry).get("targets") or 0) > 3,
                    timeout=30)


def _json(url: str, headers: dict[str, str] | None = None) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as resp:
        return json.loads(resp.read())


TELEMETRY_AS_NOBODY = r"""
import json, sys, urllib.error, urllib.request
out = {}
for name, method, url, body in json.loads(sys.argv[1]):
    req = urllib.request.Request(url, method=method, data=None if body is None else body.encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer guess"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            out[name] = [resp.status, resp.read(300).decode(errors="replace")]
    except urllib.error.HTTPError as exc:
        out[name] = [exc.code, exc.read(300).decode(errors="replace")]
print(json.dumps(out))
"""


def test_telemetry_answers_only_its_token(shop: Shop) -> None:
    """Issue 14: each pod's /metrics, the runtime's /metrics and the flight recorder's API (queries, pushed
    samples, spans) were open to every local user: an agent could read telemetry outside its tools (no
    audit, no budget, no incident scope) and anyone could push samples into what the agent is shown.
    As nobody, with a guessed token: refused, and nothing pushed lands. The shop's own scrapes go on."""
    record = read_json(state_dir(shop.data_dir) / "runtime.json")
    rec = record["recorder_url"]
    fake = json.dumps({"samples": [{"name": "nobody_was_here", "labels": {"journey": "login"}, "value": 0.0}]})
    attempts = [["pod-metrics", "GET", f"http://127.0.0.1:{pod(shop, 'user')['port']}/metrics", None],
                ["front-end-metrics", "GET", shop.url + "/metrics", None],
                ["queue-master-prometheus", "GET", f"http://127.0.0.1:{pod(shop, 'queue-master')['port']}/prometheus",
                 None],
                ["runtime-metrics", "GET", record["metrics_url"], None],
                ["recorder-query", "GET", rec + "/api/names", None],
                ["recorder-targets", "GET", rec + "/api/targets", None],
                ["recorder-ingest", "POST", rec + "/v1/ingest", fake],
                ["recorder-traces", "POST", rec + "/v1/traces", "{}"]]
    seen = as_nobody(TELEMETRY_AS_NOBODY, args=[json.dumps(attempts)])
    assert {name: status for name, (status, _body) in seen.items()} == {a[0]: 401 for a in attempts}, seen
    assert _json(rec + "/health") == {"ok": True}  # liveness for anyone, nothing about what it records
    # With the token (what the recorder sends), the same endpoints answer, and the shop is scraped.
    req = urllib.request.Request(f"http://127.0.0.1:{pod(shop, 'user')['port']}/metrics", headers=shop.telemetry)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert b"http_request_duration_seconds" in resp.read()
    assert wait_for(lambda: all(t["up"] for t in _json(rec + "/api/targets", shop.telemetry)), timeout=30)
    # A pod's own series appear once it has served a request and been scraped with the token.
    urllib.request.urlopen(shop.url + "/catalogue?size=1", timeout=10).read()
    names = wait_for(lambda: (n := _json(rec + "/api/names", shop.telemetry))
                     and "http_request_duration_seconds_count" in n and n, timeout=30)
    assert "nobody_was_here" not in names


SITECUSTOMIZE = "open({marker!r}, 'w').write(str(__import__('os').getuid()))\n"


@pytest.mark.parametrize("name", ["PYTHONPATH", "PYTHONSTARTUP", "LD_PRELOAD", "PATH", "SOCKDRILL_POD_DIR",
                                  "SOCKDRILL_URL_CATALOGUE_DB", "SOCKDRILL_KNOBS", "PORT", "pythonpath"])
def test_env_refuses_what_changes_the_code_a_pod_runs(shop: Shop, name: str, tmp_path: Path) -> None:
    """With the token, nobody set PYTHONPATH on a pod so that its sitecustomize.py ran as uid 0."""
    evil = Path(tempfile.mkdtemp(prefix="sockdrill-evil-"))
    try:
        marker = evil / "ran"
        (evil / "sitecustomize.py").write_text(SITECUSTOMIZE.format(marker=str(marker)))
        before = pod(shop, "catalogue")
        env_before = shop.describe("catalogue")["env"]
        body = json.dumps({"deployment": "catalogue", "env": {name: str(evil)}}).encode()
        req = urllib.request.Request(shop.client.base + "/v1/env", data=body, method="POST",
                                     headers={"X-Sockdrill-Token": shop.client.token})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 400
        message = json.loads(err.value.read())["error"]
        assert f"cannot set '{name}' through /v1/env" in message and "allowed:" in message
        after = pod(shop, "catalogue")
        assert after["pid"] == before["pid"] and after["restarts"] == before["restarts"]  # nothing rolled out
        assert shop.describe("catalogue")["env"] == env_before
        assert not marker.exists()
        healthy(shop)
    finally:
        shutil.rmtree(evil, ignore_errors=True)


def test_env_still_sets_the_shops_own_settings(shop: Shop) -> None:
    out = shop.post("/v1/env", {"deployment": "payment", "env": {"SOCKDRILL_TRACE_SAMPLE": "0.5"}})
    try:
        assert out["env"]["SOCKDRILL_TRACE_SAMPLE"] == "0.5"
        wait_for(lambda: (p := pod(shop, "payment"))["ready"] and p["pid"], timeout=60)
        assert pod_environ(pod(shop, "payment")["pid"])["SOCKDRILL_TRACE_SAMPLE"] == "0.5"
    finally:
        shop.post("/v1/env/rollback", {"deployment": "payment"})
    healthy(shop)


def test_state_files_are_created_private_never_chmod_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = os.umask(0)  # a careless umask must not matter: the mode is given to open(2) itself
    try:
        monkeypatch.setattr(os, "chmod", lambda *a, **k: pytest.fail("chmod after creation"))
        write_json(tmp_path / "state" / "runtime.json", {"token": "t"})
    finally:
        os.umask(old)
        monkeypatch.undo()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state" / "runtime.json").stat().st_mode) == 0o600
    # A state folder an older version left open is closed (its files then with it).
    loose = tmp_path / "old" / "state"
    loose.mkdir(parents=True, mode=0o755)
    os.chmod(loose, 0o755)
    private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


# ---- 2. Redis -----------------------------------------------------------------------------------------
REDIS_AS_NOBODY = r"""
import json, socket
out = []
for port in PORTS:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = s.makefile("rb")
    for cmd in COMMANDS:
        s.sendall(cmd.encode() + b"\r\n")
        out.append([port, cmd, f.readline().decode().strip()])
    s.close()
print(json.dumps(out))
"""


def _redis_attack(ports: list[int], commands: list[str]) -> list[tuple[int, str, str]]:
    code = REDIS_AS_NOBODY.replace("PORTS", json.dumps(ports)).replace("COMMANDS", json.dumps(commands))
    return [tuple(x) for x in as_nobody(code)]  # type: ignore[misc]


def test_redis_refuses_another_local_user(shop: Shop) -> None:
    """As nobody: CONFIG SET dir + SAVE wrote a root-owned file; MODULE LOAD ran a constructor as root."""
    drop = Path(tempfile.mkdtemp(prefix="sockdrill-drop-"))
    os.chmod(drop, 0o777)  # anyone could have written here: only Redis's refusal keeps the file out
    try:
        ports = [pod(shop, "session-db")["port"], port_of(shop.addresses["session-db"])]
        attack = [f"CONFIG SET dir {drop}", "CONFIG SET dbfilename pwned", "SET x payload", "SAVE", "BGSAVE",
                  f"MODULE LOAD {drop}/evil.so", "SLAVEOF 127.0.0.1 1", "KEYS *", "DEBUG SEGFAULT",
                  "AUTH sockdrill guess", "AUTH shop guess", "SHUTDOWN NOSAVE"]
        replies = _redis_attack(ports, ["PING", *attack])
        for port, cmd, reply in replies:
            if cmd == "PING":
                assert reply == "+PONG"  # the readiness probe's one command
            else:
                assert reply.startswith(("-NOPERM", "-WRONGPASS", "-ERR unknown command")), (port, cmd, reply)
        assert not any(drop.iterdir())
        proc = psutil.Process(pod(shop, "session-db")["pid"])
        assert proc.username() == stores.PG_USER and proc.uids().effective != 0
        healthy(shop)
    finally:
        shutil.rmtree(drop, ignore_errors=True)


def test_redis_users_the_services_and_the_runtime(shop: Shop) -> None:
    front = pod(shop, "front-end")["pid"]
    service_url = pod_environ(front)["SOCKDRILL_URL_SESSION_DB"]
    assert service_url.startswith(f"redis://{stores.REDIS_APP_USER}:")
    admin_url = shop.addresses["session-db"]
    assert admin_url.split("//")[1].split(":")[0] == stores.REDIS_ADMIN_USER
    app = redis.Redis.from_url(service_url, socket_timeout=5)
    app.set("security-check", "1")
    assert app.get("security-check") == b"1"
    app.xadd("security-check-stream", {"a": "1"})
    app.delete("security-check", "security-check-stream")
    for cmd in (("CONFIG", "SET", "maxmemory", "1mb"), ("CONFIG", "GET", "dir"), ("FLUSHALL",), ("KEYS", "*"),
                ("SAVE",), ("EVAL", "return 1", "0"), ("ACL", "LIST"), ("MODULE", "LIST")):
        with pytest.raises(redis.ResponseError):
            app.execute_command(*cmd)
    # The runtime's user: what chaos faults and agent tools need (CONFIG GET/SET: Redis 6.2 cannot limit
    # which parameters, so that login stays root's), and no command that saves, loads or replicates.
    admin = redis.Redis.from_url(admin_url, socket_timeout=5)
    before = admin.config_get("maxmemory")["maxmemory"]
    admin.config_set("maxmemory", "64mb")
    admin.config_set("maxmemory", before)
    assert admin.info("server")["redis_version"]
    for cmd in (("CONFIG", "REWRITE"), ("SAVE",), ("BGSAVE",), ("BGREWRITEAOF",),
                ("MODULE", "LOAD", "/tmp/x.so"), ("DEBUG", "SLEEP", "0"), ("ACL", "SETUSER", "default", "+@all"),
                ("SLAVEOF", "127.0.0.1", "1"), ("SHUTDOWN",)):
        with pytest.raises(redis.ResponseError):
            admin.execute_command(*cmd)
    # The server's files are its user's alone, the ACLs stored as hashes only.
    real = Path(os.path.realpath(shop.data_dir / "stores" / "session-db-0" / "redis"))
    st = real.stat()
    assert st.st_uid != 0 and stat.S_IMODE(st.st_mode) == 0o700
    conf = (real / "redis.conf").read_text()
    creds = read_json(state_dir(shop.data_dir) / stores.CREDENTIALS_FILE)["session-db"]
    assert creds["admin"] not in conf and creds["app"] not in conf
    healthy(shop)


# ---- 4. PostgreSQL ------------------------------------------------------------------------------------
PG_AS_NOBODY = r"""
import json, socket, struct
def message(s):
    head = b""
    while len(head) < 5:
        head += s.recv(5 - len(head))
    body = b""
    while len(body) < struct.unpack("!i", head[1:5])[0] - 4:
        body += s.recv(65536)
    return head[:1], body
out = []
for port, user in TARGETS:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    params = b"user\0" + user.encode() + b"\0database\0sockdrill\0\0"
    s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    kind, body = message(s)
    auth = struct.unpack("!i", body[:4])[0] if kind == b"R" else None
    result = {"port": port, "user": user, "kind": kind.decode(), "auth": auth}
    if auth == 0:  # trusted: the attack goes on, as the review ran it
        while kind != b"Z":
            kind, body = message(s)
        sql = "COPY (SELECT 1) TO PROGRAM 'id > MARKER'".encode() + b"\0"
        s.sendall(b"Q" + struct.pack("!i", 4 + len(sql)) + sql)
        kind, body = message(s)
        result["query"] = kind.decode()
    out.append(result)
    s.close()
print(json.dumps(out))
"""


def test_postgres_refuses_another_local_user(shop: Shop) -> None:
    """As nobody: every store trusted the connection as a superuser; COPY ... TO PROGRAM ran commands."""
    drop = Path(tempfile.mkdtemp(prefix="sockdrill-drop-"))
    os.chmod(drop, 0o777)
    try:
        targets = []
        for name in ("user-db", "orders-db", "catalogue-db", "carts-db"):
            for port in (pod(shop, name)["port"], port_of(shop.addresses[name])):
                for user in (stores.PG_USER, stores.PG_APP_USER, "postgres"):
                    targets.append([port, user])
        code = PG_AS_NOBODY.replace("TARGETS", json.dumps(targets)).replace("MARKER", str(drop / "ran"))
        for result in as_nobody(code, timeout=60):
            # AuthenticationSASL (10): a SCRAM password is asked for, never AuthenticationOk (0).
            assert result["kind"] == "R" and result["auth"] == 10, result
        assert not (drop / "ran").exists()
        hba = (Path(os.path.realpath(shop.data_dir / "stores" / "user-db-0" / "pgdata")) / "pg_hba.conf")
        methods = {ln.split()[-1] for ln in hba.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
        assert methods == {"scram-sha-256", "reject"}  # reject: the replication login's database sessions
        healthy(shop)
    finally:
        shutil.rmtree(drop, ignore_errors=True)


def test_postgres_services_role_owns_its_database_only(shop: Shop) -> None:
    user_pod = pod(shop, "user")["pid"]
    service_url = pod_environ(user_pod)["SOCKDRILL_URL_USER_DB"]
    assert service_url.startswith(f"postgresql://{stores.PG_APP_USER}:")
    orders_port = port_of(shop.addresses["orders-db"])

    async def go() -> None:
        conn = await asyncpg.connect(service_url, timeout=10)
        try:
            assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
            assert await conn.fetchval("SELECT count(*) FROM customers") > 0  # the shop's own data works
            for sql in ("COPY (SELECT 1) TO PROGRAM 'id'", "COPY (SELECT 1) TO '/tmp/sockdrill-pwned'",
                        "ALTER ROLE shop SUPERUSER", "CREATE ROLE intruder LOGIN SUPERUSER",
                        "SELECT pg_read_file('/etc/passwd')", "SELECT rolpassword FROM pg_authid",
                        "CREATE EXTENSION IF NOT EXISTS file_fdw", "ALTER SYSTEM SET fsync = on"):
                with pytest.raises(asyncpg.PostgresError):
                    await conn.execute(sql)
        finally:
            await conn.close()
        # The same login does not open another store: each has passwords of its own.
        other = service_url.rsplit("@", 1)[0] + f"@127.0.0.1:{orders_port}/sockdrill"
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(other, timeout=10)
        # The runtime's URL (runtime.json, root's alone) is the superuser, for chaos and agent tools.
        admin = await asyncpg.connect(shop.addresses["user-db"], timeout=10)
        try:
            assert await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is True
            owner = await admin.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'customers'")
            assert owner == stores.PG_APP_USER
        finally:
            await admin.close()

    asyncio.run(go())
    # Views (the agents see /v1/describe) show the address without its password.
    for name in ("user-db", "session-db"):
        shown = shop.describe(name)["address"]
        assert read_json(state_dir(shop.data_dir) / stores.CREDENTIALS_FILE)[name]["admin"] not in shown
    healthy(shop)


def test_a_store_from_an_older_version_is_secured_on_its_next_start() -> None:
    """Data dirs made before this fix trust every local connection and hold tables the superuser owns."""
    data_dir = make_data_dir("sockdrill-sec-old-")
    specs = [DeploymentSpec(name="mini-db", kind="postgres"), DeploymentSpec(name="mini-cache", kind="redis")]
    try:
        rc, _ = client.up(specs, data_dir=data_dir, timeout=60)
        redis.Redis.from_url(rc.record["addresses"]["mini-cache"]).set("kept", "yes")
        client.down(data_dir)
        # Make it what the previous version left: trust, no passwords, superuser-owned data, a Redis
        # append-only file in the pod folder, open state folder, no credentials file.
        pgdata = Path(os.path.realpath(data_dir / "stores" / "mini-db-0" / "pgdata"))
        (pgdata / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        (pgdata / stores.PG_AUTH_MARKER).unlink()
        bin_dir = stores.pg_bin(client.default_cache_dir())
        subprocess.run([str(bin_dir / "postgres"), "--single", "-D", str(pgdata), "sockdrill"],
                       input="CREATE TABLE legacy (v text)\nINSERT INTO legacy VALUES ('old')\n",
                       capture_output=True, text=True, user=stores.PG_USER, check=True)
        rdir = data_dir / "stores" / "mini-cache-0"
        shutil.move(str(rdir / "redis" / "appendonly.aof"), str(rdir / "appendonly.aof"))
        shutil.rmtree(rdir / "redis")
        (state_dir(data_dir) / stores.CREDENTIALS_FILE).unlink()
        os.chmod(state_dir(data_dir), 0o755)

        rc, _ = client.up(specs, data_dir=data_dir, timeout=60)
        assert stat.S_IMODE(state_dir(data_dir).stat().st_mode) == 0o700
        port = port_of(rc.record["addresses"]["mini-db"])
        code = PG_AS_NOBODY.replace("TARGETS", json.dumps([[port, stores.PG_USER]])).replace("MARKER", "/dev/null")
        assert as_nobody(code)[0]["auth"] == 10

        async def check() -> None:
            admin = await asyncpg.connect(rc.record["addresses"]["mini-db"], timeout=10)
            try:
                assert await admin.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'legacy'") == "shop"
                assert await admin.fetchval("SELECT v FROM legacy") == "old"
            finally:
                await admin.close()

        asyncio.run(check())
        assert redis.Redis.from_url(rc.record["addresses"]["mini-cache"]).get("kept") == b"yes"
        report = security_report(data_dir)
        assert report["ok"], report["problems"]
    finally:
        client.down(data_dir, purge=True)
        shutil.rmtree(data_dir, ignore_errors=True)


# ---- the report ---------------------------------------------------------------------------------------
def test_doctor_reports_modes_and_pod_users(shop: Shop) -> None:
    res = subprocess.run([sys.executable, "-m", "sockdrill.cli", "doctor", "--json", "--data-dir", str(shop.data_dir)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] and not report["problems"]
    modes = {Path(p["path"]).relative_to(shop.data_dir).as_posix(): p for p in report["paths"]
             if p["exists"] and Path(p["path"]).is_relative_to(shop.data_dir)}
    states = [p for p in report["paths"] if p["what"].startswith("service state")]
    assert states and all(p["mode"] == "0700" and p["owner"] == podrun.POD_USER for p in states), states
    assert modes["state"]["mode"] == "0700" and modes["runs"]["mode"] == "0700"
    for name in ("runtime.json", "credentials.json", "pgpass", "config.json", "pods.json"):
        assert modes[f"state/{name}"]["mode"] == "0600" and modes[f"state/{name}"]["owner"] == "root"
    users = {p["name"]: (p["role"], p["user"]) for p in report["processes"]}
    assert users["user-db-0"] == ("postgres", stores.PG_USER)
    assert users["session-db-0"] == ("redis", stores.PG_USER)
    assert users["queue-0"] == ("redis", stores.PG_USER)
    # A service pod gets a new name when an earlier test restarted it: find the front-end's by role.
    front = [v for k, v in users.items() if k.startswith("front-end")]
    assert front and all(v == ("service", podrun.POD_USER) for v in front), users
    services = [v for v in users.values() if v[0] == "service"]
    assert services and all(user == podrun.POD_USER for _role, user in services), users
    assert users["recorder"][1] == "root"


def test_a_service_pod_runs_unprivileged_and_reaches_only_its_own_state(shop: Shop) -> None:
    """Issue 14: the Python pods ran as root, so a bug in any handler was root's. Each now runs as
    sockdrill-pods, whatever the checkout's folder mode (copies in the cache when the operator's folders
    are private), and can write its own durable folder but not the shop's state or another store's data."""
    gw = pod(shop, "payment-gateway")
    proc = psutil.Process(gw["pid"])
    assert proc.username() == podrun.POD_USER and proc.uids().effective != 0
    env = pod_environ(gw["pid"])
    state = Path(env["SOCKDRILL_POD_DIR"])
    assert state.stat().st_uid == proc.uids().real and stat.S_IMODE(state.stat().st_mode) == 0o700
    probe = (f"import json, os; out = {{}}\n"
             f"for p in {json.dumps([str(state_dir(shop.data_dir) / 'runtime.json'), str(shop.data_dir / 'runs')])}:\n"
             f"    out[p] = os.access(p, os.R_OK)\n"
             f"out['own'] = os.access({str(state)!r}, os.W_OK)\n"
             f"print(json.dumps(out))")
    res = subprocess.run(["setpriv", f"--reuid={podrun.POD_USER}", f"--regid={podrun.POD_USER}", "--clear-groups",
                          SYSTEM_PYTHON, "-I", "-c", probe], capture_output=True, text=True, timeout=30, cwd="/")
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout)
    assert seen.pop("own") is True and not any(seen.values()), seen
    assert shop.status()["ready"]


def test_doctor_flags_what_an_older_version_left_open(tmp_path: Path) -> None:
    sdir = tmp_path / "state"
    sdir.mkdir(mode=0o755)
    os.chmod(sdir, 0o755)
    (sdir / "runtime.json").write_text(json.dumps({"token": "x" * 32}))
    os.chmod(sdir / "runtime.json", 0o644)
    report = security_report(tmp_path)
    assert not report["ok"]
    assert any("state" in p and "0755" in p for p in report["problems"])
    assert any("runtime.json" in p and "0644" in p for p in report["problems"])
    res = subprocess.run([sys.executable, "-m", "sockdrill.cli", "doctor", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "runtime.json" in res.stderr
