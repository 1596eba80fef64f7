"""The shop's data: upstream's seed (socks, tags, accounts) as Python data, deterministic generators for
large data sets (users, products) and our own programmatically drawn product images.

Environment (set by the runtime, read by the services on first start):
- ``SOCKDRILL_SEED``: seed of every generator (default 1);
- ``SOCKDRILL_DATA_USERS``: generated users loaded into user-db besides the three seeded accounts (default 0);
- ``SOCKDRILL_DATA_PRODUCTS``: generated products loaded into catalogue-db besides the nine socks (default 0).
"""

from __future__ import annotations

from sockdrill.shop.common.env import int_env

DEFAULT_SEED = 1


def data_seed() -> int:
    return int_env("SOCKDRILL_SEED", DEFAULT_SEED)


def data_users() -> int:
    return max(0, int_env("SOCKDRILL_DATA_USERS", 0))


def data_products() -> int:
    return max(0, int_env("SOCKDRILL_DATA_PRODUCTS", 0))
