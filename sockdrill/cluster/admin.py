"""The shop's internal tokens, made per shop by the runtime, never shown to agents or other local users.

- **Admin**: the pods' ``/admin/config`` answers only the runtime. It puts the token in each pod's
  environment (readable by root alone) and sends it in ``X-Sockdrill-Admin``: an agent, or any local user,
  that finds a pod's port can neither read nor change its configuration behind the tools' back.
- **Telemetry**: every telemetry channel on 127.0.0.1 asks for it as ``Authorization: Bearer`` (what
  Prometheus sends from a ``credentials_file``): each pod's ``/metrics``, the runtime's ``/metrics``, the
  flight recorder's query API, its ``/v1/ingest`` (the load's samples) and its OTLP ``/v1/traces``. Pods
  and the recorder get it in their environment, Locust from the runner, the operator's clients from
  ``state/runtime.json`` (0600). Without it an agent could read telemetry outside its tools (no audit,
  no budget, no incident scope) and any local user could push samples or spans into what the agent sees.

- **Shop**: the services' own credential for business admin APIs that customers never reach (catalogue's
  ``/admin/products``): the front-end's admin panel sends it as ``Authorization: Bearer``. In every service
  pod's environment only, so neither an agent nor a local user can change products behind the panel.
- **Staff password**: the password of the shop's ``admin`` staff account (the admin panel's login), made per
  shop like the others; the user service sets it at start, operators and the runner read it from
  ``state/runtime.json`` (0600).

A process started without a token (a service run by hand, a standalone recorder) keeps its endpoints
open, as before: there is no shop whose secrets it could leak.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

ADMIN_HEADER = "X-Sockdrill-Admin"
ADMIN_TOKEN_ENV = "SOCKDRILL_ADMIN_TOKEN"
TELEMETRY_TOKEN_ENV = "SOCKDRILL_TELEMETRY_TOKEN"
SHOP_TOKEN_ENV = "SOCKDRILL_SHOP_TOKEN"
STAFF_PASSWORD_ENV = "SOCKDRILL_STAFF_PASSWORD"
STAFF_USERNAME = "admin"


def telemetry_headers(token: str | None) -> dict[str, str]:
    """The header a telemetry client sends (none without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def bearer_ok(expected: str | None, headers: Mapping[str, str]) -> bool:
    """Whether a request carries the expected bearer token (always, when none is expected)."""
    if not expected:
        return True
    given = headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected.encode())
