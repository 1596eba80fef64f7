"""Upstream Sock Shop's default data (released catalogue-db 0.3.x and user-db), as plain Python data.

Ids, names, prices, counts, tags, image file names, accounts, salts and hashes are upstream's, so that
upstream clients and tests (which hard-code them) work. Product descriptions are our own text.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tag names in upstream's table order; a tag's id is its position + 1.
TAGS: tuple[str, ...] = (
    "brown", "geek", "formal", "blue", "skin", "red", "action", "sport", "black", "magic", "green",
)
TAG_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(TAGS)}


@dataclass(frozen=True)
class Sock:
    id: str
    name: str
    description: str
    price: float
    count: int
    tags: tuple[str, ...]
    images: tuple[str, str]


# The nine socks of the released catalogue, in id order (the default listing order).
SOCKS: tuple[Sock, ...] = (
    Sock("03fef6ac-1896-4ce8-bd69-b798f85c6e0b", "Holy",
         "Pale wool with a hole at every toe on purpose. For the daring sock wearer.",
         99.99, 1, ("magic", "action"), ("holy_1.jpeg", "holy_2.jpeg")),
    Sock("3395a43e-2d88-40de-b95f-e00e1502085b", "Colourful",
         "Bright bands of colour from cuff to toe. A cheerful pair for grey mornings.",
         18, 438, ("brown", "blue"), ("colourful_socks.jpg", "colourful_socks.jpg")),
    Sock("510a0d7e-8e83-4193-b483-e27e09ddc34d", "SuperSport XL",
         "Cushioned sole and ribbed arch for long runs. Extra large, extra sporty.",
         15, 820, ("sport", "black", "formal"), ("puma_1.jpeg", "puma_2.jpeg")),
    Sock("808a2de1-1aaa-4c25-a9b9-6612e8f29a38", "Crossed",
         "Diagonal crossing stripes in two tones. Smart enough for the office, loud enough for Friday.",
         17.32, 738, ("blue", "red", "action", "formal"), ("cross_1.jpeg", "cross_2.jpeg")),
    Sock("819e1fbf-8b7e-4f6d-811f-693534916a8b", "Figueroa",
         "Fine-knit green and blue dress sock, named after a street we never visited.",
         14, 808, ("formal", "green", "blue"), ("WAT.jpg", "WAT2.jpg")),
    Sock("837ab141-399e-4c1f-9abc-bace40296bac", "Cat socks",
         "Little cats walk all the way round the ankle. Soft cotton, no scratching.",
         15, 175, ("brown", "green", "formal"), ("catsocks.jpg", "catsocks2.jpg")),
    Sock("a0a4f044-b040-410d-8ead-4de0446aec7e", "Nerd leg",
         "Skin-tone sock with a pattern of ones and zeros. Compiles with every shoe.",
         7.99, 115, ("blue", "skin"), ("bit_of_leg_1.jpeg", "bit_of_leg_2.jpeg")),
    Sock("d3588630-ad8e-49df-bbd7-3167f7efb246", "YouTube.sock",
         "A play button on each ankle. Press gently to start your day.",
         10.99, 801, ("geek", "formal"), ("youtube_1.jpeg", "youtube_2.jpeg")),
    Sock("zzz4f044-b040-410d-8ead-4de0446aec7e", "Classic",
         "Plain brown and green wool, the pair your grandfather would approve of.",
         12, 127, ("brown", "green"), ("classic.jpg", "classic2.jpg")),
)


def image_files() -> list[str]:
    """Every distinct image file name the seed uses, in catalogue order."""
    out: list[str] = []
    for sock in SOCKS:
        for name in sock.images:
            if name not in out:
                out.append(name)
    return out


@dataclass(frozen=True)
class Address:
    id: str
    street: str
    number: str
    country: str
    city: str
    postcode: str


@dataclass(frozen=True)
class Card:
    id: str
    long_num: str
    expires: str
    ccv: str


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    password: str  # the plaintext that matches ``password_hash`` (upstream's documented accounts)
    first_name: str
    last_name: str
    email: str
    salt: str
    password_hash: str  # sha1_hex(salt + password)
    addresses: tuple[Address, ...]
    cards: tuple[Card, ...]


_GLASGOW = ("Whitelees Road", "246", "United Kingdom", "Glasgow", "G67 3DL")

# Upstream's insertion order: Eve_Berger, user, user1.
ACCOUNTS: tuple[Account, ...] = (
    Account("57a98d98e4b00679b4a830af", "Eve_Berger", "eve", "Eve", "Berger", "",
            "c748112bc027878aa62812ba1ae00e40ad46d497", "fec51acb3365747fc61247da5e249674cf8463c2",
            (Address("57a98d98e4b00679b4a830ad", *_GLASGOW),),
            (Card("57a98d98e4b00679b4a830ae", "5953580604169678", "08/19", "678"),)),
    Account("57a98d98e4b00679b4a830b2", "user", "password", "User", "Name", "",
            "6c1c6176e8b455ef37da13d953df971c249d0d8e", "e2de7202bb2201842d041f6de201b10438369fb8",
            (Address("57a98d98e4b00679b4a830b0", *_GLASGOW),),
            (Card("57a98d98e4b00679b4a830b1", "5544154011345918", "08/19", "958"),)),
    Account("57a98d98e4b00679b4a830b5", "user1", "password", "User1", "Name1", "",
            "bd832b0e10c6882deabc5e8e60a37689e2b708c2", "8f31df4dcc25694aeb0c212118ae37bbd6e47bcd",
            (Address("57a98d98e4b00679b4a830b3", "Maes-Y-Deri", "4", "United Kingdom", "Aberdare",
                     "CF44 6TF"),),
            (Card("57a98d98e4b00679b4a830b4", "0908415193175205", "08/19", "280"),)),
)

# Seeded but attached to no customer.
LOOSE_ADDRESSES: tuple[Address, ...] = (
    Address("57a98ddce4b00679b4a830d1", "my road", "3", "UK", "London", ""),
)
LOOSE_CARDS: tuple[Card, ...] = (Card("57a98ddce4b00679b4a830d2", "5429804235432", "04/16", "432"),)
