"""Load shapes: how many simulated users run at each moment, and when the run ends.

A shape is a pure curve (``tick(t) -> (users, spawn_rate)`` or ``None`` once the run is over), so it can
be checked without Locust; ``locust_shape`` wraps one in a ``LoadTestShape`` subclass inside the Locust
process (it imports locust only when called). Every shape ends by itself after ``duration`` seconds.

- ``steady``: ``users`` for the whole run.
- ``ramp``: normal → peak → normal, in fifths: hold ``users``, climb to ``peak``, hold, descend, hold.
- ``spike``: ``users``, then ``peak`` all at once for the middle fifth, then ``users`` again.
- ``step``: four equal stairs from ``users`` up to ``peak``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SHAPES = ("steady", "ramp", "spike", "step")


@dataclass(frozen=True)
class Curve:
    kind: str
    users: int
    peak: int
    spawn_rate: float
    duration: float
    steps: int = 4

    def __post_init__(self) -> None:
        if self.kind not in SHAPES:
            raise ValueError(f"unknown shape '{self.kind}' (choose from: {', '.join(SHAPES)})")
        if self.users < 1:
            raise ValueError(f"users must be >= 1, got {self.users}")
        if self.peak < self.users:
            raise ValueError(f"peak users ({self.peak}) must be >= users ({self.users})")
        if self.spawn_rate <= 0:
            raise ValueError(f"spawn rate must be > 0, got {self.spawn_rate}")
        if self.duration <= 0:
            raise ValueError(f"duration must be > 0, got {self.duration}")

    def users_at(self, t: float) -> int:
        """Target users ``t`` seconds into the run."""
        lo, hi, d = self.users, self.peak, self.duration
        if self.kind == "steady" or hi == lo:
            return lo
        f = min(max(t / d, 0.0), 1.0)
        if self.kind == "ramp":
            if f < 0.2 or f >= 0.8:
                return lo
            if f < 0.4:
                return lo + round((hi - lo) * (f - 0.2) / 0.2)
            if f < 0.6:
                return hi
            return hi - round((hi - lo) * (f - 0.6) / 0.2)
        if self.kind == "spike":
            return hi if 0.4 <= f < 0.6 else lo
        stair = min(int(f * self.steps), self.steps - 1)  # step
        return lo + round((hi - lo) * stair / (self.steps - 1))

    def rate_at(self, t: float) -> float:
        """Spawn (and stop) rate: fast enough that Locust follows the curve."""
        gap = self.peak - self.users
        if self.kind == "ramp":
            return max(self.spawn_rate, 1.5 * gap / (0.2 * self.duration))
        if self.kind in ("spike", "step") and t > 0:
            return max(self.spawn_rate, float(gap))  # each change happens within about a second
        return self.spawn_rate

    def tick(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration:
            return None
        return self.users_at(t), self.rate_at(t)


def locust_shape(curve: Curve, should_stop: Callable[[], bool] = lambda: False) -> type[Any]:
    """A ``LoadTestShape`` subclass that follows ``curve`` and ends early when ``should_stop()``."""
    from locust import LoadTestShape  # only ever called inside the Locust process

    class ConfiguredShape(LoadTestShape):
        def tick(self) -> tuple[int, float] | None:
            if should_stop():
                return None
            return curve.tick(self.get_run_time())

    return ConfiguredShape
