"""Faults inside datastores: drop an index (recreated exactly from ``pg_indexes`` on revert), a storm of
expensive regex scans at a given concurrency (the seed's "method 2"), and Redis memory settings.

These act on the store directly (like ``kubectl exec`` into it), not through the mesh. A dropped
index outlives a crashed supervisor in the data directory, so its definition is written to the
ledger before the DROP; the next supervisor recreates it once the store is ready.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from sockdrill.chaos.kinds import Ctx, FaultKind, Params, deployment, pg_url, register
from sockdrill.chaos.render import RenderOptions, job, quote, service_name
from sockdrill.chaos.spec import FaultSpec
from sockdrill.chaos.stress import kill_workers, spawn_worker
from sockdrill.errors import FaultError, did_you_mean

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# The engines upstream Sock Shop runs for each store (for rendering with upstream selectors).
UPSTREAM_ENGINES = {"user-db": "mongo", "carts-db": "mongo", "orders-db": "mongo", "catalogue-db": "mysql",
                    "session-db": "redis"}


def _ident(v: str) -> str:
    if not IDENT.match(v):
        raise ValueError(f"must be an SQL identifier (letters, digits, _), got {v!r}")
    return v


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def pg_connect(rt: Any, name: str) -> Any:
    """As the store's superuser (the runtime's login). The query storm's workers get ``pg_url`` without a
    password and find it in the runtime's ``PGPASSFILE``: a worker's command line is world-readable."""
    import asyncpg

    dep = deployment(rt, name, kinds=("postgres",))
    if dep.spec.external_url:
        return await asyncpg.connect(pg_url(rt, name), timeout=5)
    _user, password = rt.store_login(name, "admin")
    return await asyncpg.connect(pg_url(rt, name), password=password, timeout=5)


def _with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def job_role_name(v: str) -> str:
    """A role a fault's job logs in as: an identifier of its own, never the runtime's, the services' or a
    built-in one."""
    from sockdrill.cluster.stores import PG_APP_USER, PG_USER

    v = _ident(v).lower()
    if v in (PG_USER, PG_APP_USER) or v.startswith("pg_"):
        raise ValueError(f"must be a role of its own, not {v!r} (the runtime's, the services' or a built-in one)")
    return v


SqlName = Annotated[str, AfterValidator(lambda v: _ident(v))]  # a table, column or index name
JobRole = Annotated[str, AfterValidator(lambda v: job_role_name(v))]


async def create_job_role(rt: Any, name: str, role: str, grant: str = "", table: str = "") -> str:
    """A login role with ``grant`` (e.g. ``SELECT``) on one table (none when not given), made again with a new
    password if a leftover has the name; returns the password (for the worker's PGPASSWORD, never a command
    line)."""
    password = secrets.token_hex(16)
    conn = await pg_connect(rt, name)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await conn.execute(f"ALTER ROLE {_qi(role)} WITH LOGIN NOSUPERUSER CONNECTION LIMIT -1 "
                               f"PASSWORD '{password}'")
        else:
            await conn.execute(f"CREATE ROLE {_qi(role)} WITH LOGIN PASSWORD '{password}'")
        if grant and table:
            await conn.execute(f"GRANT {grant} ON {_qi(table)} TO {_qi(role)}")
    finally:
        await conn.close()
    return password


async def drop_job_role(rt: Any, name: str, role: str) -> None:
    """End the role's sessions (what they run stops now, not at a timeout) and drop it; quietly when the store
    cannot be reached (a leftover is dropped by the next revert)."""
    try:
        conn = await pg_connect(rt, name)
    except Exception:
        return
    try:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await conn.execute(f"DROP OWNED BY {_qi(role)}")
            await conn.execute(f"DROP ROLE {_qi(role)}")
    finally:
        await conn.close()


async def start_db_worker(ctx: Ctx, spec: FaultSpec, cfg: dict[str, Any], env: dict[str, str],
                          state: dict[str, Any], ready_s: float = 15.0) -> None:
    """Spawn a storm/hold/leak worker, record it in ``state`` (checkpointed) and wait (up to ``ready_s``) for the
    line naming its backends; when it never connects, undo everything (``stop_db_job``) and raise FaultError."""
    rec = await spawn_worker(cfg, [], stdout=True, env=env)
    proc, reaper = rec.pop("_proc")
    ctx.memo["procs"] = [(proc, reaper)]
    state["workers"] = [rec]
    await ctx.checkpoint(state)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), ready_s)
        said = json.loads(line)
        if "error" in said:
            raise ValueError(said["error"])
        state["backends"] = said["backends"]
    except (TimeoutError, ValueError, KeyError) as exc:
        await stop_db_job(ctx, spec, state)
        raise FaultError(f"the fault's database session did not start: {exc!r}") from None


async def stop_db_job(ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> bool:
    """Stop a fault's worker (SIGTERM, then SIGKILL) and drop its role; False when it had no role."""
    import signal

    await kill_workers(state.get("workers", []), sig=signal.SIGTERM)
    await kill_workers(state.get("workers", []))
    if not state.get("role"):
        return False
    await drop_job_role(ctx.runtime, spec.target, state["role"])
    return True


