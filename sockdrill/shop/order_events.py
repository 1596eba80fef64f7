"""An order's life after checkout, told through the ``queue`` store (Redis): the warehouse's record and events.

When queue-master has processed a shipment it is delivered (this shop has no courier: the warehouse's hand-over
is the delivery). Before it acks the shipment message, queue-master

- writes the **tracking record** ``shipment:<id>`` (a hash ``{status, at}``, kept ``TRACKING_TTL_S``): what
  shipping shows as the shipment's status (``GET /shipping/<id>``), the warehouse's own view, and
- appends a **status event** to the ``order-events`` stream, body ``{"v": 1, "shipment": <id>, "status":
  "delivered", "at": <epoch>}`` (with the fields every stream of the shop's queue uses, ``body`` and ``headers``).

orders consumes ``order-events`` (consumer group ``orders``, one consumer per pod) and moves the order through its
state machine (``shipped`` → ``delivered``), so its own views (order detail, the customer's order history) follow
the warehouse's a moment later: eventually consistent, as the seed's scenario 8 has it. A record or event that
cannot be written fails the message (it is delivered again), so a delivery is never told to one side only.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sockdrill.shop.common.streams import EventError as EventError  # (re-exported: readers catch it)
from sockdrill.shop.common.streams import message_body

STREAM = "order-events"
GROUP = "orders"
MAXLEN = 20000  # events are applied within seconds; a stopped consumer's backlog is kept this long
TRACKING_PREFIX = "shipment:"
TRACKING_TTL_S = 7 * 86400
# What orders does with each event status: the order statuses it may move from, and to.
# (From paid too: the warehouse may hand a parcel over before the checkout that shipped it has written "shipped".)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {"delivered": (("paid", "shipped"), "delivered")}


def tracking_key(shipment_id: str) -> str:
    return TRACKING_PREFIX + shipment_id


def status_fields(shipment_id: str, status: str, at: float | None = None) -> dict[str, str]:
    return {"body": json.dumps({"v": 1, "shipment": shipment_id, "status": status,
                                "at": time.time() if at is None else at}), "headers": "{}"}


def parse_status_event(fields: dict[Any, Any]) -> tuple[str, str, float | None]:
    """A status event's (shipment id, status, time); EventError if it is not a version-1 one this shop knows."""
    body = message_body(fields, "order event")
    shipment, status = body.get("shipment"), body.get("status")
    if not isinstance(shipment, str) or not shipment or status not in TRANSITIONS:
        raise EventError(f"an order event needs 'shipment' and a known 'status': {body!r:.120}")
    at = body.get("at")
    return shipment, str(status), float(at) if isinstance(at, int | float) else None


def decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def record_delivery(r: Any, shipment_id: str, at: float) -> str:
    """The warehouse's record and the status event, in one transaction (both or neither); the event's id."""
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(tracking_key(shipment_id), mapping={"status": "delivered", "at": repr(at)})
        pipe.expire(tracking_key(shipment_id), TRACKING_TTL_S)
        pipe.xadd(STREAM, status_fields(shipment_id, "delivered", at), maxlen=MAXLEN, approximate=True)
        out = await pipe.execute()
    return decode(out[-1])


async def tracking(r: Any, shipment_id: str) -> dict[str, Any] | None:
    """The warehouse's record of a shipment: ``{status, at}``, or None when it has none (not processed yet)."""
    rec = await r.hgetall(tracking_key(shipment_id))
    if not rec:
        return None
    rec = {decode(k): decode(v) for k, v in rec.items()}
    try:
        at: float | None = float(rec.get("at", ""))
    except ValueError:
        at = None
    return {"status": rec.get("status", ""), "at": at}
