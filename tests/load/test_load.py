"""Load generator: journeys against the real shop, shapes, the SLI stream, the recorder push, seeds."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sockdrill.cluster.ports import free_port
from sockdrill.load import runner as runner_mod
from sockdrill.load.choices import Chooser, account_for
from sockdrill.load.config import LoadConfig, parse_duration, parse_mix, parse_think
from sockdrill.load.runner import LoadError, is_loopback, read_records, run_load, start_load
from sockdrill.load.shapes import Curve
from sockdrill.load.sli import JOURNEYS, Aggregator, split_step, to_samples
from sockdrill.shop.data.generate import credentials
from tests.conftest import Shop

PY = sys.executable


# ---- pure parts ---------------------------------------------------------------------------------
def test_importing_load_does_not_import_locust_or_gevent() -> None:
    code = ("import sys, sockdrill.load, sockdrill.load.cli, sockdrill.load.runner, sockdrill.cli, sockdrill.bench\n"
            "bad = [m for m in ('locust', 'gevent') if m in sys.modules]\n"
            "assert not bad, bad")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_every_named_journey_is_implemented() -> None:
    code = "from sockdrill.load.journeys import JOURNEY_FUNCS; print(sorted(JOURNEY_FUNCS))"
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == sorted(JOURNEYS)


def test_choices_repeat_for_a_seed_and_differ_across_seeds() -> None:
    items = [{"id": f"sock-{i}"} for i in range(40)]
    mix = {"browse": 5, "cart": 2, "checkout": 1}

    def sequence(seed: int, user: int) -> list[list[Any]]:
        log: list[list[Any]] = []
        c = Chooser(seed, user, mix, (0.5, 1.5), log)
        for _ in range(30):
            c.journey()
            c.pick("item", items, key="id")
            c.randint("quantity", 1, 5)
            c.chance("filter", 0.5)
        return log

    assert sequence(7, 0) == sequence(7, 0)
    assert sequence(7, 0) != sequence(8, 0)
    assert sequence(7, 0) != sequence(7, 1)  # each user has its own stream
    assert next(c for c in sequence(7, 3) if c[0] == "journey")[1] in mix
    with pytest.raises(ValueError):
        Chooser(1, 0, {"browse": 0})


def test_accounts_are_distinct_generated_users_or_the_seeded_ones() -> None:
    assert account_for(5, 2000, 1) == credentials((5 * 7919 + 1000) % 2000, 1)
    assert len({account_for(i, 2000, 1) for i in range(50)}) == 50
    assert account_for(0, 0, 1) == ("user", "password")
    assert account_for(2, 0, 1) == ("Eve_Berger", "eve")


def test_shapes_follow_their_curves() -> None:
    ramp = Curve("ramp", users=2, peak=10, spawn_rate=1, duration=100)
    curve = [ramp.users_at(t) for t in range(0, 100, 5)]
    assert curve[:4] == [2, 2, 2, 2] and curve[-4:] == [2, 2, 2, 2]
    assert max(curve) == 10 and curve[10] == 10
    assert curve[4:9] == sorted(curve[4:9])  # climbing
    assert curve[12:17] == sorted(curve[12:17], reverse=True)  # descending
    assert ramp.tick(100) is None and ramp.tick(99.9) is not None
    assert ramp.rate_at(30) >= 1.5 * 8 / 20  # fast enough to follow the climb
    spike = Curve("spike", 3, 30, 1, 50)
    assert [spike.users_at(t) for t in (0, 19, 20, 29, 30, 49)] == [3, 3, 30, 30, 3, 3]
    step = Curve("step", 1, 7, 1, 40)
    assert [step.users_at(t) for t in (0, 10, 20, 30, 39)] == [1, 3, 5, 7, 7]
    assert Curve("steady", 4, 4, 2, 10).tick(5) == (4, 2)
    for bad in (dict(kind="zigzag"), dict(users=0), dict(peak=1, users=2), dict(duration=0)):
        with pytest.raises(ValueError):
            Curve(**{"kind": "ramp", "users": 1, "peak": 3, "spawn_rate": 1, "duration": 10, **bad})


def test_aggregation_per_second_and_samples() -> None:
    agg = Aggregator()
    for ms in range(1, 101):
        agg.request("browse:home", ms / 1000, ok=ms != 50,
                    error=None if ms != 50 else "GET /catalogue/03fef6ac-1896-4ce8: status 503, expected (200,)")
    agg.request("/not-a-step", 0.01, ok=True)
    agg.journey("browse", 0.2, ok=True)
    agg.journey("browse", 0.4, ok=False)
    agg.journey("checkout", 0.3, ok=True, declined=True)
    rec = agg.flush(now=1000.0, elapsed=1.0, users=3)
    step = rec["steps"]["browse:home"]
    assert step["count"] == 100 and step["failures"] == 1
    assert step["p50"] == pytest.approx(0.05) and step["p95"] == pytest.approx(0.095)
    assert step["p99"] == pytest.approx(0.099)
    assert rec["requests"]["count"] == 101 and "/not-a-step" not in rec["steps"]
    assert rec["journeys"]["browse"]["error_ratio"] == 0.5
    assert rec["journeys"]["checkout"]["declines"] == 1 and rec["journeys"]["checkout"]["failures"] == 0
    samples = to_samples(rec)
    names = {s["name"] for s in samples}
    assert {"journey_latency_seconds", "journey_requests_total", "journey_failures_total", "journey_rps",
            "step_latency_seconds", "load_users"} <= names
    p99 = [s for s in samples if s["name"] == "journey_latency_seconds"
           and s["labels"] == {"journey": "browse", "quantile": "0.99"}]
    assert p99 and p99[0]["value"] == pytest.approx(0.4) and p99[0]["time"] == 1000.0
    step_lat = [s for s in samples if s["name"] == "step_latency_seconds"]
    assert step_lat[0]["labels"]["journey"] == "browse" and step_lat[0]["labels"]["step"] == "home"
    # the next second starts empty; counters carry on
    rec2 = agg.flush(now=1001.0, elapsed=2.0, users=3)
    assert rec2["journeys"]["browse"]["count"] == 0 and rec2["journeys"]["browse"]["total"] == 2
    assert rec2["journeys"]["browse"]["p50"] is None
    summary = agg.summary(2.0)
    assert summary["journeys"]["browse"]["failures"] == 1 and summary["steps"]["browse:home"]["p50_ms"] == 50
    assert summary["errors"] == {"browse:home: GET /catalogue/#: status #, expected (#,)": 1}


def test_flag_parsing_and_config_checks() -> None:
    assert parse_mix("browse:5, login:2,checkout") == {"browse": 5, "login": 2, "checkout": 1}
    assert parse_duration("90") == 90 and parse_duration("1m30s") == 90 and parse_duration("500ms") == 0.5
    assert parse_think("0.5-2") == (0.5, 2.0) and parse_think("1") == (1.0, 1.0)
    for bad in ("brows:1", "browse:x", "browse:0", "browse:1,browse:2", ""):
        with pytest.raises(ValueError):
            parse_mix(bad)
    for bad_d in ("5q", "m", "-3s"):
        with pytest.raises(ValueError):
            parse_duration(bad_d)
    with pytest.raises(ValueError, match="peak"):
        LoadConfig(host="http://127.0.0.1:1", users=5, peak_users=2, shape="ramp").validate()
    with pytest.raises(ValueError, match="host"):
        LoadConfig(host="127.0.0.1:1").validate()
    assert is_loopback("http://127.0.0.1:8079") and is_loopback("http://localhost") and is_loopback("http://[::1]:1")
    assert not is_loopback("http://10.1.2.3:80") and not is_loopback("http://shop.example.com")


def test_cli_rejects_bad_flags() -> None:
    from sockdrill.cli import app

    cli = CliRunner()
    cases = {
        ("--journeys", "brows:1"): "did you mean 'browse'",
        ("--duration", "5q"): "not like 30s",
        ("--shape", "rmp"): "did you mean 'ramp'",
        ("--users", "4", "--peak-users", "2"): "--peak-users",
        ("--host", "127.0.0.1:8079"): "--host must be",
        ("--think", "2-1"): "think time",
    }
    for args, message in cases.items():
        result = cli.invoke(app, ["load", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert cli.invoke(app, ["load", "--users", "0"]).exit_code == 2


def test_refuses_a_remote_default_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "shop_target", lambda _d: {"host": "http://10.9.8.7:80", "accounts": 0,
                                                               "data_seed": 1, "recorder_url": None})
    with pytest.raises(LoadError, match="not on this machine"):
        start_load(None, "browse:1", users=1, duration=1)


# ---- against the shop ---------------------------------------------------------------------------
class Recorder:
    """A stand-in flight recorder that keeps every ingest body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/ingest":
                    outer.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def samples(self) -> list[dict[str, Any]]:
        return [s for b in self.bodies for s in b["samples"]]