class PgFaultKind(FaultKind):
    """A fault inside a PostgreSQL store (it acts on the store directly, as ``kubectl exec`` would)."""

    target_help = "a PostgreSQL deployment (e.g. user-db)"

    def check(self, rt: Any, spec: FaultSpec) -> None:
        deployment(rt, spec.target, kinds=("postgres",))


def _engine(name: str, opts: RenderOptions) -> str:
    return UPSTREAM_ENGINES.get(name, "postgres") if opts.selector_style == "upstream" else "postgres"


class DropIndexParams(Params):
    table: str = Field("customers", description="table the index is on")
    index: str = Field("customers_username_idx", description="index to drop")
    pg_schema: str = Field("public", description="schema of the table")

    @field_validator("table", "index", "pg_schema")
    @classmethod
    def _names(cls, v: str) -> str:
        return _ident(v)


@register
class DropIndex(PgFaultKind):
    id = "datastore.drop_index"
    summary = "drops an index in a PostgreSQL store (e.g. user-db's login index); revert recreates it exactly"
    Params = DropIndexParams
    survives_restart = True

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        p = spec.params
        schema = p["pg_schema"]
        conn = await pg_connect(ctx.runtime, spec.target)
        try:
            row = await conn.fetchrow("SELECT indexdef FROM pg_indexes WHERE schemaname=$1 AND tablename=$2 "
                                      "AND indexname=$3", schema, p["table"], p["index"])
            if row is None:
                names = [r["indexname"] for r in await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE schemaname=$1 AND tablename=$2", schema, p["table"])]
                if not names:
                    raise FaultError(f"params.table: {spec.target} has no table {schema}.{p['table']}")
                raise FaultError(f"params.index: {schema}.{p['table']} has no index {p['index']!r}"
                                 f"{did_you_mean(p['index'], names)}")
            state = {"schema": schema, "index": p["index"], "indexdef": row["indexdef"]}
            await ctx.checkpoint(state)  # the definition is on disk before the index is gone
            await conn.execute("SET lock_timeout = '5s'")
            await conn.execute(f"DROP INDEX {_qi(schema)}.{_qi(p['index'])}")
            return state
        finally:
            await conn.close()

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        if not state.get("indexdef"):
            return
        conn = await pg_connect(ctx.runtime, spec.target)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_indexes WHERE schemaname=$1 AND indexname=$2",
                                         state["schema"], state["index"])
            if not exists:
                await conn.execute(state["indexdef"])
        finally:
            await conn.close()

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        p = spec.params
        host = service_name(spec.target, opts)
        schema = p["pg_schema"]
        engine = _engine(spec.target, opts)
        if engine == "mongo":
            coll = f"db.getSiblingDB('users').getCollection('{p['table']}')"
            save = (f"SPEC=$(mongo --quiet --host {host} --eval \"JSON.stringify({coll}.getIndexes()"
                    f".filter(function(i){{return i.name=='{p['index']}'}})[0])\")")
            apply = f"mongo --quiet --host {host} --eval \"{coll}.dropIndex('{p['index']}')\""
            restore = (f"mongo --quiet --host {host} --eval \"var s=$SPEC; var k=s.key; delete s.key; delete s.v; "
                       f"delete s.ns; {coll}.createIndex(k, s)\"")
            return job(spec, opts, "mongo:3.4", apply, restore, save=save, note="drop index (MongoDB)")
        if engine != "postgres":
            raise FaultError(f"target: {spec.target} runs {engine} upstream; datastore.drop_index renders for "
                             "PostgreSQL and MongoDB stores only")
        psql = f"psql -h {host} -U sockdrill -d sockdrill -v ON_ERROR_STOP=1 -At"
        sql = (f"SELECT indexdef FROM pg_indexes WHERE schemaname='{schema}' AND tablename='{p['table']}' "
               f"AND indexname='{p['index']}'")
        save = f"DEF=$({psql} -c {quote(sql)})"
        drop = f"DROP INDEX {_qi(schema)}.{_qi(p['index'])}"
        apply = f"{psql} -c {quote(drop)}"
        restore = f'{psql} -c "$DEF"'
        return job(spec, opts, "postgres:16", apply, restore, save=save,
                   note="drop index; the Job recreates it from pg_indexes after the duration")


