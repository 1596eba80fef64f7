"""The submit room: the agent's one answer (detected, root causes, category) and its word that the
problem is mitigated; the categories it may name."""

from __future__ import annotations

import time
from typing import Any

from sockdrill.agents.registry import tool
from sockdrill.agents.toolkit import Submission, ToolsBase
from sockdrill.errors import ToolError


class SubmitRoom(ToolsBase):
    # ---- submit -------------------------------------------------------------------------------
    @tool("submit")
    def submit(self, detected: bool, root_causes: list[str], category: str = "", summary: str = "") -> dict[str, Any]:
        """Report your conclusion, once: is something wrong, the components most likely at fault (best
        first), the category of the cause, and a short summary. A second submit is refused.

        Args:
        detected: true if users are being hurt by a problem
        root_causes: component names ranked from most to least likely
        category: one of the diagnosis categories (see categories)
        summary: what you found and did
        """
        if self.submission is not None:
            raise ToolError("an answer was already submitted; a run takes one submission")
        self.submission = Submission(time.time(), bool(detected), [str(c) for c in root_causes][:10],
                                     category or None, summary[:4000])
        return {"accepted": True}

    @tool("submit")
    def mitigation_done(self) -> dict[str, Any]:
        """Say that you believe the problem is mitigated (the run then checks that users are served again)."""
        self.mitigation_done_at = time.time()
        return {"accepted": True}

    @tool("observe")
    def categories(self) -> list[dict[str, str]]:
        """The diagnosis categories submit accepts, with what each means."""
        from sockdrill.evaluate.taxonomy import CATEGORIES

        return [{"id": c.id, "description": c.description} for c in CATEGORIES.values()]
