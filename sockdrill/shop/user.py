"""user: customers, addresses, cards and login on PostgreSQL (``user-db``), upstream-compatible (§3.7).

Shapes, ``_links`` and statuses follow upstream, including its 500s that upstream clients rely on
(unknown username on login, ``Invalid Id Hex``, ``not found``, duplicate username). A deliberate
difference: a malformed JSON body or a field of the wrong type is a 400 (upstream answered 500).

Beyond upstream: ``GET /customers/{id}/profile`` and ``PATCH``/``PUT /customers/{id}``, the customer's profile
(name, email, phone, home address, default card) with server-side validation and optimistic concurrency
(``sockdrill/shop/profile.py``).

Login looks a customer up through the btree index ``customers_username_idx``. Uniqueness of usernames
is enforced on a hash of the username instead, so that dropping that one index (a scenario's fault)
really makes login scan the table.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from typing import Any

import asyncpg
from aiohttp import web

from sockdrill.shop.common.db import DB_KNOBS, Database
from sockdrill.shop.common.service import Service, bad_request, json_response, read_json, run_service
from sockdrill.shop.data import data_seed, data_users
from sockdrill.shop.data.generate import GeneratedUser, generate_users
from sockdrill.shop.data.seed import ACCOUNTS, LOOSE_ADDRESSES, LOOSE_CARDS
from sockdrill.shop.profile import PROFILE_KNOBS, Profiles

KNOBS = [*DB_KNOBS, *PROFILE_KNOBS]

HAL_TYPE = "application/hal+json"
# Upstream's Go handlers set Content-Type after writing an error status, so clients saw a sniffed type.
ERROR_TYPE = "text/plain; charset=utf-8"
MAX_FIELD = 200
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id           varchar(24) PRIMARY KEY,
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    first_name   text NOT NULL DEFAULT '',
    last_name    text NOT NULL DEFAULT '',
    email        text NOT NULL DEFAULT '',
    username     text NOT NULL,
    password     text NOT NULL DEFAULT '',
    salt         text NOT NULL DEFAULT '',
    version      integer NOT NULL DEFAULT 1,
    -- uniqueness on a hash, so the planner can only serve login through customers_username_idx
    username_key text GENERATED ALWAYS AS (md5(username)) STORED,
    CONSTRAINT customers_username_key UNIQUE (username_key)
);
CREATE TABLE IF NOT EXISTS addresses (
    id       varchar(24) PRIMARY KEY,
    seq      bigint GENERATED ALWAYS AS IDENTITY,
    street   text NOT NULL DEFAULT '',
    number   text NOT NULL DEFAULT '',
    country  text NOT NULL DEFAULT '',
    city     text NOT NULL DEFAULT '',
    postcode text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS cards (
    id       varchar(24) PRIMARY KEY,
    seq      bigint GENERATED ALWAYS AS IDENTITY,
    long_num text NOT NULL DEFAULT '',
    expires  text NOT NULL DEFAULT '',
    ccv      text NOT NULL DEFAULT ''
);
-- a customer's addresses and cards, in the order they were added
CREATE TABLE IF NOT EXISTS customer_addresses (
    customer_id varchar(24) NOT NULL,
    address_id  varchar(24) NOT NULL,
    position    bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (customer_id, address_id)
);
CREATE TABLE IF NOT EXISTS customer_cards (
    customer_id varchar(24) NOT NULL,
    card_id     varchar(24) NOT NULL,
    position    bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (customer_id, card_id)
);
-- the shop's staff (the admin panel's logins; not customers): PBKDF2-SHA256 password hashes
CREATE TABLE IF NOT EXISTS staff (
    username text PRIMARY KEY,
    role     text NOT NULL DEFAULT 'admin',
    salt     text NOT NULL,
    password text NOT NULL
);
-- the profile beyond upstream (sockdrill/shop/profile.py); added to clusters made before it
ALTER TABLE customers ADD COLUMN IF NOT EXISTS phone text NOT NULL DEFAULT '';
ALTER TABLE customers ADD COLUMN IF NOT EXISTS home_address_id varchar(24);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS default_card_id varchar(24);
CREATE TABLE IF NOT EXISTS user_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
"""

