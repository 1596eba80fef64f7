"""payment-gateway: the "third-party" card processor behind payment, with a durable ledger of charges.

Not part of upstream Sock Shop: it stands in for an external processor (think Stripe) so that gateway
latency, transient errors, capacity limits and "charged but the caller never heard back" are real.

- ``POST /v1/charges`` ``{amount, currency?, reference?, card_last4?}`` with an ``Idempotency-Key``
  header (required, 400 without): 201 and the new charge ``{id, status: "authorised", ...}``. The same
  key answers 200 with the first charge instead of charging twice (a different amount under a used key
  is a 422). A charge that was processed is kept even if the caller hung up meanwhile, like a real
  processor: that is how orphan charges happen.
- ``GET /v1/charges?status=&reference=&limit=&created_before=&starting_after=``: the ledger, newest
  first, as ``{"data": [...], "has_more": bool}`` (``starting_after`` = the last id of a page).
- ``GET /v1/charges/{id}``; ``POST /v1/charges/{id}/void`` (idempotent; 409 for a state it cannot void).

The ledger is SQLite in ``$SOCKDRILL_POD_DIR`` or else ``./stores/<pod>/`` (the runtime starts service
pods in its data directory, so it sits next to the stores' data and survives pod restarts).

Knobs: ``latency_ms`` + ``latency_jitter_ms`` (processing time of a charge; jitter seeded from
``SOCKDRILL_SEED``), ``transient_error_rate`` (share of charge requests answered 503 without
charging), ``max_concurrent`` (charges processed at once; the rest wait in a queue).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import sqlite3
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from sockdrill.shop.common import Knob, Service, bad_request, json_response, read_json, run_service

KNOBS = [
    Knob("latency_ms", 30.0, "processing time of one charge (milliseconds)", minimum=0, maximum=600_000),
    Knob("latency_jitter_ms", 10.0, "uniform jitter added to latency_ms (+/- milliseconds)",
         minimum=0, maximum=600_000),
    Knob("transient_error_rate", 0.0, "share of charge requests answered 503 without charging",
         minimum=0, maximum=1),
    Knob("max_concurrent", 64, "charges processed at once; more requests wait in a queue",
         minimum=1, maximum=100_000),
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    amount          REAL NOT NULL,
    currency        TEXT NOT NULL,
    reference       TEXT,
    card_last4      TEXT,
    created         REAL NOT NULL,
    voided_at       REAL
);
CREATE INDEX IF NOT EXISTS charges_by_reference ON charges (reference);
CREATE INDEX IF NOT EXISTS charges_by_status ON charges (status, seq);
"""

STATUSES = ("authorised", "voided")
COLUMNS = "seq, id, idempotency_key, status, amount, currency, reference, card_last4, created, voided_at"
MAX_KEY = 255
MAX_LIMIT = 1000


def pod_dir(pod: str) -> Path:
    raw = os.environ.get("SOCKDRILL_POD_DIR")
    path = Path(raw) if raw else Path.cwd() / "stores" / pod
    path.mkdir(parents=True, exist_ok=True)
    return path


class Ledger:
    """The charges, in SQLite. Statements are short and local, so they run on the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        # WAL + NORMAL: a committed charge survives the process being killed (not an OS crash).
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    @staticmethod
    def shape(row: sqlite3.Row) -> dict[str, Any]:
        return {"id": row["id"], "status": row["status"], "amount": row["amount"], "currency": row["currency"],
                "reference": row["reference"], "card_last4": row["card_last4"], "created": row["created"],
                "voided_at": row["voided_at"], "idempotency_key": row["idempotency_key"]}

    def by_key(self, key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            f"SELECT {COLUMNS} FROM charges WHERE idempotency_key = ?", (key,)).fetchone()
        return row

    def by_id(self, charge_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            f"SELECT {COLUMNS} FROM charges WHERE id = ?", (charge_id,)).fetchone()
        return row

    def insert(self, key: str, amount: float, currency: str, reference: str | None,
               card_last4: str | None) -> tuple[sqlite3.Row, bool]:
        """(charge, created?) — a key that is already there returns its charge (a concurrent twin won)."""
        charge_id = "ch_" + uuid.uuid4().hex[:24]
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO charges (id, idempotency_key, status, amount, currency, reference, card_last4, "
            "created) VALUES (?, ?, 'authorised', ?, ?, ?, ?, ?)",
            (charge_id, key, amount, currency, reference, card_last4, round(time.time(), 6)))
        row = self.by_key(key)
        assert row is not None
        return row, cur.rowcount == 1

    def void(self, charge_id: str) -> None:
        self.conn.execute("UPDATE charges SET status = 'voided', voided_at = ? WHERE id = ? AND status = 'authorised'",
                          (round(time.time(), 6), charge_id))

    def list(self, status: str | None, reference: str | None, created_before: float | None,
             after_seq: int | None, limit: int) -> tuple[list[sqlite3.Row], bool]:
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if reference is not None:
            where.append("reference = ?")
            args.append(reference)
        if created_before is not None:
            where.append("created < ?")
            args.append(created_before)
        if after_seq is not None:
            where.append("seq < ?")
            args.append(after_seq)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.conn.execute(f"SELECT {COLUMNS} FROM charges {clause} ORDER BY seq DESC LIMIT ?",
                                 (*args, limit + 1)).fetchall()
        return rows[:limit], len(rows) > limit

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT status, count(*) FROM charges GROUP BY status")}


class Capacity:
    """At most ``limit`` holders at once; the others wait in FIFO order. The limit can change live."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # resolved by _wake(), which has counted us in already
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            else:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self.active -= 1
        self._wake()

    def resize(self, limit: int) -> None:
        self.limit = limit
        self._wake()

    def _wake(self) -> None:
        while self.active < self.limit and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                self.active += 1
                fut.set_result(None)


