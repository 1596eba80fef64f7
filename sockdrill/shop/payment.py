"""payment: authorises an amount against a threshold, upstream-compatible (reference §3.4).

``POST /paymentAuth`` with ``{"amount": <number>, ...}`` (other fields ignored): authorised iff
``0 < amount <= decline_over`` (float32 comparison, as upstream). A decline is a 200 with
``authorised: false``. Bad requests answer 500 like upstream did, because orders maps that status.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from aiohttp import web

from sockdrill.shop.common.knobs import Knob
from sockdrill.shop.common.service import Service, json_response, run_service

KNOBS = [Knob("decline_over", 100.0, "decline payments above this amount", minimum=0)]

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


def build(svc: Service) -> None:
    async def payment_auth(request: web.Request) -> web.Response:
        status, reply = authorise(await request.read(), svc.knobs["decline_over"])
        if status != 200:
            svc.log.info("payment rejected", extra={"fields": {"kind": "payment", "error": reply}})
            return go_error(str(reply), status)
        assert isinstance(reply, dict)
        svc.log.info("payment %s", "authorised" if reply["authorised"] else "declined",
                     extra={"fields": {"kind": "payment", "authorised": reply["authorised"]}})
        return json_response(reply, content_type=JSON_TYPE)

    svc.app.router.add_post("/paymentAuth", payment_auth)


def main() -> None:
    run_service("payment", build, KNOBS)


if __name__ == "__main__":
    main()
