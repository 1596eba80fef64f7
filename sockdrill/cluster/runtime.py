"""The runtime: deployments of pods, the mesh between them, operator actions, and on-disk records.

It lives inside the supervisor process (``sockdrill.cluster.supervisor``) and is driven through its
control API; nothing here knows about the shop beyond the specs it is given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import time
import urllib.parse
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from sockdrill.cluster import podrun, stores
from sockdrill.cluster.admin import (
    ADMIN_HEADER,
    ADMIN_TOKEN_ENV,
    SHOP_TOKEN_ENV,
    STAFF_PASSWORD_ENV,
    TELEMETRY_TOKEN_ENV,
)
from sockdrill.cluster.cgroups import CgroupManager
from sockdrill.cluster.mesh import Backend, Edge, Mesh, Protocol
from sockdrill.cluster.pods import Pod, ProbeSettings, RestartPolicy
from sockdrill.cluster.ports import free_port
from sockdrill.cluster.spec import DeploymentSpec
from sockdrill.cluster.state import private_dir, state_dir, without_password, write_json
from sockdrill.errors import ClusterError, UnsupportedError, did_you_mean

MAX_REPLICAS = 16
HOST = "host"  # the source name of edges that carry traffic from outside (clients, tests, Locust)

# What ``/v1/env`` may set on a service: settings the shop reads, and nothing that changes what code
# runs (PYTHON*, LD_*, PATH, ...), where a pod keeps its files or finds its stores, or what the runtime
# itself sets (PORT, SOCKDRILL_URL_*, SOCKDRILL_KNOBS: knobs go through /v1/config).
ENV_ALLOWED = frozenset({
    "SOCKDRILL_TRACING", "SOCKDRILL_TRACE_SAMPLE", "SOCKDRILL_OTLP_ENDPOINT", "SOCKDRILL_QUEUE_NAME",
    "SOCKDRILL_DATA_USERS", "SOCKDRILL_DATA_PRODUCTS", "SOCKDRILL_LINK_HOST", "SOCKDRILL_SESSION_SECRET",
    "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG", "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
})
_UNSET = object()  # a knob not set at all (None is a value a knob may have)
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")


def check_env(env: dict[str, Any]) -> None:
    """Refuse, before anything changes, any variable that is not on the allow-list (a ClusterError: 400)."""
    refused = sorted(str(k) for k in env if not (_ENV_NAME.match(str(k)) and str(k) in ENV_ALLOWED))
    if refused:
        raise ClusterError(
            f"cannot set {', '.join(repr(k) for k in refused)} through /v1/env: only the shop's own settings "
            "may change there (variables that change what code a pod runs, where it keeps files or finds its "
            "stores, or that the runtime sets itself are refused); allowed: " + ", ".join(sorted(ENV_ALLOWED)))


class Deployment:
    def __init__(self, runtime: Runtime, spec: DeploymentSpec) -> None:
        self.runtime = runtime
        self.spec = spec
        self.pods: dict[str, Pod] = {}
        self.next_index = 0
        self.ingress: Edge | None = None
        self.knob_history: list[dict[str, Any]] = []
        self.env_history: list[dict[str, str]] = []
        self._slot_ports: dict[str, int] = {}
        # The manifest's limits: what "clear" goes back to (every pod has limits, as in a real cluster).
        self.default_limits = {"cpu_millicores": spec.cpu_millicores, "memory_bytes": spec.memory_bytes}
        # The manifest's size and config: what a reset between runs goes back to (a shop started with
        # ``--replicas carts=2``, or a deployment shipped with a setting, keeps it across runs).
        self.default_replicas = spec.replicas
        self.default_knobs: dict[str, Any] = dict(spec.knobs)
        self.default_cache = {"maxmemory": spec.maxmemory, "maxmemory-policy": spec.maxmemory_policy}
        # Route weights by subset (services with subsets only), their history and revision, like the config's.
        self.default_route = {n: int(spec.route.get(n, 100 if i == 0 else 0)) for i, n in enumerate(spec.subsets)}
        self.route = dict(self.default_route)
        self.route_history: list[dict[str, int]] = []
        self.route_revision = 0
        self.route_changed_at: float | None = None
        # Like a Deployment's rollout history: how many config changes, the last one when (no contents).
        self.config_revision = 0
        self.config_changed_at: float | None = None

    def config_changed(self) -> None:
        self.config_revision += 1
        self.config_changed_at = time.time()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def external(self) -> bool:
        return self.spec.external_url is not None

    def new_pod(self) -> Pod:
        name = f"{self.name}-{self.next_index}"
        self.next_index += 1
        if name not in self._slot_ports:  # a pod slot keeps its port (setdefault would draw and lease one each time)
            self._slot_ports[name] = free_port()
        port = self._slot_ports[name]
        pod = Pod(self.runtime, self, name, port)
        self.pods[name] = pod
        return pod

    def apply_limits_to(self, pod: Pod) -> None:
        if pod.cgroup is None:
            return
        if self.spec.cpu_millicores is not None:
            pod.cgroup.set_cpu(self.spec.cpu_millicores)
        if self.spec.memory_bytes is not None:
            pod.cgroup.set_memory(self.spec.memory_bytes)

    def ready_pods(self) -> list[Pod]:
        return [p for p in self.pods.values() if p.ready and not p.stopping]

    def backends(self) -> list[Backend]:
        if self.spec.external_url:
            parts = urlsplit(self.spec.external_url)
            return [Backend("external", parts.hostname or "127.0.0.1", parts.port or _default_port(parts.scheme))]
        return [Backend(p.name, "127.0.0.1", p.port) for p in self.ready_pods()]

    def is_ready(self) -> bool:
        if self.external:
            return True
        live = [p for p in self.pods.values() if not p.stopping]
        return len(live) == self.spec.replicas and all(p.ready for p in live)


def _default_port(scheme: str) -> int:
    return {"postgresql": 5432, "postgres": 5432, "redis": 6379, "amqp": 5672, "http": 80}.get(scheme, 80)


class Runtime:
    def __init__(
        self,
        specs: list[DeploymentSpec],
        data_dir: Path,
        cache_dir: Path,
        *,
        seed: int = 1,
        restart_policy: RestartPolicy | None = None,
        probe: ProbeSettings | None = None,
        pod_env: dict[str, str] | None = None,
        run_id: str = "default",
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ClusterError("deployment names must be unique")
        self.data_dir = data_dir
        self.cache_dir = cache_dir
        self.seed = seed
        self.restart_policy = restart_policy or RestartPolicy()
        self.probe = probe or ProbeSettings()
        self.extra_env = dict(pod_env or {})
        self.admin_token = secrets.token_hex(16)
        self.telemetry_token = secrets.token_hex(16)  # pods' and the runtime's /metrics, the recorder's API
        self.shop_token = secrets.token_hex(16)  # services' business admin APIs (catalogue's /admin/products)
        self.staff_password = secrets.token_hex(12)  # the admin panel's "admin" staff account
        self.pod_user: str | None = None  # who service pods run as (podrun.py); set at start
        self.service_dirs: dict[str, Path] = {}  # deployment → the real path of its durable folder
        self.deployments = {s.name: Deployment(self, s) for s in specs}
        for spec in specs:
            for dest in spec.calls:
                if dest not in self.deployments:
                    raise ClusterError(f"deployment '{spec.name}' calls unknown '{dest}'")
            if spec.replica_of is not None:
                primary = self.deployments.get(spec.replica_of)
                if spec.kind != "postgres" or primary is None or primary.spec.kind != "postgres" \
                        or primary.spec.replica_of or spec.replica_of not in spec.calls or spec.external_url:
                    raise ClusterError(f"'{spec.name}' can be a replica only as an embedded postgres store of an "
                                       f"embedded postgres primary it calls (replica_of: {spec.replica_of!r})")
        self.mesh = Mesh(seed=seed)
        self.edges: dict[tuple[str, str], Edge] = {}
        self.cgroups = CgroupManager(run_id)
        self.log = logging.getLogger("sockdrill.runtime")
        self.http: aiohttp.ClientSession = None  # type: ignore[assignment]  # made in start()
        self.started_at = time.time()
        self._record_pending = False
        self.events: list[dict[str, Any]] = []
        self.credentials: dict[str, dict[str, str]] = {}  # embedded store → {"admin", "app"} passwords

    # ---- lookup -------------------------------------------------------------------------
    def deployment(self, name: str) -> Deployment:
        dep = self.deployments.get(name)
        if dep is None:
            raise ClusterError(f"unknown service '{name}'" + did_you_mean(name, self.deployments))
        return dep

    def pod(self, deployment: str, pod: str) -> Pod:
        dep = self.deployment(deployment)
        if pod not in dep.pods:
            raise ClusterError(f"'{deployment}' has no pod '{pod}'" + did_you_mean(pod, dep.pods))
        return dep.pods[pod]

    def event(self, kind: str, **fields: Any) -> None:
        rec = {"time": time.time(), "kind": kind, **fields}
        self.events.append(rec)
        self.log.info("%s %s", kind, json.dumps(fields, default=str))
        del self.events[:-1000]

    # ---- start / stop -------------------------------------------------------------------
    async def start(self, host_ports: dict[str, int] | None = None) -> None:
        host_ports = host_ports or {}
        # Pods' /admin endpoints answer only this token (in their environment, which only root reads).
        self.http = aiohttp.ClientSession(headers={ADMIN_HEADER: self.admin_token})
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # What another local user must not read: the state (token, passwords), run journals (the ground
        # truth of faults), pod logs, the services' durable files; the stores' folders only traversable.
        for sub in ("state", "runs", "logs"):
            private_dir(self.data_dir / sub)
        (self.data_dir / "stores").mkdir(exist_ok=True)
        os.chmod(self.data_dir / "stores", 0o711)
        # Service pods run as their own user when we are root (podrun.py), each deployment's durable folder
        # theirs; the interpreter and code they need are found or copied before any pod starts.
        self.pod_user = await asyncio.get_running_loop().run_in_executor(None, podrun.pod_user)
        for dep in self.deployments.values():
            if dep.spec.kind == "service" and not dep.external:
                self.service_dirs[dep.name] = podrun.state_dir(self.data_dir / "stores" / dep.name, self.pod_user)
        if self.pod_user and any(d.spec.kind == "service" for d in self.deployments.values()):
            await asyncio.get_running_loop().run_in_executor(None, podrun.command, "front-end", self.pod_user,
                                                             self.cache_dir)
        embedded = [d.name for d in self.deployments.values() if d.spec.is_store and not d.external]
        self.credentials = await asyncio.get_running_loop().run_in_executor(
            None, stores.store_credentials, self.data_dir, [n for n in embedded if not self.replica_of(n)])
        for name in embedded:  # a replica is a physical copy: its roles and passwords are its primary's
            if primary := self.replica_of(name):
                self.credentials[name] = self.credentials[primary]
        # Edges first: pods get their addresses in their environment.
        for dep in self.deployments.values():
            for dest in dep.spec.calls:
                target = self.deployments[dest]
                protocol: Protocol = "http" if target.spec.kind == "service" and not target.external else "tcp"
                self.edges[(dep.name, dest)] = await self.mesh.add_edge(dep.name, dest, protocol=protocol)
        for dep in self.deployments.values():
            port = host_ports.get(dep.name, dep.spec.host_port or 0)
            protocol = "http" if dep.spec.kind == "service" else "tcp"
            try:
                dep.ingress = await self.mesh.add_edge(HOST, dep.name, port=port, protocol=protocol)
            except OSError as exc:
                raise ClusterError(f"cannot listen on 127.0.0.1:{port} for {dep.name}: {exc.strerror}") from exc
            self.edges[(HOST, dep.name)] = dep.ingress
            self.mesh.set_backends(dep.name, dep.backends())
            self.mesh.set_balancing(dep.name, dep.spec.balancing)
        for dep in self.deployments.values():
            if dep.spec.subsets:
                self._apply_route(dep)
        pods = [dep.new_pod() for dep in self.deployments.values() if not dep.external
                for _ in range(dep.spec.replicas)]
        self._write_pgpass()  # before any probe: the probes log in with it
        for pod in pods:
            pod.launch()
        self.pods_changed()

    def _write_pgpass(self) -> None:
        """The superuser passwords, by port, for every asyncpg client of this process and its children
        (the pods' readiness probe, the exporters, chaos workers): ``PGPASSFILE``, never a command line."""
        entries = []
        for dep in self.deployments.values():
            if dep.spec.kind == "postgres" and not dep.external:
                password = self.credentials[dep.name]["admin"]
                entries += [(p.port, password) for p in dep.pods.values()]
                if dep.ingress is not None:
                    entries.append((dep.ingress.port, password))
        os.environ["PGPASSFILE"] = str(stores.write_pgpass(self.data_dir, entries))

    async def stop(self) -> None:
        pods = [p for d in self.deployments.values() for p in d.pods.values()]
        # Services first so they do not log a storm of database errors, then the stores.
        services = [p for p in pods if p.kind == "service"]
        await asyncio.gather(*(p.stop() for p in services), return_exceptions=True)
        await asyncio.gather(*(p.stop() for p in pods if p.kind != "service"), return_exceptions=True)
        await self.mesh.close()
        self.cgroups.remove_all()
        if self.http is not None:
            await self.http.close()
        self._write_records()

    def is_ready(self) -> bool:
        return all(d.is_ready() for d in self.deployments.values())

    async def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_ready():
                return True
            await asyncio.sleep(0.1)
        return self.is_ready()

    # ---- callbacks from pods ----------------------------------------------------------------
    def readiness_changed(self, dep: Deployment) -> None:
        self.mesh.set_backends(dep.name, dep.backends())

    def pods_changed(self) -> None:
        if not self._record_pending:
            self._record_pending = True
            asyncio.get_running_loop().call_soon(self._write_records)

    def _write_records(self) -> None:
        self._record_pending = False
        pods = {p.name: p.record() for d in self.deployments.values() for p in d.pods.values() if p.pid}
        write_json(state_dir(self.data_dir) / "pods.json", pods)

    # ---- the environment a pod gets --------------------------------------------------------
    def pod_env(self, dep: Deployment, pod: Pod) -> dict[str, str]:
        from sockdrill.cluster.envnames import url_env_name

        env = dict(self.extra_env)
        env.update(dep.spec.env)
        env.update({
            # The runtime's password file is not the services': they log in with the URLs below.
            "PGPASSFILE": os.devnull,
            "PORT": str(pod.port), "SOCKDRILL_SERVICE": dep.name, "SOCKDRILL_POD": pod.name,
            "SOCKDRILL_SEED": str(self.seed), "PYTHONUNBUFFERED": "1", ADMIN_TOKEN_ENV: self.admin_token,
            TELEMETRY_TOKEN_ENV: self.telemetry_token, SHOP_TOKEN_ENV: self.shop_token,
            STAFF_PASSWORD_ENV: self.staff_password,
            "SOCKDRILL_KNOBS": json.dumps(dep.spec.knobs),
            # Durable state of a service (e.g. the payment gateway's ledger) is per deployment, so it
            # outlives any one pod (replaced pods get new names) and replicas share it.
            "SOCKDRILL_POD_DIR": str(self.service_dirs.get(dep.name, self.data_dir / "stores" / dep.name)),
        })
        for dest in dep.spec.calls:
            env[url_env_name(dest)] = self.edge_url(dep.name, dest)
        return env

    def replica_of(self, name: str) -> str | None:
        return self.deployments[name].spec.replica_of

    def replica_settings(self, dep: Deployment, pod: Pod) -> dict[str, str]:
        """Prepare a read replica's cluster (blocking: a pod's start thread) and return its server settings."""
        primary = self.deployments[dep.spec.replica_of or ""]
        assert primary.ingress is not None
        return stores.prepare_pg_replica(
            pod.store_dir / "pgdata", self.cache_dir, stream_port=self.edges[(dep.name, primary.name)].port,
            admin_port=primary.ingress.port, creds=self.credentials[primary.name], slot=stores.replica_slot(dep.name))

    def store_login(self, name: str, role: str = "admin") -> tuple[str, str]:
        """(user, password) of an embedded store: ``admin`` is the runtime's (superuser / Redis user with
        CONFIG), ``app`` the services' (their own database; Redis data commands only)."""
        dep = self.deployment(name)
        if not dep.spec.is_store or dep.external:
            raise ClusterError(f"'{name}' is not an embedded datastore")
        if role == "admin":
            user = stores.PG_USER if dep.spec.kind == "postgres" else stores.REDIS_ADMIN_USER
        else:
            user = stores.PG_APP_USER if dep.spec.kind == "postgres" else stores.REDIS_APP_USER
        return user, self.credentials[name][role]

    def _store_url(self, dep: Deployment, port: int, role: str) -> str:
        user, password = self.store_login(dep.name, role)
        if dep.spec.kind == "postgres":
            return f"postgresql://{user}:{password}@127.0.0.1:{port}/{stores.PG_DATABASE}"
        return f"redis://{user}:{password}@127.0.0.1:{port}/0"

    def edge_url(self, source: str, dest: str) -> str:
        """The URL ``source``'s pods use for ``dest``: an embedded store's with the services' login."""
        edge = self.edges[(source, dest)]
        target = self.deployments[dest]
        if target.spec.external_url:
            parts = urlsplit(target.spec.external_url)
            auth = ""
            if parts.username:
                auth = parts.username + (f":{parts.password}" if parts.password else "") + "@"
            return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{edge.port}", parts.path, parts.query, ""))
        if target.spec.is_store:
            return self._store_url(target, edge.port, "app" if source != HOST else "admin")
        return target.spec.url_for("127.0.0.1", edge.port)

    def host_url(self, name: str) -> str:
        """The operator's URL of a deployment (runtime.json's ``addresses``, the exporters): an embedded
        store's carries the runtime's login, so it is never shown (see ``shown_url``)."""
        dep = self.deployment(name)
        assert dep.ingress is not None
        if dep.spec.external_url:
            return self.edge_url(HOST, name)
        if dep.spec.is_store:
            return self._store_url(dep, dep.ingress.port, "admin")
        return dep.spec.url_for("127.0.0.1", dep.ingress.port)

    def shown_url(self, name: str) -> str:
        """``host_url`` without a password, for views (status, describe: the agents see those)."""
        return without_password(self.host_url(name))

    # ---- operator actions --------------------------------------------------------------------
    async def scale(self, name: str, replicas: int) -> dict[str, Any]:
        dep = self.deployment(name)
        if dep.external or (dep.spec.is_store and not dep.spec.optional):
            raise ClusterError(f"'{name}' is a datastore and runs exactly one pod; it cannot be scaled")
        if dep.spec.is_store and replicas not in (0, 1):
            raise ClusterError(f"'{name}' is an optional datastore: it runs 0 pods (asleep) or 1, got {replicas}")
        if not 0 <= replicas <= MAX_REPLICAS:
            raise ClusterError(f"replicas must be between 0 and {MAX_REPLICAS}, got {replicas}")
        before = dep.spec.replicas
        dep.spec.replicas = replicas
        live = [p for p in dep.pods.values() if not p.stopping]
        if replicas > len(live):
            for _ in range(replicas - len(live)):
                if dep.spec.is_store:
                    dep.next_index = 0  # a woken store is its one pod again: same name, folder and port
                pod = dep.new_pod()
                if dep.spec.kind == "postgres":
                    self._write_pgpass()  # its port, for the probes and exporters that log in to it
                pod.launch()
        elif replicas < len(live):
            # Remove the newest pods first, like a ReplicaSet scaling down.
            doomed = sorted(live, key=lambda p: int(p.name.rsplit("-", 1)[1]))[replicas:]
            await asyncio.gather(*(p.stop() for p in doomed))
            for p in doomed:
                dep.pods.pop(p.name, None)
        self.event("scale", deployment=name, before=before, after=replicas)
        return {"deployment": name, "replicas": replicas, "before": before}

    def set_balancing(self, name: str, policy: str) -> dict[str, Any]:
        """Per-connection or per-request balancing of a service's traffic (new connections follow it)."""
        dep = self.deployment(name)
        if dep.spec.kind != "service" or dep.external:
            raise ClusterError(f"'{name}' is not a service of the shop; only services' traffic is balanced")
        if policy not in ("connection", "request"):
            raise ClusterError(f"balancing must be 'connection' or 'request', got {policy!r}")
        before = dep.spec.balancing
        dep.spec.balancing = policy  # type: ignore[assignment]
        self.mesh.set_balancing(name, dep.spec.balancing)
        if before != policy:
            self.event("balancing", deployment=name, before=before, after=policy)
        return {"deployment": name, "balancing": policy, "before": before}

    async def restart(self, name: str, pod_name: str | None = None) -> dict[str, Any]:
        """Replace one pod (deleted, then its replacement started), or every pod of a deployment one at a time
        (a rollout: a service's new pod first, a datastore's old pod first, as a StatefulSet does)."""
        dep = self.deployment(name)
        if dep.external:
            raise ClusterError(f"'{name}' is external ({dep.spec.external_url}); it has no pods to restart")
        # A pod a failure took down (stopped, status Error) is restarted too, as a deleted pod comes back healthy
        # in Kubernetes; pods on their way out (a scale-down) are not.
        targets = [self.pod(name, pod_name)] if pod_name else [p for p in dep.pods.values()
                                                               if not p.stopping or p.status == "Error"]
        replaced = []
        for old in targets:
            if not dep.spec.is_store and not pod_name and old.status != "Error":
                # A Deployment's rollout (kubectl rollout restart) surges: with Kubernetes' defaults (maxSurge 25 %
                # rounded up, maxUnavailable 25 % rounded down) a deployment of up to 3 pods starts each new pod
                # and waits for it to be ready before the old one goes, so a restart costs no capacity.
                new = dep.new_pod()
                new.launch()
                await self._wait_pod_ready(new, 30)
                await old.stop()
                dep.pods.pop(old.name, None)
                replaced.append(old.name)
                continue
            await old.stop()
            dep.pods.pop(old.name, None)
            if dep.spec.is_store:
                # A datastore keeps its name, port and data (a StatefulSet); its container restarted.
                new = Pod(self, dep, old.name, old.port, restarts=old.restarts + 1)
                dep.pods[new.name] = new
            else:
                # A service pod is replaced by a new one (a Deployment): new name, new port, no history,
                # so anything aimed at the old pod (e.g. a fault on one pod) is gone with it.
                new = dep.new_pod()
            new.launch()
            replaced.append(old.name)
            if len(targets) > 1:
                await self._wait_pod_ready(new, 30)
        self.event("restart", deployment=name, pods=replaced)
        return {"deployment": name, "restarted": replaced}

    async def _wait_pod_ready(self, pod: Pod, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pod.ready:
                return True
            await asyncio.sleep(0.1)
        return False

    def set_limits(self, name: str, cpu_millicores: int | None, memory_bytes: int | None,
                   clear: bool = False) -> dict[str, Any]:
        dep = self.deployment(name)
        if dep.external:
            raise ClusterError(f"'{name}' is external; its resources are not ours to limit")
        if not self.cgroups.available:
            raise UnsupportedError(f"resource limits are unsupported on this host: {self.cgroups.reason}")
        before = {"cpu_millicores": dep.spec.cpu_millicores, "memory_bytes": dep.spec.memory_bytes}
        if clear:  # back to the manifest's limits
            dep.spec.cpu_millicores = dep.default_limits["cpu_millicores"]
            dep.spec.memory_bytes = dep.default_limits["memory_bytes"]
        if cpu_millicores is not None:
            dep.spec.cpu_millicores = cpu_millicores
        if memory_bytes is not None:
            dep.spec.memory_bytes = memory_bytes
        for pod in dep.pods.values():
            if pod.cgroup is not None:
                pod.cgroup.set_cpu(dep.spec.cpu_millicores)
                pod.cgroup.set_memory(dep.spec.memory_bytes)
        after = {"cpu_millicores": dep.spec.cpu_millicores, "memory_bytes": dep.spec.memory_bytes}
        self.event("limits", deployment=name, before=before, after=after)
        return {"deployment": name, "before": before, "limits": after}

    async def set_cache(self, name: str, maxmemory: str | None = None, policy: str | None = None,
                        reset: bool = False) -> dict[str, Any]:
        """A Redis store's memory limit and eviction policy as deployed (its chart's values): kept in its spec, so
        a restarted pod starts with them, and set live on every pod. ``reset`` goes back to the manifest's first.
        (An agent's resize_cache is live only: a restart goes back to these.)"""
        import redis.asyncio as aioredis

        dep = self.deployment(name)
        if dep.spec.kind != "redis" or dep.external:
            raise ClusterError(f"'{name}' is not an embedded Redis store")
        before = {"maxmemory": dep.spec.maxmemory, "maxmemory-policy": dep.spec.maxmemory_policy}
        want = dict(dep.default_cache) if reset else dict(before)
        if maxmemory is not None:
            want["maxmemory"] = maxmemory
        if policy is not None:
            want["maxmemory-policy"] = policy
        # Validated as a manifest's would be (a ValueError names the field), before anything changes.
        checked = DeploymentSpec(name=name, kind="redis", maxmemory=want["maxmemory"],
                                 maxmemory_policy=want["maxmemory-policy"])
        dep.spec.maxmemory, dep.spec.maxmemory_policy = checked.maxmemory, checked.maxmemory_policy
        after = {"maxmemory": dep.spec.maxmemory, "maxmemory-policy": dep.spec.maxmemory_policy}
        user, password = self.store_login(name, "admin")
        live, live_changed = 0, False
        for pod in dep.pods.values():
            if not pod.ready:
                continue  # it starts with the spec's values
            r = aioredis.Redis(host="127.0.0.1", port=pod.port, username=user, password=password, socket_timeout=5,
                               decode_responses=True)
            try:
                for key, value in after.items():
                    old = (await r.config_get(key)).get(key)
                    await r.config_set(key, value)
                    live_changed |= (await r.config_get(key)).get(key) != old  # as Redis normalises it
                live += 1
            finally:
                await r.aclose()
        self.event("cache", deployment=name, before=before, after=after)
        return {"deployment": name, "before": before, "settings": after, "pods": live,
                "changed": before != after or live_changed}

    async def set_knobs(self, name: str, knobs: dict[str, Any], record: bool = True) -> dict[str, Any]:
        """Live config change on every pod (validated by the pods), remembered for new pods."""
        dep = self.deployment(name)
        if dep.spec.kind != "service":
            raise ClusterError(f"'{name}' is a datastore; it has no service knobs")
        if not isinstance(knobs, dict) or not knobs:
            raise ClusterError("give at least one knob as name=value")
        pods = [p for p in dep.pods.values() if p.ready]
        if not pods:
            raise ClusterError(f"'{name}' has no ready pod to configure")
        # Validate on one pod first so a bad value changes nothing anywhere.
        results = []
        for pod in pods:
            async with self.http.put(f"http://127.0.0.1:{pod.port}/admin/config", json=knobs,
                                     timeout=aiohttp.ClientTimeout(total=5)) as resp:
                body = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise ClusterError(f"{pod.name} refused the config: {body.get('error', body)}")
                results.append(body)
        changed = any(r.get("changed") for r in results)
        if record and changed:  # applying the same values again is no new revision
            dep.knob_history.append(dict(dep.spec.knobs))
            dep.config_changed()
        previous = dict(dep.spec.knobs)
        dep.spec.knobs.update(knobs)
        if record:  # an unrecorded change is the simulated world's (a third party), not a config push
            self.event("set_config", deployment=name, knobs=knobs)
        return {"deployment": name, "previous": previous, "knobs": dict(dep.spec.knobs),
                "pods": [r.get("pod") for r in results], "changed": changed}

    async def rollback_knobs(self, name: str) -> dict[str, Any]:
        dep = self.deployment(name)
        if not dep.knob_history:
            raise ClusterError(f"'{name}' has no earlier config to roll back to")
        previous = dep.knob_history.pop()
        # Knobs set since then go back to their old values (or defaults, read from a pod).
        current = dict(dep.spec.knobs)
        pod = next((p for p in dep.pods.values() if p.ready), None)
        defaults: dict[str, Any] = {}
        if pod is not None:
            async with self.http.get(f"http://127.0.0.1:{pod.port}/admin/config") as resp:
                described = (await resp.json(content_type=None)).get("knobs", {})
                defaults = {k: v.get("default") for k, v in described.items()}
        target = {k: previous.get(k, defaults.get(k)) for k in current if current.get(k) != previous.get(k)}
        target = {k: v for k, v in target.items() if v is not None}
        if target:
            await self.set_knobs(name, target, record=False)
        dep.spec.knobs = dict(previous)
        dep.config_changed()
        self.event("rollback_config", deployment=name, restored=target)
        return {"deployment": name, "restored": target, "knobs": dict(dep.spec.knobs)}

    async def effective_config(self, name: str) -> dict[str, Any]:
        """Every knob of a service with the value its pods run with (defaults included, unmarked), and its
        config revision: what ``kubectl describe`` and ``rollout history`` would show."""
        dep = self.deployment(name)
        out: dict[str, Any] = {"deployment": name, "config": {}, "revision": dep.config_revision,
                               "changed_at": dep.config_changed_at}
        pod = next((p for p in dep.pods.values() if p.ready), None) if dep.spec.kind == "service" else None
        if pod is not None:
            async with self.http.get(f"http://127.0.0.1:{pod.port}/admin/config",
                                     timeout=aiohttp.ClientTimeout(total=5)) as resp:
                described = (await resp.json(content_type=None)).get("knobs", {})
            out["config"] = {k: v.get("value") for k, v in sorted(described.items())}
        return out

    async def reset_knobs(self, name: str) -> dict[str, Any]:
        """The deployment's config goes back to its manifest: knobs it was given since then return to the
        service's default, knobs the manifest sets return to the manifest's value; history is cleared."""
        dep = self.deployment(name)
        changed = {k for k in set(dep.spec.knobs) | set(dep.default_knobs)
                   if dep.spec.knobs.get(k, _UNSET) != dep.default_knobs.get(k, _UNSET)}
        if dep.spec.kind != "service" or not changed:
            dep.knob_history.clear()
            dep.config_revision, dep.config_changed_at = 0, None
            return {"deployment": name, "restored": {}}
        pod = next((p for p in dep.pods.values() if p.ready), None)
        target: dict[str, Any] = {k: dep.default_knobs[k] for k in changed if k in dep.default_knobs}
        if pod is None:
            if dep.spec.replicas:
                raise ClusterError(f"'{name}' has no ready pod to read its defaults from")
            # Scaled to 0: nothing runs the old values; pods started later read the manifest's.
            dep.spec.knobs = dict(dep.default_knobs)
        else:
            async with self.http.get(f"http://127.0.0.1:{pod.port}/admin/config") as resp:
                described = (await resp.json(content_type=None)).get("knobs", {})
            target |= {k: described[k]["default"] for k in changed - set(dep.default_knobs) if k in described}
            if target:
                await self.set_knobs(name, target, record=False)
            dep.spec.knobs = dict(dep.default_knobs)
        dep.knob_history.clear()
        dep.config_revision, dep.config_changed_at = 0, None
        self.event("reset_config", deployment=name)
        return {"deployment": name, "restored": target}

    def _ready_pods_of_module(self, name: str, module: str, what: str, verb: str) -> list[Pod]:
        """The ready pods of a service deployment that runs ``module`` (an operation only such pods answer)."""
        dep = self.deployment(name)
        if dep.spec.kind != "service" or dep.spec.module != module:
            raise ClusterError(f"'{name}' is not {what}; {verb} works on {module} deployments only")
        pods = [p for p in dep.pods.values() if p.ready]
        if not pods:
            raise ClusterError(f"'{name}' has no ready pod to {verb}")
        return pods

    async def purge(self, name: str, keys: list[str] | None = None, prefix: str | None = None) -> dict[str, Any]:
        """Purge an edge cache's objects on every ready pod (by tag/key, by path prefix, or all): what a CDN's
        purge API does. Only deployments that run the edge module have one."""
        pods = self._ready_pods_of_module(name, "edge", "an edge cache", "purge")
        body: dict[str, Any] = {}
        if keys is not None:
            body["keys"] = keys
        if prefix is not None:
            body["prefix"] = prefix
        removed = 0
        for pod in pods:
            async with self.http.post(f"http://127.0.0.1:{pod.port}/admin/purge", json=body,
                                      timeout=aiohttp.ClientTimeout(total=5)) as resp:
                answer = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise ClusterError(f"{pod.name} refused the purge: {answer.get('error', answer)}")
                removed += int(answer.get("removed", 0))
        self.event("purge", deployment=name, keys=keys, prefix=prefix, removed=removed)
        return {"deployment": name, "removed": removed, "pods": [p.name for p in pods]}

    async def job(self, name: str, job: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """A service's maintenance jobs (``job`` None: what it has, job → what it does), or run one on a ready pod
        and wait for it: a Kubernetes Job made from the service's image, such as a data re-import."""
        dep = self.deployment(name)
        if dep.spec.kind != "service":
            raise ClusterError(f"'{name}' is a datastore; jobs are a service's")
        pod = next((p for p in dep.pods.values() if p.ready), None)
        if pod is None:
            raise ClusterError(f"'{name}' has no ready pod to run a job on")
        base = f"http://127.0.0.1:{pod.port}/admin/jobs"
        if job is None:
            async with self.http.get(base, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                listed = await resp.json(content_type=None)
            return {"deployment": name, "jobs": dict(listed.get("jobs", {})) if resp.status == 200 else {}}
        url = f"{base}/{urllib.parse.quote(job, safe='')}"
        async with self.http.post(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            answer = await resp.json(content_type=None)
            if resp.status >= 400:
                raise ClusterError(str(answer.get("error", answer)) if isinstance(answer, dict) else str(answer))
        self.event("job", deployment=name, job=job, pod=pod.name)
        return {"deployment": name, "job": job, "pod": pod.name, "seconds": answer.get("seconds"),
                "result": answer.get("result", {})}

    async def reindex(self, name: str, timeout: float = 100.0, if_stale: bool = False) -> dict[str, Any]:
        """Rebuild a search deployment's index from the catalogue on every ready pod, and wait until it is done
        (products added straight to catalogue-db, as a set-up's generated ones are, reach the index no other
        way). ``if_stale``: a pod whose index already holds every product is left as it is. A rebuild already
        running (a pod's own at start) is waited for first, since it may have read the catalogue before the
        latest products. Returns the documents the index holds and whether any pod rebuilt."""
        pods = self._ready_pods_of_module(name, "search", "a search service", "reindex")
        deadline = time.monotonic() + timeout
        documents, rebuilt = 0, False

        async def status_when_idle(pod: Pod, base: str) -> dict[str, Any]:
            while True:
                async with self.http.get(f"{base}/index-status", timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    status: dict[str, Any] = await resp.json(content_type=None)
                if not status.get("reindexing"):
                    return status
                if time.monotonic() > deadline:
                    raise ClusterError(f"{pod.name}'s reindex did not finish within {timeout:.0f}s")
                await asyncio.sleep(0.3)

        for pod in pods:
            base = f"http://127.0.0.1:{pod.port}/admin"
            await status_when_idle(pod, base)
            asked = time.time()
            query = "?if=stale" if if_stale else ""
            async with self.http.post(f"{base}/reindex{query}", timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if resp.status >= 400:
                    raise ClusterError(f"{pod.name} refused the reindex: {(await resp.text())[:200]}")
                answer = await resp.json(content_type=None)
            if answer.get("current"):
                documents = int(answer.get("documents") or 0)
                continue
            rebuilt = True
            last = (await status_when_idle(pod, base)).get("last_reindex") or {}
            if float(last.get("finished_at") or 0) < asked:  # it ended without finishing: its log says why
                raise ClusterError(f"{pod.name}'s reindex failed (see its log)")
            documents = int(last.get("documents") or 0)
        self.event("reindex", deployment=name, documents=documents, rebuilt=rebuilt)
        return {"deployment": name, "pods": [p.name for p in pods], "documents": documents, "rebuilt": rebuilt}

    # ---- routes ---------------------------------------------------------------------------------------
    def _apply_route(self, dep: Deployment) -> None:
        self.mesh.set_route(dep.name, [(n, d, dep.route.get(n, 0)) for n, d in dep.spec.subsets.items()])

    def _routed(self, name: str) -> Deployment:
        dep = self.deployment(name)
        if not dep.spec.subsets:
            routed = [n for n, d in self.deployments.items() if d.spec.subsets]
            raise ClusterError(f"'{name}' has no subsets to route between (routed services: "
                               f"{', '.join(routed) or 'none'})")
        return dep

    def set_route(self, name: str, weights: dict[str, Any], record: bool = True) -> dict[str, Any]:
        """Split a service's reads over its subsets by weight (0-100 each; subsets not named get 0), live."""
        dep = self._routed(name)
        if not isinstance(weights, dict) or not weights:
            raise ClusterError("give the weights as subset=weight, e.g. {\"primary\": 90, \"v1\": 10}")
        unknown = sorted(set(weights) - set(dep.spec.subsets))
        if unknown:
            raise ClusterError(f"'{name}' has no subset {unknown[0]!r}" + did_you_mean(unknown[0], dep.spec.subsets)
                               + f" (subsets: {', '.join(dep.spec.subsets)})")
        clean: dict[str, int] = {}
        for subset in dep.spec.subsets:
            w = weights.get(subset, 0)
            if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 100:
                raise ClusterError(f"weight of subset {subset!r} must be an integer from 0 to 100, got {w!r}")
            clean[subset] = w
        if not any(clean.values()):
            raise ClusterError("at least one subset needs a weight above 0")
        previous = dict(dep.route)
        changed = clean != previous
        if record and changed:
            dep.route_history.append(previous)
            dep.route_revision += 1
            dep.route_changed_at = time.time()
        dep.route = clean
        self._apply_route(dep)
        if record:
            self.event("set_route", deployment=name, weights=clean)
        return {"deployment": name, "previous": previous, "weights": dict(clean), "changed": changed}

    def rollback_route(self, name: str) -> dict[str, Any]:
        dep = self._routed(name)
        if not dep.route_history:
            raise ClusterError(f"'{name}' has no earlier route to roll back to")
        dep.route = dep.route_history.pop()
        dep.route_revision += 1
        dep.route_changed_at = time.time()
        self._apply_route(dep)
        self.event("rollback_route", deployment=name, weights=dep.route)
        return {"deployment": name, "weights": dict(dep.route)}

    def reset_route(self, name: str) -> dict[str, Any]:
        """Back to the manifest's weights, history cleared (between runs)."""
        dep = self._routed(name)
        dep.route = dict(dep.default_route)
        dep.route_history.clear()
        dep.route_revision, dep.route_changed_at = 0, None
        self._apply_route(dep)
        return {"deployment": name, "weights": dict(dep.route)}

    def route_view(self, dep: Deployment) -> dict[str, Any]:
        return {"subsets": {n: {"deployment": d, "weight": dep.route.get(n, 0),
                                "ready": len(self.deployments[d].ready_pods()) if d in self.deployments else 0}
                            for n, d in dep.spec.subsets.items()},
                "revision": dep.route_revision, "changed_at": dep.route_changed_at}

    async def set_env(self, name: str, env: dict[str, str]) -> dict[str, Any]:
        """Change the pods' environment and roll it out (pods restarted one at a time)."""
        dep = self.deployment(name)
        if dep.spec.kind != "service":
            raise ClusterError(f"'{name}' is a datastore; set its settings through its own tools")
        check_env(env)
        dep.env_history.append(dict(dep.spec.env))
        dep.spec.env.update({str(k): str(v) for k, v in env.items()})
        self.event("set_env", deployment=name, env=env)
        await self.restart(name)
        return {"deployment": name, "env": dict(dep.spec.env)}

    async def rollback_env(self, name: str) -> dict[str, Any]:
        dep = self.deployment(name)
        if not dep.env_history:
            raise ClusterError(f"'{name}' has no earlier environment to roll back to")
        dep.spec.env = dep.env_history.pop()
        self.event("rollback_env", deployment=name)
        await self.restart(name)
        return {"deployment": name, "env": dict(dep.spec.env)}

    # ---- views --------------------------------------------------------------------------
    def describe(self, name: str) -> dict[str, Any]:
        dep = self.deployment(name)
        extra: dict[str, Any] = {}
        if dep.spec.kind == "redis" and dep.spec.external_url is None:
            # What the store starts with (its chart's values); a reset between runs restores them.
            extra["start_settings"] = {"maxmemory": dep.spec.maxmemory, "maxmemory-policy": dep.spec.maxmemory_policy}
        if dep.spec.replica_of:
            extra["replica_of"] = dep.spec.replica_of  # a streaming read replica of that store
        return {**extra,
            "name": dep.name, "kind": dep.spec.kind, "role": dep.spec.role, "replicas": dep.spec.replicas,
            "optional": dep.spec.optional,
            "ready_replicas": len(dep.ready_pods()), "external": dep.spec.external_url is not None,
            "address": self.shown_url(dep.name) if dep.ingress else None,
            "calls": list(dep.spec.calls),
            "limits": {"cpu_millicores": dep.spec.cpu_millicores, "memory_bytes": dep.spec.memory_bytes},
            "requests": {"cpu_millicores": dep.spec.cpu_request_millicores,
                         "memory_bytes": dep.spec.memory_request_bytes},
            "default_limits": dict(dep.default_limits),
            "default_replicas": dep.default_replicas, "default_knobs": dict(dep.default_knobs),
            **({"route": self.route_view(dep)} if dep.spec.subsets else {}),
            "knobs": dict(dep.spec.knobs), "env": dict(dep.spec.env),
            "pods": [p.describe() for p in dep.pods.values()],
        }

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.is_ready(),
            "started_at": self.started_at,
            "cgroups": {"version": self.cgroups.version, "reason": self.cgroups.reason},
            "deployments": [self.describe(n) for n in self.deployments],
        }

    def topology(self) -> dict[str, Any]:
        return {
            "deployments": [{"name": d.name, "kind": d.spec.kind, "role": d.spec.role,
                             "replicas": d.spec.replicas, "pods": list(d.pods)} for d in self.deployments.values()],
            "edges": [{"source": s, "destination": t} for (s, t) in self.edges],
        }