# Created once, after the bulk load: checking foreign keys row by row during COPY takes 3x longer.
INDEXES = """
CREATE INDEX IF NOT EXISTS customers_username_idx ON customers (username);
CREATE INDEX IF NOT EXISTS customer_addresses_address_idx ON customer_addresses (address_id);
CREATE INDEX IF NOT EXISTS customer_cards_card_idx ON customer_cards (card_id);
ALTER TABLE customer_addresses
    ADD CONSTRAINT customer_addresses_customer_fk FOREIGN KEY (customer_id)
        REFERENCES customers (id) ON DELETE CASCADE,
    ADD CONSTRAINT customer_addresses_address_fk FOREIGN KEY (address_id)
        REFERENCES addresses (id) ON DELETE CASCADE;
ALTER TABLE customer_cards
    ADD CONSTRAINT customer_cards_customer_fk FOREIGN KEY (customer_id)
        REFERENCES customers (id) ON DELETE CASCADE,
    ADD CONSTRAINT customer_cards_card_fk FOREIGN KEY (card_id)
        REFERENCES cards (id) ON DELETE CASCADE;
"""

CUSTOMER_COLS = ["id", "first_name", "last_name", "email", "username", "password", "salt"]
ADDRESS_COLS = ["id", "street", "number", "country", "city", "postcode"]
CARD_COLS = ["id", "long_num", "expires", "ccv"]


# ---- ids ------------------------------------------------------------------------------------------------

class ObjectIds:
    """24-hex ids shaped like MongoDB ObjectIds: 4-byte time, 5 random bytes per process, 3-byte counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._random = secrets.token_bytes(5).hex()
        self._counter = secrets.randbelow(1 << 24)

    def new(self) -> str:
        with self._lock:
            self._counter = (self._counter + 1) & 0xFFFFFF
            count = self._counter
        return f"{int(time.time()) & 0xFFFFFFFF:08x}{self._random}{count:06x}"


OBJECT_IDS = ObjectIds()


class UpstreamError(Exception):
    """An error upstream answered with a 500 (or 401 for Unauthorized); its text is the message."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


# The whole-collection lists (GET /customers, /addresses, /cards) stop at this many rows: upstream returned
# every row, which with 500k generated users is an answer no client waits for (and a denial of service).
MAX_LIST = 1000

def hex_id(raw: str) -> str:
    if not HEX24.match(raw):
        raise UpstreamError("Invalid Id Hex")
    return raw.lower()


def password_hash(password: str, salt: str) -> str:
    return hashlib.sha1((salt + password).encode()).hexdigest()


STAFF_ITERATIONS = 50_000  # staff log in rarely: a slow hash costs them nothing and a guesser a lot


def staff_hash(password: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), STAFF_ITERATIONS).hex()


async def ensure_staff(conn: asyncpg.Connection) -> None:
    """The ``admin`` staff account with this shop's password (from the runtime); none without one."""
    from sockdrill.cluster.admin import STAFF_PASSWORD_ENV, STAFF_USERNAME

    password = os.environ.get(STAFF_PASSWORD_ENV)
    if not password:
        return
    salt = secrets.token_hex(16)
    await conn.execute("INSERT INTO staff (username, role, salt, password) VALUES ($1, 'admin', $2, $3) "
                       "ON CONFLICT (username) DO UPDATE SET salt = EXCLUDED.salt, password = EXCLUDED.password",
                       STAFF_USERNAME, salt, staff_hash(password, salt))


# ---- data set-up -----------------------------------------------------------------------------------------

# customers, addresses, cards, customer_addresses, customer_cards: rows for COPY
Rows = tuple[list[tuple[Any, ...]], ...]


def _seed_rows() -> Rows:
    customers, addresses, cards, links_a, links_c = [], [], [], [], []
    for acc in ACCOUNTS:
        customers.append((acc.id, acc.first_name, acc.last_name, acc.email, acc.username, acc.password_hash,
                          acc.salt))
        for a in acc.addresses:
            addresses.append((a.id, a.street, a.number, a.country, a.city, a.postcode))
            links_a.append((acc.id, a.id))
        for c in acc.cards:
            cards.append((c.id, c.long_num, c.expires, c.ccv))
            links_c.append((acc.id, c.id))
    addresses += [(a.id, a.street, a.number, a.country, a.city, a.postcode) for a in LOOSE_ADDRESSES]
    cards += [(c.id, c.long_num, c.expires, c.ccv) for c in LOOSE_CARDS]
    return customers, addresses, cards, links_a, links_c