class Gateway:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.ledger: Ledger | None = None
        self.capacity = Capacity(svc.knobs["max_concurrent"])
        seed = os.environ.get("SOCKDRILL_SEED", "0")
        self.rng = random.Random(f"{seed}:{svc.pod}")
        r = svc.metrics.registry
        self.charges = Counter("gateway_charges_total", "Charge requests by outcome.", ["service", "outcome"],
                               registry=r)
        self.voids = Counter("gateway_voids_total", "Void requests by outcome.", ["service", "outcome"], registry=r)
        self.in_progress = Gauge("gateway_charges_in_progress", "Charges being processed.", ["service"], registry=r)
        self.queued = Gauge("gateway_charges_queued", "Charge requests waiting for capacity.", ["service"],
                            registry=r)
        self.limit_gauge = Gauge("gateway_max_concurrent", "Charges processed at once (max_concurrent).",
                                 ["service"], registry=r)
        self.processing = Histogram("gateway_charge_processing_seconds", "Time to process a charge, queue included.",
                                    ["service"], registry=r,
                                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.limit_gauge.labels(svc.name).set(self.capacity.limit)
        svc.knobs.on_change(self._knobs_changed)

    def _knobs_changed(self, changes: dict[str, Any]) -> None:
        if "max_concurrent" in changes:
            self.limit_gauge.labels(self.svc.name).set(changes["max_concurrent"])
            self.capacity.resize(changes["max_concurrent"])

    @property
    def db(self) -> Ledger:
        assert self.ledger is not None, "ledger not open"
        return self.ledger

    async def open(self, _app: web.Application) -> None:
        path = pod_dir(self.svc.pod) / "ledger.sqlite3"
        self.ledger = Ledger(path)
        self.svc.log.info("ledger open", extra={"fields": {"path": str(path), "charges": self.ledger.counts()}})

    async def close(self, _app: web.Application) -> None:
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None

    async def healthy(self) -> bool:
        return self.db.conn.execute("SELECT 1").fetchone() is not None

    def _delay(self) -> float:
        k = self.svc.knobs
        jitter = k["latency_jitter_ms"]
        ms = k["latency_ms"] + (self.rng.uniform(-jitter, jitter) if jitter else 0.0)
        return max(0.0, ms) / 1000.0

    # ---- routes --------------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        if not 0 < len(key) <= MAX_KEY:
            self.charges.labels(self.svc.name, "invalid").inc()
            raise bad_request(f"the Idempotency-Key header is required (1 to {MAX_KEY} characters)")
        amount, currency, reference, last4 = parse_charge(await read_json(request))
        existing = self.db.by_key(key)
        if existing is not None:
            return self._replay(existing, amount)
        started = time.perf_counter()
        svc = self.svc.name
        self.queued.labels(svc).inc()
        try:
            await self.capacity.acquire()
        finally:
            self.queued.labels(svc).dec()
        self.in_progress.labels(svc).inc()
        try:
            await asyncio.sleep(self._delay())
            if self.rng.random() < self.svc.knobs["transient_error_rate"]:
                self.charges.labels(svc, "transient_error").inc()
                self.svc.log.warning("transient processor error (nothing charged)",
                                     extra={"fields": {"kind": "charge", "idempotency_key": key}})
                raise bad_request("processor temporarily unavailable; nothing was charged, retry with the "
                                  "same Idempotency-Key", 503)
            row, created = self.db.insert(key, amount, currency, reference, last4)
        finally:
            self.in_progress.labels(svc).dec()
            self.capacity.release()
            self.processing.labels(svc).observe(time.perf_counter() - started)
        if not created:  # a concurrent request with the same key charged first
            return self._replay(row, amount)
        self.charges.labels(svc, "charged").inc()
        self.svc.log.info("charge %s authorised", row["id"], extra={"fields": {
            "kind": "charge", "charge_id": row["id"], "amount": amount, "reference": reference,
            "idempotency_key": key}})
        return json_response(Ledger.shape(row), status=201)

    def _replay(self, row: Any, amount: float) -> web.Response:
        if not math.isclose(row["amount"], amount, rel_tol=1e-9, abs_tol=1e-9):
            self.charges.labels(self.svc.name, "key_conflict").inc()
            raise bad_request(f"Idempotency-Key was used for charge {row['id']} with amount {row['amount']}, "
                              f"not {amount}", 422)
        self.charges.labels(self.svc.name, "replayed").inc()
        return json_response(Ledger.shape(row), status=200, headers={"Idempotent-Replayed": "true"})

    async def list_charges(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status") or None
        if status is not None and status not in STATUSES:
            raise bad_request(f"status must be one of {list(STATUSES)}, got {status!r}")
        reference = q.get("reference") or None
        limit = _number(q.get("limit"), "limit", int, 100)
        if not 1 <= limit <= MAX_LIMIT:
            raise bad_request(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        created_before = _number(q.get("created_before"), "created_before", float, None)
        after_seq = None
        if q.get("starting_after"):
            row = self.db.by_id(q["starting_after"])
            if row is None:
                raise bad_request(f"starting_after: no charge {q['starting_after']!r}")
            after_seq = row["seq"]
        rows, more = self.db.list(status, reference, created_before, after_seq, limit)
        return json_response({"data": [Ledger.shape(r) for r in rows], "has_more": more})

    async def get_charge(self, request: web.Request) -> web.Response:
        return json_response(Ledger.shape(self._find(request.match_info["id"])))

    async def void(self, request: web.Request) -> web.Response:
        charge_id = request.match_info["id"]
        row = self._find(charge_id)
        if row["status"] == "authorised":
            self.db.void(charge_id)
            row = self._find(charge_id)
            self.voids.labels(self.svc.name, "voided").inc()
            self.svc.log.info("charge %s voided", charge_id, extra={"fields": {
                "kind": "void", "charge_id": charge_id, "reference": row["reference"]}})
        elif row["status"] == "voided":
            self.voids.labels(self.svc.name, "already_voided").inc()
        else:
            self.voids.labels(self.svc.name, "conflict").inc()
            raise bad_request(f"charge {charge_id} is {row['status']!r} and cannot be voided", 409)
        return json_response(Ledger.shape(row))

    def _find(self, charge_id: str) -> Any:
        row = self.db.by_id(charge_id)
        if row is None:
            raise bad_request(f"no charge {charge_id!r}", 404)
        return row


def _number(raw: str | None, name: str, kind: type, default: Any) -> Any:
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise bad_request(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_request(f"{name} must be finite, got {raw!r}")
    return value


def parse_charge(body: dict[str, Any]) -> tuple[float, str, str | None, str | None]:
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount) \
            or amount <= 0:
        raise bad_request("amount must be a positive number")
    currency = body.get("currency", "USD")
    if not isinstance(currency, str) or not currency.isalpha() or len(currency) != 3:
        raise bad_request("currency must be a 3-letter code like 'USD'")
    reference = body.get("reference")
    if reference is not None and (not isinstance(reference, str) or len(reference) > MAX_KEY):
        raise bad_request(f"reference must be a string of at most {MAX_KEY} characters")
    last4 = body.get("card_last4")
    if last4 is not None and (not isinstance(last4, str) or not last4.isdigit() or len(last4) != 4):
        raise bad_request("card_last4 must be 4 digits")
    return float(amount), currency.upper(), reference, last4


def build(svc: Service) -> None:
    gw = Gateway(svc)
    svc.on_startup(gw.open)
    svc.on_cleanup(gw.close)
    svc.add_health("ledger", gw.healthy)
    r = svc.app.router
    r.add_post("/v1/charges", gw.create)
    r.add_get("/v1/charges", gw.list_charges)
    r.add_get("/v1/charges/{id}", gw.get_charge)
    r.add_post("/v1/charges/{id}/void", gw.void)


def main() -> None:
    run_service("payment-gateway", build, KNOBS)


if __name__ == "__main__":
    main()
