"""The tools an agent has: what an on-call engineer sees and may do, never the fault or the grader.

One implementation; the Python API passes a ``Tools`` object to agents, ``sockdrill mcp`` serves the
same registry over MCP and ``sockdrill agent`` over the CLI. Every call is checked against the registry,
bounded by the step budget and written to the run's audit log. Results are compact JSON-able dicts.
The tools live in three rooms (``observe.py``, ``act.py``, ``submit.py``) over ``toolkit.py``.
"""

from __future__ import annotations

from sockdrill.agents.act import ActRoom
from sockdrill.agents.observe import ObserveRoom
from sockdrill.agents.submit import SubmitRoom
from sockdrill.agents.toolkit import DLQ_SUFFIX, QUEUE_GROUP, Submission, ToolContext

__all__ = ["DLQ_SUFFIX", "QUEUE_GROUP", "Submission", "ToolContext", "Tools"]


class Tools(ObserveRoom, ActRoom, SubmitRoom):
    """The agent's whole tool set. Call tools as methods, or by name with ``call(name, **args)``."""
