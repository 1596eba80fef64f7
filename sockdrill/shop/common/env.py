"""The environment contract between the runtime and a pod.

The runtime starts every service pod with:
- ``SOCKDRILL_SERVICE``: the deployment name (``catalogue``), ``SOCKDRILL_POD``: the pod name (``catalogue-0``);
- ``PORT``: the port to listen on (127.0.0.1);
- ``SOCKDRILL_URL_<DEST>`` for every deployment it may call, e.g. ``SOCKDRILL_URL_CATALOGUE_DB`` =
  ``postgresql://shop:PASSWORD@127.0.0.1:41234/sockdrill``: the address of the mesh edge (this deployment →
  that one), never the destination pod itself, so that faults on the edge are felt. An embedded store's
  URL carries the services' own login (``shop``: their database only, Redis data commands only), in the
  environment (readable by the pod's user only), never on a command line;
- ``SOCKDRILL_KNOBS``: a JSON object of knob values that override the service's defaults;
- ``SOCKDRILL_SEED``: the data seed, ``SOCKDRILL_DATA_*``: data sizes (see shop/data);
- ``SOCKDRILL_POD_DIR``: a directory for durable state of the deployment (shared by its pods).
"""

from __future__ import annotations

import os

from sockdrill.cluster.envnames import url_env_name
from sockdrill.errors import ShopError


def upstream_url(destination: str) -> str:
    """The URL this pod must use to reach ``destination`` (through the mesh)."""
    value = os.environ.get(url_env_name(destination))
    if not value:
        raise ShopError(f"no address for '{destination}': {url_env_name(destination)} is not set")
    return value.rstrip("/")


def optional_upstream_url(destination: str) -> str | None:
    value = os.environ.get(url_env_name(destination))
    return value.rstrip("/") if value else None


def service_name(default: str) -> str:
    return os.environ.get("SOCKDRILL_SERVICE", default)


def pod_name(service: str) -> str:
    return os.environ.get("SOCKDRILL_POD", f"{service}-0")


def listen_port(default: int = 0) -> int:
    raw = os.environ.get("PORT", str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ShopError(f"PORT must be an integer, got {raw!r}") from exc


def int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ShopError(f"{name} must be an integer, got {raw!r}") from exc
