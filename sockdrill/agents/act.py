"""The act room: what an on-call engineer may change (restarts, scale, limits, configuration, indexes,
queries, caches, payments, the queue, the gateway). Every call is audited; only a change counts as acting."""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any, Literal, get_args

from sockdrill.agents.registry import tool
from sockdrill.agents.toolkit import (
    DLQ_SUFFIX,
    MAX_REPLICAS,
    ToolsBase,
    _ident,
    _paging,
    _redis_errors,
    _s,
    _stream_and_group,
)
from sockdrill.errors import SockdrillError, ToolError, did_you_mean

IndexMethod = Literal["btree", "hash", "gin", "gist", "brin"]
INDEX_METHODS: tuple[str, ...] = get_args(IndexMethod)
# Operator classes an agent may name (no free SQL): opclass → (its method, the extension it needs).
OPCLASSES: dict[str, tuple[str, str | None]] = {
    "gin_trgm_ops": ("gin", "pg_trgm"), "gist_trgm_ops": ("gist", "pg_trgm"), "jsonb_path_ops": ("gin", None)}
REDIS_POLICIES = frozenset({"noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru",
                            "volatile-lfu", "volatile-random", "volatile-ttl"})

class ActRoom(ToolsBase):
    # ---- act --------------------------------------------------------------------------------
    @tool("act")
    def restart(self, service: str, pod: str = "") -> dict[str, Any]:
        """Replace a pod of a deployment, or roll every pod of it (one at a time) when no pod is given.

        Args:
        service: the deployment name
        pod: one pod name from pods(); empty for all pods
        """
        body: dict[str, Any] = {"deployment": service}
        if pod:
            body["pod"] = pod
        out = self._post("/v1/restart", body)
        return {**out, "changed": bool(out.get("restarted"))}

    @tool("act")
    def scale(self, service: str, replicas: int) -> dict[str, Any]:
        """Set the number of pods of a service (0 to 8; scaling to 0 takes the service down).

        Args:
        service: the deployment name
        replicas: the new number of pods
        """
        if not 0 <= replicas <= MAX_REPLICAS:
            raise ToolError(f"replicas must be between 0 and {MAX_REPLICAS}, got {replicas}")
        if self._kind_of(service) != "service":  # a datastore's size is the platform's, asleep or awake
            raise ToolError(f"'{service}' is a datastore and runs exactly one pod; it cannot be scaled")
        out = self._post("/v1/scale", {"deployment": service, "replicas": replicas})
        return {**out, "changed": out.get("before") != out.get("replicas")}

    @tool("act")
    def set_limits(self, service: str, cpu: str = "", memory: str = "", clear: bool = False) -> dict[str, Any]:
        """Set (or clear) the CPU/memory limits of every pod of a deployment.

        Args:
        service: the deployment name
        cpu: CPU limit like 500m or 1
        memory: memory limit like 256Mi
        clear: put both limits back to the deployment's standard ones
        """
        out = self._post("/v1/limits", {"deployment": service, "cpu": cpu or None, "memory": memory or None,
                                        "clear": clear})
        return {**out, "changed": out.get("before") != out.get("limits")}

    @tool("act")
    def set_config(self, service: str, knobs: dict) -> dict[str, Any]:  # type: ignore[type-arg]
        """Change configuration knobs of a service live (see describe for the knobs it has).

        Args:
        service: the service deployment
        knobs: an object of knob name to new value
        """
        self._own_service(service)
        out = self._post("/v1/config", {"deployment": service, "knobs": knobs})
        # The answer says what this call did, not what others set before it.
        return {"deployment": service, "set": knobs, "pods": out.get("pods", []), "changed": bool(out.get("changed"))}

    @tool("act")
    def rollback_config(self, service: str) -> dict[str, Any]:
        """Undo the last configuration change of a service.

        Args:
        service: the service deployment
        """
        self._own_service(service)
        out = self._post("/v1/config/rollback", {"deployment": service})
        return {"deployment": service, "restored": out.get("restored", {}), "changed": bool(out.get("restored"))}

    @tool("act")
    def create_index(self, service: str, table: str, columns: list[str], name: str = "",
                     unique: bool = False, method: IndexMethod = "btree", opclass: str = "") -> dict[str, Any]:
        """Create an index on a table of a PostgreSQL datastore.

        Args:
        service: the database deployment, e.g. user-db
        table: the table
        columns: the indexed columns, in order
        name: the index name (default: table_col_idx, or table_col_<method>_idx for other methods)
        unique: a unique index (btree only)
        method: btree, hash, gin, gist or brin
        opclass: every column's operator class: gin_trgm_ops, gist_trgm_ops (pg_trgm, for LIKE), jsonb_path_ops
        """
        _ident(table, "table")
        if not columns:
            raise ToolError("columns must name at least one column")
        cols = [_ident(c, "column") for c in columns]
        if method not in INDEX_METHODS:
            raise ToolError(f"method must be one of {', '.join(INDEX_METHODS)}, got {method!r}")
        if opclass and opclass not in OPCLASSES:
            raise ToolError(f"opclass must be one of {', '.join(OPCLASSES)} (or empty), got {opclass!r}")
        if opclass and OPCLASSES[opclass][0] != method:
            raise ToolError(f"opclass {opclass} belongs to method {OPCLASSES[opclass][0]}, not {method}")
        if unique and method != "btree":
            raise ToolError("only a btree index can be unique")
        if method == "hash" and len(cols) > 1:
            raise ToolError("a hash index covers one column")
        suffix = "" if method == "btree" else f"_{method}"
        index = _ident(name or f"{table}_{'_'.join(cols)}{suffix}_idx", "name")
        keys = ", ".join(f"{c} {opclass}" if opclass else c for c in cols)
        sql = (f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {index} ON {table} "
               f"USING {method} ({keys})")

        async def go(conn: Any) -> dict[str, Any]:
            import asyncpg

            have = {r["column_name"] for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ANY(current_schemas(false)) "
                "AND table_name = $1", table)}
            if not have:
                raise ToolError(f"{service} has no table '{table}'")
            if set(cols) - have:
                raise ToolError(f"table '{table}' has no column {', '.join(sorted(set(cols) - have))}"
                                + did_you_mean(sorted(set(cols) - have)[0], have))
            extension = OPCLASSES[opclass][1] if opclass else None
            if extension and not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = $1", extension):
                raise ToolError(f"opclass {opclass} needs the {extension} extension, which {service} does not have")
            if await conn.fetchval("SELECT 1 FROM pg_indexes WHERE indexname = $1", index):
                return {"created": None, "exists": index, "changed": False}
            started = time.perf_counter()
            try:
                await conn.execute(sql)
            except asyncpg.PostgresError as exc:  # e.g. gin on a text column without an opclass
                raise ToolError(f"{service} refused the index: {exc}") from None
            await conn.execute(f"ANALYZE {table}")
            return {"created": index, "method": method, "seconds": round(time.perf_counter() - started, 3),
                    "changed": True}

        return self._pg(service, go)

    @tool("act")
    def drop_index(self, service: str, name: str) -> dict[str, Any]:
        """Drop an index of a PostgreSQL datastore.

        Args:
        service: the database deployment
        name: the index name
        """
        index = _ident(name, "name")

        async def go(conn: Any) -> dict[str, Any]:
            backs = await conn.fetchval(
                "SELECT conname FROM pg_constraint WHERE conindid = (SELECT oid FROM pg_class WHERE relname = $1 "
                "AND relkind = 'i' LIMIT 1)", index)
            if backs:
                raise ToolError(f"index '{index}' enforces the constraint '{backs}' (a primary or unique key): "
                                "it is not dropped")
            existed = bool(await conn.fetchval("SELECT 1 FROM pg_indexes WHERE indexname = $1", index))
            await conn.execute(f"DROP INDEX IF EXISTS {index}")
            return {"dropped": index if existed else None, "changed": existed}

        return self._pg(service, go)

    @tool("act")
    def cancel_queries(self, service: str, min_duration_s: float = 5.0, idle_in_transaction: bool = False
                       ) -> dict[str, Any]:
        """Terminate the database sessions whose current query has run longer than a threshold (and, with
        idle_in_transaction, the sessions whose transaction has been open that long while they do nothing:
        they hold their locks until they end).

        Args:
        service: the database deployment
        min_duration_s: only queries (or idle transactions) at least this old
        idle_in_transaction: also end sessions idle inside an open transaction
        """
        if not math.isfinite(min_duration_s) or not 0 <= min_duration_s <= 86400:
            raise ToolError(f"min_duration_s must be between 0 and 86400 seconds, got {min_duration_s!r}")
        if not isinstance(idle_in_transaction, bool):
            raise ToolError(f"idle_in_transaction must be true or false, got {idle_in_transaction!r}")

        async def go(conn: Any) -> dict[str, Any]:
            rows = await conn.fetch(
                "SELECT pid, usename, left(query, 120) AS query FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND ("
                "(state = 'active' AND clock_timestamp() - query_start >= make_interval(secs => $1)) OR "
                "($2 AND state LIKE 'idle in transaction%' AND clock_timestamp() - xact_start >= "
                "make_interval(secs => $1)))",
                float(min_duration_s), idle_in_transaction)
            killed = [r for r in rows if await conn.fetchval("SELECT pg_terminate_backend($1)", r["pid"])]
            by_role: dict[str, int] = {}
            for r in killed:
                by_role[r["usename"]] = by_role.get(r["usename"], 0) + 1
            return {"terminated": len(killed), "by_role": by_role, "queries": sorted({r["query"] for r in rows})[:5],
                    "changed": bool(killed)}

        return self._pg(service, go)

    @tool("act")
    def limit_db_role(self, service: str, role: str, connections: int, end_sessions: bool = False
                      ) -> dict[str, Any]:
        """Set how many sessions a login role of a PostgreSQL datastore may open (0 blocks new logins,
        -1 lifts the limit). Sessions already open stay unless end_sessions.

        Args:
        service: the database deployment
        role: the login role (the user label of pg_stat_statements, usename in pg_stat_activity)
        connections: the limit, -1 (none) to 10000
        end_sessions: also end every session the role has open now
        """
        name = _ident(role, "role").lower()
        if isinstance(connections, bool) or not isinstance(connections, int) or not -1 <= connections <= 10000:
            raise ToolError(f"connections must be an integer from -1 (no limit) to 10000, got {connections!r}")

        async def go(conn: Any) -> dict[str, Any]:
            roles = {r["rolname"]: r for r in await conn.fetch(
                "SELECT rolname, rolsuper, rolconnlimit FROM pg_roles WHERE rolcanlogin AND rolname NOT LIKE 'pg\\_%'")}
            if name not in roles:
                raise ToolError(f"{service} has no login role '{name}'" + did_you_mean(name, roles))
            if roles[name]["rolsuper"]:
                raise ToolError(f"'{name}' is a superuser (the operator's own login): a connection limit does not "
                                "apply to it")
            before = int(roles[name]["rolconnlimit"])
            if before != connections:
                await conn.execute(f'ALTER ROLE "{name}" CONNECTION LIMIT {int(connections)}')
            ended = 0
            if end_sessions:
                ended = len([r for r in await conn.fetch(
                    "SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE usename = $1 "
                    "AND pid <> pg_backend_pid()", name) if r["t"]])
            sessions = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", name)
            return {"role": name, "connections": connections, "before": before, "sessions_ended": ended,
                    "sessions_open": int(sessions), "changed": before != connections or ended > 0}

        return self._pg(service, go)

    @tool("act")
    def drop_constraint(self, service: str, table: str, name: str) -> dict[str, Any]:
        """Drop a CHECK constraint of a table in a PostgreSQL datastore (keys and foreign keys are refused: they
        guard the data's shape).

        Args:
        service: the database deployment
        table: the table
        name: the constraint's name (pg_constraint.conname; a failing write's error names it)
        """
        _ident(table, "table")
        con = _ident(name, "name")

        async def go(conn: Any) -> dict[str, Any]:
            rows = await conn.fetch(
                "SELECT conname, contype::text AS contype FROM pg_constraint WHERE conrelid = to_regclass($1)", table)
            if not rows and not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                raise ToolError(f"{service} has no table '{table}'")
            kinds = {r["conname"]: r["contype"] for r in rows}
            if con not in kinds:
                raise ToolError(f"table '{table}' has no constraint '{con}'" + did_you_mean(con, kinds))
            if kinds[con] != "c":
                raise ToolError(f"'{con}' is a primary, unique, foreign-key or exclusion constraint: it is not "
                                "dropped")
            await conn.execute("SET lock_timeout = '5s'")
            await conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{con}"')
            return {"dropped": con, "table": table, "changed": True}

        return self._pg(service, go)

    @tool("act")
    def flush_cache(self, service: str) -> dict[str, Any]:
        """Delete every key of a Redis datastore (sessions, carts, queues in it are lost).

        Args:
        service: the Redis deployment
        """
        r = self._redis(service)
        keys = r.dbsize()
        r.flushdb()
        return {"flushed_keys": keys, "changed": bool(keys)}

    @tool("act")
    def run_job(self, service: str, job: str) -> dict[str, Any]:
        """Run one of a service's maintenance jobs (describe(service) lists them, e.g. a data re-import) on one
        of its pods, and wait until it is done.

        Args:
        service: the service deployment
        job: the job's name
        """
        self._own_service(service)
        if not job or len(job) > 64:
            raise ToolError(f"job must be a job name (describe({service!r}) lists them), got {job!r}")
        out = self._post("/v1/job", {"deployment": service, "job": job})
        return {**out, "changed": True}

    @tool("act")
    def set_route(self, service: str, weights: dict[str, int]) -> dict[str, Any]:
        """Split a service's reads over its subsets by weight, live (the mesh's route; writes always go to the
        first subset). describe(service) shows its subsets, weights and route revision.

        Args:
        service: a routed service, e.g. catalogue
        weights: subset name to weight 0-100, e.g. {"primary": 100, "v1": 0}; subsets not named get 0
        """
        out = self._post("/v1/route", {"deployment": service, "weights": weights})
        return {"deployment": out["deployment"], "weights": out["weights"], "changed": out["changed"]}

    @tool("act")
    def rollback_route(self, service: str) -> dict[str, Any]:
        """Put a service's route back to the weights before its last change.

        Args:
        service: a routed service
        """
        out = self._post("/v1/route/rollback", {"deployment": service})
        return {**out, "changed": True}

    @tool("act")
    def purge_cache(self, service: str, product: str = "", path_prefix: str = "") -> dict[str, Any]:
        """Purge an edge cache (a region's CDN): one product's pages, every object under a path, or everything.

        Args:
        service: the edge deployment, e.g. edge-eu
        product: a product id: its cached pages go (empty: not by product)
        path_prefix: a path such as /catalogue: every cached object under it goes (empty with no product: all)
        """
        if product and (len(product) > 40 or not product.strip()):
            raise ToolError(f"product must be a product id (at most 40 characters), got {product!r}")
        if path_prefix and not path_prefix.startswith("/"):
            raise ToolError(f"path_prefix must start with '/', got {path_prefix!r}")
        body: dict[str, Any] = {"deployment": service}
        if product:
            body["keys"] = [f"product:{product}"]
        if path_prefix:
            body["prefix"] = path_prefix
        out = self._post("/v1/purge", body)
        return {**out, "changed": out.get("removed", 0) > 0}

    @tool("act")
    def resize_cache(self, service: str, maxmemory: str, policy: str = "") -> dict[str, Any]:
        """Set a Redis datastore's memory limit (e.g. 256mb, 0 for none) and optionally its eviction policy.

        Args:
        service: the Redis deployment
        maxmemory: the new limit, e.g. 64mb; 0 removes it
        policy: noeviction, allkeys-lru, allkeys-lfu, volatile-lru, ...
        """
        # Every argument is checked before anything changes: a bad policy must not leave a new limit behind.
        size = maxmemory.strip().lower()
        m = re.fullmatch(r"(\d+)(b|kb|mb|gb)?", size)
        if not m:
            raise ToolError(f"maxmemory must look like 64mb or 0, got {maxmemory!r}")
        scale = {"b": 1, None: 1, "kb": 1024, "mb": 1 << 20, "gb": 1 << 30}[m.group(2)]
        if 0 < int(m.group(1)) * scale < 1 << 20:
            raise ToolError(f"maxmemory must be 0 (no limit) or at least 1mb, got {maxmemory!r}")
        if policy and policy not in REDIS_POLICIES:
            raise ToolError(f"policy must be one of {', '.join(sorted(REDIS_POLICIES))}, got {policy!r}")
        r = self._redis(service)

        def current() -> tuple[str, str]:
            policy_now = r.config_get("maxmemory-policy")["maxmemory-policy"]
            return _s(r.config_get("maxmemory")["maxmemory"]), _s(policy_now)

        before = current()
        r.config_set("maxmemory", size)
        if policy:
            try:
                r.config_set("maxmemory-policy", policy)
            except Exception:
                r.config_set("maxmemory", before[0])  # all or nothing
                raise
        after = current()
        return {"maxmemory": after[0], "policy": after[1], "changed": after != before}

    @tool("act")
    def reconcile_payments(self, older_than_s: float = 30.0, dry_run: bool = False) -> dict[str, Any]:
        """Void payment charges that have no order (customers charged for orders that failed).

        Args:
        older_than_s: only charges older than this (leave orders in flight alone)
        dry_run: only report what would be voided
        """
        from sockdrill.shop.reconcile import reconcile_payments

        orders_db = self._address("orders-db")  # carries the runtime's login: never in what the agent sees
        out: dict[str, Any] = {}
        for name in self._payment_providers():
            try:
                one = asyncio.run(reconcile_payments(self._address(name), orders_db, older_than_s=older_than_s,
                                                     dry_run=dry_run))
            except SockdrillError as exc:
                raise ToolError(str(exc).replace(orders_db, "orders-db")) from None
            for k, v in one.items():  # both ledgers' counts and ids together
                out[k] = out[k] + v if isinstance(v, int | list) and not isinstance(v, bool) and k in out else v
            out.setdefault("providers", []).append(name)
        return {**out, "changed": not dry_run and bool(out.get("voided"))}

    def _payment_providers(self) -> list[str]:
        """The payment providers that run: payment-gateway, and payment-gateway-b where it is awake."""
        running = self.client.running()
        return [n for n in ("payment-gateway", "payment-gateway-b") if n in running]

    @tool("act")
    def dead_letter(self, message_id: str = "", min_idle_s: float = 30.0, count: int = 10,
                    service: str = "queue", queue: str = "") -> dict[str, Any]:
        """Move messages that were delivered but never acknowledged (e.g. a poison message) off a queue's
        stream into its dead-letter stream (<stream>.dlq), where they wait for requeue.

        Args:
        message_id: one message id from queue_status; empty for the oldest pending ones
        min_idle_s: without a message_id, only messages pending at least this long
        count: without a message_id, at most this many messages (max 100)
        service: the queue deployment
        queue: the stream (see queue_status's streams); empty for the shipping queue
        """
        r = self._redis(service)
        name, group = _stream_and_group(r, queue)
        if group is None:
            raise ToolError(f"stream '{name}' has no consumer group: nothing was delivered, nothing is pending")
        if message_id:
            ids = [message_id]
        else:
            _, count = _paging(0, count, 100)
            try:
                rows = r.xpending_range(name, group, "-", "+", count, idle=int(float(min_idle_s) * 1000))
            except _redis_errors() as exc:
                raise ToolError(f"cannot read pending messages of '{name}': {exc}") from None
            ids = [_s(p["message_id"]) for p in rows]
        moved, missing = [], []
        for mid in ids:
            try:
                # Claim it so no consumer gets it meanwhile, copy it, then settle and delete the original.
                claimed = r.xclaim(name, group, "sockdrill-agent", 0, [mid])
            except _redis_errors() as exc:
                raise ToolError(f"cannot claim message {mid!r}: {exc}") from None
            fields = claimed[0][1] if claimed and claimed[0][1] else None
            if fields is None:
                fields_rows = r.xrange(name, mid, mid)
                fields = fields_rows[0][1] if fields_rows else None
            if fields is None:
                missing.append(mid)
                r.xack(name, group, mid)
                continue
            r.xadd(name + DLQ_SUFFIX, {**fields, "dead_lettered_from": mid, "dead_lettered_at": str(time.time())})
            r.xack(name, group, mid)
            r.xdel(name, mid)
            moved.append(mid)
        if message_id and missing:
            raise ToolError(f"no message {message_id!r} in the stream '{name}'")
        return {"dead_lettered": moved, "not_found": missing, "dead_letter_stream": name + DLQ_SUFFIX,
                "changed": bool(moved)}

    @tool("act")
    def requeue(self, message_id: str = "", count: int = 10, service: str = "queue",
                queue: str = "") -> dict[str, Any]:
        """Put dead-lettered messages back on their queue's stream (they are delivered again).

        Args:
        message_id: one id from the dead-letter stream; empty for the oldest ones
        count: without a message_id, at most this many messages (max 100)
        service: the queue deployment
        queue: the stream whose dead letters go back; empty for the shipping queue
        """
        r = self._redis(service)
        name, _group = _stream_and_group(r, queue)
        dlq = name + DLQ_SUFFIX
        _, count = _paging(0, count, 100)
        try:
            rows = r.xrange(dlq, message_id, message_id) if message_id else r.xrange(dlq, "-", "+", count)
        except _redis_errors() as exc:
            raise ToolError(f"cannot read the dead-letter stream '{dlq}': {exc}") from None
        if message_id and not rows:
            raise ToolError(f"no message {message_id!r} in the dead-letter stream '{dlq}'")
        out = []
        for mid, fields in rows:
            body = {k: v for k, v in fields.items() if _s(k) in ("body", "headers")}
            new_id = r.xadd(name, body)
            r.xdel(dlq, mid)
            out.append({"from": _s(mid), "to": _s(new_id)})
        return {"requeued": out, "left_in_dead_letter": r.xlen(dlq), "changed": bool(out)}

    def _pod_knobs(self, service: str, knobs: dict[str, Any]) -> list[dict[str, Any]]:
        """Set knobs on every ready pod through the runtime, outside the config history (a momentary
        change such as a breaker reset is not a config push to roll back)."""
        out = self._post("/v1/config", {"deployment": service, "knobs": knobs, "record": False})
        return [{"pod": p} for p in out.get("pods", [])]

    def _breaker_reset(self) -> dict[str, Any]:
        current = self.client.get("/v1/config/payment").get("config", {}).get("breaker_enabled", True)
        # Turning the breaker off closes it and forgets its failures; then it goes back to how it was.
        self._pod_knobs("payment", {"breaker_enabled": False})
        pods = self._pod_knobs("payment", {"breaker_enabled": bool(current)})
        return {"breaker": "closed", "pods": [p["pod"] for p in pods]}

    @tool("act")
    def reset_gateway(self) -> dict[str, Any]:
        """Reset payment's circuit breaker on the payment gateway: closed again, failure count cleared, so
        payments are attempted at once instead of waiting for the breaker's probe."""
        return self._breaker_reset()

    @tool("act")
    def failover_gateway(self) -> dict[str, Any]:
        """Fail payment over to the other payment provider (primary payment-gateway, secondary
        payment-gateway-b; each keeps its own ledger), then reset payment's circuit breaker so payments move
        at once. Refused where the shop runs one provider. rollback_config(service="payment") fails back."""
        if "payment-gateway-b" not in self.client.running():
            raise ToolError("this shop runs one payment provider (payment-gateway-b is not running): there is "
                            "nothing to fail over to")
        now = self.client.get("/v1/config/payment").get("config", {}).get("gateway_provider", "primary")
        to = "secondary" if now == "primary" else "primary"
        self._post("/v1/config", {"deployment": "payment", "knobs": {"gateway_provider": to}})
        gateway = "payment-gateway-b" if to == "secondary" else "payment-gateway"
        return {"provider": to, "gateway": gateway, **self._breaker_reset(), "changed": True}
