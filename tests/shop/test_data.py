"""The seed data, the generators and the drawn images (in-process: no services needed)."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from PIL import Image

from sockdrill.shop.data import images
from sockdrill.shop.data.generate import credentials, generate_products, generate_users, password_for
from sockdrill.shop.data.seed import ACCOUNTS, LOOSE_ADDRESSES, LOOSE_CARDS, SOCKS, TAG_IDS, TAGS, image_files

HEX24 = re.compile(r"^[0-9a-f]{24}$")


# ---- seed --------------------------------------------------------------------------------------------

def test_seed_socks_are_the_nine_released_ones_in_id_order() -> None:
    assert [s.id for s in SOCKS] == [
        "03fef6ac-1896-4ce8-bd69-b798f85c6e0b", "3395a43e-2d88-40de-b95f-e00e1502085b",
        "510a0d7e-8e83-4193-b483-e27e09ddc34d", "808a2de1-1aaa-4c25-a9b9-6612e8f29a38",
        "819e1fbf-8b7e-4f6d-811f-693534916a8b", "837ab141-399e-4c1f-9abc-bace40296bac",
        "a0a4f044-b040-410d-8ead-4de0446aec7e", "d3588630-ad8e-49df-bbd7-3167f7efb246",
        "zzz4f044-b040-410d-8ead-4de0446aec7e",
    ]
    assert [s.id for s in SOCKS] == sorted(s.id for s in SOCKS)  # byte order = listing order
    assert "Weave special" not in {s.name for s in SOCKS}
    by_name = {s.name: s for s in SOCKS}
    holy = by_name["Holy"]
    assert (holy.price, holy.count, holy.tags) == (99.99, 1, ("magic", "action"))
    assert (by_name["Colourful"].price, by_name["Colourful"].images) == (
        18, ("colourful_socks.jpg", "colourful_socks.jpg"))
    assert (by_name["Crossed"].price, by_name["Crossed"].tags) == (17.32, ("blue", "red", "action", "formal"))
    assert (by_name["Nerd leg"].price, by_name["Nerd leg"].count) == (7.99, 115)
    assert by_name["Figueroa"].images == ("WAT.jpg", "WAT2.jpg")
    assert by_name["YouTube.sock"].price == 10.99
    assert (by_name["Classic"].count, by_name["Classic"].images) == (127, ("classic.jpg", "classic2.jpg"))
    for sock in SOCKS:
        assert 10 < len(sock.description) < 200
        assert set(sock.tags) <= set(TAGS)


def test_tags_in_table_order() -> None:
    assert TAGS == ("brown", "geek", "formal", "blue", "skin", "red", "action", "sport", "black", "magic",
                    "green")
    assert TAG_IDS["brown"] == 1 and TAG_IDS["magic"] == 10 and TAG_IDS["green"] == 11


def test_seed_accounts_match_their_hashes() -> None:
    assert [(a.username, a.password, a.id) for a in ACCOUNTS] == [
        ("Eve_Berger", "eve", "57a98d98e4b00679b4a830af"),
        ("user", "password", "57a98d98e4b00679b4a830b2"),
        ("user1", "password", "57a98d98e4b00679b4a830b5"),
    ]
    for acc in ACCOUNTS:
        assert hashlib.sha1((acc.salt + acc.password).encode()).hexdigest() == acc.password_hash
        assert len(acc.addresses) == 1 and len(acc.cards) == 1
    eve = ACCOUNTS[0]
    assert (eve.addresses[0].id, eve.addresses[0].postcode, eve.cards[0].long_num) == (
        "57a98d98e4b00679b4a830ad", "G67 3DL", "5953580604169678")
    assert ACCOUNTS[2].addresses[0].city == "Aberdare"
    assert [a.id for a in LOOSE_ADDRESSES] == ["57a98ddce4b00679b4a830d1"]
    assert LOOSE_ADDRESSES[0].postcode == ""
    assert [(c.id, c.long_num, c.expires, c.ccv) for c in LOOSE_CARDS] == [
        ("57a98ddce4b00679b4a830d2", "5429804235432", "04/16", "432")]


# ---- generators --------------------------------------------------------------------------------------

def test_generate_users_100k_distinct_and_consistent() -> None:
    users = list(generate_users(100_000, 1))
    assert len(users) == 100_000
    assert len({u.username for u in users}) == 100_000
    assert len({u.email for u in users}) == 100_000
    ids = [u.id for u in users] + [u.address.id for u in users] + [u.card.id for u in users]
    assert len(set(ids)) == 300_000 and all(HEX24.match(i) for i in ids[:1000])
    seeded = {a.username for a in ACCOUNTS} | {a.id for a in ACCOUNTS}
    assert not seeded & ({u.username for u in users} | {u.id for u in users})
    for u in users[:: 9973]:
        assert hashlib.sha1((u.salt + u.password).encode()).hexdigest() == u.password_hash
        assert credentials(u.index, 1) == (u.username, u.password)
        assert password_for(u.username, 1) == u.password
        assert u.first_name and u.last_name and u.email.endswith((".com", ".org", ".net"))
        assert u.address.street and u.address.city and u.address.postcode and u.address.number.isdigit()
        assert len(u.card.long_num) == 16 and u.card.long_num.isdigit()
        assert re.match(r"^\d\d/\d\d$", u.card.expires) and len(u.card.ccv) == 3


def test_generate_users_is_deterministic_and_prefix_stable() -> None:
    assert list(generate_users(50, 3)) == list(generate_users(200, 3))[:50]
    assert list(generate_users(20, 3)) == list(generate_users(20, 3))
    assert [u.username for u in generate_users(20, 3)] != [u.username for u in generate_users(20, 4)]
    assert credentials(12345, 3) != credentials(12345, 4)
    with pytest.raises(ValueError):
        credentials(-1, 1)


def test_generate_products() -> None:
    products = list(generate_products(2000, 5))
    assert products[:100] == list(generate_products(100, 5))
    assert [p.id for p in generate_products(10, 6)] != [p.id for p in products[:10]]
    assert len({p.id for p in products}) == 2000
    files = set(image_files())
    for p in products:
        assert uuid.UUID(p.id).version == 4
        assert 1 <= len(p.tags) <= 3 and set(p.tags) <= set(TAGS) and len(set(p.tags)) == len(p.tags)
        assert set(p.images) <= files
        assert 0 < p.price < 100 and 0 <= p.count <= 1000
        assert 0 < len(p.name) <= 40 and p.description.endswith(".")
    assert len({p.name for p in products}) > 500  # varied names, for search


# ---- images --------------------------------------------------------------------------------------------

def test_every_seed_image_is_a_distinct_jpeg() -> None:
    names = images.image_names()
    assert set(names) == set(image_files()) and len(names) == 17
    blobs = images.warm()
    for name in names:
        data = blobs[name]
        assert data[:3] == b"\xff\xd8\xff" and len(data) > 2000
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG" and img.size == (images.SIZE, images.SIZE)
    assert len(set(blobs.values())) == len(names)  # every file its own picture
    for sock in SOCKS:
        if sock.images[0] != sock.images[1]:
            assert blobs[sock.images[0]] != blobs[sock.images[1]]
    assert images.image_bytes("nope.jpg") is None
    assert images.image_bytes("../seed.py") is None


def test_images_are_deterministic_and_cached_on_disk(tmp_path: Path) -> None:
    assert images.draw("holy_1.jpeg") == images.draw("holy_1.jpeg")
    # A fresh process with an empty cache dir draws and writes; a second one reads the files back.
    code = ("import time; t=time.perf_counter(); from sockdrill.shop.data import images as i; "
            "b=i.warm(); print(round(time.perf_counter()-t, 3), sum(map(len, b.values())))")
    env = {"SOCKDRILL_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    root = Path(__file__).resolve().parents[2]
    first = subprocess.run([str(root / ".venv/bin/python"), "-c", code], env=env, cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    cached = sorted(p.name for p in (tmp_path / f"images-v{images.VERSION}").iterdir())
    assert cached == sorted(images.image_names())
    second = subprocess.run([str(root / ".venv/bin/python"), "-c", code], env=env, cwd=root, check=True,
                            capture_output=True, text=True).stdout.split()
    assert first[1] == second[1]
    assert (tmp_path / f"images-v{images.VERSION}" / "holy_1.jpeg").read_bytes() == images.draw("holy_1.jpeg")
