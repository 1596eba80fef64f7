"""A fault in a database's connections: another application leaks sessions into a PostgreSQL store.

``datastore.connection_leak``: a client of its own role (``recommender`` by default: another team's job that
reads the store) opens sessions and never closes them, until it holds ``connections`` of them or every slot the
store lets a non-superuser have (``max_connections`` less the superusers' reserve). Its sessions sit idle;
ended (``pg_terminate_backend``, a restart of the store), they are opened again, as the leaking pool would.

The store's other clients must open new sessions to feel it, so with ``drop_others`` (the default) their sessions
are dropped once, as a failover or a network blip drops them, and the leak takes their slots first: while the
leak fills up, the other login roles are blocked (a connection limit of 0, their earlier limits kept in the
fault's state), then given back their limits. From then on every login of theirs is refused ("remaining
connection slots are reserved"), and a service that reconnects (its pool's next connection) cannot: the seed's
"cart service database connection issues". Restarting that service makes it worse: its pool cannot open.

Fixed by blocking the leaking role and ending its sessions (``limit_db_role`` with ``connections: 0`` and
``end_sessions``); ``db_sessions`` shows which role holds the slots. Reverted by stopping the job and dropping
its role (its sessions end with it).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from sockdrill.chaos.datastore import (
    JobRole,
    PgFaultKind,
    _engine,
    _qi,
    _with_user,
    create_job_role,
    pg_connect,
    start_db_worker,
    stop_db_job,
)
from sockdrill.chaos.kinds import Ctx, Params, deployment, pg_url, register
from sockdrill.chaos.render import RenderOptions, job, quote, service_name
from sockdrill.chaos.spec import FaultSpec
from sockdrill.errors import FaultError

READY_S = 60.0  # a store of a few hundred slots fills in seconds; a busy machine gets time


class LeakParams(Params):
    connections: int = Field(0, ge=0, le=5000,
                             description="sessions the leak holds; 0: every slot the store lets it have")
    role: JobRole = Field("recommender", description="the role the leaking client logs in as (made for the fault, "
                                                     "dropped after)")
    application: str = Field("recommender", min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.-]+$",
                             description="the application_name its sessions show")
    drop_others: bool = Field(True, description="drop the other clients' sessions once, as a failover would, so "
                                                "that they must reconnect into a full store")


async def _block_others(rt: Any, name: str, role: str, state: dict[str, Any], ctx: Ctx) -> list[str]:
    """Block every other non-superuser login role (limit 0, earlier limits checkpointed) and end its sessions."""
    conn = await pg_connect(rt, name)
    try:
        rows = await conn.fetch("SELECT rolname, rolconnlimit FROM pg_roles WHERE rolcanlogin AND NOT rolsuper "
                                "AND rolname <> $1 AND rolname NOT LIKE 'pg\\_%'", role)
        state["limits"] = {r["rolname"]: int(r["rolconnlimit"]) for r in rows}
        await ctx.checkpoint(state)  # a crash from here on: the revert gives the roles their limits back
        for r in rows:
            await conn.execute(f"ALTER ROLE {_qi(r['rolname'])} CONNECTION LIMIT 0")
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1::text[])",
                           list(state["limits"]))
    finally:
        # Closed before the leak fills: a superuser session that ends afterwards would free a slot for others.
        await conn.close()
    return list(state["limits"])


async def _give_back(rt: Any, name: str, state: dict[str, Any]) -> None:
    """Put back the limits the other roles had (a role dropped meanwhile is skipped)."""
    limits: dict[str, int] = state.get("limits") or {}
    if not limits:
        return
    conn = await pg_connect(rt, name)
    try:
        for rolname, limit in limits.items():
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", rolname):
                await conn.execute(f"ALTER ROLE {_qi(rolname)} CONNECTION LIMIT {int(limit)}")
    finally:
        await conn.close()
    state["limits"] = {}


@register
class ConnectionLeak(PgFaultKind):
    id = "datastore.connection_leak"
    summary = ("another application leaks sessions into a PostgreSQL store until no slot is left; the other "
               "clients' sessions drop once and cannot come back")
    Params = LeakParams

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        p = spec.params
        if deployment(ctx.runtime, spec.target, kinds=("postgres",)).spec.external_url:
            raise FaultError(f"target: {spec.target} is an external database; connection_leak makes a role of its "
                             "own and runs on embedded stores only")
        role = p["role"]
        state: dict[str, Any] = {"workers": [], "role": role, "limits": {}}
        await ctx.checkpoint(state)  # the revert drops the role even if what follows fails half-way
        password = await create_job_role(ctx.runtime, spec.target, role)
        if p["drop_others"]:
            await _block_others(ctx.runtime, spec.target, role, state, ctx)
        cfg = {"mode": "leak", "url": _with_user(pg_url(ctx.runtime, spec.target), role),
               "connections": p["connections"], "application": p["application"],
               "deadline": time.time() + spec.duration_s}
        try:
            await start_db_worker(ctx, spec, cfg, {"PGPASSWORD": password}, state, ready_s=READY_S)
        finally:
            await _give_back(ctx.runtime, spec.target, state)
            await ctx.checkpoint(state)
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        await stop_db_job(ctx, spec, state)
        await _give_back(ctx.runtime, spec.target, state)

    def target_deployments(self, spec: FaultSpec) -> list[str]:
        return []

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        p = spec.params
        host = service_name(spec.target, opts)
        # Kubernetes cannot ask the store how many slots are left: PostgreSQL's default max_connections is 100.
        n = p["connections"] or 100
        engine = _engine(spec.target, opts)
        if engine == "mongo":  # MongoDB's limit is in the tens of thousands: the Job holds what it is given
            one = f"mongo --quiet --host {host} --eval 'while (true) {{ sleep(60000) }}'"
            image = "mongo:3.4"
        elif engine == "postgres":
            one = (f"while true; do PGAPPNAME={quote(p['application'])} psql -h {host} -U sockdrill -d sockdrill -qAt "
                   f"-c 'SELECT pg_sleep(86400)' >/dev/null 2>&1; sleep 0.2; done")
            image = "postgres:16"
        else:
            raise FaultError(f"target: {spec.target} runs {engine} upstream; connection_leak renders for PostgreSQL "
                             "and MongoDB stores only")
        apply = f"i=0; while [ $i -lt {n} ]; do ( {one} ) & i=$((i+1)); done"
        return job(spec, opts, image, apply, "kill $(jobs -p) 2>/dev/null || true",
                   note=f"{n} sessions held open for the duration, opened again when ended")
