"""Deterministic generators of large, realistic data sets: users (login over 100k+ accounts) and products
(search over 10k+ socks).

Everything is a pure function of ``(seed, index)`` or of ``seed``, so a run can be repeated and the load
generator can log in as generated user ``i`` without reading the database::

    username, password = credentials(i, seed)

Generated users get sha1(salt + password) like upstream's accounts (no slow KDF: 100k users in ~1 s).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sockdrill.shop.data.seed import SOCKS, TAGS, Address, Card, Sock

FIRST_NAMES = (
    "Ada", "Alan", "Alice", "Amara", "Amir", "Anna", "Arjun", "Aylin", "Ben", "Bianca", "Carlos", "Chen",
    "Chloe", "Dara", "David", "Elena", "Emma", "Eve", "Farah", "Felix", "Fiona", "Grace", "Hana", "Harry",
    "Ines", "Isaac", "Jack", "Jamal", "Jana", "Jonas", "Julia", "Kai", "Karin", "Kenji", "Lara", "Leo",
    "Lina", "Luca", "Maya", "Mateo", "Mia", "Nadia", "Noah", "Nora", "Olga", "Omar", "Oscar", "Paula",
    "Priya", "Rafael", "Rosa", "Ruth", "Sam", "Sara", "Sofia", "Tariq", "Tom", "Una", "Victor", "Wen",
    "Yara", "Yusuf", "Zoe", "Zara",
)
LAST_NAMES = (
    "Adams", "Ahmed", "Bailey", "Berger", "Brown", "Campbell", "Chen", "Clarke", "Costa", "Davies",
    "Dubois", "Evans", "Fischer", "Garcia", "Green", "Hall", "Hughes", "Ito", "Jackson", "Jones", "Kaur",
    "Khan", "Kowalski", "Lee", "Lopez", "Martin", "Meyer", "Miller", "Moore", "Murphy", "Nguyen", "Novak",
    "Okafor", "Olsen", "Patel", "Perez", "Quinn", "Reid", "Rossi", "Santos", "Schmidt", "Scott", "Silva",
    "Singh", "Smith", "Taylor", "Thomas", "Turner", "Walker", "Wang", "Watson", "White", "Wilson", "Wood",
    "Wright", "Young", "Yilmaz", "Zhang",
)
STREETS = (
    "Church", "Station", "Victoria", "Park", "Mill", "High", "King", "Queen", "Albert", "Manor", "Grove",
    "Meadow", "Orchard", "Bridge", "Castle", "Chapel", "Elm", "Oak", "Willow", "Beech", "Hill", "Market",
)
STREET_KINDS = ("Road", "Street", "Lane", "Avenue", "Close", "Way", "Drive", "Crescent")
CITIES = (
    ("London", "E"), ("London", "N"), ("London", "SW"), ("Manchester", "M"), ("Birmingham", "B"),
    ("Glasgow", "G"), ("Edinburgh", "EH"), ("Leeds", "LS"), ("Liverpool", "L"), ("Bristol", "BS"),
    ("Cardiff", "CF"), ("Belfast", "BT"), ("Sheffield", "S"), ("Newcastle", "NE"), ("Nottingham", "NG"),
    ("Leicester", "LE"), ("Brighton", "BN"), ("Oxford", "OX"), ("Cambridge", "CB"), ("York", "YO"),
    ("Aberdeen", "AB"), ("Swansea", "SA"), ("Exeter", "EX"), ("Norwich", "NR"),
)
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the letters UK postcodes use in the inward part

MAX_USERS = 1 << 32


@dataclass(slots=True)
class GeneratedUser:
    index: int
    id: str
    username: str
    password: str
    first_name: str
    last_name: str
    email: str
    salt: str
    password_hash: str
    address: Address
    card: Card


def _id_prefix(seed: int) -> str:
    # 16 hex chars fixed per seed + an 8-hex counter = a 24-char ObjectId-like id.
    return hashlib.sha1(f"sockdrill-ids:{seed}".encode()).hexdigest()[:16]


def _digest(seed: int, i: int) -> bytes:
    return hashlib.sha1(b"sockdrill-user:%d:%d" % (seed, i)).digest()


def _names(d: bytes, i: int) -> tuple[str, str, str]:
    first = FIRST_NAMES[(d[0] << 8 | d[1]) % len(FIRST_NAMES)]
    last = LAST_NAMES[(d[2] << 8 | d[3]) % len(LAST_NAMES)]
    # The index makes usernames distinct (and never equal to the seeded accounts').
    return first, last, f"{first.lower()}.{last.lower()}{i}"


def password_for(username: str, seed: int) -> str:
    """The plaintext password of a generated user, derived from its username."""
    return hashlib.sha1(f"sockdrill-pw:{seed}:{username}".encode()).hexdigest()[:12]


def credentials(i: int, seed: int) -> tuple[str, str]:
    """``(username, password)`` of generated user ``i`` for ``seed``, without generating the others."""
    if not 0 <= i < MAX_USERS:
        raise ValueError(f"user index must be in [0, {MAX_USERS}), got {i}")
    _first, _last, username = _names(_digest(seed, i), i)
    return username, password_for(username, seed)


def generate_users(n: int, seed: int) -> Iterator[GeneratedUser]:
    """Users 0..n-1 for ``seed``; user ``i`` is the same whatever ``n`` is."""
    if not 0 <= n <= MAX_USERS:
        raise ValueError(f"n must be in [0, {MAX_USERS}], got {n}")
    prefix = _id_prefix(seed)
    sha1 = hashlib.sha1
    streets = [f"{s} {k}" for s in STREETS for k in STREET_KINDS]
    n_streets, n_cities = len(streets), len(CITIES)
    pw_prefix = f"sockdrill-pw:{seed}:"
    for i in range(n):
        d = _digest(seed, i)
        first, last, username = _names(d, i)
        password = sha1((pw_prefix + username).encode()).hexdigest()[:12]
        salt = sha1(d).hexdigest()
        pw_hash = sha1((salt + password).encode()).hexdigest()
        city, area = CITIES[d[7] % n_cities]
        postcode = f"{area}{d[8] % 20 + 1} {d[9] % 9 + 1}{_LETTERS[d[10] % 20]}{_LETTERS[d[11] % 20]}"
        long_num = ("4" if d[12] & 1 else "5") + f"{int.from_bytes(d[12:20], 'big') % 10**15:015d}"
        base = 3 * i
        yield GeneratedUser(
            i, f"{prefix}{base:08x}", username, password, first, last,
            f"{username}@{EMAIL_DOMAINS[d[6] % 3]}", salt, pw_hash,
            Address(f"{prefix}{base + 1:08x}", streets[(d[4] << 8 | d[5]) % n_streets], str(d[6] % 240 + 1),
                    "United Kingdom", city, postcode),
            Card(f"{prefix}{base + 2:08x}", long_num, f"{d[13] % 12 + 1:02d}/{26 + d[14] % 6}",
                 f"{(d[15] << 8 | d[16]) % 1000:03d}"),
        )


# ---- products -------------------------------------------------------------------------------------

_COLOUR_WORDS = {
    "brown": ("Chestnut", "Cocoa", "Walnut", "Toffee"),
    "blue": ("Navy", "Cobalt", "Denim", "Sky"),
    "red": ("Scarlet", "Ruby", "Cherry", "Brick"),
    "black": ("Jet", "Midnight", "Charcoal", "Onyx"),
    "green": ("Moss", "Olive", "Fern", "Emerald"),
    "skin": ("Nude", "Sand", "Honey", "Almond"),
}
_STYLE_WORDS = {
    "geek": ("Pixel", "Binary", "Circuit", "Retro Game"),
    "formal": ("Pinstripe", "Argyle", "Herringbone", "Dress"),
    "action": ("Zigzag", "Lightning", "Rally", "Trail"),
    "sport": ("Runner", "Court", "Cycling", "Compression"),
    "magic": ("Starry", "Wizard", "Moon", "Comet"),
}
_PLAIN_WORDS = ("Cosy", "Classic", "Everyday", "Soft", "Bold", "Striped", "Dotted", "Chunky", "Fine")
_KINDS = ("Crew", "Ankle", "Knee-high", "Trainer", "Boot", "Sock", "Lounge", "Hiking")
_MATERIALS = ("merino wool", "combed cotton", "bamboo", "cashmere blend", "recycled polyester",
              "organic cotton", "alpaca wool", "cotton and elastane")
_FEATURES = ("a reinforced heel and toe", "a cushioned sole", "a seamless toe", "a ribbed cuff that stays up",
             "arch support", "a soft terry lining", "flat-knit seams", "a breathable mesh top")
_USES = ("the office", "long walks", "the gym", "cold evenings", "weekend hikes", "lazy Sundays",
         "running", "formal dinners", "travel days", "game night")


def search_vocabulary() -> dict[str, tuple[str, ...]]:
    """The words generated products are named and described with, for shoppers' searches (load/journeys.py)."""
    return {"materials": _MATERIALS, "kinds": _KINDS, "uses": _USES,
            "colours": tuple(w for words in _COLOUR_WORDS.values() for w in words),
            "styles": tuple(w for words in _STYLE_WORDS.values() for w in words)}


