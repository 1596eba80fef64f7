"""Names of the environment variables the runtime hands its pods, in a module of their own: pods import it
at every start, and ``spec`` (pydantic, ~70 ms of import) is the runtime's, not theirs."""

from __future__ import annotations


def url_env_name(destination: str) -> str:
    """``catalogue-db`` → ``SOCKDRILL_URL_CATALOGUE_DB``: the variable a pod finds a destination's URL in."""
    return "SOCKDRILL_URL_" + destination.upper().replace("-", "_")