class StormParams(Params):
    concurrency: int = Field(8, ge=1, le=256, description="connections running the query back to back")
    table: SqlName = Field("customers", description="table scanned")
    column: SqlName = Field("email", description="text column matched with a regex")
    repeat: int = Field(20, ge=1, le=10_000, description="table passes per query (a small table needs several "
                        "to cost what the seed's scan of a large collection costs)")
    role: JobRole = Field("reporting", description="the database role the job logs in as (made for the fault, "
                          "dropped after it); an embedded store only")


@register
class QueryStorm(PgFaultKind):
    id = "datastore.query_storm"
    summary = "N connections run a regex scan (no index can serve it) back to back inside a PostgreSQL store"
    Params = StormParams

    def query(self, spec: FaultSpec) -> str:
        p = spec.params
        return (f"SELECT count(*) FROM {_qi(p['table'])}, generate_series(1, {int(p['repeat'])}) "
                f"WHERE {_qi(p['column'])} ~ $1")

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        import time

        p = spec.params
        conn = await pg_connect(ctx.runtime, spec.target)
        try:  # fail here, with the field named, rather than inside the worker
            cols = {r["column_name"] for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name=$1", p["table"])}
        finally:
            await conn.close()
        if not cols:
            raise FaultError(f"params.table: {spec.target} has no table {p['table']!r}")
        if p["column"] not in cols:
            raise FaultError(f"params.column: {p['table']} has no column {p['column']!r}"
                             f"{did_you_mean(p['column'], cols)}")
        url, env, role = pg_url(ctx.runtime, spec.target), {}, None
        state: dict[str, Any] = {"workers": [], "backends": [], "role": None}
        if not deployment(ctx.runtime, spec.target, kinds=("postgres",)).spec.external_url:
            # A job with a login of its own, as a reporting tool has: what it runs shows under its role, and
            # blocking that role (not ending its queries, which it sends again) is what stops it.
            role = state["role"] = p["role"]
            await ctx.checkpoint(state)  # the revert drops the role even if what follows fails half-way
            password = await create_job_role(ctx.runtime, spec.target, role, "SELECT", p["table"])
            url, env = _with_user(url, role), {"PGPASSWORD": password}
        cfg = {"mode": "storm", "url": url, "concurrency": p["concurrency"], "query": self.query(spec),
               "deadline": time.time() + spec.duration_s}
        await start_db_worker(ctx, spec, cfg, env, state)
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        if await stop_db_job(ctx, spec, state) or not state.get("backends") or ctx.leftover:
            return
        try:  # an external store: what is still running server-side stops now, not at its statement timeout
            conn = await pg_connect(ctx.runtime, spec.target)
        except Exception:
            return
        try:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY($1)",
                               state["backends"])
        finally:
            await conn.close()

    def target_deployments(self, spec: FaultSpec) -> list[str]:
        return []

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        p = spec.params
        host = service_name(spec.target, opts)
        n = p["concurrency"]
        engine = _engine(spec.target, opts)
        if engine == "mongo":
            loop = (f"for(;;){{db.getSiblingDB('users').getCollection('{p['table']}').find({{{p['column']}: "
                    f"{{$regex: '.*' + Math.random().toString(36).substring(7) + '@example.com'}}}}).itcount()}}")
            one = f"mongo --quiet --host {host} --eval {quote(loop)}"
            image = "mongo:3.4"
        elif engine == "postgres":
            sql = (f"SELECT count(*) FROM {_qi(p['table'])} WHERE {_qi(p['column'])} ~ "
                   f"('.*' || md5(random()::text) || '@example.com')")
            one = (f"while true; do psql -h {host} -U sockdrill -d sockdrill -qAt -c {quote(sql)} "
                   f">/dev/null; done")
            image = "postgres:16"
        else:
            raise FaultError(f"target: {spec.target} runs {engine} upstream; query_storm renders for "
                             "PostgreSQL and MongoDB stores only")
        apply = " ".join(f"( {one} ) &" for _ in range(n)).rstrip(" &") + " &"
        return job(spec, opts, image, apply, "kill $(jobs -p) 2>/dev/null || true",
                   note=f"{n} concurrent regex scans for the duration")


