"""Configuration faults: a service knob set to a bad value (timeouts, pool sizes, retries...), with the
exact pre-fault value restored on revert; and clock skew, which only renders (see ``TimeSkew``)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from pydantic import ConfigDict, Field, field_validator, model_validator

from sockdrill.chaos.kinds import Ctx, FaultKind, Params, deployment, register
from sockdrill.chaos.render import KUBECTL_IMAGE, RenderOptions, chaos_object, job, mode_fields, quote, selector
from sockdrill.chaos.spec import FaultSpec
from sockdrill.errors import ClusterError, FaultError, did_you_mean


class KnobParams(Params):
    """Knob name → value, e.g. ``{payment_timeout_s: 0.05}``; checked against the service's knobs."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _some(self) -> KnobParams:
        extra = self.model_extra or {}
        if not extra:
            raise ValueError("give at least one knob as name=value")
        for name, value in extra.items():
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"knob {name!r} must be a number, string or boolean, got {value!r}")
        return self


async def _describe_knobs(rt: Any, name: str) -> dict[str, Any]:
    dep = deployment(rt, name, kinds=("service",))
    pod = next((p for p in dep.pods.values() if p.ready), None)
    if pod is None:
        raise FaultError(f"target: {name!r} has no ready pod to read its knobs from")
    async with rt.http.get(f"http://127.0.0.1:{pod.port}/admin/config",
                           timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return dict((await resp.json(content_type=None)).get("knobs", {}))


@register
class ConfigKnob(FaultKind):
    id = "config.knob"
    summary = "sets service knobs (timeouts, pool sizes, retries, TTLs...) live; the prior values come back"
    Params = KnobParams
    target_help = "a service deployment"

    def check(self, rt: Any, spec: FaultSpec) -> None:
        deployment(rt, spec.target, kinds=("service",))

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        rt = ctx.runtime
        knobs = dict(spec.params)
        described = await _describe_knobs(rt, spec.target)
        for name in knobs:
            if name not in described:
                raise FaultError(f"params.{name}: {spec.target!r} has no knob {name!r}"
                                 f"{did_you_mean(name, described)}")
        dep = deployment(rt, spec.target)
        previous = {k: described[k].get("value") for k in knobs}
        in_spec = {k: k in dep.spec.knobs for k in knobs}
        try:
            # Recorded like any config push, so `rollback_config` (kubectl rollout undo) can undo it; the
            # revert below still restores the exact pre-fault values.
            await rt.set_knobs(spec.target, knobs, record=True)
        except ClusterError as exc:
            raise FaultError(f"params: {exc}") from None
        return {"previous": previous, "in_spec": in_spec, "set": knobs}

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        if ctx.leftover:
            return  # a new supervisor starts its pods from the configured knobs
        rt = ctx.runtime
        dep = rt.deployments.get(spec.target)
        if dep is None:
            return
        previous = state["previous"]
        try:
            await rt.set_knobs(spec.target, previous, record=False)
        except ClusterError:
            dep.spec.knobs.update(previous)  # no ready pod now: new pods start with the old values
        for name, was_set in state.get("in_spec", {}).items():
            if not was_set:
                dep.spec.knobs.pop(name, None)  # back to "default", as before

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        from sockdrill.chaos.render import service_name

        name = service_name(spec.target, opts)
        ns = opts.namespace
        save = (f"OLD=$(kubectl -n {ns} get deployment {name} -o jsonpath="
                "'{.spec.template.spec.containers[0].env[?(@.name==\"SOCKDRILL_KNOBS\")].value}')")
        apply = f"kubectl -n {ns} set env deployment/{name} SOCKDRILL_KNOBS={quote(json.dumps(spec.params))}"
        restore = (f'if [ -n "$OLD" ]; then kubectl -n {ns} set env deployment/{name} SOCKDRILL_KNOBS="$OLD"; '
                   f"else kubectl -n {ns} set env deployment/{name} SOCKDRILL_KNOBS-; fi")
        return job(spec, opts, KUBECTL_IMAGE, apply, restore, save=save,
                   note="service knobs through SOCKDRILL_KNOBS (a rollout), restored after the duration")


class RouteParams(Params):
    weights: dict[str, int] = Field(description="subset → weight (0-100), e.g. {primary: 50, v1: 50}")

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, int]) -> dict[str, int]:
        if not v or any(isinstance(w, bool) or not 0 <= w <= 100 for w in v.values()) or not any(v.values()):
            raise ValueError("weights map subsets to integers from 0 to 100, at least one above 0")
        return v