# Journeys through components the default shop keeps asleep (optional deployments): run where they are woken.
ASLEEP = {"search": "tests/shop/test_search.py::test_the_search_journey_finds_what_shoppers_look_for",
          # woken by its scenario's set-up; an oracle run first holds this journey's SLO on the healthy shop
          "shipping-quote": "tests/scenarios/test_runner.py::test_oracle_passes_every_check"
                            "[shipping-calculation/directory-import]"}


def test_every_journey_completes_without_failures(shop: Shop, tmp_path: Path) -> None:
    dead_recorder = f"http://127.0.0.1:{free_port()}"  # nobody listens: pushing must not hurt the load
    # Six users, so that every one of the nine journeys comes up (each user draws its own seeded sequence).
    # A return visit counts when the shopper is back: 2 s away, so that it ends inside the 7 s.
    awake = [name for name in JOURNEYS if name not in ASLEEP]
    summary = run_load(None, dict.fromkeys(awake, 1), users=6, spawn_rate=10, duration=7, seed=11,
                       recorder_url=dead_recorder, data_dir=shop.data_dir, think=(0.0, 0.2),
                       stats_path=tmp_path / "stats.jsonl", return_after=2.0)
    assert summary.host == shop.url.rstrip("/")
    assert set(summary.journeys) == set(awake), summary.journeys.keys()
    for name, j in summary.journeys.items():
        assert j["count"] > 0 and j["failures"] == 0, (name, j, {k: v for k, v in summary.steps.items()
                                                                if v["failures"]})
        assert j["p50_ms"] is not None and j["p99_ms"] >= j["p50_ms"]
    assert summary.request_failures == 0
    assert summary.journeys["checkout"]["declines"] == 0  # cheap socks only: a healthy shop declines none
    steps = {split_step(n) for n in summary.steps}
    assert None not in steps
    for expected in [("browse", "image"), ("login", "basic"), ("login", "post"), ("cart", "update"),
                     ("checkout", "order"), ("order-status", "list"), ("classic", "basket"),
                     ("return-visit", "add"), ("checkout-page", "html"), ("checkout-page", "card")]:
        assert expected in steps, expected
    assert all(s["failures"] == 0 for s in summary.steps.values())
    assert summary.stop_reason == "duration" and not summary.stopped_early
    assert summary.stats_path == str(tmp_path / "stats.jsonl")
    records = read_records(tmp_path / "stats.jsonl")
    assert 6 <= len(records) <= 9 and all(r["users"] <= 6 for r in records)


