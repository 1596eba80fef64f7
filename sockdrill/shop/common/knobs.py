"""Runtime-configurable knobs of a service (timeouts, pool sizes, TTLs, limits...).

A service declares its knobs once; values come from the defaults, then ``SOCKDRILL_KNOBS`` (set by the
runtime so new pods inherit changes), then live changes through the admin endpoint. Every change is
validated as a whole (nothing is applied if one value is bad) and logged.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sockdrill.errors import ShopError, did_you_mean

log = logging.getLogger("sockdrill.knobs")


@dataclass(frozen=True)
class Knob:
    """One knob: a name, a typed default and the range or choices allowed."""

    name: str
    default: Any
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    def coerce(self, value: Any) -> Any:
        """Return ``value`` converted to the knob's type, or raise ValueError naming the knob."""
        kind = self.type
        try:
            if kind is bool:
                if isinstance(value, bool):
                    out: Any = value
                elif isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                    out = True
                elif isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                    out = False
                else:
                    raise ValueError
            elif kind is int:
                if isinstance(value, bool):
                    raise ValueError
                out = int(value)
                if isinstance(value, float) and value != out:
                    raise ValueError
            elif kind is float:
                if isinstance(value, bool):
                    raise ValueError
                out = float(value)
                if not math.isfinite(out):  # NaN passes every range check; infinity is no setting
                    raise ValueError
            else:
                out = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"knob '{self.name}' takes a {kind.__name__}, got {value!r}") from None
        if self.minimum is not None and out < self.minimum:
            raise ValueError(f"knob '{self.name}' must be >= {self.minimum}, got {out!r}")
        if self.maximum is not None and out > self.maximum:
            raise ValueError(f"knob '{self.name}' must be <= {self.maximum}, got {out!r}")
        if self.choices is not None and out not in self.choices:
            raise ValueError(f"knob '{self.name}' must be one of {list(self.choices)}, got {out!r}")
        return out

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": self.default, "type": self.type.__name__, "help": self.help}
        if self.minimum is not None:
            out["min"] = self.minimum
        if self.maximum is not None:
            out["max"] = self.maximum
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


@dataclass
class Knobs:
    """The live knob values of one service process."""

    service: str
    specs: dict[str, Knob] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    _listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    @classmethod
    def declare(cls, service: str, knobs: Iterable[Knob], env: Mapping[str, str] | None = None) -> Knobs:
        env = os.environ if env is None else env
        specs = {k.name: k for k in knobs}
        self = cls(service=service, specs=specs, values={k.name: k.default for k in specs.values()})
        raw = env.get("SOCKDRILL_KNOBS")
        if raw:
            try:
                overrides = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ShopError(f"SOCKDRILL_KNOBS is not valid JSON: {exc}") from exc
            if not isinstance(overrides, dict):
                raise ShopError("SOCKDRILL_KNOBS must be a JSON object")
            # Unknown keys may belong to a newer version of the service; keep only ours.
            known = {k: v for k, v in overrides.items() if k in specs}
            try:
                self.set(known, source="env")
            except ValueError as exc:
                raise ShopError(str(exc)) from exc
        return self

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def validate(self, updates: Mapping[str, Any]) -> dict[str, Any]:
        """Coerce every update; raise ValueError on the first unknown or bad one."""
        if not isinstance(updates, Mapping):
            raise ValueError("knob updates must be an object of name → value")
        clean: dict[str, Any] = {}
        for name, value in updates.items():
            spec = self.specs.get(name)
            if spec is None:
                raise ValueError(f"'{self.service}' has no knob '{name}'" + did_you_mean(name, self.specs))
            clean[name] = spec.coerce(value)
        return clean

    def set(self, updates: Mapping[str, Any], source: str = "admin") -> dict[str, dict[str, Any]]:
        clean = self.validate(updates)
        changes = {n: {"old": self.values[n], "new": v} for n, v in clean.items() if self.values[n] != v}
        self.values.update(clean)
        if changes:
            log.info("config changed", extra={"fields": {"changes": changes, "source": source}})
            for listener in self._listeners:
                listener(dict(clean))
        return changes

    def on_change(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

    def snapshot(self) -> dict[str, Any]:
        return dict(self.values)

    def describe(self) -> dict[str, Any]:
        return {n: {**k.describe(), "value": self.values[n]} for n, k in self.specs.items()}