_TAG_NOTES = {
    "geek": "A pattern only a programmer could love.",
    "formal": "Smart enough for a suit.",
    "action": "Built to keep up with you.",
    "sport": "Made to move and to breathe.",
    "magic": "A touch of mystery at every step.",
    "skin": "Almost invisible under a trouser leg.",
}


def _product_images(rng: random.Random, tags: tuple[str, ...]) -> tuple[str, str]:
    # Reuse a seeded sock's drawings, preferably one that shares a tag.
    matching = [s for s in SOCKS if set(s.tags) & set(tags)]
    return rng.choice(matching or list(SOCKS)).images


def generate_products(m: int, seed: int) -> Iterator[Sock]:
    """``m`` generated socks for ``seed`` (product ``k`` is the same whatever ``m`` is)."""
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}")
    rng = random.Random(f"sockdrill-products:{seed}")
    for _ in range(m):
        sock_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        tags = tuple(rng.sample(TAGS, rng.choice((1, 1, 2, 2, 2, 3))))
        colour = next((t for t in tags if t in _COLOUR_WORDS), None)
        style = next((t for t in tags if t in _STYLE_WORDS), None)
        first = rng.choice(_COLOUR_WORDS[colour]) if colour else rng.choice(_PLAIN_WORDS)
        second = rng.choice(_STYLE_WORDS[style]) if style else rng.choice(_PLAIN_WORDS)
        if second == first:
            second = "Plain"
        name = f"{first} {second} {rng.choice(_KINDS)}"
        material, feature, use = rng.choice(_MATERIALS), rng.choice(_FEATURES), rng.choice(_USES)
        kind = name.split()[-1].lower()
        description = f"{material.capitalize()} {kind} socks with {feature}, made for {use}."
        note = next((_TAG_NOTES[t] for t in tags if t in _TAG_NOTES), None)
        if note:
            description += " " + note
        whole = rng.randint(4, 39)
        price = float(whole) if rng.random() < 0.4 else whole + rng.choice((0.49, 0.5, 0.95, 0.99))
        count = 0 if rng.random() < 0.03 else rng.randint(1, 1000)
        yield Sock(sock_id, name, description, price, count, tags, _product_images(rng, tags))
