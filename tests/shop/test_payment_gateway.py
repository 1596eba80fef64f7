"""payment-gateway (the "third-party" processor) and payment in front of it: real processes, real requests.

Covers the gateway's idempotency, durable ledger, voids, transient errors and capacity queue, and
payment's charging, retries with one key, circuit breaker and connection-pool limit.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from servicekit import Response, ServiceProcess, request

AUTHORISED = {"authorised": True, "message": "Payment authorised"}
CARD = {"longNum": "4111 1111 1111 4242", "expires": "08/30", "ccv": "123"}


# ---- helpers ----------------------------------------------------------------------------------------

def charge(gw: ServiceProcess, key: str | None, amount: float = 12.5, **extra: Any) -> Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return request("POST", gw.url + "/v1/charges", json_body={"amount": amount, **extra}, headers=headers)


def charges(gw: ServiceProcess, **query: str) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    resp = request("GET", f"{gw.url}/v1/charges?{qs}")
    assert resp.status == 200, resp.body
    return list(resp.json()["data"])


def pay(svc: ServiceProcess, amount: float, key: str | None = None, timeout: float = 15) -> Response:
    headers = {"Idempotency-Key": key} if key else {}
    return request("POST", svc.url + "/paymentAuth", json_body={"amount": amount, "card": CARD},
                   headers=headers, timeout=timeout)


def configure(svc: ServiceProcess, **knobs: Any) -> None:
    resp = request("PUT", svc.url + "/admin/config", json_body=knobs)
    assert resp.status == 200, resp.body


def metric(svc: ServiceProcess, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in request("GET", svc.url + "/metrics").body.decode().splitlines():
        m = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


@pytest.fixture(scope="module")
def pod_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="sockdrill-gw-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


GW_DEFAULTS = {"latency_ms": 5.0, "latency_jitter_ms": 2.0, "transient_error_rate": 0.0, "max_concurrent": 64}
PAY_DEFAULTS = {"gateway_timeout_s": 3.0, "gateway_retries": 2, "gateway_retry_backoff_s": 0.05,
                "breaker_enabled": True, "breaker_failure_threshold": 5, "breaker_reset_s": 10.0,
                "http_pool_size": 100}


@pytest.fixture(scope="module")
def gw(pod_dir: str) -> Iterator[ServiceProcess]:
    env = {"SOCKDRILL_POD_DIR": pod_dir, "SOCKDRILL_SEED": "7", "SOCKDRILL_KNOBS": json.dumps(GW_DEFAULTS)}
    with ServiceProcess("payment-gateway", env) as svc:
        yield svc


@pytest.fixture(scope="module")
def payment(gw: ServiceProcess) -> Iterator[ServiceProcess]:
    with ServiceProcess("payment", {"SOCKDRILL_URL_PAYMENT_GATEWAY": gw.url}) as svc:
        yield svc


@pytest.fixture()
def clean(gw: ServiceProcess, payment: ServiceProcess) -> Iterator[None]:
    """Put both services' knobs back (and let an open breaker go) after a test that changes them."""
    yield
    configure(gw, **GW_DEFAULTS)
    configure(payment, **{**PAY_DEFAULTS, "breaker_enabled": False})
    configure(payment, breaker_enabled=True)


# ---- the gateway on its own ------------------------------------------------------------------------

def test_charge_and_idempotency_key(gw: ServiceProcess) -> None:
    key = f"k-{uuid.uuid4().hex}"
    first = charge(gw, key, 12.5, reference="order-1", card_last4="4242")
    assert first.status == 201, first.body
    body = first.json()
    assert body["status"] == "authorised" and body["amount"] == 12.5 and body["reference"] == "order-1"
    assert body["id"].startswith("ch_") and body["card_last4"] == "4242" and body["currency"] == "USD"
    assert isinstance(body["created"], float) and abs(body["created"] - time.time()) < 60
    again = charge(gw, key, 12.5, reference="order-1")
    assert again.status == 200 and again.json() == body
    assert [c["id"] for c in charges(gw, reference="order-1")] == [body["id"]]
    assert request("GET", f"{gw.url}/v1/charges/{body['id']}").json() == body
    # The same key for another amount is a client bug, not a second charge.
    assert charge(gw, key, 99.0).status == 422
    assert len(charges(gw, reference="order-1")) == 1


