"""A fault as data: kind, target, parameters, duration — validated before anything touches the shop.

    >>> spec = parse_fault({"kind": "network.delay", "target": "front-end->user",
    ...                     "params": {"latency_ms": 200}, "duration": "30s"})
    >>> (spec.kind, spec.duration_s, spec.params["latency_ms"])
    ('network.delay', 30.0, 200.0)

Every problem is reported at once, each with its field path and the bad value
(``params.latency_ms: must be >= 0, got -5``), as one ``FaultError``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from sockdrill.errors import FaultError, did_you_mean

MAX_DURATION_S = 24 * 3600.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
EDGE_RE = re.compile(r"^(\*|[a-z][a-z0-9-]*)->(\*|[a-z][a-z0-9-]*)$")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def parse_duration(value: Any, field: str = "duration") -> float:
    """'90s', '1m30s', '250ms', '2h' or a number of seconds → seconds (> 0)."""
    if isinstance(value, bool):
        raise FaultError(f"{field}: must be a duration like 30s or 1m30s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and _DURATION.sub("", text) == "":
            seconds = sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in _DURATION.findall(text))
        else:
            raise FaultError(f"{field}: must be a duration like 30s or 1m30s, got {value!r}")
    else:
        raise FaultError(f"{field}: must be a duration like 30s or 1m30s, got {value!r}")
    if not 0 < seconds <= MAX_DURATION_S:
        raise FaultError(f"{field}: must be > 0 and at most 24h, got {value!r}")
    return seconds


def go_duration(seconds: float) -> str:
    """Seconds → a Go duration string Chaos Mesh accepts ('1.5s' → '1500ms', 90 → '90s')."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


class FaultSpec(BaseModel):
    """One fault. ``params`` are checked against the kind's own model (``sockdrill.chaos.kinds``).

    ``target``: a deployment name, or for network kinds an edge ``src->dst`` / ``*->dst`` / ``src->*``
    (a bare deployment name means every edge into it). ``pod`` narrows the fault to one pod (for
    network kinds: connections routed to that pod of the destination); ``mode: one`` picks one pod.
    ``schedule`` (cron or ``@every 10m``) makes the fault recur; it is rendered as a Chaos Mesh Schedule.
    """

    model_config = ConfigDict(extra="forbid")

    kind: str
    target: str
    pod: str | None = None
    mode: Literal["all", "one"] = "all"
    params: dict[str, Any] = {}
    duration_s: float = 60.0
    schedule: str | None = None
    name: str | None = None  # for rendering: metadata.name

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        v = v.strip()
        if not (NAME_RE.match(v) or EDGE_RE.match(v)):
            raise ValueError(f"must be a deployment name or an edge like src->dst, *->dst, src->*; got {v!r}")
        if v == "*->*":
            raise ValueError("'*->*' would hit every edge; name a source or a destination")
        return v

    @field_validator("pod")
    @classmethod
    def _pod(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError(f"must be a pod name like user-0, got {v!r}")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("@") or len(v.split()) in (5, 6) or v.startswith("CRON_TZ=")):
            raise ValueError(f"must be a cron expression or @every/@hourly..., got {v!r}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError(f"must be a DNS-1123 name (lower-case letters, digits, '-'), got {v!r}")
        return v

    @property
    def edge(self) -> tuple[str, str] | None:
        """(source, destination) with '*' wildcards, or None when the target is a deployment."""
        if "->" not in self.target:
            return None
        src, dst = self.target.split("->", 1)
        return src, dst

    def describe(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    """Pydantic errors → ['params.latency_ms: must be >= 0, got -5', ...]."""
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()))
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        path = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "fault"
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif e.get("type") == "missing":
            msg = "is required"
        said = e.get("type") == "missing" or "got " in msg  # a validator's own message may name the value
        out.append(f"{path}: {msg}" + ("" if said else f", got {e.get('input')!r}"))
    return out


def parse_fault(data: Any, where: str = "") -> FaultSpec:
    """Validate a fault mapping (kind, target, params, duration, ...) completely or raise FaultError.

    The kind's parameters are validated too (defaults filled in), so the returned spec is ready to inject.
    """
    from sockdrill.chaos.kinds import KINDS

    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        raise FaultError(f"{where or 'fault'}: must be a mapping with kind, target, params, duration")
    data = dict(data)
    errors: list[str] = []
    duration = data.pop("duration", data.pop("duration_s", 60.0))
    try:
        data["duration_s"] = parse_duration(duration, f"{prefix}duration")
    except FaultError as exc:
        errors.append(str(exc))
        data["duration_s"] = 60.0
    kind_name = data.get("kind")
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        errors.append(f"{prefix}kind: unknown fault kind {kind_name!r}{did_you_mean(str(kind_name), KINDS)}")
    try:
        spec = FaultSpec.model_validate(data)
    except ValidationError as exc:
        errors.extend(format_errors(exc, prefix))
        raise FaultError("; ".join(errors)) from None
    if kind is not None:
        try:
            params = kind.Params.model_validate(spec.params)
            spec = spec.model_copy(update={"params": params.model_dump()})
        except ValidationError as exc:
            errors.extend(format_errors(exc, f"{prefix}params."))
        errors.extend(f"{prefix}{e}" for e in kind.check_static(spec))
    if errors:
        raise FaultError("; ".join(errors))
    return spec


def load_faults(doc: Any) -> list[FaultSpec]:
    """A YAML document: one fault mapping, a list of them, or ``{faults: [...]}``. All errors at once."""
    if isinstance(doc, dict) and "faults" in doc:
        doc = doc["faults"]
    items = doc if isinstance(doc, list) else [doc]
    out, errors = [], []
    for i, item in enumerate(items):
        try:
            out.append(parse_fault(item, where=f"faults[{i}]" if isinstance(doc, list) else ""))
        except FaultError as exc:
            errors.append(str(exc))
    if errors:
        raise FaultError("; ".join(errors))
    return out
