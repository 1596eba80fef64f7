"""The runtime's own exporters: pod resources, PostgreSQL, Redis and the queue, in Prometheus text.

Each collector is ``async def collect() -> list[Family]``, bounded by its own timeouts and never
raising for a store that is down (``pg_up 0`` / ``redis_up 0`` / ``rabbitmq_up 0`` instead). Metric
names are those of the exporters people already have dashboards and alerts for:
- pods: cAdvisor (``container_cpu_usage_seconds_total``, ``container_memory_working_set_bytes``,
  ``container_cpu_cfs_*``, ``container_spec_*``) and kube-state-metrics
  (``kube_pod_container_status_restarts_total``, ``kube_pod_status_ready``, ...), labelled
  ``namespace="sock-shop"``, ``pod``, ``container`` and ``service`` (= the deployment);
- PostgreSQL: postgres_exporter (``pg_stat_activity_count``, ``pg_stat_database_*``,
  ``pg_stat_user_tables_*``, ``pg_stat_statements_*``, ``pg_locks_count``);
- Redis: redis_exporter (``redis_memory_used_bytes``, ``redis_keyspace_hits_total``, ...);
- the shipping queue: the RabbitMQ exporter's ``rabbitmq_queue_*`` for both brokers.
Store series carry ``service`` and ``instance`` = the deployment. ``render`` writes the text format
(counters keep the exact names their exporters use, with or without ``_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import psutil
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from sockdrill.cluster.runtime import Runtime

log = logging.getLogger("sockdrill.telemetry")

NAMESPACE = "sock-shop"
STORE_TIMEOUT_S = 3.0  # one scrape of one store, connection included
TOP_STATEMENTS = 10


# ---- families and the text format ------------------------------------------------------------------
@dataclass
class Family:
    name: str
    help: str
    type: str  # "counter" | "gauge" | "untyped"
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float | int | None) -> None:
        if value is not None:
            self.samples.append((labels, float(value)))


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render(families: Iterable[Family]) -> str:
    """Prometheus text exposition (0.0.4) of the families that have samples."""
    out: list[str] = []
    for fam in families:
        if not fam.samples:
            continue
        doc = fam.help.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {fam.name} {doc}\n")
        out.append(f"# TYPE {fam.name} {fam.type}\n")
        for labels, value in fam.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
                out.append(f"{fam.name}{{{inner}}} {floatToGoString(value)}\n")
            else:
                out.append(f"{fam.name} {floatToGoString(value)}\n")
    return "".join(out)


def parse_text(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A small parser of the text format (tests, the benchmark): name → [(labels, value)]."""
    import re

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_text, _, value = rest.rpartition("} ")
            labels = {k: v.replace(r"\"", '"').replace(r"\n", "\n").replace(r"\\", "\\")
                      for k, v in label_re.findall(labels_text)}
        else:
            name, _, value = line.partition(" ")
            labels = {}
        try:
            out.setdefault(name, []).append((labels, float(value.split()[0])))
        except (ValueError, IndexError):
            continue
    return out


class Collector(Protocol):
    name: str

    async def collect(self) -> list[Family]: ...


# ---- pod resources (cAdvisor + kube-state-metrics names) -----------------------------------------
# kube-state-metrics' pod phases; ours map onto them (a crash-looping pod is still "Running").
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
_PHASE_OF = {"Pending": "Pending", "Running": "Running", "Restarting": "Running", "CrashLoopBackOff": "Running",
             "Terminating": "Running", "Terminated": "Succeeded"}
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class _PodView:
    """What a resource scrape needs of one pod, copied on the event loop before the file reads."""

    deployment: str
    pod: str
    status: str
    ready: bool
    restarts: int
    crash_looping: bool
    pid: int | None
    started_at: float | None
    cgroup: Any
    cpu_millicores: int | None
    memory_bytes: int | None
    last_exit: int | None


