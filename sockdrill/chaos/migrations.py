"""Faults a database change brings: a maintenance job stuck inside its transaction, holding a table lock, and
a migration that adds a CHECK constraint the application's writes break.

``datastore.lock_table``: a session of its own role (``maintenance``) opens a transaction, takes ``LOCK TABLE
<table> IN <mode> MODE`` and sits idle in it. ``share`` blocks every write to the table (reads go on), so writes
wait until their statement timeout: the seed's "service timeouts" on profile saves. Ending that session
(``cancel_queries`` with ``idle_in_transaction``) ends the fault for good: a one-off job does not come back.

``datastore.add_check``: ``ALTER TABLE <table> ADD CONSTRAINT <name> CHECK (<column> ~ '<pattern>') NOT VALID``:
rows already there are not checked, every new write of that column is. The seed's "database constraint
violations". Reverted (and fixed) by dropping the constraint (``drop_constraint``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field, field_validator

from sockdrill.chaos.datastore import (
    JobRole,
    PgFaultKind,
    SqlName,
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
from sockdrill.errors import FaultError, did_you_mean

LOCK_MODES = {"share": "SHARE", "exclusive": "EXCLUSIVE", "access_exclusive": "ACCESS EXCLUSIVE"}


async def _require_columns(rt: Any, target: str, table: str, columns: dict[str, str]) -> None:
    """FaultError naming the parameter when ``table`` or one of ``columns`` (param name → column) is not there."""
    cols = await _columns(rt, target, table)
    if not cols:
        raise FaultError(f"params.table: {target} has no table {table!r}")
    for field, column in columns.items():
        if column not in cols:
            raise FaultError(f"params.{field}: {table} has no column {column!r}{did_you_mean(column, cols)}")


async def _columns(rt: Any, name: str, table: str) -> set[str]:
    conn = await pg_connect(rt, name)
    try:
        return {r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
            table)}
    finally:
        await conn.close()


class LockParams(Params):
    table: SqlName = Field("customers", description="the table locked")
    mode: Literal["share", "exclusive", "access_exclusive"] = Field(
        "share", description="share: writes wait; exclusive: only plain reads go on; access_exclusive: nothing does")
    role: JobRole = Field("maintenance", description="the role the job logs in as (made for the fault, dropped after)")


@register
class LockTable(PgFaultKind):
    id = "datastore.lock_table"
    summary = "a maintenance job holds a table lock inside an idle transaction (writes, or all access, wait)"
    Params = LockParams

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        import time

        p = spec.params
        dep = deployment(ctx.runtime, spec.target, kinds=("postgres",))
        if dep.spec.external_url:
            raise FaultError(f"target: {spec.target} is an external database; lock_table makes a role of its own "
                             "and runs on embedded stores only")
        if not await _columns(ctx.runtime, spec.target, p["table"]):
            raise FaultError(f"params.table: {spec.target} has no table {p['table']!r}")
        role = p["role"]
        state: dict[str, Any] = {"workers": [], "role": role}
        await ctx.checkpoint(state)  # the revert drops the role even if what follows fails half-way
        password = await create_job_role(ctx.runtime, spec.target, role, "SELECT, UPDATE", p["table"])
        statements = [f"LOCK TABLE {_qi(p['table'])} IN {LOCK_MODES[p['mode']]} MODE"]
        cfg = {"mode": "hold", "url": _with_user(pg_url(ctx.runtime, spec.target), role), "statements": statements,
               "deadline": time.time() + spec.duration_s}
        await start_db_worker(ctx, spec, cfg, {"PGPASSWORD": password}, state)
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        await stop_db_job(ctx, spec, state)

    def target_deployments(self, spec: FaultSpec) -> list[str]:
        return []

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        p = spec.params
        host = service_name(spec.target, opts)
        engine = _engine(spec.target, opts)
        if engine == "mongo":  # the nearest MongoDB has: a backup's fsyncLock holds every write on the server
            mongo = f"mongo --quiet --host {host} --eval"
            return job(spec, opts, "mongo:3.4", f"{mongo} 'db.fsyncLock()'", f"{mongo} 'db.fsyncUnlock()'",
                       note="writes wait behind fsyncLock (MongoDB has no table locks)")
        if engine != "postgres":
            raise FaultError(f"target: {spec.target} runs {engine} upstream; lock_table renders for PostgreSQL "
                             "and MongoDB stores only")
        secs = max(1, round(spec.duration_s))
        sql = f"BEGIN; LOCK TABLE {_qi(p['table'])} IN {LOCK_MODES[p['mode']]} MODE; SELECT pg_sleep({secs}); COMMIT;"
        apply = f"psql -h {host} -U sockdrill -d sockdrill -v ON_ERROR_STOP=1 -c {quote(sql)} &"
        return job(spec, opts, "postgres:16", apply, "kill $(jobs -p) 2>/dev/null || true",
                   note=f"a session holds {LOCK_MODES[p['mode']]} on {p['table']} for the duration")


class CheckParams(Params):
    table: SqlName = Field("customers", description="the table the migration changes")
    column: SqlName = Field("phone", description="the text column the new constraint checks")
    pattern: str = Field("^[0-9]*$", min_length=1, max_length=200,
                         description="a regular expression every new value of the column must match")
    name: SqlName = Field("customers_phone_check", description="the constraint's name")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"is not a regular expression: {exc}") from None
        if "\x00" in v:
            raise ValueError("must not contain a NUL byte")
        return v


def _check_sql(p: dict[str, Any]) -> str:
    literal = "'" + p["pattern"].replace("'", "''") + "'"
    return (f"ALTER TABLE {_qi(p['table'])} ADD CONSTRAINT {_qi(p['name'])} CHECK ({_qi(p['column'])} ~ "
            f"{literal}) NOT VALID")


@register
class AddCheck(PgFaultKind):
    id = "datastore.add_check"
    summary = "a migration adds a CHECK constraint (NOT VALID) that new writes of a column must pass"
    Params = CheckParams
    survives_restart = True

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        p = spec.params
        await _require_columns(ctx.runtime, spec.target, p["table"], {"column": p["column"]})
        state = {"table": p["table"], "name": p["name"]}
        await ctx.checkpoint(state)  # on disk before the change, so a crash still reverts it
        conn = await pg_connect(ctx.runtime, spec.target)
        try:
            if await conn.fetchval("SELECT 1 FROM pg_constraint WHERE conname = $1", p["name"]):
                raise FaultError(f"params.name: {spec.target} already has a constraint {p['name']!r}")
            await conn.execute("SET lock_timeout = '5s'")
            await conn.execute(_check_sql(p))
        finally:
            await conn.close()
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        if not state.get("name"):
            return
        conn = await pg_connect(ctx.runtime, spec.target)
        try:
            await conn.execute(f"ALTER TABLE {_qi(state['table'])} DROP CONSTRAINT IF EXISTS {_qi(state['name'])}")
        finally:
            await conn.close()

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        p = spec.params
        engine = _engine(spec.target, opts)
        if engine == "mongo":  # a collection validator, checked on new writes only (validationLevel moderate)
            coll = f"db.getSiblingDB('users').runCommand({{collMod: '{p['table']}', validator: "
            rule = json.dumps({p["column"]: {"$regex": p["pattern"]}})
            mongo = f"mongo --quiet --host {service_name(spec.target, opts)} --eval"
            apply = f"{mongo} {quote(coll + rule + ', validationLevel: ' + repr('moderate') + '})')}"
            restore = f"{mongo} {quote(coll + '{}})')}"
            return job(spec, opts, "mongo:3.4", apply, restore, note=f"a validator on {p['column']}, removed after")
        if engine != "postgres":
            raise FaultError(f"target: {spec.target} runs {engine} upstream; add_check renders for PostgreSQL and "
                             "MongoDB stores only")
        psql = f"psql -h {service_name(spec.target, opts)} -U sockdrill -d sockdrill -v ON_ERROR_STOP=1"
        drop = f"ALTER TABLE {_qi(p['table'])} DROP CONSTRAINT IF EXISTS {_qi(p['name'])}"
        return job(spec, opts, "postgres:16", f"{psql} -c {quote(_check_sql(p))}", f"{psql} -c {quote(drop)}",
                   note=f"CHECK ({p['column']} ~ pattern) on {p['table']}, dropped after the duration")


class ImportParams(Params):
    table: SqlName = Field("postcode_areas", description="the table the import rewrote")
    column: SqlName = Field("zone", description="the column it got wrong")
    value: str = Field("uk", max_length=200, description="the value it wrote there")
    where_column: SqlName = Field("zone", description="the column that picks the rows it rewrote")
    where_values: list[str] = Field(["uk-remote"], min_length=1, max_length=100,
                                    description="the rows whose where_column has one of these values")
    key: list[SqlName] = Field(["country", "area"], min_length=1, max_length=8,
                               description="the table's primary key (the rendered Job restores rows by it; the "
                                           "local runtime reads it from the store)")

    @field_validator("value", "where_values")
    @classmethod
    def _no_nul(cls, v: Any) -> Any:
        if any("\x00" in x for x in ([v] if isinstance(v, str) else v)):
            raise ValueError("must not contain a NUL byte")
        return v


MAX_IMPORT_ROWS = 10_000


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@register
class BadImport(PgFaultKind):
    """A reference-data import (a vendor's new release) that wrote a wrong value into one column of the rows it
    touched: every row whose ``where_column`` is in ``where_values`` gets ``column = value``. The rows' values
    before it are kept in the fault's state (by primary key) and written back on revert."""

    id = "datastore.bad_import"
    summary = "a data import writes a wrong value into a column of chosen rows (reference data gone wrong)"
    Params = ImportParams
    survives_restart = True

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        p = spec.params
        await _require_columns(ctx.runtime, spec.target, p["table"],
                               {"column": p["column"], "where_column": p["where_column"]})
        conn = await pg_connect(ctx.runtime, spec.target)
        try:
            keys = [r["attname"] for r in await conn.fetch(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary",
                _qi(p["table"]))]
            if not keys:
                raise FaultError(f"params.table: {p['table']} has no primary key to restore its rows by")
            picked = ", ".join(_qi(k) for k in keys)
            rows = await conn.fetch(
                f"SELECT {picked}, {_qi(p['column'])}::text AS old FROM {_qi(p['table'])} "
                f"WHERE {_qi(p['where_column'])}::text = ANY($1::text[]) LIMIT {MAX_IMPORT_ROWS + 1}",
                p["where_values"])
            if len(rows) > MAX_IMPORT_ROWS:
                raise FaultError(f"params.where_values: more than {MAX_IMPORT_ROWS} rows match; pick fewer")
            state = {"table": p["table"], "column": p["column"], "keys": keys,
                     "rows": [{"key": [str(r[k]) for k in keys], "old": r["old"]} for r in rows]}
            await ctx.checkpoint(state)  # the old values on disk before they change
            where = " AND ".join(f"{_qi(k)}::text = ${i + 2}" for i, k in enumerate(keys))
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '5s'")
                for row in state["rows"]:
                    await conn.execute(f"UPDATE {_qi(p['table'])} SET {_qi(p['column'])} = $1 WHERE {where}",
                                       p["value"], *row["key"])
        finally:
            await conn.close()
        return state

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        if not state.get("rows"):
            return
        where = " AND ".join(f"{_qi(k)}::text = ${i + 2}" for i, k in enumerate(state["keys"]))
        conn = await pg_connect(ctx.runtime, spec.target)
        try:
            async with conn.transaction():
                for row in state["rows"]:
                    await conn.execute(f"UPDATE {_qi(state['table'])} SET {_qi(state['column'])} = $1 WHERE {where}",
                                       row["old"], *row["key"])
        finally:
            await conn.close()

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        p = spec.params
        if _engine(spec.target, opts) != "postgres":
            raise FaultError(f"target: {spec.target} is not a PostgreSQL store upstream; bad_import renders for "
                             "PostgreSQL only")
        table, column, saved = _qi(p["table"]), _qi(p["column"]), _qi(f"sockdrill_saved_{p['table']}"[:63])
        values = ", ".join(_literal(v) for v in p["where_values"])
        keys = ", ".join(_qi(k) for k in p["key"])
        match = " AND ".join(f"t.{_qi(k)} = s.{_qi(k)}" for k in p["key"])
        apply_sql = (f"CREATE TABLE {saved} AS SELECT {keys}, {column} FROM {table} "
                     f"WHERE {_qi(p['where_column'])}::text IN ({values}); "
                     f"UPDATE {table} SET {column} = {_literal(p['value'])} "
                     f"WHERE {_qi(p['where_column'])}::text IN ({values});")
        restore_sql = f"UPDATE {table} t SET {column} = s.{column} FROM {saved} s WHERE {match}; DROP TABLE {saved};"
        psql = f"psql -h {service_name(spec.target, opts)} -U sockdrill -d sockdrill -v ON_ERROR_STOP=1"
        return job(spec, opts, "postgres:16", f"{psql} -c {quote(apply_sql)}", f"{psql} -c {quote(restore_sql)}",
                   note=f"{p['table']}.{p['column']} rewritten for the chosen rows, the old values restored after")
