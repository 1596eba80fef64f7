"""What a customer comparing the views of one order calls inconsistent (scenario 8): its entry in the order history,
its detail and its parcel's tracking. Plain functions, so that tests and tools can use them without the load's
event loop."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

# Views of one order may disagree for this long after its last change (an event on its way, the history's cache):
# past it, a disagreement is the seed's "order status inconsistency".
CONSISTENT_AFTER_S = 3.0


def _since(stamp: Any) -> float | None:
    """Seconds since an ISO-8601 time or an epoch number; None when there is none."""
    if isinstance(stamp, int | float):
        return time.time() - float(stamp)
    if isinstance(stamp, str) and stamp:
        try:
            return time.time() - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def views_disagree(listed: dict[str, Any], detail: dict[str, Any], parcel: dict[str, Any] | None) -> str | None:
    """What a customer comparing an order's history entry, its detail and its parcel's tracking would call
    inconsistent, past CONSISTENT_AFTER_S; None when they agree (or are still allowed to differ)."""
    shown, actual = listed.get("status"), detail.get("status")
    changed = _since(detail.get("statusChangedAt"))
    if shown != actual and changed is not None and changed > CONSISTENT_AFTER_S:
        return f"order history says {shown!r}, the order says {actual!r} (changed {changed:.0f} s ago)"
    if parcel is not None and parcel.get("status") == "delivered" and actual != "delivered":
        handed = _since(parcel.get("at"))
        if handed is not None and handed > CONSISTENT_AFTER_S:
            return f"the parcel was delivered {handed:.0f} s ago, the order still says {actual!r}"
    return None