@register
class MeshRoute(FaultKind):
    """A route pushed to the mesh (a rollback's weights re-applied, a canary left at half): recorded like any route
    change, so ``rollback_route`` undoes it; revert restores the weights from before, exactly."""

    id = "mesh.route"
    summary = "re-weights a routed service's subsets in the mesh (reads split to another release); weights restored"
    Params = RouteParams
    target_help = "a routed service (one with subsets, e.g. catalogue)"
    chaos_mesh = ""  # Chaos Mesh has no routing chaos: a Job patches the VirtualService

    def check(self, rt: Any, spec: FaultSpec) -> None:
        dep = deployment(rt, spec.target, kinds=("service",))
        if not dep.spec.subsets:
            raise FaultError(f"target: {spec.target!r} has no subsets to route between")
        unknown = sorted(set(spec.params["weights"]) - set(dep.spec.subsets))
        if unknown:
            raise FaultError(f"params.weights: {spec.target!r} has no subset {unknown[0]!r}"
                             f"{did_you_mean(unknown[0], dep.spec.subsets)}")

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        self.check(ctx.runtime, spec)
        try:
            out = ctx.runtime.set_route(spec.target, dict(spec.params["weights"]), record=True)
        except ClusterError as exc:
            raise FaultError(f"params.weights: {exc}") from None
        return {"previous": out["previous"], "set": out["weights"]}

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        if ctx.leftover:
            return  # a new supervisor starts from the manifest's route
        dep = ctx.runtime.deployments.get(spec.target)
        if dep is None or not dep.spec.subsets:
            return
        ctx.runtime.set_route(spec.target, state["previous"], record=False)

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        from sockdrill.chaos.render import service_name

        name, ns = service_name(spec.target, opts), opts.namespace
        route = [{"destination": {"host": name, "subset": subset}, "weight": w}
                 for subset, w in spec.params["weights"].items()]
        patch = json.dumps([{"op": "replace", "path": "/spec/http/0/route", "value": route}])
        save = f"kubectl -n {ns} get virtualservice {name} -o json > /tmp/vs.json"
        apply = f"kubectl -n {ns} patch virtualservice {name} --type=json -p {quote(patch)}"
        restore = "kubectl replace -f /tmp/vs.json"
        return job(spec, opts, KUBECTL_IMAGE, apply, restore, save=save,
                   note="Istio VirtualService route weights patched, the saved object restored after the duration")


class ThirdPartyErrorParams(Params):
    error_rate: float = Field(description="share of requests the third party answers 503 (0..1)", ge=0, le=1)


class ThirdPartyLatencyParams(Params):
    latency_ms: float = Field(description="processing time of one request (milliseconds)", ge=0, le=600_000)
    jitter_ms: float = Field(0.0, description="uniform jitter added to it (+/- milliseconds)", ge=0, le=600_000)


class _ThirdParty(ConfigKnob):
    """A simulated third party (the payment gateway) misbehaves. Its behaviour is the world's, not the shop's
    configuration: nothing an agent can see in a config view or roll back."""

    target_help = "a third-party deployment (payment-gateway)"

    def knobs(self, params: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, rt: Any, spec: FaultSpec) -> None:
        dep = deployment(rt, spec.target, kinds=("service",))
        if "third-party" not in dep.spec.role:
            raise FaultError(f"target: {spec.target!r} is not a third-party service")

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        rt = ctx.runtime
        self.check(rt, spec)
        described = await _describe_knobs(rt, spec.target)
        knobs = self.knobs(spec.params)
        if any(k not in described for k in knobs):
            raise FaultError(f"target: {spec.target!r} cannot simulate this ({', '.join(sorted(knobs))})")
        dep = deployment(rt, spec.target)
        previous = {k: described[k].get("value") for k in knobs}
        try:
            await rt.set_knobs(spec.target, knobs, record=False)  # not a config push: no history, no rollback
        except ClusterError as exc:
            raise FaultError(f"params: {exc}") from None
        return {"previous": previous, "in_spec": {k: k in dep.spec.knobs for k in knobs}, "set": knobs}

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        return super().render(spec.model_copy(update={"params": self.knobs(spec.params)}), opts)


@register
class ThirdPartyErrors(_ThirdParty):
    id = "thirdparty.errors"
    summary = "a third-party service (the payment gateway) answers a share of requests with 503"
    Params = ThirdPartyErrorParams  # type: ignore[assignment]

    def knobs(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"transient_error_rate": float(params["error_rate"])}


@register
class ThirdPartyLatency(_ThirdParty):
    id = "thirdparty.latency"
    summary = "a third-party service (the payment gateway) takes longer to answer each request"
    Params = ThirdPartyLatencyParams  # type: ignore[assignment]

    def knobs(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"latency_ms": float(params["latency_ms"]), "latency_jitter_ms": float(params["jitter_ms"])}


class TariffParams(Params):
    revision: int = Field(2, description="the tariff revision the carrier publishes (each one puts prices up)",
                          ge=1, le=99)


@register
class ThirdPartyTariff(_ThirdParty):
    """The carrier publishes a new tariff: the world changed, not the shop. Whatever the shop still prices with the
    old one (a cache) is now wrong."""

    id = "thirdparty.tariff"
    summary = "a third-party carrier (carrier-api) publishes a new tariff: its prices change"
    Params = TariffParams  # type: ignore[assignment]
    target_help = "a third-party carrier deployment (carrier-api)"

    def knobs(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"tariff_revision": int(params["revision"])}


class SkewParams(Params):
    offset: str = Field("-10m", description="signed Go duration, e.g. -10m or 1h")

    @field_validator("offset")
    @classmethod
    def _offset(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"-?(\d+(\.\d+)?(ns|us|ms|s|m|h))+", v):
            raise ValueError(f"must be a signed Go duration like -10m or 1h30m, got {v!r}")
        return v


@register
class TimeSkew(FaultKind):
    id = "time.skew"
    summary = "shifts the pod's clock (Chaos Mesh TimeChaos); render-only: no honest local mechanism"
    Params = SkewParams
    chaos_mesh = "TimeChaos"
    local = False

    def check(self, rt: Any, spec: FaultSpec) -> None:
        raise FaultError("kind: time.skew cannot be injected by the local runtime (a process clock cannot be "
                         "shifted without faking it); render it for Chaos Mesh with `sockdrill chaos render`")

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        body = {**mode_fields(spec), "selector": selector(spec.target, opts), "timeOffset": spec.params["offset"]}
        return [chaos_object("TimeChaos", spec, opts, body)]