@dataclass
class _Usage:
    cpu_seconds: float | None = None
    working_set: int | None = None
    throttling: dict[str, float] = field(default_factory=dict)
    oom_kills: int | None = None


def _descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _proc_usage(pids: Sequence[int]) -> tuple[float | None, int | None]:
    """CPU seconds and resident bytes summed over processes (used where no cgroup accounts the pod)."""
    cpu, rss, seen = 0.0, 0, False
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                t = proc.cpu_times()
                cpu += t.user + t.system
                rss += proc.memory_info().rss
            seen = True
        except (psutil.Error, OSError):
            continue
    return (cpu, rss) if seen else (None, None)


class ResourceCollector:
    """CPU, memory, throttling, restarts and readiness of every pod the runtime runs."""

    name = "resources"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _views(self) -> list[_PodView]:
        views = []
        for dep in self.runtime.deployments.values():
            if dep.external:
                continue
            for pod in list(dep.pods.values()):
                views.append(_PodView(
                    dep.name, pod.name, pod.status, bool(pod.ready and not pod.stopping), pod.restarts,
                    pod.status == "CrashLoopBackOff", pod.pid, pod.started_at, pod.cgroup,
                    dep.spec.cpu_millicores, dep.spec.memory_bytes, pod.last_exit))
        return views

    @staticmethod
    def _usage(views: list[_PodView]) -> dict[str, _Usage]:
        """File reads (cgroup files, /proc), off the event loop."""
        out: dict[str, _Usage] = {}
        children: dict[int, list[int]] | None = None
        for v in views:
            use = _Usage()
            cg = v.cgroup
            if cg is not None:
                use.cpu_seconds = cg.cpu_seconds()
                use.working_set = cg.memory_working_set()
                use.throttling = cg.throttling()
                use.oom_kills = cg.oom_kills()
            if (use.cpu_seconds is None or use.working_set is None) and v.pid:
                if children is None:  # one walk of the process table per scrape
                    children = {}
                    for proc in psutil.process_iter(["pid", "ppid"]):
                        children.setdefault(proc.info["ppid"], []).append(proc.info["pid"])
                cpu, rss = _proc_usage(_descendants(v.pid, children))
                use.cpu_seconds = use.cpu_seconds if use.cpu_seconds is not None else cpu
                use.working_set = use.working_set if use.working_set is not None else rss
            out[v.pod] = use
        return out

    async def collect(self) -> list[Family]:
        views = self._views()
        usage = await asyncio.get_running_loop().run_in_executor(None, self._usage, views)
        cpu = Family("container_cpu_usage_seconds_total", "Cumulative CPU time consumed by the pod (seconds).",
                     "counter")
        mem = Family("container_memory_working_set_bytes",
                     "Memory in use minus inactive file cache, like cAdvisor's working set (bytes).", "gauge")
        periods = Family("container_cpu_cfs_periods_total", "Enforcement periods that elapsed (CFS quota).",
                         "counter")
        throttled = Family("container_cpu_cfs_throttled_periods_total",
                           "Enforcement periods in which the pod was throttled.", "counter")
        throttled_s = Family("container_cpu_cfs_throttled_seconds_total",
                             "Total time the pod was throttled (seconds).", "counter")
        oom = Family("container_oom_events_total", "OOM kills inside the pod's cgroup.", "counter")
        quota = Family("container_spec_cpu_quota", "CPU quota of the pod per period (microseconds).", "gauge")
        period = Family("container_spec_cpu_period", "CPU quota period of the pod (microseconds).", "gauge")
        mem_limit = Family("container_spec_memory_limit_bytes", "Memory limit of the pod (0: none).", "gauge")
        start = Family("container_start_time_seconds", "Start time of the pod's current process (unix).",
                       "gauge")
        restarts = Family("kube_pod_container_status_restarts_total", "Restarts of the pod's container.",
                          "counter")
        ready = Family("kube_pod_status_ready", "Whether the pod is ready to serve (by condition).", "gauge")
        c_ready = Family("kube_pod_container_status_ready", "Whether the pod's container passes its probe.",
                         "gauge")
        phase = Family("kube_pod_status_phase", "The pod's phase.", "gauge")
        waiting = Family("kube_pod_container_status_waiting_reason", "Why the container is waiting.", "gauge")
        last_exit = Family("kube_pod_container_status_last_terminated_exitcode",
                           "Exit code of the container's last termination.", "gauge")
        for v in views:
            labels = {"namespace": NAMESPACE, "pod": v.pod, "container": v.deployment, "service": v.deployment}
            use = usage.get(v.pod, _Usage())
            if v.pid:
                cpu.add(labels, use.cpu_seconds)
                mem.add(labels, use.working_set)
                start.add(labels, v.started_at)
            if "nr_periods" in use.throttling:
                periods.add(labels, use.throttling["nr_periods"])
                throttled.add(labels, use.throttling.get("nr_throttled", 0.0))
                throttled_s.add(labels, use.throttling.get("throttled_seconds", 0.0))
            if v.cgroup is not None:
                oom.add(labels, use.oom_kills)
            if v.cpu_millicores is not None:
                quota.add(labels, v.cpu_millicores * 100)  # per 100 ms period, as the cgroup is written
                period.add(labels, 100_000)
            mem_limit.add(labels, v.memory_bytes or 0)
            pod_labels = {"namespace": NAMESPACE, "pod": v.pod, "service": v.deployment}
            restarts.add(labels, v.restarts)
            c_ready.add(labels, 1 if v.ready else 0)
            for cond in ("true", "false", "unknown"):
                ready.add({**pod_labels, "condition": cond}, 1 if (cond == "true") == v.ready and cond != "unknown"
                          else 0)
            current = _PHASE_OF.get(v.status, "Unknown")
            for p in PHASES:
                phase.add({**pod_labels, "phase": p}, 1 if p == current else 0)
            if v.crash_looping:
                waiting.add({**labels, "reason": "CrashLoopBackOff"}, 1)
            if v.last_exit is not None:
                last_exit.add(labels, v.last_exit)
        spec = Family("kube_deployment_spec_replicas", "Desired replicas of the deployment.", "gauge")
        avail = Family("kube_deployment_status_replicas_available", "Ready replicas of the deployment.", "gauge")
        for dep in self.runtime.deployments.values():
            if dep.external:
                continue
            dl = {"namespace": NAMESPACE, "deployment": dep.name, "service": dep.name}
            spec.add(dl, dep.spec.replicas)
            avail.add(dl, len(dep.ready_pods()))
        return [cpu, mem, periods, throttled, throttled_s, oom, quota, period, mem_limit, start, restarts, ready,
                c_ready, phase, waiting, last_exit, spec, avail]