def test_a_returning_shopper_finds_the_cart_unless_the_session_expired_meanwhile(shop: Shop, tmp_path: Path) -> None:
    """Scenario 3's journey: anonymous cart, away, back (cart kept), log in (cart merged). With sessions that
    expire before the shopper is back, the anonymous cart is gone and the ``kept`` step says so."""
    def visit(name: str) -> Any:
        return run_load(None, {"return-visit": 1}, users=2, spawn_rate=10, duration=7, seed=5,
                        data_dir=shop.data_dir, think=(0.0, 0.2), stats_path=tmp_path / f"{name}.jsonl",
                        return_after=1.5)

    healthy = visit("healthy")
    steps = healthy.steps
    assert steps["return-visit:kept"]["count"] >= 2 and steps["return-visit:merged"]["count"] >= 2, steps.keys()
    assert healthy.request_failures == 0, {k: v for k, v in steps.items() if v["failures"]}
    shop.post("/v1/config", {"deployment": "front-end", "knobs": {"session_ttl_s": 1}})
    try:
        expired = visit("expired")
    finally:
        shop.post("/v1/config/reset", {"deployment": "front-end"})
    kept = expired.steps["return-visit:kept"]
    assert kept["count"] >= 2 and kept["failures"] == kept["count"], kept
    # One journey per shopper who came back (the first visit alone is not one): every one of them failed.
    journeys = expired.journeys["return-visit"]
    assert journeys["count"] == kept["count"] and journeys["failures"] == journeys["count"], journeys
    # The stream dates each of those checks by when its cart was left, at least one absence earlier.
    dated = [(r["time"], int(left), cell) for r in read_records(tmp_path / "expired.jsonl")
             for left, cell in (r.get("left") or {}).get("return-visit:kept", {}).items()]
    assert sum(c[0] for _, _, c in dated) == kept["count"] and sum(c[1] for _, _, c in dated) == kept["failures"]
    assert all(left <= at - 1.0 for at, left, _ in dated), dated


