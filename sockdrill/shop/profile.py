"""The customer profile of the user service (beyond upstream): one save that changes several fields across tables.

A profile is the customer's name, email, phone, home address (a row of ``addresses``) and default card (one of
the customer's cards). ``GET /customers/{id}/profile`` reads it with its ``version``; ``PATCH`` (some fields) or
``PUT`` (all of them) ``/customers/{id}`` saves it. Validation is on the server, field by field, and says which
field is wrong and why.

How a save is written is what the seed's "profile update failures" are about, so it is explicit:
- the home address and the customer row are two writes, each its own statement, as upstream's user service
  wrote two documents (``profile_atomic`` false, the default). A failure between them (a timeout, a constraint
  the customer row breaks) leaves the address changed and the rest not: a partially applied save. With
  ``profile_atomic`` true both go in one transaction: all or nothing.
- ``profile_version_check`` (default on): a save that names the version it was based on is refused with 409
  when the profile has moved on (another session saved first); the client reloads and saves again. Off, the
  last writer wins and overwrites fields the other session had just changed (lost updates).
- ``profile_invalid_fields``: ``reject`` (default) refuses a save with any invalid field (400, nothing
  written); ``skip`` writes the valid fields and drops the others with only a log line, as lenient legacy
  services did: the customer is told it worked.
- ``profile_phone_format``: ``international`` (default: ``+44 20 7946 0018``, digits, spaces, brackets,
  dashes) or ``digits`` (exactly 10 digits; what a stricter release would enforce).

Metrics: ``profile_updates_total{result}`` (saved, partial, conflict, invalid, failed),
``profile_validation_errors_total{field}``, ``profile_write_seconds`` (database time of a save).
"""

from __future__ import annotations

import re
import time
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import Counter, Histogram

from sockdrill.shop.common.knobs import Knob
from sockdrill.shop.common.service import Service, bad_request, json_response, read_json

PROFILE_KNOBS = [
    Knob("profile_atomic", False, "write a profile save in one transaction (else address and customer apart)"),
    Knob("profile_version_check", True, "refuse a profile save based on an older version (409)"),
    Knob("profile_invalid_fields", "reject", "a save with an invalid field: reject it, or skip the invalid fields",
         choices=("reject", "skip")),
    Knob("profile_phone_format", "international", "phone numbers accepted: international (+, spaces, brackets) "
         "or exactly 10 digits", choices=("international", "digits")),
]

PHONE_FORMATS = {"international": re.compile(r"^\+?[0-9][0-9 ()-]{5,22}$"), "digits": re.compile(r"^[0-9]{10}$")}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
POSTCODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{1,11}$")
NAMES = {"firstName": "first_name", "lastName": "last_name"}
ADDRESS_FIELDS = {"street": 100, "number": 20, "city": 100, "postcode": 12, "country": 100}
FIELDS = ("firstName", "lastName", "email", "phone", "address", "defaultCard")
HAL_TYPE = "application/hal+json"


class Invalid(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"'{field}' {reason}")
        self.field = field
        self.reason = reason


def _text(value: Any, field: str, longest: int) -> str:
    if not isinstance(value, str):
        raise Invalid(field, f"must be a string, got {type(value).__name__}")
    if "\x00" in value or not _encodable(value):
        raise Invalid(field, "must be text (no NUL character, no lone surrogate)")
    value = value.strip()
    if not value or len(value) > longest:
        raise Invalid(field, f"must be 1 to {longest} characters")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(field: str, value: Any, phone_format: str) -> Any:
    """The stored form of one profile field, or Invalid naming what is wrong."""
    if field in NAMES:
        return _text(value, field, 100)
    if field == "email":
        value = _text(value, field, 254)
        if not EMAIL_RE.match(value):
            raise Invalid(field, f"is not a valid email address: {value!r}")
        return value
    if field == "phone":
        value = _text(value, field, 24)
        if not PHONE_FORMATS[phone_format].match(value):
            raise Invalid(field, f"is not a phone number in the {phone_format} format: {value!r}")
        return value
    if field == "address":
        if not isinstance(value, dict):
            raise Invalid(field, "must be an object with " + ", ".join(ADDRESS_FIELDS))
        unknown = sorted(set(value) - set(ADDRESS_FIELDS))
        if unknown:
            raise Invalid(field, f"has unknown field(s) {unknown}")
        out = {k: _text(value.get(k), f"address.{k}", n) for k, n in ADDRESS_FIELDS.items()}
        if not POSTCODE_RE.match(out["postcode"]):
            raise Invalid("address.postcode", f"is not a postcode: {out['postcode']!r}")
        return out
    if field == "defaultCard":
        if value is None:
            return None
        if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{24}", value):
            raise Invalid(field, "must be the id of one of the customer's cards (24 hex characters) or null")
        return value.lower()
    raise Invalid(field, "is not a profile field")