# ---- PostgreSQL (postgres_exporter names) ---------------------------------------------------------
ACTIVITY_STATES = ("active", "idle", "idle in transaction", "idle in transaction (aborted)",
                   "fastpath function call", "disabled")
LOCK_MODES = ("accesssharelock", "rowsharelock", "rowexclusivelock", "shareupdateexclusivelock", "sharelock",
              "sharerowexclusivelock", "exclusivelock", "accessexclusivelock", "sireadlock")
DATABASE_COUNTERS = ("xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned", "tup_fetched",
                     "tup_inserted", "tup_updated", "tup_deleted", "conflicts", "temp_files", "temp_bytes",
                     "deadlocks")
TABLE_COUNTERS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins", "n_tup_upd", "n_tup_del",
                  "n_tup_hot_upd")
TABLE_GAUGES = ("n_live_tup", "n_dead_tup")

_SQL_ACTIVITY = """
SELECT datname, state, count(*) AS n,
       coalesce(max(extract(epoch FROM now() - xact_start)), 0) AS max_tx
FROM pg_stat_activity
WHERE datname IS NOT NULL AND pid <> pg_backend_pid()
GROUP BY datname, state"""
_SQL_DATABASE = f"""
SELECT datname, numbackends, {", ".join(DATABASE_COUNTERS)}, pg_database_size(datname) AS size
FROM pg_stat_database WHERE datname IS NOT NULL AND datname NOT LIKE 'template%'"""
_SQL_TABLES = f"""
SELECT current_database() AS datname, schemaname, relname,
       {", ".join(f"coalesce({c}, 0) AS {c}" for c in TABLE_COUNTERS + TABLE_GAUGES)}
FROM pg_stat_user_tables"""
_SQL_LOCKS = """
SELECT d.datname, lower(l.mode) AS mode, count(*) AS n
FROM pg_locks l JOIN pg_database d ON d.oid = l.database
GROUP BY d.datname, lower(l.mode)"""
_SQL_STATEMENTS = f"""
SELECT s.queryid::text AS queryid, r.rolname AS usename, d.datname, s.calls,
       s.total_exec_time / 1000.0 AS seconds, s.mean_exec_time / 1000.0 AS mean_seconds, s.rows,
       left(regexp_replace(s.query, '\\s+', ' ', 'g'), 200) AS query
FROM pg_stat_statements s
JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid
WHERE s.queryid IS NOT NULL
ORDER BY s.total_exec_time DESC LIMIT {TOP_STATEMENTS}"""