def _user_rows(users: Iterable[GeneratedUser]) -> Rows:
    customers, addresses, cards, links_a, links_c = [], [], [], [], []
    for u in users:
        customers.append((u.id, u.first_name, u.last_name, u.email, u.username, u.password_hash, u.salt))
        a, c = u.address, u.card
        addresses.append((a.id, a.street, a.number, a.country, a.city, a.postcode))
        cards.append((c.id, c.long_num, c.expires, c.ccv))
        links_a.append((u.id, a.id))
        links_c.append((u.id, c.id))
    return customers, addresses, cards, links_a, links_c


async def _copy_rows(conn: asyncpg.Connection, rows: Rows) -> None:
    customers, addresses, cards, links_a, links_c = rows
    await conn.copy_records_to_table("customers", records=customers, columns=CUSTOMER_COLS)
    await conn.copy_records_to_table("addresses", records=addresses, columns=ADDRESS_COLS)
    await conn.copy_records_to_table("cards", records=cards, columns=CARD_COLS)
    await conn.copy_records_to_table("customer_addresses", records=links_a,
                                     columns=["customer_id", "address_id"])
    await conn.copy_records_to_table("customer_cards", records=links_c, columns=["customer_id", "card_id"])


async def init_db(conn: asyncpg.Connection) -> None:
    """Schema, then (first start only) the seeded accounts and ``SOCKDRILL_DATA_USERS`` generated users."""
    await conn.execute(SCHEMA)
    if await conn.fetchval("SELECT value FROM user_meta WHERE key = 'seeded'") is None:
        seed, extra = data_seed(), data_users()
        users = generate_users(extra, seed)
        loop = asyncio.get_running_loop()

        def next_batch() -> Rows:
            return _user_rows(itertools.islice(users, 20000))

        async with conn.transaction():
            await _copy_rows(conn, _seed_rows())
            # Generate the next batch in a thread while the database ingests this one.
            pending = loop.run_in_executor(None, next_batch)
            while True:
                rows = await pending
                if not rows[0]:
                    break
                pending = loop.run_in_executor(None, next_batch)
                await _copy_rows(conn, rows)
            await conn.execute("INSERT INTO user_meta (key, value) VALUES ('seeded', $1)",
                               json.dumps({"seed": seed, "users": extra}))
            await conn.execute(INDEXES)
        await conn.execute("ANALYZE customers; ANALYZE addresses; ANALYZE cards; "
                           "ANALYZE customer_addresses; ANALYZE customer_cards")
    # Indexes are never re-created on later starts: a fault may have dropped customers_username_idx.
    await ensure_staff(conn)