@pytest.mark.parametrize(("key", "body"), [
    (None, {"amount": 1}),
    ("x" * 256, {"amount": 1}),
    ("k", {"amount": 0}),
    ("k", {"amount": -3}),
    ("k", {"amount": "10"}),
    ("k", {"amount": True}),
    ("k", {}),
    ("k", {"amount": 1, "currency": "dollars"}),
    ("k", {"amount": 1, "card_last4": "12a4"}),
    ("k", {"amount": 1, "reference": 5}),
])
def test_bad_charge_requests_are_400(gw: ServiceProcess, key: str | None, body: dict[str, Any]) -> None:
    headers = {"Idempotency-Key": key} if key is not None else {}
    resp = request("POST", gw.url + "/v1/charges", json_body=body, headers=headers)
    assert resp.status == 400, resp.body
    assert resp.json()["error"]
    assert request("POST", gw.url + "/v1/charges", body="{nope", headers={"Idempotency-Key": "k"}).status == 400


def test_ledger_lists_newest_first_with_filters_and_pages(gw: ServiceProcess) -> None:
    ref = f"list-{uuid.uuid4().hex[:8]}"
    ids = [charge(gw, f"{ref}-{i}", 1.0 + i, reference=ref).json()["id"] for i in range(5)]
    assert [c["id"] for c in charges(gw, reference=ref)] == ids[::-1]
    page = request("GET", f"{gw.url}/v1/charges?reference={ref}&limit=2").json()
    assert [c["id"] for c in page["data"]] == ids[:2:-1] and page["has_more"] is True
    rest = charges(gw, reference=ref, limit="10", starting_after=page["data"][-1]["id"])
    assert [c["id"] for c in rest] == ids[2::-1]
    assert charges(gw, reference=ref, created_before=str(time.time() - 3600)) == []
    for bad in ("limit=0", "limit=abc", "limit=5000", "status=pending", "created_before=soon",
                "starting_after=ch_nope"):
        resp = request("GET", f"{gw.url}/v1/charges?{bad}")
        assert resp.status == 400, bad
    assert request("GET", f"{gw.url}/v1/charges/ch_nope").status == 404


def test_void_is_idempotent(gw: ServiceProcess) -> None:
    ref = f"void-{uuid.uuid4().hex[:8]}"
    made = charge(gw, ref, 5.0, reference=ref).json()
    first = request("POST", f"{gw.url}/v1/charges/{made['id']}/void")
    assert first.status == 200 and first.json()["status"] == "voided" and first.json()["voided_at"]
    second = request("POST", f"{gw.url}/v1/charges/{made['id']}/void")
    assert second.status == 200 and second.json() == first.json()
    assert [c["id"] for c in charges(gw, reference=ref, status="voided")] == [made["id"]]
    assert charges(gw, reference=ref, status="authorised") == []
    # Replaying the key shows the voided charge; it does not charge again.
    replay = charge(gw, ref, 5.0, reference=ref)
    assert replay.status == 200 and replay.json()["status"] == "voided"
    assert request("POST", f"{gw.url}/v1/charges/ch_nope/void").status == 404


def test_transient_errors_do_not_charge(gw: ServiceProcess, clean: None) -> None:
    ref = f"flaky-{uuid.uuid4().hex[:8]}"
    configure(gw, transient_error_rate=1.0)
    for _ in range(3):
        resp = charge(gw, ref, 3.0, reference=ref)
        assert resp.status == 503 and "nothing was charged" in resp.json()["error"]
    assert charges(gw, reference=ref) == []
    configure(gw, transient_error_rate=0.0)
    assert charge(gw, ref, 3.0, reference=ref).status == 201
    assert len(charges(gw, reference=ref)) == 1
    assert metric(gw, "gateway_charges_total", outcome="transient_error") >= 3


def _burst(fn: Any, n: int) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(fn, range(n)))
    return time.perf_counter() - started, results


def test_max_concurrent_queues_the_rest(gw: ServiceProcess, clean: None) -> None:
    ref = f"cap-{uuid.uuid4().hex[:8]}"
    configure(gw, latency_ms=400.0, latency_jitter_ms=0.0, max_concurrent=2)
    elapsed, results = _burst(lambda i: charge(gw, f"{ref}-a{i}", 1.0, reference=ref), 6)
    assert all(r.status == 201 for r in results)
    assert elapsed >= 1.15, elapsed  # three waves of two
    created = sorted(r.json()["created"] for r in results)
    assert all(created[i + 2] - created[i] >= 0.35 for i in range(4)), created
    configure(gw, max_concurrent=64)
    elapsed, results = _burst(lambda i: charge(gw, f"{ref}-b{i}", 1.0, reference=ref), 6)
    assert all(r.status == 201 for r in results)
    assert elapsed < 1.0, elapsed  # one wave


