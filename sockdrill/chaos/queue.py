"""Queue faults: a poison message on a stream of the Redis queue store.

``queue.poison`` appends one message its consumers cannot read (a purge in a legacy tool's text format, an
order event with a field missing) to a named stream. A consumer that keeps order (the edge caches' purge
streams) retries it and holds every later message behind it, so the fault is felt until someone moves it aside
(the ``dead_letter`` tool) or bounds the retries; a consumer that does not keep order just fails on it once.
Revert removes the message wherever it went: from the stream, from its groups' pending lists, and from the
stream's dead-letter copy. It lives in the store, so it outlasts a restart of its consumers (and of the
supervisor: the id is in the ledger before the message exists).

Chaos Mesh has no message faults: it renders to a Job that runs ``redis-cli XADD`` and deletes the message after
the duration.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import Field, field_validator

from sockdrill.chaos.datastore import _redis
from sockdrill.chaos.kinds import Ctx, FaultKind, Params, deployment, register
from sockdrill.chaos.render import RenderOptions, job, quote, service_name
from sockdrill.chaos.spec import FaultSpec
from sockdrill.errors import FaultError

_STREAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
DLQ_SUFFIX = ".dlq"


class PoisonParams(Params):
    queue: str = Field(description="the stream, e.g. cdn-purge.eu or the shipping queue's name")
    body: str = Field(min_length=1, max_length=1024, description="the message body its consumers cannot read")

    @field_validator("queue")
    @classmethod
    def _queue(cls, v: str) -> str:
        if not _STREAM.match(v):
            raise ValueError(f"queue must be a stream name (letters, digits, . _ : -), got {v!r}")
        if v.endswith(DLQ_SUFFIX):
            raise ValueError(f"queue {v!r} is a dead-letter stream: poison the stream its consumers read")
        return v


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@register
class QueuePoison(FaultKind):
    id = "queue.poison"
    summary = "appends a message its consumers cannot read to a stream of the queue store (removed on revert)"
    Params = PoisonParams
    target_help = "the Redis queue deployment (queue)"
    survives_restart = True

    def check(self, rt: Any, spec: FaultSpec) -> None:
        dep = deployment(rt, spec.target, kinds=("redis",))
        if dep.spec.external_url and not dep.spec.external_url.startswith("redis"):
            raise FaultError(f"target: {spec.target!r} is not a Redis queue")

    async def inject(self, ctx: Ctx, spec: FaultSpec) -> dict[str, Any]:
        stream, body = spec.params["queue"], spec.params["body"]
        r = _redis(ctx.runtime, spec.target)
        try:
            # The id is chosen here and saved first, so a crash between the two cannot leave an unknown message.
            last = await r.xinfo_stream(stream) if await r.exists(stream) else None
            base = _s(last["last-generated-id"]) if last else "0-0"
            ms = int(base.split("-")[0])
            mid = f"{max(ms + 1, int(time.time() * 1000))}-0"
            state = {"stream": stream, "id": mid}
            await ctx.checkpoint(state)
            await r.xadd(stream, {"body": body, "headers": "{}"}, id=mid)
            return state
        finally:
            await r.aclose()

    async def revert(self, ctx: Ctx, spec: FaultSpec, state: dict[str, Any]) -> None:
        stream, mid = state.get("stream"), state.get("id")
        if not stream or not mid:
            return
        r = _redis(ctx.runtime, spec.target)
        try:
            if await r.exists(stream):
                for group in await r.xinfo_groups(stream):
                    await r.xack(stream, _s(group["name"]), mid)
                await r.xdel(stream, mid)
            dlq = stream + DLQ_SUFFIX
            if await r.exists(dlq):  # moved aside by an agent or by a consumer's retry bound: gone from there too
                for entry_id, fields in await r.xrange(dlq, count=10000):
                    origin = {_s(k): _s(v) for k, v in fields.items()}
                    if mid in (origin.get("dead_lettered_from"), origin.get("source_id")):
                        await r.xdel(dlq, entry_id)
        finally:
            await r.aclose()

    def render(self, spec: FaultSpec, opts: RenderOptions) -> list[dict[str, Any]]:
        cli = f"redis-cli -h {service_name(spec.target, opts)}"
        stream = quote(spec.params["queue"])
        apply = f"ID=$({cli} XADD {stream} '*' body {quote(spec.params['body'])} headers '{{}}')"
        return job(spec, opts, "redis:7", apply, f'{cli} XDEL {stream} "$ID"',
                   note="a poison message on a Redis stream, deleted after the duration (Chaos Mesh has no "
                        "message faults)")
