"""Contract tests of the user service against upstream behaviour (reference §3.7, §5), on real PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from servicekit import Response, ServiceProcess, db_run, request, require_postgres, scratch_database

from sockdrill.shop.data.generate import credentials, generate_users

require_postgres()

HAL = "application/hal+json"
ERROR_TYPE = "text/plain; charset=utf-8"
EVE, USER, USER1 = "57a98d98e4b00679b4a830af", "57a98d98e4b00679b4a830b2", "57a98d98e4b00679b4a830b5"
HEX24 = re.compile(r"^[0-9a-f]{24}$")


@pytest.fixture(scope="module")
def usr() -> Iterator[ServiceProcess]:
    with scratch_database("user") as url, ServiceProcess("user", {"SOCKDRILL_URL_USER_DB": url}) as svc:
        yield svc


def call(svc: ServiceProcess, method: str, path: str, body: Any = None, raw: str | None = None,
         auth: str | None = None) -> Response:
    headers = {"Authorization": auth} if auth else {}
    if raw is not None:
        headers["Content-Type"] = "application/json"
        return request(method, svc.url + path, body=raw, headers=headers)
    return request(method, svc.url + path, json_body=body, headers=headers)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def hal(resp: Response) -> Any:
    assert resp.status == 200, resp.body
    assert resp.content_type == HAL
    return resp.json()


def upstream_error(resp: Response, status: int, message: str) -> None:
    assert resp.status == status, resp.body
    assert resp.content_type == ERROR_TYPE
    reason = {401: "Unauthorized", 500: "Internal Server Error"}[status]
    assert resp.json() == {"error": message, "status_code": status, "status_text": reason}


def user_json(cid: str, first: str, last: str, username: str, host: str = "user") -> dict[str, Any]:
    base = f"http://{host}/customers/{cid}"
    return {"firstName": first, "lastName": last, "username": username, "id": cid,
            "_links": {"addresses": {"href": base + "/addresses"}, "cards": {"href": base + "/cards"},
                       "customer": {"href": base}, "self": {"href": base}}}


def address_json(aid: str, street: str, number: str, country: str, city: str,
                 postcode: str) -> dict[str, Any]:
    href = {"href": f"http://user/addresses/{aid}"}
    return {"street": street, "number": number, "country": country, "city": city, "postcode": postcode,
            "id": aid, "_links": {"address": href, "self": href}}


def card_json(cid: str, long_num: str, expires: str, ccv: str) -> dict[str, Any]:
    href = {"href": f"http://user/cards/{cid}"}
    return {"longNum": long_num, "expires": expires, "ccv": ccv, "id": cid,
            "_links": {"card": href, "self": href}}


# ---- login ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("username", "password", "cid", "first", "last"), [
    ("user", "password", USER, "User", "Name"),
    ("user1", "password", USER1, "User1", "Name1"),
    ("Eve_Berger", "eve", EVE, "Eve", "Berger"),
])
def test_login_seeded_accounts(usr: ServiceProcess, username: str, password: str, cid: str, first: str,
                               last: str) -> None:
    body = hal(call(usr, "GET", "/login", auth=basic(username, password)))
    assert body == {"user": user_json(cid, first, last, username)}
    assert list(body["user"]) == ["firstName", "lastName", "username", "id", "_links"]


@pytest.mark.parametrize("auth", [None, basic("user", "wrong"), basic("user", ""), "Basic !!!notbase64",
                                  "Bearer abc", "Basic " + base64.b64encode(b"nocolon").decode()])
def test_login_unauthorized(usr: ServiceProcess, auth: str | None) -> None:
    upstream_error(call(usr, "GET", "/login", auth=auth), 401, "Unauthorized")


def test_login_unknown_user_is_upstream_500(usr: ServiceProcess) -> None:
    upstream_error(call(usr, "GET", "/login", auth=basic("nobody", "x")), 500, "not found")


def login_plan(svc: ServiceProcess) -> str:
    # Three rows are cheaper to scan: forbid scans so the plan shows which index could serve login.
    rows = db_run(svc.db_url, "EXPLAIN SELECT id FROM customers WHERE username = 'user'",
                  setup="SET enable_seqscan = off")
    return " ".join(r["QUERY PLAN"] for r in rows)


def test_login_uses_username_index_and_scans_without_it(usr: ServiceProcess) -> None:
    assert "customers_username_idx" in login_plan(usr)
    db_run(usr.db_url, "DROP INDEX customers_username_idx")
    try:
        assert "Seq Scan" in login_plan(usr)  # the unique constraint cannot serve it
        assert call(usr, "GET", "/login", auth=basic("user", "password")).status == 200
        # Usernames stay unique without it.
        upstream_error(call(usr, "POST", "/register", {"username": "user", "password": "x"}), 500,
                       "duplicate key: username 'user' already exists")
    finally:
        db_run(usr.db_url, "CREATE INDEX customers_username_idx ON customers (username)")


# ---- customers -----------------------------------------------------------------------------------------

def test_customers_list_in_insertion_order(usr: ServiceProcess) -> None:
    body = hal(call(usr, "GET", "/customers"))
    customers = body["_embedded"]["customer"]
    assert customers[:3] == [user_json(EVE, "Eve", "Berger", "Eve_Berger"),
                             user_json(USER, "User", "Name", "user"),
                             user_json(USER1, "User1", "Name1", "user1")]
    assert list(body) == ["_embedded"]


def test_get_customer(usr: ServiceProcess) -> None:
    assert hal(call(usr, "GET", f"/customers/{USER}")) == user_json(USER, "User", "Name", "user")
    assert hal(call(usr, "GET", f"/customers/{USER.upper()}"))["id"] == USER  # hex is case-insensitive


@pytest.mark.parametrize("path", ["/customers/{}", "/customers/{}/addresses", "/customers/{}/cards",
                                  "/addresses/{}", "/cards/{}"])
def test_bad_and_unknown_ids_are_upstream_500(usr: ServiceProcess, path: str) -> None:
    upstream_error(call(usr, "GET", path.format("xyz")), 500, "Invalid Id Hex")
    upstream_error(call(usr, "GET", path.format("zz" * 12)), 500, "Invalid Id Hex")
    upstream_error(call(usr, "GET", path.format("0" * 24)), 500, "not found")


def test_customer_addresses_and_cards(usr: ServiceProcess) -> None:
    addrs = hal(call(usr, "GET", f"/customers/{EVE}/addresses"))
    assert addrs == {"_embedded": {"address": [address_json(
        "57a98d98e4b00679b4a830ad", "Whitelees Road", "246", "United Kingdom", "Glasgow", "G67 3DL")]}}
    cards = hal(call(usr, "GET", f"/customers/{USER1}/cards"))
    assert cards == {"_embedded": {"card": [card_json("57a98d98e4b00679b4a830b4", "0908415193175205", "08/19",
                                                      "280")]}}


def test_addresses_and_cards_lists_include_loose_ones(usr: ServiceProcess) -> None:
    addrs = hal(call(usr, "GET", "/addresses"))["_embedded"]["address"]
    assert [a["id"] for a in addrs][:4] == ["57a98d98e4b00679b4a830ad", "57a98d98e4b00679b4a830b0",
                                            "57a98d98e4b00679b4a830b3", "57a98ddce4b00679b4a830d1"]
    assert hal(call(usr, "GET", "/addresses/57a98ddce4b00679b4a830d1")) == address_json(
        "57a98ddce4b00679b4a830d1", "my road", "3", "UK", "London", "")
    cards = hal(call(usr, "GET", "/cards"))["_embedded"]["card"]
    assert [c["id"] for c in cards][:4] == ["57a98d98e4b00679b4a830ae", "57a98d98e4b00679b4a830b1",
                                            "57a98d98e4b00679b4a830b4", "57a98ddce4b00679b4a830d2"]
    assert hal(call(usr, "GET", "/cards/57a98d98e4b00679b4a830ae")) == card_json(
        "57a98d98e4b00679b4a830ae", "5953580604169678", "08/19", "678")


def test_salts_and_hashes_stored_as_upstream(usr: ServiceProcess) -> None:
    rows = db_run(usr.db_url, "SELECT username, salt, password FROM customers WHERE id = $1", EVE)
    assert rows == [{"username": "Eve_Berger", "salt": "c748112bc027878aa62812ba1ae00e40ad46d497",
                     "password": "fec51acb3365747fc61247da5e249674cf8463c2"}]


# ---- register, create, delete ---------------------------------------------------------------------------

def test_register_then_login(usr: ServiceProcess) -> None:
    body = hal(call(usr, "POST", "/register", {"username": "newbie", "password": "s3cret",
                                               "email": "n@example.com", "firstName": "New",
                                               "lastName": "Bie"}))
    assert list(body) == ["id"] and HEX24.match(body["id"])
    login = hal(call(usr, "GET", "/login", auth=basic("newbie", "s3cret")))
    assert login["user"] == user_json(body["id"], "New", "Bie", "newbie")
    row = db_run(usr.db_url, "SELECT salt, password, email FROM customers WHERE id = $1", body["id"])[0]
    assert row["password"] == hashlib.sha1((row["salt"] + "s3cret").encode()).hexdigest()
    assert row["email"] == "n@example.com"
    upstream_error(call(usr, "GET", "/login", auth=basic("newbie", "S3cret")), 401, "Unauthorized")
    upstream_error(call(usr, "POST", "/register", {"username": "newbie", "password": "other"}), 500,
                   "duplicate key: username 'newbie' already exists")
    assert hal(call(usr, "GET", f"/customers/{body['id']}/addresses")) == {"_embedded": {"address": []}}
    assert hal(call(usr, "GET", f"/customers/{body['id']}/cards")) == {"_embedded": {"card": []}}


@pytest.mark.parametrize(("path", "raw"), [
    ("/register", "{bad json"),
    ("/register", "[1]"),
    ("/register", ""),
    ("/register", '{"username": 5, "password": "x"}'),
    ("/register", '{"username": "a", "password": ["x"]}'),
    ("/register", '{"password": "x"}'),
    ("/register", '{"username": "someone"}'),
    ("/register", '{"username": "' + "x" * 300 + '", "password": "x"}'),
    ("/customers", "{bad json"),
    ("/customers", '{"firstName": 1, "username": "a"}'),
    ("/customers", '{"firstName": "A"}'),
    ("/addresses", "{bad"),
    ("/addresses", '{"street": 12}'),
    ("/cards", "nope"),
    ("/cards", '{"longNum": 5544154011345918}'),
])
def test_malformed_posts_are_400_json(usr: ServiceProcess, path: str, raw: str) -> None:
    resp = call(usr, "POST", path, raw=raw)
    assert resp.status == 400, resp.body
    assert resp.content_type.startswith("application/json")
    assert resp.json()["status_code"] == 400 and resp.json()["error"]


def test_post_customer_has_no_password(usr: ServiceProcess) -> None:
    body = hal(call(usr, "POST", "/customers", {"firstName": "Ann", "lastName": "Other",
                                                "username": "annother", "password": "ignored", "_links": {}}))
    got = hal(call(usr, "GET", f"/customers/{body['id']}"))
    assert got == user_json(body["id"], "Ann", "Other", "annother")
    upstream_error(call(usr, "GET", "/login", auth=basic("annother", "ignored")), 401, "Unauthorized")
    upstream_error(call(usr, "POST", "/customers", {"username": "annother"}), 500,
                   "duplicate key: username 'annother' already exists")


def test_addresses_and_cards_keep_insertion_order_and_delete(usr: ServiceProcess) -> None:
    cid = hal(call(usr, "POST", "/register", {"username": "orderly", "password": "pw"}))["id"]
    ids = []
    for street in ("First Street", "Second Street", "Third Street"):
        ids.append(hal(call(usr, "POST", "/addresses", {"street": street, "number": "1", "country": "UK",
                                                        "city": "Leeds", "postcode": "LS1 1AA",
                                                        "userID": cid}))["id"])
    listed = hal(call(usr, "GET", f"/customers/{cid}/addresses"))["_embedded"]["address"]
    assert [a["id"] for a in listed] == ids
    assert [a["street"] for a in listed] == ["First Street", "Second Street", "Third Street"]
    card_ids = [hal(call(usr, "POST", "/cards", {"longNum": n, "expires": "01/30", "ccv": "123",
                                                 "userID": cid}))["id"]
                for n in ("4111111111111111", "5500000000000004")]
    cards = hal(call(usr, "GET", f"/customers/{cid}/cards"))["_embedded"]["card"]
    assert [c["id"] for c in cards] == card_ids and cards[0]["longNum"] == "4111111111111111"  # unmasked
    # Deleting an address pulls it from the customer.
    assert hal(call(usr, "DELETE", f"/addresses/{ids[1]}")) == {"status": True}
    listed = hal(call(usr, "GET", f"/customers/{cid}/addresses"))["_embedded"]["address"]
    assert [a["id"] for a in listed] == [ids[0], ids[2]]
    upstream_error(call(usr, "DELETE", f"/addresses/{ids[1]}"), 500, "not found")
    assert hal(call(usr, "DELETE", f"/cards/{card_ids[0]}")) == {"status": True}
    cards = hal(call(usr, "GET", f"/customers/{cid}/cards"))["_embedded"]["card"]
    assert [c["id"] for c in cards] == card_ids[1:]
    # Deleting the customer deletes its addresses and cards.
    assert hal(call(usr, "DELETE", f"/customers/{cid}")) == {"status": True}
    upstream_error(call(usr, "GET", f"/customers/{cid}"), 500, "not found")
    upstream_error(call(usr, "GET", f"/addresses/{ids[0]}"), 500, "not found")
    upstream_error(call(usr, "GET", f"/cards/{card_ids[1]}"), 500, "not found")
    upstream_error(call(usr, "DELETE", f"/customers/{cid}"), 500, "not found")
    upstream_error(call(usr, "DELETE", "/cards/nothex"), 500, "Invalid Id Hex")


def test_unattached_address_and_bad_owner(usr: ServiceProcess) -> None:
    aid = hal(call(usr, "POST", "/addresses", {"street": "Loose Lane", "city": "York"}))["id"]
    assert hal(call(usr, "GET", f"/addresses/{aid}"))["street"] == "Loose Lane"
    upstream_error(call(usr, "POST", "/addresses", {"street": "x", "userID": "bad"}), 500, "Invalid Id Hex")
    upstream_error(call(usr, "POST", "/cards", {"longNum": "1", "userID": "0" * 24}), 500, "not found")
    assert call(usr, "DELETE", f"/addresses/{aid}").status == 200


# ---- profile updates (beyond upstream) ---------------------------------------------------------------

HOME = {"street": "Baker Street", "number": "221b", "city": "London", "postcode": "NW1 6XE", "country": "UK"}


def _register(usr: ServiceProcess, username: str) -> str:
    return str(hal(call(usr, "POST", "/register", {"username": username, "password": "pw", "firstName": "Pro",
                                                   "lastName": "File", "email": "pro@example.com"}))["id"])


def _knobs(usr: ServiceProcess, **knobs: Any) -> None:
    assert call(usr, "POST", "/admin/config", knobs).status == 200


def test_profile_patch_put_and_version(usr: ServiceProcess) -> None:
    cid = _register(usr, "profiled")
    prof = hal(call(usr, "GET", f"/customers/{cid}/profile"))
    assert (prof["email"], prof["version"], prof["firstName"], prof["phone"], prof["address"],
            prof["defaultCard"]) == ("pro@example.com", 1, "Pro", "", None, None)
    prof = hal(call(usr, "PATCH", f"/customers/{cid}", {"email": "new@example.org", "version": 1}))
    assert (prof["email"], prof["version"], prof["firstName"], prof["lastName"]) == (
        "new@example.org", 2, "Pro", "File")
    resp = call(usr, "PATCH", f"/customers/{cid}", {"firstName": "Stale", "version": 1})
    assert resp.status == 409 and resp.json()["status_code"] == 409
    card = hal(call(usr, "POST", "/cards", {"longNum": "4111111111111111", "expires": "08/29", "ccv": "123",
                                             "userID": cid}))["id"]
    prof = hal(call(usr, "PUT", f"/customers/{cid}", {"firstName": "Ada", "lastName": "Lovelace",
                                                      "email": "ada@example.com", "phone": "+44 20 7946 0018",
                                                      "address": HOME, "defaultCard": card}))
    assert prof["version"] == 3 and prof["address"] == HOME and prof["defaultCard"] == card
    assert prof["phone"] == "+44 20 7946 0018"
    assert hal(call(usr, "GET", f"/customers/{cid}")) == user_json(cid, "Ada", "Lovelace", "profiled")
    # The home address is one of the customer's addresses, changed in place by the next save.
    prof = hal(call(usr, "PATCH", f"/customers/{cid}", {"address": {**HOME, "number": "222"}, "version": 3}))
    addresses = hal(call(usr, "GET", f"/customers/{cid}/addresses"))["_embedded"]["address"]
    assert [a["number"] for a in addresses] == ["222"] and prof["version"] == 4


def test_profile_refuses_a_card_of_someone_else(usr: ServiceProcess) -> None:
    cid = _register(usr, "cardless")
    resp = call(usr, "PATCH", f"/customers/{cid}", {"defaultCard": "0" * 24})
    assert resp.status == 400 and "defaultCard" in resp.json()["fields"]


def test_profile_skip_mode_saves_valid_fields_and_says_nothing(usr: ServiceProcess) -> None:
    """The seed's "data validation failures": a stricter phone format plus a lenient service drops the phone
    change while the customer is told the save worked."""
    cid = _register(usr, "lenient")
    _knobs(usr, profile_phone_format="digits")
    try:
        resp = call(usr, "PATCH", f"/customers/{cid}", {"phone": "+44 20 7946 0018", "lastName": "Kept"})
        assert resp.status == 400 and set(resp.json()["fields"]) == {"phone"}
        assert hal(call(usr, "GET", f"/customers/{cid}/profile"))["lastName"] == "File"  # nothing written
        _knobs(usr, profile_invalid_fields="skip")
        prof = hal(call(usr, "PATCH", f"/customers/{cid}", {"phone": "+44 20 7946 0018", "lastName": "Kept"}))
        assert (prof["lastName"], prof["phone"]) == ("Kept", "")
        assert "profile fields skipped" in usr.logs()
    finally:
        _knobs(usr, profile_phone_format="international", profile_invalid_fields="reject")


def test_without_version_checks_the_last_writer_overwrites_the_other_session(usr: ServiceProcess) -> None:
    """The seed's "concurrent modification": two sessions read version 1; each saves the whole profile."""
    cid = _register(usr, "twosessions")
    a = hal(call(usr, "GET", f"/customers/{cid}/profile"))
    b = dict(a)
    whole = ("firstName", "lastName", "email", "phone", "address", "defaultCard")
    hal(call(usr, "PUT", f"/customers/{cid}", {**{k: a[k] for k in whole}, "phone": "+1 555 0100",
                                               "address": HOME, "version": 1}))
    stale = {**{k: b[k] for k in whole}, "firstName": "Bea", "phone": "+1 555 0199", "address": HOME, "version": 1}
    assert call(usr, "PUT", f"/customers/{cid}", stale).status == 409  # checked: the second session reloads
    _knobs(usr, profile_version_check=False)
    try:
        hal(call(usr, "PUT", f"/customers/{cid}", stale))
        assert hal(call(usr, "GET", f"/customers/{cid}/profile"))["phone"] == "+1 555 0199"  # the first change lost
    finally:
        _knobs(usr, profile_version_check=True)


