"""Toxics: the network faults a mesh edge can apply, as validated data plus a registry of kinds.

A toxic is ``kind`` + ``direction`` + optional ``pod`` + ``probability`` + kind-specific ``params``.
``direction`` is ``upstream`` (client → server), ``downstream`` (server → client) or ``both``.
``probability`` is drawn once per connection for the L4 kinds and once per request for the HTTP
kinds (a pooled keep-alive connection would otherwise turn "10 % of requests" into all-or-nothing).

    >>> t = make_toxic("delay", latency_ms=100, jitter_ms=10)
    >>> (t.kind, t.direction, t.params["correlation"])
    ('delay', 'downstream', 0.0)

Also here: ``HttpFramer``, the small incremental HTTP/1.x message splitter the HTTP kinds need to
find request boundaries on keep-alive streams (bytes are never rewritten, only cut at boundaries).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from sockdrill.errors import FaultError, did_you_mean

Direction = Literal["upstream", "downstream", "both"]
DIRECTIONS = ("upstream", "downstream", "both")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_METHOD = re.compile(r"^(\*|[A-Z]{1,20})$")


@dataclass(frozen=True)
class Param:
    """One parameter of a toxic kind: its type, default and allowed range."""

    name: str
    type: type
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None

    def check(self, kind: str, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise ValueError naming it."""
        where = f"toxic {kind!r}: {self.name}={value!r}"
        if self.type is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false")
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where} must be a number")
            if self.type is int and value != int(value):
                raise ValueError(f"{where} must be a whole number")
            value = self.type(value)
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"{where} must be >= {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"{where} must be <= {self.maximum:g}")
            return value
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where} must be a non-empty string")
        return value

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type.__name__, "default": self.default,
                               "description": self.description}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass(frozen=True)
class ToxicKind:
    """A registered kind: what it does, its parameters and which directions make sense."""

    name: str
    description: str
    params: tuple[Param, ...] = ()
    directions: tuple[str, ...] = DIRECTIONS
    default_direction: str = "downstream"
    http: bool = False  # needs an HTTP edge (parses requests)
    chaos_mesh: str = ""  # closest Chaos Mesh action, for the chaos layer's rendering
    param_map: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "param_map", {p.name: p for p in self.params})

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "description": self.description,
            "directions": list(self.directions),
            "default_direction": self.default_direction,
            "http_only": self.http,
            "chaos_mesh": self.chaos_mesh,
            "params": {p.name: p.describe() for p in self.params},
        }


_MATCH = (
    Param("method", str, "*", "HTTP method to match, or * for any"),
    Param("path", str, "*", "fnmatch glob on the request path (no query string), e.g. /catalogue/*"),
)

TOXIC_KINDS: dict[str, ToxicKind] = {
    k.name: k
    for k in (
        ToxicKind(
            "delay",
            "delays every chunk by latency ± jitter (order kept); correlation 0..100 ties each draw to "
            "the previous one as netem does",
            (
                Param("latency_ms", float, 100.0, "added delay per chunk", 0, 600_000),
                Param("jitter_ms", float, 0.0, "uniform spread ± around latency", 0, 600_000),
                Param("correlation", float, 0.0, "percent dependence on the previous draw", 0, 100),
            ),
            chaos_mesh="NetworkChaos delay",
        ),
        ToxicKind(
            "bandwidth",
            "limits throughput to rate KB/s (1 KB = 1024 bytes)",
            (Param("rate", float, 100.0, "KB/s", 0.1, 10_000_000),),
            chaos_mesh="NetworkChaos bandwidth",
        ),
        ToxicKind(
            "stall",
            "data stops flowing, the connection stays open; held data is delivered when removed. "
            "established_only: only connections open when it is installed (a firewall or NAT between the pods "
            "forgot them); new ones pass, so a client that reconnects gets through",
            (Param("established_only", bool, False, "stall only the connections open at install"),),
            default_direction="both",
            chaos_mesh="NetworkChaos loss (100 %)",
        ),
        ToxicKind(
            "reset",
            "closes matching connections with a TCP RST (SO_LINGER 0); new ones are reset at once",
            directions=("both",),
            default_direction="both",
            chaos_mesh="HTTPChaos abort / pod-http-reset-peer",
        ),
        ToxicKind(
            "partition",
            "both: new connections are closed at once with no data and existing ones are cut; one "
            "direction: data that way is held, as a one-way DROP makes TCP retransmit until it heals",
            default_direction="both",
            chaos_mesh="NetworkChaos partition",
        ),
        ToxicKind(
            "http_abort",
            "answers matching requests with `code` (or drops the connection when drop=true); "
            "upstream: the server never sees the request; downstream: it does, and its answer is replaced",
            (*_MATCH, Param("code", int, 503, "status code to return", 100, 599),
             Param("drop", bool, False, "drop the connection instead of answering")),
            directions=("upstream", "downstream"),
            default_direction="upstream",
            http=True,
            chaos_mesh="HTTPChaos abort / replace.code",
        ),
        ToxicKind(
            "http_delay",
            "delays matching requests (upstream) or their responses (downstream) by delay_ms",
            (*_MATCH, Param("delay_ms", float, 1000.0, "added delay", 0, 600_000)),
            directions=("upstream", "downstream"),
            default_direction="upstream",
            http=True,
            chaos_mesh="HTTPChaos delay",
        ),
    )
}