_REDIS_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def redis_bytes(size: str) -> int:
    """A Redis size (``16kb``, ``1mb``, ``1048576``) in bytes, with Redis's own units (k = 1000, kb = 1024)."""
    m = re.fullmatch(r"(\d+)(b|k|kb|m|mb|g|gb)?", size.strip().lower())
    if not m:
        raise ValueError(f"must be a Redis size like 1mb or 1048576, got {size!r}")
    return int(m.group(1)) * _REDIS_UNITS[m.group(2) or ""]


class RedisParams(Params):
    maxmemory: str | None = Field(None, description="e.g. 1mb, 100mb, 0 (no limit)")
    maxmemory_data: str | None = Field(
        None, description="instead of maxmemory: room for this much data on top of what Redis needs for itself "
                          "when the fault starts (INFO used_memory_overhead), e.g. 4kb: a fixed size would depend "
                          "on that overhead (about 1 MB, more than a small shop's data), a size relative to what "
                          "Redis holds on how much it holds")
    maxmemory_policy: Literal["noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru",
                              "volatile-lfu", "volatile-random", "volatile-ttl"] | None = None

    @field_validator("maxmemory", "maxmemory_data", mode="before")
    @classmethod
    def _mm(cls, v: Any) -> Any:
        if v is None:
            return v
        redis_bytes(str(v))
        return str(v).strip().lower()

    @model_validator(mode="after")
    def _one(self) -> RedisParams:
        if self.maxmemory is None and self.maxmemory_data is None and self.maxmemory_policy is None:
            raise ValueError("give maxmemory (or maxmemory_data) and/or maxmemory_policy")
        if self.maxmemory is not None and self.maxmemory_data is not None:
            raise ValueError("give maxmemory or maxmemory_data, not both")
        return self


