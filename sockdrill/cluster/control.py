"""The supervisor's control API: a small HTTP/JSON API on 127.0.0.1 guarded by a per-run token.

Every operator action of the CLI (and later of the agent tools and the chaos layer) goes through here.
Errors come back as ``{"error": "..."}`` with a 4xx status, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sockdrill.cluster.runtime import Runtime
from sockdrill.cluster.spec import parse_quantity_cpu, parse_quantity_memory
from sockdrill.errors import SockdrillError, UnsupportedError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, default=str))


class ControlAPI:
    def __init__(self, runtime: Runtime, token: str | None = None) -> None:
        self.runtime = runtime
        self.token = token or secrets.token_hex(16)
        self.shutdown = asyncio.Event()
        # Filled by the supervisor: (module name, attach function) of each plugin, and hooks a plugin
        # registers to run once the runtime has started (they may add fields to runtime.json's record).
        self.plugins: list[tuple[str, Any]] = []
        self.started_hooks: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        self.app = web.Application(middlewares=[self._auth, self._errors], client_max_size=1 << 20)
        r = self.app.router
        r.add_get("/v1/status", self.status)
        r.add_get("/v1/ready", self.ready)
        r.add_get("/v1/topology", self.topology)
        r.add_get("/v1/describe/{name}", self.describe)
        r.add_post("/v1/scale", self.scale)
        r.add_post("/v1/balancing", self.balancing)
        r.add_post("/v1/restart", self.restart)
        r.add_post("/v1/kill", self.kill)
        r.add_post("/v1/limits", self.limits)
        r.add_post("/v1/cache", self.cache)
        r.add_post("/v1/config", self.config)
        r.add_post("/v1/config/rollback", self.config_rollback)
        r.add_get("/v1/config/{name}", self.config_view)
        r.add_post("/v1/config/reset", self.config_reset)
        r.add_post("/v1/purge", self.purge)
        r.add_post("/v1/reindex", self.reindex)
        r.add_post("/v1/job", self.job)
        r.add_post("/v1/route", self.route)
        r.add_post("/v1/route/rollback", self.route_rollback)
        r.add_post("/v1/route/reset", self.route_reset)
        r.add_post("/v1/env", self.env)
        r.add_post("/v1/env/rollback", self.env_rollback)
        r.add_get("/v1/edges", self.edges)
        r.add_post("/v1/toxics", self.add_toxic)
        r.add_post("/v1/toxics/remove", self.remove_toxic)
        r.add_post("/v1/toxics/reset", self.reset_toxics)
        r.add_get("/v1/events", self.events)
        r.add_post("/v1/shutdown", self.stop)

    # ---- middlewares ------------------------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not secrets.compare_digest(request.headers.get("X-Sockdrill-Token", "").encode(), self.token.encode()):
            return _json({"error": "missing or wrong X-Sockdrill-Token"}, 401)
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _json({"error": exc.reason}, exc.status)
            raise
        except UnsupportedError as exc:
            return _json({"error": str(exc), "unsupported": True}, 501)
        except SockdrillError as exc:
            return _json({"error": str(exc)}, 400)
        except (ValueError, TypeError, KeyError) as exc:
            return _json({"error": f"bad request: {exc}"}, 400)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise ValueError("body must be JSON") from None
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    @staticmethod
    def _str(data: dict[str, Any], key: str, required: bool = True) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise ValueError(f"'{key}' must be a non-empty string")
        return value

    # ---- handlers ----------------------------------------------------------------------------
    async def status(self, _r: web.Request) -> web.Response:
        return _json(self.runtime.status())

    async def ready(self, _r: web.Request) -> web.Response:
        return _json({"ready": self.runtime.is_ready()})

    async def topology(self, _r: web.Request) -> web.Response:
        return _json(self.runtime.topology())

    async def describe(self, request: web.Request) -> web.Response:
        return _json(self.runtime.describe(request.match_info["name"]))

    async def scale(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        replicas = data.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise ValueError("'replicas' must be an integer")
        return _json(await self.runtime.scale(self._str(data, "deployment") or "", replicas))

    async def balancing(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        return _json(self.runtime.set_balancing(self._str(data, "deployment") or "", self._str(data, "policy") or ""))

    async def restart(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        return _json(await self.runtime.restart(self._str(data, "deployment") or "",
                                                self._str(data, "pod", required=False)))

    async def kill(self, request: web.Request) -> web.Response:
        """SIGKILL a pod's processes (a crash, not a restart): the restart policy brings it back."""
        data = await self._body(request)
        pod = self.runtime.pod(self._str(data, "deployment") or "", self._str(data, "pod") or "")
        pod.kill()
        self.runtime.event("kill", pod=pod.name)
        return _json({"killed": pod.name})

    async def limits(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        cpu = data.get("cpu")
        mem = data.get("memory")
        cpu_m = parse_quantity_cpu(str(cpu)) if cpu not in (None, "") else None
        mem_b = parse_quantity_memory(str(mem)) if mem not in (None, "") else None
        clear = bool(data.get("clear", False))
        if cpu_m is None and mem_b is None and not clear:
            raise ValueError("give 'cpu' and/or 'memory', or 'clear'")
        return _json(self.runtime.set_limits(self._str(data, "deployment") or "", cpu_m, mem_b, clear))

    async def cache(self, request: web.Request) -> web.Response:
        """A Redis store's deployed memory limit / eviction policy (``reset``: the manifest's)."""
        data = await self._body(request)
        return _json(await self.runtime.set_cache(self._str(data, "deployment") or "",
                                                  self._str(data, "maxmemory", required=False),
                                                  self._str(data, "policy", required=False),
                                                  reset=data.get("reset") is True))

    async def config(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        knobs = data.get("knobs")
        if not isinstance(knobs, dict):
            raise ValueError("'knobs' must be an object of name → value")
        record = data.get("record", True) is not False  # false: a momentary change, kept out of the history
        return _json(await self.runtime.set_knobs(self._str(data, "deployment") or "", knobs, record=record))

    async def config_view(self, request: web.Request) -> web.Response:
        return _json(await self.runtime.effective_config(request.match_info["name"]))

    async def config_rollback(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        return _json(await self.runtime.rollback_knobs(self._str(data, "deployment") or ""))

    async def config_reset(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        return _json(await self.runtime.reset_knobs(self._str(data, "deployment") or ""))

    async def route(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        weights = data.get("weights")
        if not isinstance(weights, dict):
            return _json({"error": "'weights' must be an object of subset → weight"}, 400)
        return _json(self.runtime.set_route(self._str(data, "deployment") or "", weights,
                                            record=bool(data.get("record", True))))

    async def route_rollback(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        return _json(self.runtime.rollback_route(self._str(data, "deployment") or ""))

    async def route_reset(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        return _json(self.runtime.reset_route(self._str(data, "deployment") or ""))

    async def purge(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        keys, prefix = data.get("keys"), data.get("prefix")
        if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) and k for k in keys)):
            return _json({"error": "'keys' must be a list of non-empty strings"}, 400)
        if prefix is not None and not (isinstance(prefix, str) and prefix.startswith("/")):
            return _json({"error": "'prefix' must be a path starting with '/'"}, 400)
        return _json(await self.runtime.purge(self._str(data, "deployment") or "", keys, prefix))

    async def reindex(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        if_stale = data.get("if_stale", False)
        if not isinstance(if_stale, bool):
            return _json({"error": "'if_stale' must be true or false"}, 400)
        return _json(await self.runtime.reindex(self._str(data, "deployment") or "", if_stale=if_stale))

    async def job(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        job = data.get("job")
        if job is not None and (not isinstance(job, str) or not job or len(job) > 64):
            return _json({"error": "'job' must be a job name (1 to 64 characters), or absent to list them"}, 400)
        return _json(await self.runtime.job(self._str(data, "deployment") or "", job))

    async def env(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        env = data.get("env")
        if not isinstance(env, dict) or not env:
            raise ValueError("'env' must be a non-empty object of NAME → value")
        return _json(await self.runtime.set_env(self._str(data, "deployment") or "", env))

    async def env_rollback(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        return _json(await self.runtime.rollback_env(self._str(data, "deployment") or ""))

    async def edges(self, _r: web.Request) -> web.Response:
        # Faults are visible by their effects only: the toxics on an edge are the chaos layer's business.
        hidden = ("toxics", "injected")
        return _json({f"{s}->{d}": {k: v for k, v in e.stats().items() if k not in hidden}
                      for (s, d), e in self.runtime.edges.items()})

    async def add_toxic(self, request: web.Request) -> web.Response:
        """Low-level hook: put a toxic on one edge (the chaos layer builds faults from these)."""
        data = await self._body(request)
        edge = self.runtime.mesh.edge(self._str(data, "source") or "", self._str(data, "destination") or "")
        kind = self._str(data, "kind") or ""
        fields = {k: v for k, v in data.items() if k not in ("source", "destination", "kind")}
        ident = edge.add_toxic(kind, **fields)
        self.runtime.event("toxic_added", edge=edge.name, id=ident)
        return _json({"edge": edge.name, "id": ident})

    async def remove_toxic(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        edge = self.runtime.mesh.edge(self._str(data, "source") or "", self._str(data, "destination") or "")
        edge.remove_toxic(self._str(data, "id") or "")
        self.runtime.event("toxic_removed", edge=edge.name, id=data["id"])
        return _json({"edge": edge.name, "removed": data["id"]})

    async def reset_toxics(self, _r: web.Request) -> web.Response:
        self.runtime.mesh.reset()
        self.runtime.event("toxics_reset")
        return _json({"reset": True})

    async def events(self, request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        return _json([e for e in self.runtime.events if e["time"] >= since])

    async def stop(self, _r: web.Request) -> web.Response:
        self.shutdown.set()
        return _json({"stopping": True})
