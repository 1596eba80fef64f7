"""Messages on the shop's Redis streams: every stream's entries carry ``body`` (JSON) and ``headers``."""

from __future__ import annotations

import json
from typing import Any


class EventError(ValueError):
    """A stream message this reader cannot apply (malformed, or not a version it knows)."""


def message_body(fields: dict[Any, Any], what: str) -> dict[str, Any]:
    """The JSON body of a version-1 message (``{"v": 1, ...}``); EventError naming ``what`` otherwise."""
    raw = fields.get(b"body", fields.get("body"))
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        body = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("v") != 1:
        raise EventError(f"not a version-1 {what} message: {str(raw)[:120]!r}")
    return body
