"""A knob never takes a non-finite number: NaN passes every range comparison, infinity is no setting."""

from __future__ import annotations

import pytest

from sockdrill.shop.common.knobs import Knob


@pytest.mark.parametrize("value", ["nan", "NaN", float("nan"), "inf", "-inf", float("inf"), "1e999"])
def test_non_finite_values_are_refused(value: object) -> None:
    knob = Knob("timeout_s", 1.5, minimum=0.0, maximum=30.0)
    with pytest.raises(ValueError, match="timeout_s"):
        knob.coerce(value)


def test_finite_values_still_pass() -> None:
    assert Knob("timeout_s", 1.5, minimum=0.0, maximum=30.0).coerce("2.5") == 2.5