def test_ledger_survives_a_killed_gateway() -> None:
    path = tempfile.mkdtemp(prefix="sockdrill-gw-")
    try:
        env = {"SOCKDRILL_POD_DIR": path, "SOCKDRILL_KNOBS": json.dumps({"latency_ms": 1, "latency_jitter_ms": 0})}
        with ServiceProcess("payment-gateway", env) as first:
            made = charge(first, "durable-1", 42.0, reference="order-d").json()
            assert first.proc is not None
            first.proc.send_signal(signal.SIGKILL)  # no clean shutdown
            first.proc.wait(10)
        with ServiceProcess("payment-gateway", env) as second:
            assert request("GET", f"{second.url}/v1/charges/{made['id']}").json() == made
            replay = charge(second, "durable-1", 42.0)
            assert replay.status == 200 and replay.json()["id"] == made["id"]
            assert [c["id"] for c in charges(second)] == [made["id"]]
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---- payment in front of the gateway -----------------------------------------------------------------

def test_payment_charges_the_gateway_once_per_key(gw: ServiceProcess, payment: ServiceProcess) -> None:
    key = f"order-{uuid.uuid4().hex[:12]}"
    resp = pay(payment, 10.0, key)
    assert resp.status == 200 and resp.json() == AUTHORISED
    assert list(resp.json()) == ["authorised", "message"]
    made = charges(gw, reference=key)
    assert len(made) == 1 and made[0]["amount"] == 10.0 and made[0]["card_last4"] == "4242"
    assert made[0]["idempotency_key"] == key and resp.headers.get("Payment-Charge-Id") == made[0]["id"]
    # A retry of the same order (same key) does not charge again.
    assert pay(payment, 10.0, key).json() == AUTHORISED
    assert len(charges(gw, reference=key)) == 1
    # A decline never reaches the gateway.
    before = len(charges(gw, limit="1000"))
    declined = pay(payment, 150.0, f"order-{uuid.uuid4().hex[:12]}")
    assert declined.status == 200 and declined.json()["authorised"] is False
    assert len(charges(gw, limit="1000")) == before
    # Without a key payment makes one up, so the charge still has one.
    assert pay(payment, 7.0).json() == AUTHORISED
    newest = charges(gw, limit="1")[0]
    assert newest["amount"] == 7.0 and newest["reference"]
    # Upstream's error mapping is unchanged with a gateway behind it.
    assert request("POST", payment.url + "/paymentAuth", body='{"amount": 0}',
                   headers={"Content-Type": "application/json"}).status == 500


def test_voided_charge_is_not_authorised_again(gw: ServiceProcess, payment: ServiceProcess) -> None:
    key = f"order-{uuid.uuid4().hex[:12]}"
    assert pay(payment, 9.0, key).json() == AUTHORISED
    charge_id = charges(gw, reference=key)[0]["id"]
    assert request("POST", f"{gw.url}/v1/charges/{charge_id}/void").status == 200
    again = pay(payment, 9.0, key)
    assert again.status == 200 and again.json()["authorised"] is False and "voided" in again.json()["message"]


def test_timeouts_are_retried_with_the_same_key(gw: ServiceProcess, payment: ServiceProcess, clean: None) -> None:
    # The gateway takes 0.6 s; payment gives up each attempt after 0.4 s. The first attempt's charge
    # still lands (a real processor does not notice the caller left); the third attempt finds it.
    configure(gw, latency_ms=600.0, latency_jitter_ms=0.0)
    configure(payment, gateway_timeout_s=0.4, gateway_retries=4, gateway_retry_backoff_s=0.05)
    timeouts = metric(payment, "payment_gateway_requests_total", outcome="timeout")
    key = f"order-{uuid.uuid4().hex[:12]}"
    resp = pay(payment, 20.0, key)
    assert resp.status == 200 and resp.json() == AUTHORISED, resp.body
    time.sleep(0.7)  # let the later attempts' processing finish at the gateway too
    assert len(charges(gw, reference=key)) == 1
    assert metric(payment, "payment_gateway_requests_total", outcome="timeout") >= timeouts + 2
    assert metric(payment, "payment_gateway_requests_total", outcome="replayed") >= 1


def test_timeout_without_retries_answers_504_but_the_charge_lands(
        gw: ServiceProcess, payment: ServiceProcess, clean: None) -> None:
    # Scenario 2's mechanism: the caller sees a failure while the processor charged.
    configure(gw, latency_ms=400.0, latency_jitter_ms=0.0)
    configure(payment, gateway_timeout_s=0.2, gateway_retries=0)
    key = f"order-{uuid.uuid4().hex[:12]}"
    resp = pay(payment, 15.0, key)
    assert resp.status == 504 and resp.json() == {"authorised": False, "message": "Payment gateway timed out"}
    deadline = time.monotonic() + 5
    while not charges(gw, reference=key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c["status"] for c in charges(gw, reference=key)] == ["authorised"]