def test_two_devices_editing_a_profile_keep_both_changes_unless_versions_are_ignored(shop: Shop,
                                                                                   tmp_path: Path) -> None:
    """Scenario 9's journey: the second device's stale save is refused (409), it reloads and saves again, and
    both changes stay. With the version check off, its stale form overwrites the first device's change."""
    def edit(name: str) -> Any:
        return run_load(None, {"profile-edit": 1}, users=2, spawn_rate=10, duration=5, seed=9,
                        data_dir=shop.data_dir, think=(0.0, 0.2), stats_path=tmp_path / f"{name}.jsonl")

    healthy = edit("healthy")
    steps = healthy.steps
    assert steps["profile-edit:verify"]["count"] >= 2 and steps["profile-edit:save-again"]["count"] >= 2, steps
    assert healthy.request_failures == 0, {k: v for k, v in steps.items() if v["failures"]}
    shop.post("/v1/config", {"deployment": "user", "knobs": {"profile_version_check": False}})
    try:
        unchecked = edit("unchecked")
    finally:
        shop.post("/v1/config/reset", {"deployment": "user"})
    verify = unchecked.steps["profile-edit:verify"]
    # Nearly every edit loses the first device's change (the user service proves it exactly, in
    # tests/shop/test_user.py); one measured run lost 74 of 76 here, so the load asserts the overwhelming share.
    assert verify["count"] >= 2 and verify["failures"] >= 0.9 * verify["count"], verify


def test_ramp_follows_its_curve_and_streams_to_the_recorder(shop: Shop, tmp_path: Path) -> None:
    recorder = Recorder()
    try:
        summary = run_load(shop.url, "browse:3,login:1", users=1, spawn_rate=5, duration=8, shape="ramp",
                           peak_users=5, seed=3, recorder_url=recorder.url, think=(0.0, 0.3),
                           stats_path=tmp_path / "ramp.jsonl", data_dir=shop.data_dir)
    finally:
        recorder.server.shutdown()
    assert summary.peak_users == 5 and summary.failures == 0
    records = read_records(tmp_path / "ramp.jsonl")
    users = [r["users"] for r in records]
    peak_at = users.index(5)
    assert users[0] <= 2 and 0 < peak_at < len(users) - 2, users
    assert users[-2] <= 2, users  # back to normal before the end
    curve = Curve("ramp", 1, 5, 5, 8)
    for r in records[:-1]:  # Locust applies the shape once a second: allow one second of lag
        lagging = {curve.users_at(r["elapsed"] - d) for d in (0.0, 0.5, 1.0, 1.5)}
        assert min(lagging) - 1 <= r["users"] <= max(lagging) + 1, (r["elapsed"], r["users"], lagging)
    # the recorder got per-second samples with the stable names, live (not only at the end)
    assert len(recorder.bodies) >= 5
    samples = recorder.samples()
    users_seen = [s["value"] for s in samples if s["name"] == "load_users"]
    assert max(users_seen) == 5
    lat = [s for s in samples if s["name"] == "journey_latency_seconds" and s["labels"]["journey"] == "browse"]
    assert {s["labels"]["quantile"] for s in lat} == {"0.5", "0.95", "0.99"}
    assert all(0 < s["value"] < 10 for s in lat)
    totals = [s["value"] for s in samples if s["name"] == "journey_requests_total"
              and s["labels"] == {"journey": "browse"}]
    assert totals == sorted(totals) and totals[-1] == summary.journeys["browse"]["count"]
    assert {"journey_failures_total", "journey_rps", "step_latency_seconds"} <= {s["name"] for s in samples}