def _redis(rt: Any, name: str) -> Any:
    import redis.asyncio as aioredis

    dep = deployment(rt, name, kinds=("redis",))
    if dep.spec.external_url:
        return aioredis.from_url(dep.spec.external_url, socket_timeout=5)
    pods = dep.ready_pods()
    if not pods:
        raise FaultError(f"target: {name!r} has no ready pod")
    user, password = rt.store_login(name, "admin")  # CONFIG is the runtime's user's, not the services'
    return aioredis.Redis(host="127.0.0.1", port=pods[0].port, username=user, password=password, socket_timeout=5)


class RedisFaultKind(FaultKind):
    """A fault inside a Redis store (it acts on the store directly)."""

    target_help = "a Redis deployment (e.g. session-db or carts-cache)"

    def check(self, rt: Any, spec: FaultSpec) -> None:
        deployment(rt, spec.target, kinds=("redis",))


@register
class RedisConfig(RedisFaultKind):
    id = "datastore.redis_config"
    summary = "sets Redis maxmemory / maxmemory-policy; the previous values come back on revert"
    Params = RedisParams
    survives_restart = True  # an external Redis keeps its settings

    def settings(self, spec: FaultSpec, overhead: int | None = None) -> dict[str, str]:
        """The CONFIG SET pairs; with ``maxmemory_data``, ``overhead`` is what Redis needs for itself now (None:
        a placeholder for the rendered Job's shell, which reads it there)."""
        out = {}
        if spec.params.get("maxmemory") is not None:
            out["maxmemory"] = spec.params["maxmemory"]
        elif spec.params.get("maxmemory_data") is not None:
            room = redis_bytes(spec.params["maxmemory_data"])
            out["maxmemory"] = str(overhead + room) if overhead is not None else f"$((OVERHEAD + {room}))"
        if spec.params.get("maxmemory_policy") is not None:
            out["maxmemory-policy"] = spec.params["maxmemory_policy"]
        return out

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        r = _redis(ctx.runtime, spec.target)
        try:
            previous, applied = {}, {}
            overhead = int((await r.info("memory"))["used_memory_overhead"])
            for key in self.settings(spec, overhead):
                previous[key] = (await r.config_get(key))[key]
            await ctx.checkpoint({"previous": previous, "set": {}})
            for key, value in self.settings(spec, overhead).items():
                await r.config_set(key, value)
                applied[key] = (await r.config_get(key))[key]  # as Redis normalised it
            return {"previous": previous, "set": applied}
        finally:
            await r.aclose()

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        r = _redis(ctx.runtime, spec.target)
        try:
            for key, old in state.get("previous", {}).items():
                now = (await r.config_get(key)).get(key)
                # After a restart an embedded Redis starts from its own config: only undo what is still ours.
                if ctx.leftover and now != state.get("set", {}).get(key):
                    continue
                await r.config_set(key, old)
        finally:
            await r.aclose()

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        host = service_name(spec.target, opts)
        cli = f"redis-cli -h {host}"
        save, apply, restore = [], [], []
        if spec.params.get("maxmemory_data") is not None:
            save.append(f"OVERHEAD=$({cli} INFO memory | sed -n 's/^used_memory_overhead:\\([0-9]*\\).*/\\1/p')")
        for i, (key, value) in enumerate(self.settings(spec).items()):
            save.append(f"OLD{i}=$({cli} CONFIG GET {key} | tail -n 1)")
            apply.append(f"{cli} CONFIG SET {key} {value if value.startswith('$((') else quote(value)}")
            restore.append(f'{cli} CONFIG SET {key} "$OLD{i}"')
        return job(spec, opts, "redis:7", "\n".join(apply), "; ".join(restore), save="\n".join(save),
                   note="redis CONFIG SET, restored after the duration")


def _size(lo: int, hi: int) -> Any:
    def check(v: str) -> str:
        n = redis_bytes(str(v))
        if not lo <= n <= hi:
            raise ValueError(f"must be from {lo} to {hi} bytes, got {v!r} ({n} bytes)")
        return str(v).strip().lower()
    return AfterValidator(check)