# Streaming replication (postgres_exporter's names). The lag reads 0 while receipt itself is stalled (what was
# received is replayed): the replay age and the primary's retained bytes per slot are the ones that grow then.
_SQL_RECOVERY = """SELECT pg_is_in_recovery() AS replica,
  CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
       ELSE GREATEST(0, EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())) END::float8 AS lag,
  EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age,
  (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming"""
_SQL_SLOTS = """SELECT slot_name, active,
  COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::float8 AS retained FROM pg_replication_slots"""
_SQL_SENDERS = """SELECT application_name,
  COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::float8 AS diff FROM pg_stat_replication"""


class PostgresExporter:
    """One PostgreSQL deployment, read over one kept connection (re-opened after any failure)."""

    def __init__(self, deployment: str, url: Callable[[], str], timeout: float = STORE_TIMEOUT_S) -> None:
        self.name = f"postgres:{deployment}"
        self.deployment = deployment
        self.url = url
        self.timeout = timeout
        self._conn: Any = None
        self._has_statements = True

    async def _connection(self) -> Any:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            # The same nine statements every scrape: prepared once, they cost the server half the CPU (2.8 vs 5.8 ms
            # a scrape, measured on an idle store; issue 19). asyncpg re-prepares one a server restart invalidated.
            self._conn = await asyncpg.connect(self.url(), timeout=self.timeout, command_timeout=self.timeout,
                                               statement_cache_size=32,
                                               server_settings={"application_name": "sockdrill-exporter"})
        return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def _read(self) -> dict[str, Any]:
        import asyncpg

        conn = await self._connection()
        out: dict[str, Any] = {
            "activity": await conn.fetch(_SQL_ACTIVITY),
            "database": await conn.fetch(_SQL_DATABASE),
            "tables": await conn.fetch(_SQL_TABLES),
            "locks": await conn.fetch(_SQL_LOCKS),
            "max_connections": await conn.fetchval(
                "SELECT setting::int FROM pg_settings WHERE name = 'max_connections'"),
            "statements": [],
        }
        out["recovery"] = await conn.fetchrow(_SQL_RECOVERY)
        if not out["recovery"]["replica"]:
            out["slots"] = await conn.fetch(_SQL_SLOTS)
            out["senders"] = await conn.fetch(_SQL_SENDERS)
        if self._has_statements:
            try:
                out["statements"] = await conn.fetch(_SQL_STATEMENTS)
            except asyncpg.UndefinedTableError:
                # The library is preloaded on our stores but the view is per database: create it once.
                try:
                    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                    out["statements"] = await conn.fetch(_SQL_STATEMENTS)
                except asyncpg.PostgresError as exc:
                    log.info("no pg_stat_statements on %s: %s", self.deployment, exc)
                    self._has_statements = False
            except (asyncpg.UndefinedColumnError, asyncpg.ObjectNotInPrerequisiteStateError) as exc:
                log.info("no pg_stat_statements on %s: %s", self.deployment, exc)
                self._has_statements = False  # not preloaded, or too old a server: skip it
        return out

    async def collect(self) -> list[Family]:
        base = {"service": self.deployment, "instance": self.deployment}
        up = Family("pg_up", "Whether the last scrape of PostgreSQL worked.", "gauge")
        try:
            data = await asyncio.wait_for(self._read(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # down, refusing, timing out: pg_up 0 and a fresh connection next time
            log.debug("postgres %s scrape failed: %s", self.deployment, exc)
            await self.close()
            up.add(base, 0)
            return [up]
        up.add(base, 1)
        fams = [up]
        act = Family("pg_stat_activity_count", "Connections by database and state.", "gauge")
        act_tx = Family("pg_stat_activity_max_tx_duration", "Longest open transaction by state (seconds).", "gauge")
        dbs = sorted({r["datname"] for r in data["database"]})
        counts = {(r["datname"], r["state"] or "disabled"): r for r in data["activity"]}
        for db in dbs:
            for state in ACTIVITY_STATES:
                row = counts.get((db, state))
                labels = {**base, "datname": db, "state": state}
                act.add(labels, row["n"] if row else 0)
                act_tx.add(labels, float(row["max_tx"]) if row else 0.0)
        fams += [act, act_tx]
        backends = Family("pg_stat_database_numbackends", "Backends connected to the database.", "gauge")
        size = Family("pg_database_size_bytes", "Disk space used by the database.", "gauge")
        per_db = {c: Family(f"pg_stat_database_{c}", f"pg_stat_database.{c} of the database.", "counter")
                  for c in DATABASE_COUNTERS}
        for r in data["database"]:
            labels = {**base, "datname": r["datname"]}
            backends.add(labels, r["numbackends"])
            size.add(labels, r["size"])
            for c in DATABASE_COUNTERS:
                per_db[c].add(labels, r[c])
        fams += [backends, size, *per_db.values()]
        tables = {c: Family(f"pg_stat_user_tables_{c}", f"pg_stat_user_tables.{c} of the table.",
                            "counter" if c in TABLE_COUNTERS else "gauge") for c in TABLE_COUNTERS + TABLE_GAUGES}
        for r in data["tables"]:
            labels = {**base, "datname": r["datname"], "schemaname": r["schemaname"], "relname": r["relname"]}
            for c, fam in tables.items():
                fam.add(labels, r[c])
        fams += list(tables.values())
        locks = Family("pg_locks_count", "Locks held or awaited, by database and mode.", "gauge")
        held = {(r["datname"], r["mode"]): r["n"] for r in data["locks"]}
        for db in dbs:
            for mode in LOCK_MODES:
                locks.add({**base, "datname": db, "mode": mode}, held.get((db, mode), 0))
        fams.append(locks)
        maxconn = Family("pg_settings_max_connections", "The max_connections setting.", "gauge")
        maxconn.add(base, data["max_connections"])
        fams.append(maxconn)
        calls = Family("pg_stat_statements_calls_total", "Calls of the statement (top by total time).", "counter")
        secs = Family("pg_stat_statements_seconds_total", "Total execution time of the statement.", "counter")
        mean = Family("pg_stat_statements_mean_seconds", "Mean execution time of the statement.", "gauge")
        rows = Family("pg_stat_statements_rows_total", "Rows returned or affected by the statement.", "counter")
        for r in data["statements"]:
            labels = {**base, "user": r["usename"], "datname": r["datname"], "queryid": r["queryid"],
                      "query": r["query"]}
            calls.add(labels, r["calls"])
            secs.add(labels, r["seconds"])
            mean.add(labels, r["mean_seconds"])
            rows.add(labels, r["rows"])
        fams += [calls, secs, mean, rows]
        return fams + self._replication(base, data)

    @staticmethod
    def _replication(base: dict[str, str], data: dict[str, Any]) -> list[Family]:
        rec = data["recovery"]
        is_replica = Family("pg_replication_is_replica", "1 on a standby (read replica), 0 on a primary.", "gauge")
        is_replica.add(base, int(rec["replica"]))
        lag = Family("pg_replication_lag_seconds", "Replication lag behind the primary (0 when all that was "
                     "received is replayed).", "gauge")
        lag.add(base, rec["lag"] or 0.0)
        fams = [is_replica, lag]
        if rec["replica"]:
            streaming = Family("pg_stat_wal_receiver_streaming", "1 while the WAL receiver streams from the primary.",
                               "gauge")
            streaming.add(base, rec["streaming"])
            fams.append(streaming)
            if rec["replay_age"] is not None:
                age = Family("pg_replication_last_replay_age_seconds", "Seconds since the last replayed transaction "
                             "was committed on the primary.", "gauge")
                age.add(base, rec["replay_age"])
                fams.append(age)
            return fams
        active = Family("pg_replication_slots_active", "Whether a replication slot is in use.", "gauge")
        retained = Family("pg_replication_slots_pg_wal_lsn_diff", "WAL bytes a replication slot holds back.", "gauge")
        for r in data["slots"]:
            active.add({**base, "slot_name": r["slot_name"]}, int(r["active"]))
            retained.add({**base, "slot_name": r["slot_name"]}, r["retained"])
        senders = Family("pg_stat_replication_pg_wal_lsn_diff", "WAL bytes a connected standby has yet to replay.",
                         "gauge")
        for r in data["senders"]:
            senders.add({**base, "application_name": r["application_name"]}, r["diff"])
        return [*fams, active, retained, senders]


# ---- Redis (redis_exporter names) -----------------------------------------------------------------
# INFO field → (metric, type, help)
REDIS_FIELDS: dict[str, tuple[str, str, str]] = {
    "used_memory": ("redis_memory_used_bytes", "gauge", "Memory used by Redis (bytes)."),
    "used_memory_rss": ("redis_memory_used_rss_bytes", "gauge", "Resident memory of Redis (bytes)."),
    "maxmemory": ("redis_memory_max_bytes", "gauge", "The maxmemory setting (0: no limit)."),
    "mem_fragmentation_ratio": ("redis_mem_fragmentation_ratio", "gauge", "RSS over used memory."),
    "evicted_keys": ("redis_evicted_keys_total", "counter", "Keys evicted because of maxmemory."),
    "expired_keys": ("redis_expired_keys_total", "counter", "Keys expired by their TTL."),
    "keyspace_hits": ("redis_keyspace_hits_total", "counter", "Lookups that found their key."),
    "keyspace_misses": ("redis_keyspace_misses_total", "counter", "Lookups that missed their key."),
    "connected_clients": ("redis_connected_clients", "gauge", "Client connections."),
    "blocked_clients": ("redis_blocked_clients", "gauge", "Clients blocked in a blocking call."),
    "total_commands_processed": ("redis_commands_processed_total", "counter", "Commands processed."),
    "total_connections_received": ("redis_connections_received_total", "counter", "Connections accepted."),
    "rejected_connections": ("redis_rejected_connections_total", "counter", "Connections refused (maxclients)."),
    "instantaneous_ops_per_sec": ("redis_instantaneous_ops_per_sec", "gauge", "Commands per second, now."),
    "uptime_in_seconds": ("redis_uptime_in_seconds", "gauge", "Seconds since the server started."),
}


class RedisExporter:
    """One Redis deployment, read with INFO over one kept client."""

    def __init__(self, deployment: str, url: Callable[[], str], timeout: float = STORE_TIMEOUT_S) -> None:
        self.name = f"redis:{deployment}"
        self.deployment = deployment
        self.url = url
        self.timeout = timeout
        self._client: Any = None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _info(self) -> dict[str, Any]:
        import redis.asyncio as aioredis

        if self._client is None:
            self._client = aioredis.from_url(self.url(), socket_timeout=self.timeout,
                                             socket_connect_timeout=self.timeout)
        return dict(await self._client.info("all"))

    async def collect(self) -> list[Family]:
        base = {"service": self.deployment, "instance": self.deployment}
        up = Family("redis_up", "Whether the last scrape of Redis worked.", "gauge")
        try:
            info = await asyncio.wait_for(self._info(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("redis %s scrape failed: %s", self.deployment, exc)
            await self.close()
            up.add(base, 0)
            return [up]
        up.add(base, 1)
        fams = [up]
        for key, (metric, typ, doc) in REDIS_FIELDS.items():
            fam = Family(metric, doc, typ)
            value = info.get(key)
            if isinstance(value, int | float):
                fam.add(base, value)
            fams.append(fam)
        keys = Family("redis_db_keys", "Keys in the database.", "gauge")
        expiring = Family("redis_db_keys_expiring", "Keys with a TTL in the database.", "gauge")
        for key, value in info.items():
            if isinstance(key, str) and key.startswith("db") and isinstance(value, dict):
                keys.add({**base, "db": key}, value.get("keys", 0))
                expiring.add({**base, "db": key}, value.get("expires", 0))
        fams += [keys, expiring]
        return fams


# ---- the shipping queue (RabbitMQ exporter names, either broker) ------------------------------------
class QueueExporter:
    """Depth, consumers and message counts of the shipping queue, read from its broker."""

    def __init__(self, deployment: str, url: Callable[[], str], queue: str | None = None,
                 timeout: float = STORE_TIMEOUT_S) -> None:
        self.name = f"queue:{deployment}"
        self.deployment = deployment
        self.url = url
        self.queue_name = queue
        self.timeout = timeout
        self._queue: Any = None

    async def close(self) -> None:
        q, self._queue = self._queue, None
        if q is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(q.close(), self.timeout)

    async def collect(self) -> list[Family]:
        from sockdrill.shop.queue import open_queue

        base = {"service": self.deployment, "instance": self.deployment}
        up = Family("rabbitmq_up", "Whether the last read of the queue broker worked.", "gauge")
        try:
            if self._queue is None:
                self._queue = open_queue(self.url(), self.queue_name)
            stats = await asyncio.wait_for(self._queue.stats(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("queue %s scrape failed: %s", self.deployment, exc)
            await self.close()
            up.add(base, 0)
            return [up]
        up.add(base, 1)
        labels = {**base, "queue": stats.queue}
        fams = [up]
        for name, typ, doc, value in (
            ("rabbitmq_queue_messages_ready", "gauge", "Messages ready to be delivered.", stats.ready),
            ("rabbitmq_queue_messages_unacknowledged", "gauge", "Messages delivered, not yet acked.", stats.unacked),
            ("rabbitmq_queue_messages", "gauge", "Ready plus unacknowledged messages.", stats.ready + stats.unacked),
            ("rabbitmq_queue_consumers", "gauge", "Consumers on the queue.", stats.consumers),
            ("rabbitmq_queue_messages_published_total", "counter", "Messages published to the queue.",
             stats.published),
            ("rabbitmq_queue_messages_delivered_total", "counter", "Messages delivered to consumers.",
             stats.delivered),
            ("rabbitmq_queue_messages_acked_total", "counter", "Messages acknowledged by consumers.", stats.acked),
        ):
            fam = Family(name, doc, typ)
            fam.add(labels, value)
            fams.append(fam)
        return fams


# ---- the mesh ----------------------------------------------------------------------------------------
class MeshExporter:
    """The mesh edges' own collector (``sockdrill.cluster.mesh.MeshCollector``), as text."""

    name = "mesh"

    def __init__(self, runtime: Runtime) -> None:
        from sockdrill.cluster.mesh import MeshCollector

        self.collector = MeshCollector(runtime.mesh)

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.collector).decode()  # type: ignore[arg-type]


# ---- everything the runtime exports -----------------------------------------------------------------
def store_collectors(runtime: Runtime) -> list[Collector]:
    """An exporter per datastore deployment (PostgreSQL, Redis) plus the queue's broker view."""
    out: list[Collector] = []
    for dep in runtime.deployments.values():
        url = _host_url(runtime, dep.name)
        if dep.spec.kind == "postgres":
            out.append(PostgresExporter(dep.name, url))
        elif dep.spec.kind == "redis" and not (dep.spec.external_url or "").startswith("amqp"):
            out.append(RedisExporter(dep.name, url))
    if "queue" in runtime.deployments:
        env = {**runtime.extra_env}
        for name in ("queue-master", "shipping"):
            if name in runtime.deployments:
                env.update(runtime.deployments[name].spec.env)
        out.append(QueueExporter("queue", _host_url(runtime, "queue"), env.get("SOCKDRILL_QUEUE_NAME") or None))
    return out


def _host_url(runtime: Runtime, name: str) -> Callable[[], str]:
    return lambda: runtime.host_url(name)


@dataclass
class Scrape:
    text: str
    durations: dict[str, float]
    errors: dict[str, str]


class RuntimeMetrics:
    """``/metrics`` of the runtime: mesh + pod resources + stores, gathered concurrently and bounded."""

    def __init__(self, runtime: Runtime, timeout: float = STORE_TIMEOUT_S + 1) -> None:
        self.runtime = runtime
        self.timeout = timeout
        self.mesh = MeshExporter(runtime)
        self.collectors: list[Collector] = [ResourceCollector(runtime), *store_collectors(runtime)]

    async def _one(self, collector: Collector) -> tuple[list[Family], float, str | None]:
        t0 = time.perf_counter()
        try:
            fams = await asyncio.wait_for(collector.collect(), self.timeout)
            return fams, time.perf_counter() - t0, None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a collector bug must not take the other series with it
            log.warning("collector %s failed: %s", collector.name, exc)
            return [], time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"

    def _asleep(self, collector: Collector) -> bool:
        """A datastore scaled to 0 (an optional one no scenario woke): no series, rather than a down store."""
        dep = self.runtime.deployments.get(str(getattr(collector, "deployment", "")))
        return dep is not None and dep.spec.optional and dep.spec.replicas == 0

    async def scrape(self) -> Scrape:
        awake = [c for c in self.collectors if not self._asleep(c)]
        results = await asyncio.gather(*(self._one(c) for c in awake))
        merged: dict[str, Family] = {}
        order: list[str] = []
        durations, errors = {}, {}
        for collector, (fams, seconds, error) in zip(awake, results, strict=True):
            durations[collector.name] = seconds
            if error:
                errors[collector.name] = error
            for fam in fams:
                # Several stores emit the same family: one HELP/TYPE block holding all their samples.
                if fam.name not in merged:
                    merged[fam.name] = Family(fam.name, fam.help, fam.type)
                    order.append(fam.name)
                merged[fam.name].samples.extend(fam.samples)
        dur = Family("sockdrill_scrape_collector_duration_seconds", "Time each collector took.", "gauge")
        ok = Family("sockdrill_scrape_collector_success", "Whether each collector worked.", "gauge")
        for name, seconds in durations.items():
            dur.add({"collector": name}, seconds)
            ok.add({"collector": name}, 0 if name in errors else 1)
        text = self.mesh.text() + render([*(merged[n] for n in order), dur, ok])
        return Scrape(text, durations, errors)

    async def close(self) -> None:
        for c in self.collectors:
            closer = getattr(c, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