def test_a_save_that_fails_after_its_address_is_partial_unless_atomic(usr: ServiceProcess) -> None:
    """The seed's "database constraint violations": a migration's CHECK on the customer row. Written apart
    (upstream's way), the address is saved and the rest is not; in one transaction, nothing is."""
    cid = _register(usr, "constrained")
    db_run(usr.db_url, "ALTER TABLE customers ADD CONSTRAINT phone_digits CHECK (phone ~ '^[0-9]*$') NOT VALID")
    try:
        body = {"phone": "+44 20 7946 0018", "address": HOME, "lastName": "Changed"}
        resp = call(usr, "PATCH", f"/customers/{cid}", body)
        assert resp.status == 500 and "phone_digits" in resp.json()["error"]
        prof = hal(call(usr, "GET", f"/customers/{cid}/profile"))
        assert prof["address"] == HOME and (prof["lastName"], prof["phone"]) == ("File", "")  # partial
        assert "profile save failed after its address was written" in usr.logs()
        other = _register(usr, "constrained2")
        _knobs(usr, profile_atomic=True)
        try:
            assert call(usr, "PATCH", f"/customers/{other}", body).status == 500
            prof = hal(call(usr, "GET", f"/customers/{other}/profile"))
            assert (prof["address"], prof["lastName"]) == (None, "File")  # all or nothing
        finally:
            _knobs(usr, profile_atomic=False)
    finally:
        db_run(usr.db_url, "ALTER TABLE customers DROP CONSTRAINT phone_digits")
    metrics = request("GET", usr.url + "/metrics").body.decode()
    assert re.search(r'profile_updates_total\{result="partial",service="user"\} [1-9]', metrics), metrics[-2000:]