def test_breaker_opens_and_recovers(gw: ServiceProcess, payment: ServiceProcess, clean: None) -> None:
    configure(payment, breaker_failure_threshold=3, breaker_reset_s=0.5, gateway_retries=0)
    configure(gw, transient_error_rate=1.0)
    seen = metric(gw, "gateway_charges_total", outcome="transient_error")
    opened = metric(payment, "payment_circuit_breaker_transitions_total", to="open")
    for _ in range(3):
        resp = pay(payment, 5.0, f"order-{uuid.uuid4().hex[:12]}")
        assert resp.status == 502 and resp.json()["authorised"] is False
    assert metric(payment, "payment_circuit_breaker_state") == 2
    assert metric(payment, "payment_circuit_breaker_transitions_total", to="open") == opened + 1
    # Open: answered at once, the gateway never sees it.
    started = time.perf_counter()
    resp = pay(payment, 5.0, f"order-{uuid.uuid4().hex[:12]}")
    assert time.perf_counter() - started < 0.5
    assert resp.status == 503 and resp.json() == {"authorised": False, "message": "Payment gateway unavailable"}
    assert metric(gw, "gateway_charges_total", outcome="transient_error") == seen + 3
    assert metric(payment, "payment_gateway_requests_total", outcome="short_circuited") >= 1
    # After the reset time one probe goes through; failing, it opens the breaker again.
    time.sleep(0.6)
    assert pay(payment, 5.0, f"order-{uuid.uuid4().hex[:12]}").status == 502
    assert metric(payment, "payment_circuit_breaker_state") == 2
    assert metric(payment, "payment_circuit_breaker_transitions_total", to="open") == opened + 2
    # The gateway recovers; the next probe succeeds and closes the breaker.
    configure(gw, transient_error_rate=0.0)
    time.sleep(0.6)
    key = f"order-{uuid.uuid4().hex[:12]}"
    assert pay(payment, 5.0, key).json() == AUTHORISED
    assert metric(payment, "payment_circuit_breaker_state") == 0
    assert metric(payment, "payment_circuit_breaker_transitions_total", to="closed") >= 1
    assert len(charges(gw, reference=key)) == 1


def test_breaker_disabled_never_short_circuits(gw: ServiceProcess, payment: ServiceProcess, clean: None) -> None:
    configure(payment, breaker_enabled=False, breaker_failure_threshold=1, gateway_retries=0)
    configure(gw, transient_error_rate=1.0)
    for _ in range(3):
        assert pay(payment, 5.0, f"order-{uuid.uuid4().hex[:12]}").status == 502
    assert metric(payment, "payment_circuit_breaker_state") == 0


def test_small_pool_limits_concurrent_gateway_calls(gw: ServiceProcess, payment: ServiceProcess,
                                                    clean: None) -> None:
    configure(gw, latency_ms=400.0, latency_jitter_ms=0.0)
    configure(payment, http_pool_size=2)
    time.sleep(0.2)  # the pool is rebuilt asynchronously
    tag = uuid.uuid4().hex[:8]
    elapsed, results = _burst(lambda i: pay(payment, 3.0, f"pool-{tag}-a{i}"), 6)
    assert all(r.status == 200 and r.json() == AUTHORISED for r in results), [r.body for r in results]
    assert elapsed >= 1.15, elapsed  # two connections: three waves of 0.4 s
    created = sorted(c["created"] for c in charges(gw, limit="6"))
    assert all(created[i + 2] - created[i] >= 0.35 for i in range(4)), created
    configure(payment, http_pool_size=100)
    time.sleep(0.2)
    elapsed, results = _burst(lambda i: pay(payment, 3.0, f"pool-{tag}-b{i}"), 6)
    assert all(r.status == 200 for r in results)
    assert elapsed < 1.0, elapsed


def test_payment_knobs_are_validated(payment: ServiceProcess) -> None:
    for bad in ({"gateway_timeout_s": 0}, {"gateway_retries": -1}, {"breaker_failure_threshold": 0},
                {"breaker_enabled": "maybe"}, {"breaker_reset_s": "soon"}):
        assert request("PUT", payment.url + "/admin/config", json_body=bad).status == 400, bad
    assert request("POST", payment.url + "/paymentAuth", json_body={"amount": 1},
                   headers={"Idempotency-Key": "k" * 300}).status == 400
