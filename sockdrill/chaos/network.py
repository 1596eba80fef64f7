"""Network and HTTP faults: toxics on mesh edges (``cluster/toxics.py``), one per edge the target covers.

Targets: ``src->dst`` (one edge), ``*->dst`` or a bare ``dst`` (every edge into it, the host's ingress
included), ``src->*`` (every edge out of it). ``direction``: ``upstream`` (client → server data),
``downstream`` (server → client) or ``both``. ``pod`` / ``mode: one`` limit the fault to connections
routed to one pod of the destination, so replacing that pod is a real mitigation.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from sockdrill.chaos.kinds import Ctx, FaultKind, Params, choose_pods, deployment, register
from sockdrill.chaos.render import (
    RenderOptions,
    chaos_object,
    http_port,
    mode_fields,
    selector,
)
from sockdrill.chaos.spec import FaultSpec
from sockdrill.cluster.runtime import HOST
from sockdrill.errors import ClusterError, FaultError, did_you_mean

Direction = Literal["upstream", "downstream", "both"]


class _NetParams(Params):
    direction: Direction | None = Field(None, description="upstream (to the server), downstream, both")
    probability: float = Field(1.0, ge=0, le=1, description="share of connections (or requests) hit")


class DelayParams(_NetParams):
    latency_ms: float = Field(100.0, ge=0, le=600_000, description="added delay")
    jitter_ms: float = Field(0.0, ge=0, le=600_000, description="uniform spread ± around latency")
    correlation: float = Field(0.0, ge=0, le=100, description="percent dependence on the previous draw")


class BandwidthParams(_NetParams):
    rate_kb_s: float = Field(100.0, ge=0.1, le=10_000_000, description="throughput cap, KB/s")


class ResetParams(Params):
    direction: Literal["both"] | None = None
    probability: float = Field(1.0, ge=0, le=1)


class _HttpParams(Params):
    direction: Literal["upstream", "downstream"] | None = Field(
        None, description="upstream: before the server; downstream: on its answer")
    probability: float = Field(1.0, ge=0, le=1)
    path: str = Field("*", description="glob on the request path, e.g. /login or /catalogue/*")
    method: str = Field("*", description="HTTP method or *")


class HttpAbortParams(_HttpParams):
    code: int = Field(503, ge=100, le=599, description="status returned")
    drop: bool = Field(False, description="drop the connection instead of answering")


class HttpDelayParams(_HttpParams):
    delay_ms: float = Field(1000.0, ge=0, le=600_000, description="added delay")


def _ends(spec: FaultSpec) -> tuple[str, str]:
    return spec.edge or ("*", spec.target)


class _EdgeKind(FaultKind):
    toxic: ClassVar[str]
    http: ClassVar[bool] = False
    default_direction: ClassVar[str] = "downstream"
    target_help = "an edge src->dst, *->dst, src->*, or a deployment (every edge into it)"

    def check_static(self, spec: FaultSpec) -> list[str]:
        out = []
        _src, dst = _ends(spec)
        if spec.pod is not None and dst == "*":
            out.append("pod: a pod can only be named when the destination is one deployment")
        if spec.mode == "one" and dst == "*":
            out.append("mode: 'one' needs a single destination deployment")
        return out

    def edges(self, rt: Any, spec: FaultSpec) -> list[Any]:
        src, dst = _ends(spec)
        names = set(rt.deployments) | {HOST}
        for end, value in (("source", src), ("destination", dst)):
            if value != "*" and value not in names:
                raise FaultError(f"target: unknown {end} {value!r}{did_you_mean(value, names)}")
        found = [e for (s, d), e in rt.edges.items() if src in ("*", s) and dst in ("*", d)]
        if not found:
            all_names = [f"{s}->{d}" for s, d in rt.edges]
            raise FaultError(f"target: no edge {src}->{dst} in the topology{did_you_mean(spec.target, all_names)}")
        if self.http:
            found = [e for e in found if e.protocol == "http"]
            if not found:
                raise FaultError(f"target: {spec.target} carries no HTTP ({self.id} needs an HTTP edge; "
                                 f"datastore edges are TCP)")
        return found

    def check(self, rt: Any, spec: FaultSpec) -> None:
        self.edges(rt, spec)
        if spec.pod is not None:
            choose_pods(rt, spec, deployment(rt, _ends(spec)[1]))

    def toxic_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if k not in ("direction", "probability")}

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        rt = ctx.runtime
        edges = self.edges(rt, spec)
        pod = None
        if spec.pod is not None or spec.mode == "one":
            pod = choose_pods(ctx, spec, deployment(rt, _ends(spec)[1]))[0].name
        params = spec.params
        direction = params.get("direction") or self.default_direction
        state: dict[str, Any] = {"toxics": [], "pod": pod, "direction": direction}
        try:
            for edge in edges:
                edge.add_toxic(self.toxic, id=f"x{ctx.fault_id}", direction=direction, pod=pod,
                               probability=params.get("probability", 1.0), **self.toxic_fields(params))
                state["toxics"].append([edge.source, edge.destination, f"x{ctx.fault_id}"])
        except Exception:
            await self.revert(ctx, spec, state)
            raise
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        # A new supervisor has a new mesh: the toxics died with the old one.
        for src, dst, ident in state.get("toxics", []):
            try:
                ctx.runtime.mesh.edge(src, dst).remove_toxic(ident)
            except (FaultError, ClusterError):
                pass

    def target_deployments(self, spec: FaultSpec) -> list[str]:
        return []

    # ---- rendering -----------------------------------------------------------------------------
    def _placement(self, spec: FaultSpec, opts: RenderOptions, direction: str) -> dict[str, Any]:
        """selector/target/direction for NetworkChaos from an edge and our direction."""
        src, dst = _ends(spec)
        one = mode_fields(spec)["mode"]
        cm_dir = {"upstream": "to", "downstream": "from", "both": "both"}[direction]
        everyone = {"mode": "all", "selector": selector(None, opts)}
        if src not in ("*", HOST) and dst != "*":
            return {"mode": "all", "selector": selector(src, opts), "direction": cm_dir,
                    "target": {"mode": one, "selector": selector(dst, opts)}}
        if dst != "*":  # into dst from anywhere: act on dst's own traffic (replies leave it: "to")
            out: dict[str, Any] = {"mode": one, "selector": selector(dst, opts)}
            if direction == "downstream":
                out["direction"] = "to"
            else:
                out.update(direction="from" if direction == "upstream" else "both", target=everyone)
            return out
        out = {"mode": "all", "selector": selector(src, opts)}
        if direction == "upstream":
            out["direction"] = "to"
        else:
            out.update(direction=cm_dir, target=everyone)
        return out


def _ms(value: float) -> str:
    return f"{value:g}ms" if "e" not in f"{value:g}" else f"{round(value)}ms"


@register
class NetworkDelay(_EdgeKind):
    id = "network.delay"
    summary = "adds latency (± jitter, with correlation) to every chunk on the edge(s)"
    Params = DelayParams
    toxic = "delay"
    chaos_mesh = "NetworkChaos"

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        p = spec.params
        body = self._placement(spec, opts, p.get("direction") or self.default_direction)
        body["action"] = "delay"
        body["delay"] = {"latency": _ms(p["latency_ms"]), "jitter": _ms(p["jitter_ms"]),
                         "correlation": f"{p['correlation']:g}"}
        return [chaos_object("NetworkChaos", spec, opts, body)]


@register
class NetworkBandwidth(_EdgeKind):
    id = "network.bandwidth"
    summary = "caps throughput on the edge(s) to rate_kb_s"
    Params = BandwidthParams
    toxic = "bandwidth"
    chaos_mesh = "NetworkChaos"

    def toxic_fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"rate": params["rate_kb_s"]}

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        p = spec.params
        body = self._placement(spec, opts, p.get("direction") or self.default_direction)
        body["action"] = "bandwidth"
        body["bandwidth"] = {"rate": f"{round(p['rate_kb_s'] * 1024)}bps", "limit": 20971520, "buffer": 10000}
        return [chaos_object("NetworkChaos", spec, opts, body)]


class StallParams(_NetParams):
    established_only: bool = Field(False, description="only the connections open at onset stall (a firewall or "
                                   "NAT forgot them); new connections pass")


@register
class NetworkStall(_EdgeKind):
    id = "network.stall"
    summary = "data stops flowing, connections stay open (clients hit their timeouts)"
    Params = StallParams
    toxic = "stall"
    default_direction = "both"
    chaos_mesh = "NetworkChaos"

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        body = self._placement(spec, opts, spec.params.get("direction") or self.default_direction)
        body["action"] = "loss"
        body["loss"] = {"loss": "100", "correlation": "0"}
        note = {"sockdrill.io/note": "stall = every packet lost while connections stay established"}
        if spec.params.get("established_only"):
            # NetworkChaos has no selector for connections by age: on Kubernetes this is all of the path's traffic,
            # for as long as the fault lasts (keep it short there).
            note["sockdrill.io/note"] += "; here only connections open at onset (not expressible in NetworkChaos)"
        return [chaos_object("NetworkChaos", spec, opts, body, annotations=note)]


@register
class NetworkReset(_EdgeKind):
    id = "network.reset"
    summary = "connections are reset (TCP RST), new ones at once"
    Params = ResetParams
    toxic = "reset"
    default_direction = "both"
    chaos_mesh = "HTTPChaos"

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        from sockdrill.shop.manifest import service_names

        dst = _ends(spec)[1]
        if dst in service_names():
            body: dict[str, Any] = {**mode_fields(spec), "selector": selector(dst, opts), "target": "Request",
                                    "port": http_port(dst), "abort": True}
            return [chaos_object("HTTPChaos", spec, opts, body)]
        # A datastore (or several destinations): no RST in NetworkChaos; a partition cuts the same way.
        body = self._placement(spec, opts, "both")
        body["action"] = "partition"
        note = {"sockdrill.io/note": "reset on a TCP edge: rendered as a partition (Chaos Mesh has no RST)"}
        return [chaos_object("NetworkChaos", spec, opts, body, annotations=note)]


@register
class NetworkPartition(_EdgeKind):
    id = "network.partition"
    summary = "both ways: connections refused/cut; one way: data that way is dropped (held)"
    Params = _NetParams
    toxic = "partition"
    default_direction = "both"
    chaos_mesh = "NetworkChaos"

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        body = self._placement(spec, opts, spec.params.get("direction") or self.default_direction)
        body["action"] = "partition"
        return [chaos_object("NetworkChaos", spec, opts, body)]


class _HttpKind(_EdgeKind):
    http = True
    default_direction = "upstream"
    chaos_mesh = "HTTPChaos"
    target_help = "an HTTP edge src->dst, *->dst or a service (every HTTP edge into it)"

    def check_static(self, spec: FaultSpec) -> list[str]:
        out = super().check_static(spec)
        if _ends(spec)[1] == "*":
            out.append(f"target: {self.id} needs one destination service (HTTPChaos acts on its port)")
        method = str(spec.params.get("method", "*")).upper()
        if not (method == "*" or method.isalpha()):
            out.append(f"params.method: must be an HTTP method or *, got {spec.params.get('method')!r}")
        path = str(spec.params.get("path", "*"))
        if not (path == "*" or path.startswith(("/", "*"))):
            out.append(f"params.path: must start with / or *, got {path!r}")
        return out

    def http_body(self, spec: FaultSpec, opts: RenderOptions) -> dict[str, Any]:
        dst = _ends(spec)[1]
        p = spec.params
        body: dict[str, Any] = {**mode_fields(spec), "selector": selector(dst, opts), "port": http_port(dst)}
        if p.get("path", "*") != "*":
            body["path"] = p["path"]
        if p.get("method", "*") != "*":
            body["method"] = p["method"].upper()
        return body


@register
class HttpAbort(_HttpKind):
    id = "http.abort"
    summary = "matching requests get `code` (or a dropped connection)"
    Params = HttpAbortParams
    toxic = "http_abort"

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        body = self.http_body(spec, opts)
        if spec.params["drop"]:
            body.update(target="Request", abort=True)
        else:  # a status without reaching the app: replace the answer's code
            body.update(target="Response", replace={"code": spec.params["code"]})
        return [chaos_object("HTTPChaos", spec, opts, body)]


@register
class HttpDelay(_HttpKind):
    id = "http.delay"
    summary = "matching requests (upstream) or their answers (downstream) are delayed"
    Params = HttpDelayParams
    toxic = "http_delay"

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        body = self.http_body(spec, opts)
        downstream = (spec.params.get("direction") or "upstream") == "downstream"
        body.update(target="Response" if downstream else "Request", delay=_ms(spec.params["delay_ms"]))
        return [chaos_object("HTTPChaos", spec, opts, body)]