class FillParams(Params):
    rate: Annotated[str, _size(1024, 256 << 20)] = Field(
        "8mb", description="bytes the job writes a second (Redis units: 8mb, 512kb)")
    value_size: Annotated[str, _size(64, 1 << 20)] = Field("32kb", description="the size of each key it writes")
    ttl_s: int = Field(20, ge=1, le=3600, description="how long each of its keys lives (its reports expire)")
    prefix: str = Field("report:", pattern=r"^[A-Za-z0-9_.:-]{1,40}$",
                        description="its keys' prefix (what it deletes again on revert)")


def _redis_address(rt: Any, name: str) -> tuple[str, int, str | None, str | None]:
    """(host, port, user, password) a client of the store uses: the services' login on an embedded store."""
    dep = deployment(rt, name, kinds=("redis",))
    if dep.spec.external_url:
        parts = urlsplit(dep.spec.external_url)
        return parts.hostname or "127.0.0.1", parts.port or 6379, parts.username, parts.password
    pods = dep.ready_pods()
    if not pods:
        raise FaultError(f"target: {name!r} has no ready pod")
    user, password = rt.store_login(name, "app")
    return "127.0.0.1", pods[0].port, user, password


@register
class RedisFill(RedisFaultKind):
    id = "datastore.redis_fill"
    summary = ("a noisy tenant: a job caches its reports in a Redis it shares, rate bytes a second in keys that "
               "expire after ttl_s; its keys are deleted on revert")
    Params = FillParams

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        import time

        p = spec.params
        host, port, user, password = _redis_address(ctx.runtime, spec.target)
        cfg = {"mode": "fill", "host": host, "port": port, "username": user, "rate": redis_bytes(p["rate"]),
               "value_size": redis_bytes(p["value_size"]), "ttl_s": p["ttl_s"], "prefix": p["prefix"],
               "deadline": time.time() + spec.duration_s}
        state: dict[str, Any] = {"workers": []}
        await start_db_worker(ctx, spec, cfg, {"SOCKDRILL_FILL_PASSWORD": password or ""}, state)
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        await stop_db_job(ctx, spec, state)
        try:
            r = _redis(ctx.runtime, spec.target)
        except FaultError:
            return  # no pod: its keys went with the store's memory
        try:  # the job's keys go with it (they would expire within ttl_s anyway)
            batch: list[Any] = []
            async for k in r.scan_iter(match=spec.params["prefix"] + "*", count=1000):
                batch.append(k)
                if len(batch) >= 500:
                    await r.unlink(*batch)
                    batch = []
            if batch:
                await r.unlink(*batch)
        finally:
            await r.aclose()

    def target_deployments(self, spec: FaultSpec) -> list[str]:
        return []

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        p = spec.params
        cli = f"redis-cli -h {service_name(spec.target, opts)}"
        size = redis_bytes(p["value_size"])
        per_tick = max(1, round(redis_bytes(p["rate"]) / size / 10))
        prefix = quote(p["prefix"])
        apply = (f"V=$(head -c {size} /dev/zero | tr '\\0' r)\n"
                 f"( while true; do for i in $(seq {per_tick}); do "
                 f"echo \"SET {p['prefix']}$(od -An -N8 -tx1 /dev/urandom | tr -d ' ') $V EX {int(p['ttl_s'])}\"; "
                 f"done | {cli} >/dev/null; sleep 0.1; done ) &")
        restore = (f"kill $(jobs -p) 2>/dev/null || true; {cli} --scan --pattern {prefix}'*' "
                   f"| xargs -r -n 500 {cli} UNLINK >/dev/null")
        return job(spec, opts, "redis:7", apply, restore,
                   note=f"writes {p['rate']} a second into {spec.target} (keys {p['prefix']}*, {p['ttl_s']} s TTL)")
