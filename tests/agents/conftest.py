"""Helpers for the agent tests: Tools on the shared shop with an audit log in a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from sockdrill.agents.tools import ToolContext, Tools
from tests.conftest import Shop


@pytest.fixture
def tools(shop: Shop, tmp_path: Path) -> Tools:
    return Tools(ToolContext(data_dir=shop.data_dir, audit_path=tmp_path / "agent-audit.jsonl", max_steps=500,
                             runbooks={"slow-logins": "# Slow logins\nCheck the user service."}))