class Toxic(BaseModel):
    """A validated toxic. Unknown top-level keys that name a parameter of the kind go into ``params``.

    ``id`` may be empty; the edge then names it ``<kind>_<direction>`` (with a suffix if taken).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    id: str = ""
    direction: Direction = "downstream"
    pod: str | None = None
    probability: float = 1.0
    params: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"toxic must be a mapping, got {type(data).__name__}")
        data = dict(data)
        kind_name = data.get("kind")
        if not isinstance(kind_name, str) or kind_name not in TOXIC_KINDS:
            hint = did_you_mean(str(kind_name), TOXIC_KINDS)
            raise ValueError(f"toxic kind={kind_name!r} is unknown{hint}")
        kind = TOXIC_KINDS[kind_name]
        params = dict(data.pop("params", None) or {})
        for key in list(data):
            if key in kind.param_map:
                params[key] = data.pop(key)
        allowed_top = {"kind", "id", "direction", "pod", "probability"}
        for key in data:
            if key not in allowed_top:
                raise ValueError(f"toxic {kind_name!r}: unknown field {key!r}"
                                 f"{did_you_mean(key, allowed_top | set(kind.param_map))}")
        out: dict[str, Any] = kind.defaults()
        for key, value in params.items():
            if key not in kind.param_map:
                hint = did_you_mean(key, kind.param_map) if kind.param_map else " (it has none)"
                raise ValueError(f"toxic {kind_name!r}: unknown parameter {key!r}{hint}")
            out[key] = kind.param_map[key].check(kind_name, value)
        if kind.http:
            out["method"] = out["method"].upper()
            if not _METHOD.match(out["method"]):
                raise ValueError(f"toxic {kind_name!r}: method={out['method']!r} must be an HTTP method or *")
            if not (out["path"] == "*" or out["path"].startswith(("/", "*"))):
                raise ValueError(f"toxic {kind_name!r}: path={out['path']!r} must start with / or *")
        direction = data.get("direction") or kind.default_direction
        if direction not in kind.directions:
            raise ValueError(f"toxic {kind_name!r}: direction={direction!r} is not allowed "
                             f"(choose from: {', '.join(kind.directions)})")
        prob = data.get("probability", 1.0)
        if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0 <= prob <= 1:
            raise ValueError(f"toxic {kind_name!r}: probability={prob!r} must be a number in 0..1")
        ident = data.get("id") or ""
        if ident and (not isinstance(ident, str) or not _ID.match(ident)):
            raise ValueError(f"toxic {kind_name!r}: id={ident!r} must be 1-64 of letters, digits, _ . : -")
        pod = data.get("pod")
        if pod is not None and (not isinstance(pod, str) or not pod):
            raise ValueError(f"toxic {kind_name!r}: pod={pod!r} must be a pod name")
        return {"kind": kind_name, "id": ident, "direction": direction, "pod": pod,
                "probability": float(prob), "params": out}

    @property
    def spec(self) -> ToxicKind:
        return TOXIC_KINDS[self.kind]

    def describe(self) -> dict[str, Any]:
        return self.model_dump()


def make_toxic(kind: str, **fields: Any) -> Toxic:
    """Build a Toxic or raise FaultError with one line per problem (field and bad value named)."""
    try:
        return Toxic.model_validate({"kind": kind, **fields})
    except ValidationError as exc:
        msgs = [str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors()]
        raise FaultError("; ".join(msgs)) from None


def describe_kinds() -> list[dict[str, Any]]:
    """All registered kinds, for `sockdrill chaos kinds` and the agent-facing docs."""
    return [k.describe() for k in TOXIC_KINDS.values()]


class ToxicRuntime:
    """A toxic installed on an edge: its seeded generators and the jitter state.

    Two generators so that the jitter sequence does not depend on how many connections were drawn.
    """

    __slots__ = ("_last_u", "active", "hit_rng", "injected", "jitter_rng", "kind", "params", "pod",
                 "recent_ms", "toxic")

    def __init__(self, toxic: Toxic, seed_text: str) -> None:
        self.toxic = toxic
        self.kind = toxic.kind
        self.pod = toxic.pod
        self.params = toxic.params
        self.hit_rng = random.Random(f"{seed_text}:{toxic.id}:hit")
        self.jitter_rng = random.Random(f"{seed_text}:{toxic.id}:jitter")
        self._last_u = 0.5
        self.active = True  # False once removed: held data tied to it is released at once
        self.injected = 0  # connections or requests it hit (for the chaos layer's audit)
        self.recent_ms: list[float] = []  # last draws, for describe() and reproducibility checks

    def hits(self, pod: str) -> bool:
        """Whether this toxic applies to a connection (or request) to ``pod``: pod match, then a draw."""
        if self.pod is not None and self.pod != pod:
            return False
        p = self.toxic.probability
        if p >= 1.0 or (p > 0.0 and self.hit_rng.random() < p):
            self.injected += 1
            return True
        return False

    def sample_delay(self) -> float:
        """Seconds of delay for one chunk: latency ± jitter, correlated with the previous draw."""
        latency = self.params["latency_ms"]
        jitter = self.params["jitter_ms"]
        if jitter <= 0:
            return latency / 1000.0
        c = self.params["correlation"] / 100.0
        u = (1.0 - c) * self.jitter_rng.random() + c * self._last_u
        self._last_u = u
        ms = max(0.0, latency + jitter * (2.0 * u - 1.0))
        if len(self.recent_ms) >= 32:
            del self.recent_ms[0]
        self.recent_ms.append(round(ms, 6))
        return ms / 1000.0

    def matches(self, method: str, path: str) -> bool:
        m = self.params["method"]
        p = self.params["path"]
        return (m == "*" or m == method) and (p == "*" or fnmatchcase(path, p))


# --- HTTP/1.x framing -------------------------------------------------------------------------

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _UNTIL_CLOSE, _TUNNEL = range(7)
MAX_HEAD = 65536


class HttpHead:
    """The parts of a message head the toxics and stats need."""

    __slots__ = ("method", "path", "status")

    def __init__(self, method: str = "", path: str = "", status: int = 0) -> None:
        self.method = method
        self.path = path
        self.status = status


class HttpFramer:
    """Cuts an HTTP/1.x byte stream into messages without copying more than the head.

    ``feed(data)`` returns ``[(head | None, bytes, end)]``: ``head`` is set on the first segment of
    a message, ``end`` on its last. Incomplete heads and chunk-size lines are held back until complete.
    Anything that is not HTTP/1.x (or an upgrade) switches the framer to a pass-through ``tunnel``.
    For responses, ``request_method`` says what the matching request was (HEAD responses have no body).
    """

    def __init__(self, request: bool) -> None:
        self.request = request
        self.state = _HEAD
        self.remaining = 0
        self.buf = b""
        self.request_method = "GET"
        self.broken = False  # went to tunnel because the bytes were not HTTP

    @property
    def tunnel(self) -> bool:
        return self.state == _TUNNEL

    def idle(self) -> bool:
        """At a message boundary with nothing held back."""
        return self.state == _HEAD and not self.buf

    def feed(self, data: bytes) -> list[tuple[HttpHead | None, bytes, bool]]:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        out: list[tuple[HttpHead | None, bytes, bool]] = []
        n = len(data)
        pos = start = 0
        head: HttpHead | None = None
        while pos < n:
            st = self.state
            if st == _HEAD:
                end = data.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > MAX_HEAD:
                        self._to_tunnel(broken=True)
                        continue
                    break
                head = self._parse_head(data[pos:end])
                pos = end + 4
                if head is None:  # not HTTP: pass the rest through untouched
                    continue
                if self.state == _HEAD or self.state == _TUNNEL:  # no body (tunnel: upgrade)
                    out.append((head, data[start:pos], True))
                    start, head = pos, None
            elif st in (_LENGTH, _CHUNK_DATA):
                take = min(self.remaining, n - pos)
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    if st == _CHUNK_DATA:
                        self.state = _CHUNK_SIZE
                    else:
                        self.state = _HEAD
                        out.append((head, data[start:pos], True))
                        start, head = pos, None
            elif st == _CHUNK_SIZE:
                nl = data.find(b"\r\n", pos)
                if nl < 0:
                    if n - pos > 1024:
                        self._to_tunnel(broken=True)
                        continue
                    break
                try:
                    size = int(data[pos:nl].split(b";", 1)[0].strip(), 16)
                except ValueError:
                    pos = nl + 2
                    self._to_tunnel(broken=True)
                    continue
                pos = nl + 2
                if size == 0:
                    self.state = _TRAILER
                else:
                    self.remaining = size + 2  # data + CRLF
                    self.state = _CHUNK_DATA
            elif st == _TRAILER:
                nl = data.find(b"\r\n", pos)
                if nl < 0:
                    break
                empty = nl == pos
                pos = nl + 2
                if empty:
                    self.state = _HEAD
                    out.append((head, data[start:pos], True))
                    start, head = pos, None
            else:  # until close / tunnel: everything passes
                pos = n
        if pos < n:  # held back: incomplete head or line
            self.buf = data[pos:]
        if pos > start:
            out.append((head, data[start:pos], False))
        return out

    def _to_tunnel(self, broken: bool) -> None:
        self.state = _TUNNEL
        self.broken = self.broken or broken

    def _parse_head(self, raw: bytes) -> HttpHead | None:
        lines = raw.split(b"\r\n")
        first = lines[0].split(b" ", 2)
        try:
            if self.request:
                if len(first) != 3 or not first[2].startswith(b"HTTP/1."):
                    raise ValueError
                method = first[0].decode("latin-1")
                target = first[1].decode("latin-1")
                if "://" in target:  # absolute form
                    target = "/" + target.split("://", 1)[1].partition("/")[2]
                head = HttpHead(method=method, path=target.split("?", 1)[0])
            else:
                if len(first) < 2 or not first[0].startswith(b"HTTP/1."):
                    raise ValueError
                head = HttpHead(status=int(first[1]))
        except (ValueError, UnicodeDecodeError):
            self._to_tunnel(broken=True)
            return None
        length: int | None = None
        chunked = False
        upgrade = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self._to_tunnel(broken=True)
                    return None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"upgrade":
                upgrade = True
        status = head.status
        if self.request:
            if head.method == "CONNECT":
                self._to_tunnel(broken=False)
            elif chunked:
                self.state = _CHUNK_SIZE
            elif length:
                self.state, self.remaining = _LENGTH, length
            else:
                self.state = _HEAD
            _ = upgrade  # an upgrade request is framed normally; the 101 answer opens the tunnel
        elif status == 101:
            self._to_tunnel(broken=False)
        elif status < 200 or status in (204, 304) or self.request_method == "HEAD":
            self.state = _HEAD
        elif chunked:
            self.state = _CHUNK_SIZE
        elif length is not None:
            self.state, self.remaining = (_LENGTH, length) if length else (_HEAD, 0)
        else:
            self.state = _UNTIL_CLOSE
        return head