@pytest.mark.parametrize(("method", "body", "status"), [
    ("PATCH", {"email": "not-an-email"}, 400),
    ("PATCH", {"firstName": ""}, 400),
    ("PATCH", {"firstName": "   "}, 400),
    ("PATCH", {"lastName": 3}, 400),
    ("PATCH", {"username": "hijack"}, 400),
    ("PATCH", {"password": "x"}, 400),
    ("PATCH", {}, 400),
    ("PATCH", {"firstName": "A", "version": "1"}, 400),
    ("PATCH", ["x"], 400),
    ("PUT", {"firstName": "Only"}, 400),
    ("PATCH", {"phone": "call me"}, 400),
    ("PATCH", {"address": {"street": "x"}}, 400),
    ("PATCH", {"address": {**HOME, "postcode": "!!"}}, 400),
    ("PATCH", {"address": {**HOME, "planet": "Mars"}}, 400),
    ("PATCH", {"defaultCard": "nothex"}, 400),
    ("PATCH", {"firstName": "A\u0000B"}, 400),
    ("PATCH", {"address": {**HOME, "city": "Lon\ud800don"}}, 400),
])
def test_profile_rejects_bad_input(usr: ServiceProcess, method: str, body: Any, status: int) -> None:
    resp = call(usr, method, f"/customers/{USER1}", body)
    assert resp.status == status, resp.body
    assert resp.json()["status_code"] == status
    assert hal(call(usr, "GET", f"/customers/{USER1}"))["firstName"] == "User1"


