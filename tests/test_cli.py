"""The CLI on bad input: one clear line, a non-zero exit, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Shop


def run(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "sockdrill.cli", *args]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def assert_clean_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in out, out


def test_commands_need_a_running_shop(tmp_path: Path) -> None:
    for args in (("status",), ("scale", "catalogue", "2"), ("restart", "carts"), ("describe", "user")):
        assert_clean_error(run(*args, data_dir=tmp_path), "not up")


@pytest.mark.parametrize("args, needle", [
    (("up", "--replicas", "catalogue"), "NAME=VALUE"),
    (("up", "--replicas", "catalog=2"), "did you mean 'catalogue'"),
    (("up", "--replicas", "catalogue=two"), "integer"),
    (("up", "--port", "99999"), "--port"),
    (("up", "--amqp-url", "http://x"), "amqp://"),
    (("up", "--store-url", "cache=redis://x"), "not a store"),
    (("limits", "catalogue"), "--cpu"),
    (("logs", "payment", "--level", "loud"), None),
    (("bench", "nonsense"), "unknown benchmark"),
    (("nonsense",), "No such command"),
])
def test_bad_flags(tmp_path: Path, args: tuple[str, ...], needle: str | None) -> None:
    res = run(*args, data_dir=tmp_path) if args[0] in ("up", "limits", "logs") else run(*args)
    assert_clean_error(res, *([needle] if needle else []))


def test_bench_help_names_every_benchmark() -> None:
    from sockdrill.bench import BENCHES

    res = run("bench", "--help")
    assert res.returncode == 0, res.stderr
    listed = {w.strip() for w in res.stdout.replace("\n", " ").split("|")}
    missing = [name for name in BENCHES if not any(name in w.split() for w in listed)]
    assert not missing, res.stdout


def test_busy_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert_clean_error(run("up", "--port", str(port), data_dir=tmp_path), "already in use")


def test_up_json_never_prints_a_password(shop: Shop) -> None:
    import json
    from urllib.parse import urlsplit

    res = run("up", "--json", data_dir=shop.data_dir)  # the shop is up already: it says so, and where
    assert res.returncode == 0, res.stderr
    addresses = json.loads(res.stdout)["addresses"]
    assert addresses and all(urlsplit(u).password is None for u in addresses.values()), addresses
    secrets = [u.password for u in map(urlsplit, shop.addresses.values()) if u.password]
    assert secrets and not any(p in res.stdout for p in secrets)


def test_status_and_actions_on_the_shared_shop(shop: Shop) -> None:
    res = run("status", "--json", data_dir=shop.data_dir)
    assert res.returncode == 0, res.stderr
    assert '"ready": true' in res.stdout
    assert_clean_error(run("restart", "cataloge", data_dir=shop.data_dir), "did you mean 'catalogue'")
    assert_clean_error(run("scale", "user-db", "2", data_dir=shop.data_dir), "datastore")
    assert_clean_error(run("config", "set", "payment", "decline_over=lots", data_dir=shop.data_dir), "decline_over")
    res = run("config", "set", "payment", "decline_over=150", data_dir=shop.data_dir)
    assert res.returncode == 0, res.stderr
    try:
        assert shop.describe("payment")["knobs"]["decline_over"] == 150
    finally:
        res = run("config", "rollback", "payment", data_dir=shop.data_dir)
        assert res.returncode == 0, res.stderr
    assert "decline_over" not in shop.describe("payment")["knobs"]
    res = run("logs", "payment", "--grep", "GET /health", "--tail", "3", data_dir=shop.data_dir)
    assert res.returncode == 0 and res.stdout.count("\n") <= 3


def test_admin_panel_prints_the_staff_login_that_works(shop: Shop) -> None:
    import json
    import urllib.request

    assert_clean_error(run("admin-panel", data_dir=shop.data_dir.parent / "nothing-here"), "not up")
    res = run("admin-panel", data_dir=shop.data_dir)
    assert res.returncode == 0, res.stderr
    password = shop.client.record["staff"]["password"]
    assert f"{shop.url.rstrip('/')}/admin.html" in res.stdout and password in res.stdout
    req = urllib.request.Request(shop.url.rstrip("/") + "/admin/login", method="POST",
                                 data=json.dumps({"username": "admin", "password": password}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read()) == {"username": "admin", "role": "admin"}
