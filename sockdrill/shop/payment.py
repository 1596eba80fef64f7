"""payment: authorises an amount against a threshold, upstream-compatible (reference §3.4).

``POST /paymentAuth`` with ``{"amount": <number>, ...}`` (other fields ignored): authorised iff
``0 < amount <= decline_over`` (float32 comparison, as upstream). A decline is a 200 with
``authorised: false``. Bad requests answer 500 like upstream did, because orders maps that status.

Beyond upstream, an amount that passes the decline rule is charged at ``payment-gateway`` (the
"third-party" processor, ``POST /v1/charges``) and only answers ``authorised: true`` once the gateway
has charged it. The charge carries the ``Idempotency-Key`` orders sent (a fresh one if none) as both its
idempotency key and its ``reference``, so a retry never charges twice and reconcile can match charges
to orders. Around the call:
- ``gateway_timeout_s`` per attempt (waiting for a pooled connection included), ``gateway_retries`` of
  timeouts / connection errors / 5xx with the SAME key after ``gateway_retry_backoff_s`` (doubling);
- a circuit breaker (``breaker_enabled``, ``breaker_failure_threshold`` consecutive failed attempts,
  ``breaker_reset_s``): open, it answers at once; after the reset time one request probes (half-open)
  and closes it again on success;
- the connection pool is the common ``http_pool_size`` knob: payment calls nothing else, so it bounds
  the gateway calls in flight; the others wait for a connection.
Before the charge, fraud screening (``fraud.py``) checks the card's issuer range against a blocklist;
a blocked card is declined like an amount over the limit.
Failures answer an error status with ``{"authorised": false, "message": ...}``: 503 while the breaker
is open (nothing was charged), 504 after timeouts (the gateway MAY have charged: reconcile finds those),
502 after gateway errors. Orders treats any of them as a failed checkout and removes the order (and
retries 502/503/504 with the same key when its ``payment_retries`` allows).

Two providers: ``gateway_provider`` says which one charges, ``primary`` (``payment-gateway``) or ``secondary``
(``payment-gateway-b``, a second processor with its own ledger, asleep unless a scenario wakes it). Failing
over is switching it: the seed's "third-party gateway latency" is the primary provider's, and follows its pods
through a restart, as a processor's own slowness would.

Without ``SOCKDRILL_URL_PAYMENT_GATEWAY`` (payment run on its own, as in the standalone contract tests)
there is no gateway: the decline rule alone decides, as upstream.

Metrics: ``payment_gateway_requests_total{outcome}``, ``payment_gateway_duration_seconds``,
``payment_gateway_in_flight``, ``payment_circuit_breaker_state`` (0 closed, 1 half-open, 2 open),
``payment_circuit_breaker_transitions_total{to}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import time
import uuid
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from sockdrill.shop.common.env import int_env, optional_upstream_url
from sockdrill.shop.common.http import UpstreamError
from sockdrill.shop.common.knobs import Knob
from sockdrill.shop.common.service import Service, json_response, run_service
from sockdrill.shop.fraud import FRAUD_KNOBS, FraudScreen

KNOBS = [
    *FRAUD_KNOBS,
    Knob("decline_over", 100.0, "decline payments above this amount", minimum=0),
    Knob("gateway_timeout_s", 3.0, "timeout of one call to payment-gateway, pool wait included (seconds)",
         minimum=0.001, maximum=300),
    # 2: with a gateway that fails 15 % of calls, 0.15³ ≈ 0.3 % of charges still fail (under a 1 % SLO);
    # 1 would leave 2.25 %.
    Knob("gateway_retries", 2, "retries of a gateway call that timed out, failed to connect or got a 5xx "
         "(same Idempotency-Key)", minimum=0, maximum=10),
    Knob("gateway_retry_backoff_s", 0.05, "first back-off between gateway retries; doubles each time",
         minimum=0, maximum=30),
    Knob("gateway_provider", "primary", "which payment provider charges: the primary (payment-gateway) or the "
         "secondary (payment-gateway-b, where the shop runs one)", choices=("primary", "secondary")),
    Knob("breaker_enabled", True, "circuit breaker on the gateway calls"),
    Knob("breaker_failure_threshold", 5, "consecutive failed gateway calls that open the breaker",
         minimum=1, maximum=10000),
    Knob("breaker_reset_s", 10.0, "how long the breaker stays open before one probe (seconds)",
         minimum=0.001, maximum=3600),
]

GATEWAY = "payment-gateway"
GATEWAY_B = "payment-gateway-b"  # the secondary provider
MAX_KEY = 255

JSON_TYPE = "application/json; charset=utf-8"
# Upstream's Go handlers set Content-Type after writing an error status, so clients saw a sniffed type.
ERROR_TYPE = "text/plain; charset=utf-8"


def _f32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def go_error(message: str, status: int = 500) -> web.Response:
    reason = web.Response(status=status).reason
    body = json.dumps({"error": message, "status_code": status, "status_text": reason}, separators=(",", ":"))
    resp = web.Response(body=body.encode(), status=status)
    resp.headers["Content-Type"] = ERROR_TYPE
    return resp


def authorise(body: bytes, decline_over: float) -> tuple[int, dict[str, Any] | str]:
    """(200, reply) or (500, error message) for a raw request body."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return 500, f"invalid JSON: {exc}" if text.strip() else "EOF"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return 500, f"json: cannot unmarshal {type(data).__name__} into an authorisation request"
    amount = data.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int | float)):
        return 500, f"json: cannot unmarshal {type(amount).__name__} into field amount of type float32"
    try:
        value = _f32(float(amount or 0))
        if not math.isfinite(value):
            raise ValueError
    except (OverflowError, ValueError):
        return 500, "json: cannot unmarshal number into field amount of type float32"
    if value == 0:
        return 500, f'Cannot unmarshal object key "amount" from JSON: {text}'
    if value < 0:
        return 500, "Invalid payment amount"
    if value <= _f32(decline_over):
        return 200, {"authorised": True, "message": "Payment authorised"}
    return 200, {"authorised": False, "message": f"Payment declined: amount exceeds {decline_over:.2f}"}


CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}


class Breaker:
    """Consecutive-failure circuit breaker: closed → open → (after breaker_reset_s) half-open → closed/open."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probing = False
        r = svc.metrics.registry
        self.state_gauge = Gauge("payment_circuit_breaker_state",
                                 "Gateway circuit breaker: 0 closed, 1 half-open, 2 open.", ["service"], registry=r)
        self.transitions = Counter("payment_circuit_breaker_transitions_total",
                                   "Gateway circuit breaker state changes, by new state.", ["service", "to"],
                                   registry=r)
        self.state_gauge.labels(svc.name).set(CLOSED)
        for name in STATE_NAMES.values():  # export every series from the start, at 0
            self.transitions.labels(svc.name, name)

    def _move(self, state: int) -> None:
        if state == self.state:
            return
        before = self.state
        self.state = state
        self.probing = False
        if state == OPEN:
            self.opened_at = time.monotonic()
        if state == CLOSED:
            self.failures = 0
        self.state_gauge.labels(self.svc.name).set(state)
        self.transitions.labels(self.svc.name, STATE_NAMES[state]).inc()
        log = self.svc.log.warning if state == OPEN else self.svc.log.info
        log("circuit breaker %s → %s", STATE_NAMES[before], STATE_NAMES[state], extra={"fields": {
            "kind": "circuit_breaker", "from": STATE_NAMES[before], "to": STATE_NAMES[state],
            "failures": self.failures}})

    def allow(self) -> tuple[bool, bool]:
        """(may call?, is this call the half-open probe?)."""
        if not self.svc.knobs["breaker_enabled"]:
            return True, False
        if self.state == OPEN:
            if time.monotonic() - self.opened_at < self.svc.knobs["breaker_reset_s"]:
                return False, False
            self._move(HALF_OPEN)
        if self.state == HALF_OPEN:
            if self.probing:
                return False, False
            self.probing = True
            return True, True
        return True, False

    def success(self) -> None:
        self.failures = 0
        if self.state != CLOSED:
            self._move(CLOSED)

    def failure(self) -> None:
        self.failures += 1
        if not self.svc.knobs["breaker_enabled"]:
            return
        if self.state == HALF_OPEN or (self.state == CLOSED
                                       and self.failures >= self.svc.knobs["breaker_failure_threshold"]):
            self._move(OPEN)

    def knobs_changed(self, changes: dict[str, Any]) -> None:
        if changes.get("breaker_enabled") is False:
            self._move(CLOSED)
            self.failures = 0


def card_digits(body: bytes) -> str | None:
    """The card number's digits from an authorisation request, if it names a card."""
    try:
        data = json.loads(body)
        return "".join(ch for ch in str(data["card"]["longNum"]) if ch.isdigit())[:32] or None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None