def test_profile_bad_and_unknown_ids(usr: ServiceProcess) -> None:
    assert call(usr, "PATCH", "/customers/nothex", {"firstName": "A"}).status == 400
    assert call(usr, "PATCH", f"/customers/{'0' * 24}", {"firstName": "A"}).status == 404
    assert call(usr, "GET", f"/customers/{'0' * 24}/profile").status == 404
    assert call(usr, "PATCH", f"/customers/{USER1}", raw="{oops").status == 400


def test_health(usr: ServiceProcess) -> None:
    items = call(usr, "GET", "/health").json()["health"]
    assert [(i["service"], i["status"]) for i in items] == [("user", "OK"), ("user-db", "OK")]
    assert all(i["time"] for i in items)
    assert {"db_pool_size", "db_timeout_s"} <= set(call(usr, "GET", "/admin/config").json()["knobs"])


# ---- generated users --------------------------------------------------------------------------------------

def test_generated_users_load_and_log_in() -> None:
    n, seed = 400, 7
    env = {"SOCKDRILL_DATA_USERS": str(n), "SOCKDRILL_SEED": str(seed), "SOCKDRILL_LINK_HOST": "users.test"}
    with scratch_database("usergen") as url, \
            ServiceProcess("user", {"SOCKDRILL_URL_USER_DB": url, **env}) as svc:
        customers = hal(call(svc, "GET", "/customers"))["_embedded"]["customer"]
        assert len(customers) == n + 3
        generated = list(generate_users(n, seed))
        assert [c["id"] for c in customers[3:]] == [u.id for u in generated]
        for i in (0, 199, n - 1):
            username, password = credentials(i, seed)
            body = hal(call(svc, "GET", "/login", auth=basic(username, password)))
            u = generated[i]
            assert body["user"] == user_json(u.id, u.first_name, u.last_name, username, host="users.test")
            assert call(svc, "GET", "/login", auth=basic(username, password + "x")).status == 401
            addrs = hal(call(svc, "GET", f"/customers/{u.id}/addresses"))["_embedded"]["address"]
            assert [(a["id"], a["city"], a["postcode"]) for a in addrs] == [
                (u.address.id, u.address.city, u.address.postcode)]
            assert addrs[0]["_links"]["self"]["href"] == f"http://users.test/addresses/{u.address.id}"
            cards = hal(call(svc, "GET", f"/customers/{u.id}/cards"))["_embedded"]["card"]
            assert [(c["id"], c["longNum"]) for c in cards] == [(u.card.id, u.card.long_num)]
        assert hal(call(svc, "GET", "/login", auth=basic("user", "password")))["user"]["id"] == USER
        assert db_run(url, "SELECT count(*) AS n FROM customer_cards")[0]["n"] == n + 3


def test_staff_login_is_its_own_account_with_the_shop_s_password(usr: ServiceProcess) -> None:
    """The admin panel's login: staff are not customers, and without a shop password there is no staff."""
    assert call(usr, "GET", "/staff/login", auth=basic("admin", "admin")).status == 401  # none was set
    with scratch_database("staff") as url, ServiceProcess("user", {"SOCKDRILL_URL_USER_DB": url,
                                                                   "SOCKDRILL_STAFF_PASSWORD": "s3cret-staff"}) as svc:
        resp = call(svc, "GET", "/staff/login", auth=basic("admin", "s3cret-staff"))
        assert resp.status == 200 and resp.json() == {"username": "admin", "role": "admin"}
        for who in (basic("admin", "wrong"), basic("user", "password"), basic("ad\x00min", "x"), None):
            assert call(svc, "GET", "/staff/login", auth=who).status == 401
        stored = db_run(url, "SELECT password FROM staff WHERE username = 'admin'")[0]["password"]
        assert "s3cret" not in stored and len(stored) == 64  # a PBKDF2 hash, not the password
