"""The worked numbers in the slo/ and evaluate/ docstrings are executed, so they cannot drift."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["sockdrill.slo.sli", "sockdrill.slo.slo", "sockdrill.slo.alerts", "sockdrill.evaluate.taxonomy",
           "sockdrill.evaluate.oracles", "sockdrill.evaluate.score", "sockdrill.evaluate.plots"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name.startswith("sockdrill.slo"):
        assert result.attempted > 0