async def generated_user_count(url: str) -> int:
    """How many generated users a running user-db holds (from its seeding record)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        raw = await conn.fetchval("SELECT value FROM user_meta WHERE key = 'seeded'")
        return int(json.loads(raw).get("users", 0)) if raw else 0
    finally:
        await conn.close()


async def ensure_generated_users(url: str, n: int) -> int:
    """Grow the generated users of a running user-db to ``n`` (same seed, same users); returns how many
    were added. Used by the scenario runner when a variant needs more users than the shop was given."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        raw = await conn.fetchval("SELECT value FROM user_meta WHERE key = 'seeded'")
        meta = json.loads(raw) if raw else {"seed": 1, "users": 0}
        have, seed = int(meta.get("users", 0)), int(meta.get("seed", 1))
        if have >= n:
            return 0
        users = itertools.islice(generate_users(n, seed), have, None)
        async with conn.transaction():
            while True:
                rows = _user_rows(itertools.islice(users, 20000))
                if not rows[0]:
                    break
                await _copy_rows(conn, rows)
            meta["users"] = n
            await conn.execute("UPDATE user_meta SET value = $1 WHERE key = 'seeded'", json.dumps(meta))
        # Vacuum now rather than let autovacuum land on the tables in the middle of a measured run.
        for table in ("customers", "addresses", "cards", "customer_addresses", "customer_cards"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        return n - have
    finally:
        await conn.close()


# ---- JSON shapes ------------------------------------------------------------------------------------------

class Links:
    def __init__(self, host: str) -> None:
        self.base = f"http://{host}"

    def user(self, row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
        cid = row["id"]
        me = {"href": f"{self.base}/customers/{cid}"}
        return {
            "firstName": row["first_name"],
            "lastName": row["last_name"],
            "username": row["username"],
            "id": cid,
            "_links": {
                "addresses": {"href": f"{self.base}/customers/{cid}/addresses"},
                "cards": {"href": f"{self.base}/customers/{cid}/cards"},
                "customer": me,
                "self": me,
            },
        }

    def address(self, row: asyncpg.Record) -> dict[str, Any]:
        me = {"href": f"{self.base}/addresses/{row['id']}"}
        return {"street": row["street"], "number": row["number"], "country": row["country"],
                "city": row["city"], "postcode": row["postcode"], "id": row["id"],
                "_links": {"address": me, "self": me}}

    def card(self, row: asyncpg.Record) -> dict[str, Any]:
        me = {"href": f"{self.base}/cards/{row['id']}"}
        return {"longNum": row["long_num"], "expires": row["expires"], "ccv": row["ccv"], "id": row["id"],
                "_links": {"card": me, "self": me}}


def hal(data: Any, status: int = 200) -> web.Response:
    return json_response(data, status=status, content_type=HAL_TYPE)


def go_error(message: str, status: int) -> web.Response:
    reason = web.Response(status=status).reason
    body = json.dumps({"error": message, "status_code": status, "status_text": reason}, separators=(",", ":"))
    resp = web.Response(body=body.encode(), status=status)
    resp.headers["Content-Type"] = ERROR_TYPE
    return resp


# ---- request validation -------------------------------------------------------------------------------

def _strings(body: dict[str, Any], fields: Iterable[str], required: Iterable[str] = ()) -> dict[str, str]:
    """The known string fields of ``body`` ("" when absent); unknown fields are ignored, as upstream did."""
    out: dict[str, str] = {}
    for name in fields:
        value = body.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise bad_request(f"'{name}' must be a string, got {type(value).__name__}")
        if len(value) > MAX_FIELD:
            raise bad_request(f"'{name}' is longer than {MAX_FIELD} characters")
        out[name] = value
    for name in required:
        if not out[name]:
            raise bad_request(f"'{name}' is required")
    return out


def _basic_auth(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


# ---- the service ------------------------------------------------------------------------------------

def build(svc: Service) -> None:
    db = Database(svc, "user-db", init=init_db)
    links = Links(os.environ.get("SOCKDRILL_LINK_HOST") or "user")

    @web.middleware
    async def upstream_errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except UpstreamError as exc:
            return go_error(str(exc), exc.status)

    svc.app.middlewares.append(upstream_errors)

    async def customer_row(conn: Any, cid: str) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM customers WHERE id = $1", cid)
        if row is None:
            raise UpstreamError("not found")
        return row

    # ---- login and register ----
    async def login(request: web.Request) -> web.Response:
        creds = _basic_auth(request)
        if creds is None:
            raise UpstreamError("Unauthorized", 401)
        username, password = creds
        if "\x00" in username:  # no customer has such a name (PostgreSQL text cannot hold it): unknown
            raise UpstreamError("not found")
        row = await db.fetchrow(
            "SELECT id, first_name, last_name, username, password, salt FROM customers WHERE username = $1",
            username)
        if row is None:
            raise UpstreamError("not found")
        if not secrets.compare_digest(row["password"], password_hash(password, row["salt"])):
            raise UpstreamError("Unauthorized", 401)
        return hal({"user": links.user(row)})

    async def staff_login(request: web.Request) -> web.Response:
        """GET /staff/login (beyond upstream): HTTP Basic for a staff account of the admin panel."""
        creds = _basic_auth(request)
        if creds is not None and ("\x00" in creds[0] or "\x00" in creds[1]):
            creds = None  # no account has such a name; PostgreSQL text cannot even hold it
        row = None
        if creds is not None:
            row = await db.fetchrow("SELECT username, role, salt, password FROM staff WHERE username = $1", creds[0])
        if row is None or creds is None or not secrets.compare_digest(
                row["password"], await asyncio.to_thread(staff_hash, creds[1], row["salt"])):
            svc.log.warning("staff login refused", extra={"fields": {"kind": "staff_login_refused"}})
            raise bad_request("staff login refused", 401)
        svc.log.info("staff login", extra={"fields": {"kind": "staff_login", "staff": row["username"]}})
        return json_response({"username": row["username"], "role": row["role"]})

    async def insert_customer(fields: dict[str, str], password: str, salt: str) -> str:
        cid = OBJECT_IDS.new()
        try:
            await db.execute(
                "INSERT INTO customers (id, first_name, last_name, email, username, password, salt) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                cid, fields["firstName"], fields["lastName"], fields["email"], fields["username"],
                password, salt)
        except asyncpg.UniqueViolationError:
            raise UpstreamError(f"duplicate key: username {fields['username']!r} already exists") from None
        return cid

    async def register(request: web.Request) -> web.Response:
        body = await read_json(request)
        f = _strings(body, ("username", "password", "email", "firstName", "lastName"),
                     required=("username", "password"))
        salt = hashlib.sha1(str(time.time_ns()).encode()).hexdigest()
        cid = await insert_customer(f, password_hash(f["password"], salt), salt)
        svc.log.info("registered", extra={"fields": {"kind": "register", "customer": cid}})
        return hal({"id": cid})

    # ---- customers ----
    async def list_customers(_request: web.Request) -> web.Response:
        rows = await db.fetch("SELECT id, first_name, last_name, username FROM customers ORDER BY seq LIMIT $1",
                              MAX_LIST)
        return hal({"_embedded": {"customer": [links.user(r) for r in rows]}})

    async def get_customer(request: web.Request) -> web.Response:
        cid = hex_id(request.match_info["id"])
        async with db.acquire() as conn:
            return hal(links.user(await customer_row(conn, cid)))

    async def customer_addresses(request: web.Request) -> web.Response:
        cid = hex_id(request.match_info["id"])
        rows = await db.fetch(
            "SELECT c.id AS customer, a.* FROM customers c "
            "LEFT JOIN customer_addresses ca ON ca.customer_id = c.id "
            "LEFT JOIN addresses a ON a.id = ca.address_id WHERE c.id = $1 ORDER BY ca.position", cid)
        if not rows:
            raise UpstreamError("not found")
        return hal({"_embedded": {"address": [links.address(r) for r in rows if r["id"] is not None]}})

    async def customer_cards(request: web.Request) -> web.Response:
        cid = hex_id(request.match_info["id"])
        rows = await db.fetch(
            "SELECT c.id AS customer, k.* FROM customers c "
            "LEFT JOIN customer_cards cc ON cc.customer_id = c.id "
            "LEFT JOIN cards k ON k.id = cc.card_id WHERE c.id = $1 ORDER BY cc.position", cid)
        if not rows:
            raise UpstreamError("not found")
        return hal({"_embedded": {"card": [links.card(r) for r in rows if r["id"] is not None]}})

    async def post_customer(request: web.Request) -> web.Response:
        body = await read_json(request)
        # ``password`` is not a field of upstream's customer JSON: it cannot be set here.
        f = _strings(body, ("username", "email", "firstName", "lastName"), required=("username",))
        return hal({"id": await insert_customer(f, "", "")})

    async def delete_customer(request: web.Request) -> web.Response:
        cid = hex_id(request.match_info["id"])
        async with db.acquire() as conn, conn.transaction():
            await customer_row(conn, cid)
            await conn.execute("DELETE FROM addresses WHERE id IN "
                               "(SELECT address_id FROM customer_addresses WHERE customer_id = $1)", cid)
            await conn.execute("DELETE FROM cards WHERE id IN "
                               "(SELECT card_id FROM customer_cards WHERE customer_id = $1)", cid)
            await conn.execute("DELETE FROM customers WHERE id = $1", cid)
        return hal({"status": True})

    # ---- the profile (beyond upstream; sockdrill/shop/profile.py) ----
    profiles = Profiles(svc, db, OBJECT_IDS.new, links.base)

    # ---- addresses and cards ----
    async def list_addresses(_request: web.Request) -> web.Response:
        rows = await db.fetch("SELECT * FROM addresses ORDER BY seq LIMIT $1", MAX_LIST)
        return hal({"_embedded": {"address": [links.address(r) for r in rows]}})

    async def get_address(request: web.Request) -> web.Response:
        row = await db.fetchrow("SELECT * FROM addresses WHERE id = $1", hex_id(request.match_info["id"]))
        if row is None:
            raise UpstreamError("not found")
        return hal(links.address(row))

    async def list_cards(_request: web.Request) -> web.Response:
        rows = await db.fetch("SELECT * FROM cards ORDER BY seq LIMIT $1", MAX_LIST)
        return hal({"_embedded": {"card": [links.card(r) for r in rows]}})

    async def get_card(request: web.Request) -> web.Response:
        row = await db.fetchrow("SELECT * FROM cards WHERE id = $1", hex_id(request.match_info["id"]))
        if row is None:
            raise UpstreamError("not found")
        return hal(links.card(row))

    async def attach(table: str, link_table: str, link_col: str, cols: list[str], values: list[str],
                     user_id: str) -> str:
        owner = hex_id(user_id) if user_id else None
        new_id = OBJECT_IDS.new()
        async with db.acquire() as conn, conn.transaction():
            if owner is not None:
                await customer_row(conn, owner)
            placeholders = ", ".join(f"${i + 1}" for i in range(len(cols) + 1))
            await conn.execute(f"INSERT INTO {table} (id, {', '.join(cols)}) VALUES ({placeholders})",
                               new_id, *values)
            if owner is not None:
                await conn.execute(f"INSERT INTO {link_table} (customer_id, {link_col}) VALUES ($1, $2)",
                                   owner, new_id)
        return new_id

    async def post_address(request: web.Request) -> web.Response:
        body = await read_json(request)
        f = _strings(body, ("street", "number", "country", "city", "postcode", "userID"))
        cols = ADDRESS_COLS[1:]
        new_id = await attach("addresses", "customer_addresses", "address_id", cols, [f[c] for c in cols],
                              f["userID"])
        return hal({"id": new_id})

    async def post_card(request: web.Request) -> web.Response:
        body = await read_json(request)
        f = _strings(body, ("longNum", "expires", "ccv", "userID"))
        new_id = await attach("cards", "customer_cards", "card_id", CARD_COLS[1:],
                              [f["longNum"], f["expires"], f["ccv"]], f["userID"])
        return hal({"id": new_id})

    def delete_from(table: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            oid = hex_id(request.match_info["id"])
            # Link rows go with ON DELETE CASCADE: the address/card is pulled from every customer.
            done = await db.execute(f"DELETE FROM {table} WHERE id = $1", oid)
            if done.endswith(" 0"):
                raise UpstreamError("not found")
            return hal({"status": True})
        return handler

    r = svc.app.router
    r.add_get("/login", login)
    r.add_get("/staff/login", staff_login)
    r.add_post("/register", register)
    r.add_get("/customers", list_customers)
    r.add_post("/customers", post_customer)
    r.add_get("/customers/{id}", get_customer)
    r.add_patch("/customers/{id}", profiles.save)
    r.add_put("/customers/{id}", profiles.save)
    r.add_delete("/customers/{id}", delete_customer)
    r.add_get("/customers/{id}/addresses", customer_addresses)
    r.add_get("/customers/{id}/cards", customer_cards)
    r.add_get("/customers/{id}/profile", profiles.get)
    r.add_get("/addresses", list_addresses)
    r.add_post("/addresses", post_address)
    r.add_get("/addresses/{id}", get_address)
    r.add_delete("/addresses/{id}", delete_from("addresses"))
    r.add_get("/cards", list_cards)
    r.add_post("/cards", post_card)
    r.add_get("/cards/{id}", get_card)
    r.add_delete("/cards/{id}", delete_from("cards"))


def main() -> None:
    run_service("user", build, KNOBS)


if __name__ == "__main__":
    main()