class Profiles:
    def __init__(self, svc: Service, db: Any, new_id: Any, base: str) -> None:
        self.svc = svc
        self.db = db
        self.new_id = new_id
        self.base = base
        reg = svc.metrics.registry
        self.updates = Counter("profile_updates_total", "Profile saves by outcome.", ["service", "result"],
                               registry=reg)
        for result in ("saved", "partial", "conflict", "invalid", "failed"):
            self.updates.labels(svc.name, result)
        self.invalid = Counter("profile_validation_errors_total", "Profile fields refused or skipped by validation.",
                               ["service", "field"], registry=reg)
        self.write_s = Histogram("profile_write_seconds", "Database time of one profile save.", ["service"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
                                 registry=reg)

    # ---- reading ---------------------------------------------------------------------------------------
    async def read(self, conn: Any, cid: str) -> dict[str, Any] | None:
        row = await conn.fetchrow("SELECT * FROM customers WHERE id = $1", cid)
        if row is None:
            return None
        address = None
        if row["home_address_id"]:
            a = await conn.fetchrow("SELECT street, number, city, postcode, country FROM addresses WHERE id = $1",
                                    row["home_address_id"])
            address = dict(a) if a is not None else None
        me = {"href": f"{self.base}/customers/{cid}"}
        return {"firstName": row["first_name"], "lastName": row["last_name"], "username": row["username"],
                "id": cid, "email": row["email"], "phone": row["phone"], "address": address,
                "defaultCard": row["default_card_id"], "version": row["version"],
                "_links": {"addresses": {"href": f"{self.base}/customers/{cid}/addresses"},
                           "cards": {"href": f"{self.base}/customers/{cid}/cards"}, "customer": me, "self": me}}

    async def get(self, request: web.Request) -> web.Response:
        cid = customer_id(request)
        async with self.db.acquire() as conn:
            profile = await self.read(conn, cid)
        if profile is None:
            raise bad_request(f"customer {cid} not found", 404)
        return json_response(profile, content_type=HAL_TYPE, headers={"ETag": f'"{profile["version"]}"'})

    # ---- saving ----------------------------------------------------------------------------------------
    async def save(self, request: web.Request) -> web.Response:
        cid = customer_id(request)
        body = await read_json(request)
        knobs = self.svc.knobs
        unknown = sorted(set(body) - set(FIELDS) - {"version"})
        if unknown:
            raise bad_request(f"unknown field(s) {unknown}; allowed: {[*FIELDS, 'version']}")
        if request.method == "PUT":
            missing = [k for k in FIELDS if k not in body]
            if missing:
                raise bad_request(f"PUT replaces the whole profile; missing {missing}")
        version = body.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise bad_request("'version' must be an integer")
        valid: dict[str, Any] = {}
        refused: dict[str, str] = {}
        for field in FIELDS:
            if field in body:
                try:
                    valid[field] = validate(field, body[field], knobs["profile_phone_format"])
                except Invalid as exc:
                    refused[exc.field] = str(exc)
                    self.invalid.labels(self.svc.name, exc.field.split(".")[0]).inc()
        if refused and knobs["profile_invalid_fields"] == "reject":
            self.updates.labels(self.svc.name, "invalid").inc()
            return _error(400, "; ".join(refused.values()), fields=refused)
        if refused:
            self.svc.log.warning("profile fields skipped", extra={"fields": {"kind": "profile_skip", "customer": cid,
                                                                              "skipped": sorted(refused)}})
        if not valid:
            raise bad_request(f"nothing to change; give any of {list(FIELDS)}")
        if not knobs["profile_version_check"]:
            version = None
        started = time.perf_counter()
        try:
            if knobs["profile_atomic"]:
                async with self.db.acquire() as conn, conn.transaction():
                    await self._write(conn, cid, valid, version)
                    profile = await self.read(conn, cid)
            else:
                async with self.db.acquire() as conn:
                    await self._write(conn, cid, valid, version)
                    profile = await self.read(conn, cid)
        except _Conflict as exc:
            self.updates.labels(self.svc.name, "partial" if exc.written else "conflict").inc()
            return _error(409, str(exc))
        except _NotFound:
            raise bad_request(f"customer {cid} not found", 404) from None
        except Invalid as exc:
            self.updates.labels(self.svc.name, "invalid").inc()
            self.invalid.labels(self.svc.name, exc.field).inc()
            return _error(400, str(exc), fields={exc.field: str(exc)})
        except _Partial as exc:
            self.updates.labels(self.svc.name, "partial").inc()
            self.svc.log.error("profile save failed after its address was written: %s", exc.cause,
                               extra={"fields": {"kind": "profile_partial", "customer": cid,
                                                 "error": type(exc.cause).__name__}})
            return _error(500, f"profile not saved: {exc.cause}")
        except (asyncpg.PostgresError, TimeoutError) as exc:
            self.updates.labels(self.svc.name, "failed").inc()
            self.svc.log.warning("profile save failed: %s", exc, extra={"fields": {"kind": "profile_failed",
                                                                                   "customer": cid}})
            return _error(500, f"profile not saved: {type(exc).__name__}: {exc}")
        finally:
            self.write_s.labels(self.svc.name).observe(time.perf_counter() - started)
        assert profile is not None
        self.updates.labels(self.svc.name, "saved").inc()
        self.svc.log.info("profile updated", extra={"fields": {"kind": "profile_update", "customer": cid,
                                                              "fields": sorted(valid), "version": profile["version"],
                                                              "skipped": sorted(refused)}})
        return json_response(profile, content_type=HAL_TYPE, headers={"ETag": f'"{profile["version"]}"'})

    async def _write(self, conn: Any, cid: str, valid: dict[str, Any], version: int | None) -> None:
        """Address first, then the customer row (and its version); see the module docstring."""
        timeout = float(self.svc.knobs["db_timeout_s"])
        row = await conn.fetchrow("SELECT version, home_address_id FROM customers WHERE id = $1", cid,
                                  timeout=timeout)
        if row is None:
            raise _NotFound
        if version is not None and version != row["version"]:
            raise _Conflict(f"version conflict: the profile is at version {row['version']}, the save was based on "
                            f"{version}; reload it and save again", written=False)
        if "defaultCard" in valid and valid["defaultCard"] is not None:
            owned = await conn.fetchval("SELECT 1 FROM customer_cards WHERE customer_id = $1 AND card_id = $2",
                                        cid, valid["defaultCard"], timeout=timeout)
            if not owned:
                raise Invalid("defaultCard", "is not one of the customer's cards")
        written = False
        if "address" in valid:
            a = valid["address"]
            values = [a[k] for k in ADDRESS_FIELDS]
            if row["home_address_id"]:
                await conn.execute("UPDATE addresses SET street = $2, number = $3, city = $4, postcode = $5, "
                                   "country = $6 WHERE id = $1", row["home_address_id"], *values, timeout=timeout)
            else:
                aid = self.new_id()
                await conn.execute("INSERT INTO addresses (id, street, number, city, postcode, country) "
                                   "VALUES ($1, $2, $3, $4, $5, $6)", aid, *values, timeout=timeout)
                await conn.execute("INSERT INTO customer_addresses (customer_id, address_id) VALUES ($1, $2)",
                                   cid, aid, timeout=timeout)
                await conn.execute("UPDATE customers SET home_address_id = $2 WHERE id = $1", cid, aid,
                                   timeout=timeout)
            written = True
        cols = {"firstName": "first_name", "lastName": "last_name", "email": "email", "phone": "phone",
                "defaultCard": "default_card_id"}
        sets = [(cols[f], valid[f]) for f in cols if f in valid]
        assignments = ", ".join(f"{c} = ${i + 2}" for i, (c, _v) in enumerate(sets))
        guard = f" AND version = ${len(sets) + 2}" if version is not None else ""
        args = [cid, *(v for _c, v in sets), *([version] if version is not None else [])]
        try:
            done = await conn.fetchval(
                f"UPDATE customers SET {assignments + ', ' if assignments else ''}version = version + 1 "
                f"WHERE id = $1{guard} RETURNING version", *args, timeout=timeout)
        except (asyncpg.PostgresError, TimeoutError) as exc:
            if written and not conn.is_in_transaction():
                raise _Partial(exc) from None
            raise
        if done is None:  # another session saved between the read and this write
            raise _Conflict("version conflict: the profile changed while it was being saved; reload it and save "
                            "again", written=written and not conn.is_in_transaction())


class _Conflict(Exception):
    def __init__(self, message: str, written: bool) -> None:
        super().__init__(message)
        self.written = written


class _NotFound(Exception):
    pass


class _Partial(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _error(status: int, message: str, **extra: Any) -> web.Response:
    reason = web.Response(status=status).reason
    return json_response({"error": message, "status_code": status, "status_text": reason, **extra}, status=status)


def customer_id(request: web.Request) -> str:
    raw = request.match_info["id"]
    if not re.fullmatch(r"[0-9a-fA-F]{24}", raw):
        raise bad_request(f"invalid customer id {raw!r}: expected 24 hex characters")
    return raw.lower()