def card_last4(body: bytes) -> str | None:
    digits = card_digits(body)
    return digits[-4:] if digits and len(digits) >= 4 else None


def failed(status: int, message: str) -> web.Response:
    return json_response({"authorised": False, "message": message}, status=status, content_type=JSON_TYPE)


class GatewayClient:
    """Charges authorised payments at payment-gateway, behind retries and the circuit breaker."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.has_secondary = optional_upstream_url(GATEWAY_B) is not None
        self.breaker = Breaker(svc)
        svc.knobs.on_change(self.breaker.knobs_changed)
        r = svc.metrics.registry
        self.requests = Counter("payment_gateway_requests_total",
                                "Calls to payment-gateway by outcome (short_circuited: refused by the breaker).",
                                ["service", "outcome"], registry=r)
        self.duration = Histogram("payment_gateway_duration_seconds",
                                  "Duration of one call to payment-gateway, pool wait included.", ["service"],
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                  registry=r)
        self.in_flight = Gauge("payment_gateway_in_flight",
                               "Gateway calls started and not finished (waiting for a pooled connection included).",
                               ["service"], registry=r)

    def _count(self, outcome: str) -> None:
        self.requests.labels(self.svc.name, outcome).inc()

    async def charge(self, key: str, amount: float, last4: str | None) -> web.Response:
        knobs = self.svc.knobs
        attempts = 1 + knobs["gateway_retries"]
        body: dict[str, Any] = {"amount": round(amount, 2), "currency": "USD", "reference": key}
        if last4:
            body["card_last4"] = last4
        status, message = 503, "Payment gateway unavailable"
        for attempt in range(attempts):
            allowed, probe = self.breaker.allow()
            if not allowed:
                self._count("short_circuited")
                # After a real failure this attempt, say what happened; otherwise nothing was tried.
                if attempt == 0:
                    status, message = 503, "Payment gateway unavailable"
                break
            # Each attempt asks, so a failover applies to retries at once.
            secondary = knobs["gateway_provider"] == "secondary" and self.has_secondary
            provider = GATEWAY_B if secondary else GATEWAY
            started = time.perf_counter()
            self.in_flight.labels(self.svc.name).inc()
            outcome = "cancelled"
            try:
                resp = await self.svc.http.request(provider, "POST", "/v1/charges", json_body=body,
                                                   headers={"Idempotency-Key": key},
                                                   timeout=knobs["gateway_timeout_s"])
            except UpstreamError as exc:
                outcome = "timeout" if exc.kind == "timeout" else "connection_error"
                status = 504 if exc.kind == "timeout" else 502
                message = f"Payment gateway {'timed out' if exc.kind == 'timeout' else 'unreachable'}"
                self.breaker.failure()
            else:
                if resp.status in (200, 201):
                    outcome = "charged" if resp.status == 201 else "replayed"
                    self.breaker.success()
                    return self._charged(resp.json(), key)
                if resp.status >= 500 or resp.status == 429:
                    outcome = "server_error"
                    status, message = 502, f"Payment gateway error (HTTP {resp.status})"
                    self.breaker.failure()
                else:
                    # The gateway is up and refused this request: not a reason to open the breaker or retry.
                    outcome = "rejected"
                    self.breaker.success()
                    detail = resp.json()
                    error = detail.get("error") if isinstance(detail, dict) else None
                    self.svc.log.error("gateway rejected charge %s: %s %s", key, resp.status, error,
                                       extra={"fields": {"kind": "payment", "idempotency_key": key}})
                    return failed(502, f"Payment gateway rejected the charge (HTTP {resp.status})")
            finally:
                if outcome == "cancelled" and probe:
                    self.breaker.failure()  # the probe never finished: do not leave the breaker half-open forever
                self.in_flight.labels(self.svc.name).dec()
                self.duration.labels(self.svc.name).observe(time.perf_counter() - started)
                self._count(outcome)
            self.svc.log.warning("gateway attempt %d/%d failed: %s", attempt + 1, attempts, outcome,
                                 extra={"fields": {"kind": "payment", "idempotency_key": key, "outcome": outcome}})
            if attempt < attempts - 1:
                self.svc.metrics.client_retries.labels(self.svc.name, provider).inc()
                await asyncio.sleep(knobs["gateway_retry_backoff_s"] * 2**attempt)
        self.svc.log.error("payment not authorised: %s", message, extra={"fields": {
            "kind": "payment", "idempotency_key": key, "status": status, "breaker": STATE_NAMES[self.breaker.state]}})
        return failed(status, message)

    def _charged(self, charge: Any, key: str) -> web.Response:
        if not isinstance(charge, dict) or not isinstance(charge.get("id"), str):
            return failed(502, "Payment gateway answered without a charge")
        if charge.get("status") != "authorised":
            # A retried key whose charge was voided meanwhile (by reconcile): it is no longer money taken.
            return json_response({"authorised": False,
                                  "message": f"Payment declined: charge {charge['id']} is {charge.get('status')}"},
                                 content_type=JSON_TYPE)
        self.svc.log.info("payment charged", extra={"fields": {
            "kind": "payment", "charge_id": charge["id"], "idempotency_key": key}})
        return json_response({"authorised": True, "message": "Payment authorised"}, content_type=JSON_TYPE,
                             headers={"Payment-Charge-Id": charge["id"]})


def build(svc: Service) -> None:
    gateway = GatewayClient(svc) if optional_upstream_url(GATEWAY) else None
    screen = FraudScreen(svc, int_env("SOCKDRILL_SEED", 1))

    async def payment_auth(request: web.Request) -> web.Response:
        raw = await request.read()
        status, reply = authorise(raw, svc.knobs["decline_over"])
        if status != 200:
            svc.log.info("payment rejected", extra={"fields": {"kind": "payment", "error": reply}})
            return go_error(str(reply), status)
        assert isinstance(reply, dict)
        if reply["authorised"] and await screen.check(card_digits(raw)):
            svc.log.info("payment declined by fraud screening", extra={"fields": {"kind": "payment",
                                                                                  "authorised": False}})
            return json_response({"authorised": False, "message": "Payment declined: the card's issuer range is "
                                  "blocked"}, content_type=JSON_TYPE)
        if reply["authorised"] and gateway is not None:
            key = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
            if len(key) > MAX_KEY:
                return go_error(f"Idempotency-Key must be at most {MAX_KEY} characters", 400)
            amount = float(json.loads(raw)["amount"])
            return await gateway.charge(key, amount, card_last4(raw))
        svc.log.info("payment %s", "authorised" if reply["authorised"] else "declined",
                     extra={"fields": {"kind": "payment", "authorised": reply["authorised"]}})
        return json_response(reply, content_type=JSON_TYPE)

    svc.app.router.add_post("/paymentAuth", payment_auth)


def main() -> None:
    run_service("payment", build, KNOBS)


if __name__ == "__main__":
    main()
