"""One error base for the whole project, a subclass per stage.

Messages name the object, the field, the bad value and what was allowed, so the CLI can print
them as one line and exit non-zero without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SockdrillError(Exception):
    """Base of every error sockdrill raises on purpose."""


class ClusterError(SockdrillError):
    """The local runtime could not do what was asked (unknown service, port in use, not up...)."""


class UnsupportedError(ClusterError):
    """The host cannot provide a mechanism (e.g. no writable cgroup); never faked."""


class ShopError(SockdrillError):
    """A shop service was misconfigured."""


class FaultError(SockdrillError):
    """A fault spec is invalid or could not be injected/reverted."""


class ScenarioError(SockdrillError):
    """A scenario file is invalid."""


class ToolError(SockdrillError):
    """An agent tool call was invalid."""


class OracleError(SockdrillError):
    """An evaluation oracle could not be computed."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or a list of valid choices."""
    options = sorted(choices)
    close = difflib.get_close_matches(value, options, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (choose from: {', '.join(options)})" if options else ""
