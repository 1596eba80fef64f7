"""The one contract between the runner and the Locust process: a ``LoadConfig``, passed as JSON in
``SOCKDRILL_LOAD_CONFIG``. Pure Python (no locust, no gevent); every check names the bad value."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sockdrill.load.shapes import SHAPES, Curve
from sockdrill.load.sli import DEFAULT_MIX, JOURNEYS

ENV_VAR = "SOCKDRILL_LOAD_CONFIG"
MAX_USERS = 10_000
MAX_DURATION_S = 24 * 3600.0


def parse_mix(text: str) -> dict[str, int]:
    """``"browse:5,login:2,checkout"`` → ``{"browse": 5, "login": 2, "checkout": 1}``."""
    from sockdrill.errors import did_you_mean

    mix: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        name = name.strip()
        if name not in JOURNEYS:
            raise ValueError(f"unknown journey '{name}'" + did_you_mean(name, JOURNEYS))
        if name in mix:
            raise ValueError(f"journey '{name}' is listed twice")
        try:
            w = int(weight) if weight.strip() else 1
        except ValueError:
            raise ValueError(f"weight of journey '{name}' must be a whole number, got {weight!r}") from None
        if w < 0:
            raise ValueError(f"weight of journey '{name}' must be >= 0, got {w}")
        mix[name] = w
    if not mix or sum(mix.values()) <= 0:
        raise ValueError(f"give at least one journey with a positive weight, e.g. browse:5,login:1 (got {text!r})")
    return {k: v for k, v in mix.items() if v > 0}


def parse_duration(text: str) -> float:
    """``"90"``/``"90s"`` → 90, ``"5m"`` → 300, ``"1h30m"`` → 5400 seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.replace(" ", ""))
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"duration {text!r} is not like 30s, 5m, 1h30m or 90")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_think(text: str) -> tuple[float, float]:
    """``"1"`` → (1, 1), ``"0.5-2"`` → (0.5, 2) seconds between two journeys of one user."""
    low, sep, high = text.partition("-")
    try:
        lo = float(low)
        hi = float(high) if sep else lo
    except ValueError:
        raise ValueError(f"think time {text!r} is not like 1 or 0.5-2 (seconds)") from None
    if lo < 0 or hi < lo:
        raise ValueError(f"think time {text!r} needs 0 <= low <= high")
    return lo, hi


@dataclass
class LoadConfig:
    host: str
    mix: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    users: int = 5
    spawn_rate: float = 5.0
    duration: float = 60.0
    shape: str = "steady"
    peak_users: int | None = None
    seed: int = 1
    accounts: int = 0            # generated users in the shop; 0 = use the three seeded accounts
    data_seed: int = 1           # the shop's data seed (for the generated users' passwords)
    think: tuple[float, float] = (0.5, 1.5)
    timeout: float = 10.0        # client timeout per request
    max_requests: int | None = None
    interval: float = 1.0        # seconds per stats record
    stats_path: str | None = None
    summary_path: str | None = None
    recorder_url: str | None = None
    choices_path: str | None = None
    return_after: float = 30.0   # seconds a returning shopper stays away (return-visit journey)
    # Entry points other than ``host`` (a region's edge cache): simulated user i enters through entries[i % n]
    # (repeat one to weigh it); empty: everyone through ``host``.
    entries: list[str] = field(default_factory=list)
    # The carrier's public API (seed scenario 10: the shipping-quote journey reads the tariff in force there to know
    # the true price of a parcel); empty: quotes are checked for their options only.
    carrier_url: str = ""

    @property
    def peak(self) -> int:
        return self.peak_users if self.peak_users is not None else (
            self.users if self.shape == "steady" else self.users * 3)

    def curve(self) -> Curve:
        return Curve(self.shape, self.users, self.peak, self.spawn_rate, self.duration)

    def validate(self) -> LoadConfig:
        from sockdrill.errors import did_you_mean

        if not re.match(r"^https?://[^/\s]+", self.host):
            raise ValueError(f"host must be an http(s) URL like http://127.0.0.1:8079, got {self.host!r}")
        for entry in self.entries:
            if not re.match(r"^https?://[^/\s]+", entry):
                raise ValueError(f"an entry must be an http(s) URL like http://127.0.0.1:8079, got {entry!r}")
        if self.carrier_url and not re.match(r"^https?://[^/\s]+", self.carrier_url):
            raise ValueError(f"the carrier's URL must be an http(s) URL, got {self.carrier_url!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape '{self.shape}'" + did_you_mean(self.shape, SHAPES))
        if not 1 <= self.users <= MAX_USERS:
            raise ValueError(f"users must be between 1 and {MAX_USERS}, got {self.users}")
        if self.peak_users is not None and not self.users <= self.peak_users <= MAX_USERS:
            raise ValueError(f"peak users must be between users ({self.users}) and {MAX_USERS}, got {self.peak_users}")
        if not 0 < self.duration <= MAX_DURATION_S:
            raise ValueError(f"duration must be more than 0 s and at most 24 h, got {self.duration}")
        if self.spawn_rate <= 0:
            raise ValueError(f"spawn rate must be > 0, got {self.spawn_rate}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"request limit must be >= 1, got {self.max_requests}")
        if not 0 < self.return_after <= MAX_DURATION_S:
            raise ValueError(f"return-after must be more than 0 s and at most 24 h, got {self.return_after}")
        if self.accounts < 0:
            raise ValueError(f"accounts must be >= 0, got {self.accounts}")
        for name, weight in self.mix.items():
            if name not in JOURNEYS:
                raise ValueError(f"unknown journey '{name}'" + did_you_mean(name, JOURNEYS))
            if weight < 0:
                raise ValueError(f"weight of journey '{name}' must be >= 0, got {weight}")
        if sum(self.mix.values()) <= 0:
            raise ValueError("the journey mix has no positive weight")
        self.curve()  # the shape's own checks
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadConfig:
        data: dict[str, Any] = json.loads(text)
        data["think"] = tuple(data.get("think", (0.5, 1.5)))
        return cls(**data)