def test_same_seed_same_choices_and_runs_stop_early(shop: Shop, tmp_path: Path) -> None:
    def start(seed: int, tag: str, **kw: Any) -> Any:
        return start_load(shop.url, "browse:2,login:1", users=2, spawn_rate=10, seed=seed, think=(0.0, 0.1),
                          data_dir=shop.data_dir, choices_path=tmp_path / f"{tag}.json", **kw)

    stop = threading.Event()
    out: dict[str, Any] = {}
    c = threading.Thread(target=lambda: out.update(c=run_load(  # stopped from outside, by the event
        shop.url, "browse:2,login:1", users=2, spawn_rate=10, duration=30, seed=6, stop_event=stop,
        think=(0.0, 0.1), data_dir=shop.data_dir, choices_path=tmp_path / "c.json")))
    c.start()
    a = start(5, "a", duration=3)
    b = start(5, "b", duration=30, max_requests=60)       # stops itself at its request limit
    started = time.monotonic()
    sa, sb = a.wait(), b.wait()
    stop.set()
    c.join(timeout=20)
    sc = out["c"]
    assert time.monotonic() - started < 20
    assert sb.stop_reason == "request limit" and sb.requests >= 60 and sb.duration_s < 15
    assert sc.stopped_early and sc.stop_reason == "stopped"
    assert sa.stop_reason == "duration" and sa.failures == sb.failures == sc.failures == 0

    def choices(tag: str) -> dict[int, list[Any]]:
        return {u["user"]: u["choices"] for u in json.loads((tmp_path / f"{tag}.json").read_text())}

    ca, cb, cc = choices("a"), choices("b"), choices("c")
    assert set(ca) == set(cb) == set(cc) == {0, 1}
    for user in (0, 1):
        n = min(len(ca[user]), len(cb[user]))
        assert n >= 5, (ca[user], cb[user])
        assert ca[user][:n] == cb[user][:n]  # one run went on longer; up to there, the very same choices
        m = min(n, len(cc[user]))
        assert ca[user][:m] != cc[user][:m]
    assert ca[0][:5] != ca[1][:5]


def test_a_stalled_shop_shows_failures_not_a_hung_generator(tmp_path: Path) -> None:
    class Stall(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(3)  # far beyond the client timeout

        def log_message(self, *_a: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = time.monotonic()
    try:
        summary = run_load(f"http://127.0.0.1:{server.server_address[1]}", "browse:1", users=2, spawn_rate=10,
                           duration=3, seed=1, accounts=0, timeout=0.5, think=(0.0, 0.0))
    finally:
        server.shutdown()
    assert time.monotonic() - started < 15
    browse = summary.journeys["browse"]
    assert browse["failures"] >= 2 and browse["failures"] == browse["count"]
    assert 400 <= browse["p50_ms"] <= 1500  # each failed at the client timeout
    assert summary.steps["browse:home"]["failures"] == summary.steps["browse:home"]["count"]
    assert sum(summary.errors.values()) == summary.request_failures  # and each says why
    assert all(why.startswith("browse:home: GET /catalogue") and "timed out" in why for why in summary.errors)


def test_a_default_shop_serves_twenty_shoppers_without_failures(tmp_path: Path) -> None:
    """`sockdrill up` with no generated users, then 20 simulated users: each gets an account of its own
    (created on demand), so no journey fails on a healthy shop because two shoppers share a basket."""
    import shutil

    from sockdrill.cluster import client
    from sockdrill.shop.manifest import shop_deployments
    from tests.conftest import make_data_dir

    data_dir = make_data_dir("sockdrill-test-load-")
    try:
        client.up(shop_deployments(front_end_port=free_port()), data_dir=data_dir, timeout=180)
        summary = run_load(None, None, users=20, spawn_rate=20, duration=15, seed=5, data_dir=data_dir,
                           stats_path=tmp_path / "stats.jsonl")
        assert summary.request_failures == 0, summary.steps
        failed = {n: j["failures"] for n, j in summary.journeys.items() if j["failures"]}
        assert not failed, failed
        assert sum(j["count"] for j in summary.journeys.values()) > 100
    finally:
        client.down(data_dir, purge=True)
        shutil.rmtree(data_dir, ignore_errors=True)
