"""Contract tests of the payment service (reference §3.4): a real subprocess, real requests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from servicekit import Response, ServiceProcess, request

from sockdrill.shop.payment import authorise

JSON_TYPE = "application/json; charset=utf-8"
AUTHORISED = {"authorised": True, "message": "Payment authorised"}
DECLINED_100 = {"authorised": False, "message": "Payment declined: amount exceeds 100.00"}


@pytest.fixture(scope="module")
def pay() -> Iterator[ServiceProcess]:
    with ServiceProcess("payment") as svc:
        yield svc


def auth(svc: ServiceProcess, body: object = None, raw: str | None = None) -> Response:
    if raw is not None:
        return request("POST", svc.url + "/paymentAuth", body=raw,
                       headers={"Content-Type": "application/json"})
    return request("POST", svc.url + "/paymentAuth", json_body=body)


@pytest.mark.parametrize(("amount", "expected"), [
    (10.0, AUTHORISED),
    (0.01, AUTHORISED),
    (100, AUTHORISED),
    (99.99 + 4.99 - 4.99, AUTHORISED),
    (100.01, DECLINED_100),
    (104.98, DECLINED_100),  # the Holy sock + shipping, declined upstream
    (1e9, DECLINED_100),
])
def test_authorise_and_decline_are_200(pay: ServiceProcess, amount: float,
                                       expected: dict[str, object]) -> None:
    resp = auth(pay, {"amount": amount, "address": {}, "card": {}, "customer": {}})
    assert resp.status == 200
    assert resp.content_type == JSON_TYPE
    assert resp.json() == expected
    assert list(resp.json()) == ["authorised", "message"]


def test_missing_or_zero_amount_is_upstream_500(pay: ServiceProcess) -> None:
    for raw in ('{"card": {}}', '{"amount": 0}', "null", '{"amount": null}'):
        resp = auth(pay, raw=raw)
        assert resp.status == 500, raw
        assert resp.json() == {"error": f'Cannot unmarshal object key "amount" from JSON: {raw}',
                               "status_code": 500, "status_text": "Internal Server Error"}


def test_negative_amount_is_upstream_500(pay: ServiceProcess) -> None:
    resp = auth(pay, {"amount": -5})
    assert resp.status == 500
    assert resp.json() == {"error": "Invalid payment amount", "status_code": 500,
                           "status_text": "Internal Server Error"}


@pytest.mark.parametrize("raw", ["{nope", "", "[1,2]", '"x"', '{"amount": "10"}', '{"amount": true}',
                                 '{"amount": 1e400}', '{"amount": NaN}', '{"amount": 1e39}'])
def test_bad_bodies_are_upstream_500_with_json_error(pay: ServiceProcess, raw: str) -> None:
    resp = auth(pay, raw=raw)
    assert resp.status == 500
    body = resp.json()
    assert body["status_code"] == 500 and body["status_text"] == "Internal Server Error" and body["error"]


def test_wrong_method_is_4xx_json(pay: ServiceProcess) -> None:
    resp = request("GET", pay.url + "/paymentAuth")
    assert resp.status == 405
    assert json.loads(resp.body)["status_code"] == 405


def test_health_lists_only_payment(pay: ServiceProcess) -> None:
    resp = request("GET", pay.url + "/health")
    items = resp.json()["health"]
    assert [(i["service"], i["status"]) for i in items] == [("payment", "OK")]
    assert items[0]["time"]
    metrics = request("GET", pay.url + "/metrics")
    assert b'route="/paymentAuth"' in metrics.body


def test_decline_over_knob_live(pay: ServiceProcess) -> None:
    try:
        resp = request("PUT", pay.url + "/admin/config", json_body={"decline_over": 200})
        assert resp.status == 200, resp.body
        assert auth(pay, {"amount": 150}).json() == AUTHORISED
        assert auth(pay, {"amount": 250}).json() == {
            "authorised": False, "message": "Payment declined: amount exceeds 200.00"}
        assert request("PUT", pay.url + "/admin/config", json_body={"decline_over": "lots"}).status == 400
    finally:
        request("PUT", pay.url + "/admin/config", json_body={"decline_over": 100.0})
    assert auth(pay, {"amount": 150}).json() == DECLINED_100


def test_decline_over_from_env() -> None:
    with ServiceProcess("payment", {"SOCKDRILL_KNOBS": json.dumps({"decline_over": 999})}) as svc:
        assert auth(svc, {"amount": 998.5}).json() == AUTHORISED
        assert auth(svc, {"amount": 1000}).json() == {
            "authorised": False, "message": "Payment declined: amount exceeds 999.00"}


def test_float32_comparison_like_upstream() -> None:
    # 100.000001 is 100.0 as a float32, so upstream authorised it.
    assert authorise(b'{"amount": 100.000001}', 100.0) == (200, AUTHORISED)
    assert authorise(b'{"amount": 100.00001}', 100.0) == (200, DECLINED_100)
    assert authorise(b"", 100.0) == (500, "EOF")


def _rules_evaluated(svc: ServiceProcess) -> float:
    text = request("GET", svc.url + "/metrics").body.decode()
    return float(next(ln for ln in text.splitlines() if ln.startswith("payment_fraud_rules_evaluated_total{"))
                 .rsplit(" ", 1)[1])


def test_fraud_screening_blocks_listed_ranges_and_a_scan_does_work_per_entry(pay: ServiceProcess) -> None:
    """Scenario 5's "inefficient payment validation": the same answers, indexed or scanned, but a scan tries
    every blocklist entry for every payment. Seeded cards (4… and 5…) are never on the list."""
    from sockdrill.shop.fraud import blocklist

    blocked = blocklist(2000, 1)[0] + "0000000000"
    good = "5544154011345918"
    assert auth(pay, {"amount": 10, "card": {"longNum": good}}).json() == AUTHORISED
    assert auth(pay, {"amount": 10, "card": {"longNum": blocked}}).json() == {
        "authorised": False, "message": "Payment declined: the card's issuer range is blocked"}
    before = _rules_evaluated(pay)
    auth(pay, {"amount": 10, "card": {"longNum": good}})
    assert _rules_evaluated(pay) == before + 1  # indexed: one lookup
    try:
        assert request("PUT", pay.url + "/admin/config", json_body={"fraud_check": "scan"}).status == 200
        before = _rules_evaluated(pay)
        assert auth(pay, {"amount": 10, "card": {"longNum": good}}).json() == AUTHORISED
        assert _rules_evaluated(pay) == before + 2000  # every entry tried
        assert auth(pay, {"amount": 10, "card": {"longNum": blocked}}).json()["authorised"] is False
    finally:
        request("PUT", pay.url + "/admin/config", json_body={"fraud_check": "indexed"})


def test_a_scanning_screen_runs_off_the_event_loop() -> None:
    """A scan's cost grows with the blocklist: on payment's event loop, 100,000 entries (~2 s a payment) failed the
    pod's readiness probe and no pod was left to reconfigure (measured 2026-12-05). It runs in a worker thread; an
    indexed lookup stays in place."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from sockdrill.shop.fraud import FraudScreen

    svc = SimpleNamespace(name="payment", knobs={"fraud_check": "scan", "fraud_blocklist_size": 50},
                          metrics=SimpleNamespace(registry=CollectorRegistry()))
    screen = FraudScreen(svc, seed=1)
    threads: list[int] = []
    blocked = screen.blocked

    def spy(card: str | None) -> bool:
        threads.append(threading.get_ident())
        return blocked(card)

    screen.blocked = spy  # type: ignore[method-assign]

    async def main() -> int:
        assert await screen.check("5544154011345918") is False
        svc.knobs["fraud_check"] = "indexed"
        assert await screen.check("5544154011345918") is False
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads[0] != loop_thread and threads[1] == loop_thread
