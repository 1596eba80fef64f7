"""Seed scenario 10's world, as plain data and functions: delivery zones, the carrier's tariff, parcel weights
and the postcode directory a geocoder reads. Pure Python, so that the carrier (``carrier_api``), the shop's
rating service (``shipping_rates``) and the load's quote probe share one definition of the truth.

- Zones: ``uk`` (Great Britain's mainland), ``uk-remote`` (the Highlands and Islands, Northern Ireland, the
  crown dependencies: dearer to reach), ``eu`` and ``world``.
- The carrier's price of a service (``standard``, ``express``) to a zone is a base price for the first 500 g
  and a step for every further 500 g started, in US dollars; a tariff revision ``r`` puts every price up by
  ``REVISION_STEP`` × (r − 1) (a carrier's yearly rate change, compressed).
- A parcel of socks weighs ``PACKAGING_G`` plus ``SOCK_G`` a pair.
- The postcode directory maps a country and, in Great Britain, a postcode area (the letters that begin the
  outward code: ``SW`` of ``SW1A 1AA``, ``KW`` of ``KW15 1BX``) to a zone and a region.
"""

from __future__ import annotations

import math
import re

ZONES = ("uk", "uk-remote", "eu", "world")
SERVICES = ("standard", "express")
CURRENCY = "USD"
REVISION_STEP = 0.2
BAND_G = 500
PACKAGING_G = 150
SOCK_G = 120

# zone → service → (first 500 g, each further 500 g started, days to deliver)
TARIFF: dict[str, dict[str, tuple[float, float, int]]] = {
    "uk": {"standard": (3.95, 1.00, 2), "express": (7.95, 2.00, 1)},
    "uk-remote": {"standard": (8.95, 2.00, 4), "express": (16.95, 3.50, 2)},
    "eu": {"standard": (9.50, 2.50, 5), "express": (19.50, 4.00, 2)},
    "world": {"standard": (14.50, 4.00, 8), "express": (29.00, 6.50, 4)},
}


def parcel_weight_g(pairs: int) -> int:
    return PACKAGING_G + SOCK_G * max(0, pairs)


def weight_band(weight_g: int) -> int:
    """500 g bands, the first one 1 (a parcel of 0-500 g)."""
    return max(1, math.ceil(weight_g / BAND_G))


def price(revision: int, zone: str, service: str, weight_g: int) -> float:
    """The carrier's price under tariff ``revision``; KeyError for a zone or service it does not have."""
    first, step, _days = TARIFF[zone][service]
    base = first + step * (weight_band(weight_g) - 1)
    return round(base * (1 + REVISION_STEP * (max(1, revision) - 1)), 2)


def days(zone: str, service: str) -> int:
    return TARIFF[zone][service][2]


# ---- the postcode directory ------------------------------------------------------------------------------------
DIRECTORY_RELEASE = "2026.11"
# Great Britain's postcode areas the directory names, mainland ones by region.
MAINLAND = {
    "London": ("E", "EC", "N", "NW", "SE", "SW", "W", "WC", "BR", "CR", "HA", "IG", "KT", "RM", "SM", "TW", "UB"),
    "South East": ("BN", "CT", "GU", "ME", "MK", "OX", "PO", "RG", "RH", "SL", "SO", "TN", "HP", "LU", "AL", "SG"),
    "South West": ("BA", "BH", "BS", "DT", "EX", "GL", "PL", "SN", "SP", "TA", "TQ", "TR"),
    "Midlands": ("B", "CV", "DE", "DY", "LE", "NG", "NN", "ST", "WR", "WS", "WV", "HR", "TF"),
    "East": ("CB", "CM", "CO", "IP", "NR", "PE", "SS"),
    "North": ("BD", "BL", "CA", "CH", "CW", "DH", "DL", "DN", "FY", "HD", "HG", "HU", "HX", "L", "LA", "LN", "LS",
              "M", "NE", "OL", "PR", "S", "SK", "SR", "TS", "WA", "WF", "WN", "YO"),
    "Wales": ("CF", "LD", "LL", "NP", "SA", "SY"),
    "Scotland": ("AB", "DD", "DG", "EH", "FK", "G", "KA", "KY", "ML", "TD"),
}
REMOTE = {
    "Highlands and Islands": ("HS", "IV", "KW", "PA", "PH", "ZE"),
    "Northern Ireland": ("BT",),
    "Crown dependencies": ("GY", "IM", "JE"),
}
COUNTRY_ZONES = {
    "IE": "eu", "FR": "eu", "DE": "eu", "NL": "eu", "BE": "eu", "ES": "eu", "IT": "eu", "PT": "eu", "AT": "eu",
    "DK": "eu", "SE": "eu", "FI": "eu", "PL": "eu", "US": "world", "CA": "world", "AU": "world", "NZ": "world",
    "JP": "world", "SG": "world", "ZA": "world",
}
# What customers type for Great Britain.
GB_NAMES = {"GB", "UK", "UNITED KINGDOM", "GREAT BRITAIN", "ENGLAND", "SCOTLAND", "WALES", "NORTHERN IRELAND"}
_AREA = re.compile(r"^([A-Z]{1,2})[0-9]")


def directory_rows() -> list[tuple[str, str, str, str]]:
    """The directory release the shop ships with: (country, area, zone, region); area ``*`` is a whole country."""
    rows = [("GB", area, "uk", region) for region, areas in MAINLAND.items() for area in areas]
    rows += [("GB", area, "uk-remote", region) for region, areas in REMOTE.items() for area in areas]
    rows += [(country, "*", zone, country) for country, zone in COUNTRY_ZONES.items()]
    return rows


def country_code(country: str) -> str:
    c = country.strip().upper()
    return "GB" if c in GB_NAMES else c


def postcode_area(country: str, postcode: str) -> str:
    """The directory key of an address: a Great British postcode's area, ``*`` elsewhere; "" when a British
    postcode has none (not a postcode)."""
    if country_code(country) != "GB":
        return "*"
    m = _AREA.match(postcode.strip().upper())
    return m.group(1) if m else ""
