"""The fault controller: lives in the supervisor, holds every active fault with its deadline.

- Ledger ``DATA_DIR/state/chaos-ledger.json``: every active fault with what its revert needs, written
  before and after each change, so a later supervisor reverts what a killed one left.
- Audit journal ``DATA_DIR/state/chaos-audit.jsonl`` (mode 0600): one line per inject, revert and
  failure, with timestamps (``onset`` is what scoring measures detection from). Nothing serves it to
  agents; the runtime's event log never names a fault.
- Reverts happen on expiry, on ``clear``, on ``down`` (the plugin's clean-up) and at start for leftovers.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sockdrill.chaos.kinds import Ctx, get_kind, wait_ready
from sockdrill.chaos.spec import FaultSpec
from sockdrill.cluster.state import read_json, state_dir, write_json
from sockdrill.errors import FaultError, did_you_mean

log = logging.getLogger("sockdrill.chaos")
REVERT_RETRIES = 5


@dataclass
class ActiveFault:
    id: str
    spec: FaultSpec
    requested_at: float
    onset: float | None = None
    deadline: float | None = None
    state: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    memo: dict[str, Any] = field(default_factory=dict)
    timer: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    status: str = "injecting"

    def ledger(self) -> dict[str, Any]:
        return {"id": self.id, "spec": self.spec.describe(), "requested_at": self.requested_at,
                "onset": self.onset, "deadline": self.deadline, "state": self.state, "supervisor": os.getpid()}

    def view(self) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {"id": self.id, "kind": self.spec.kind, "target": self.spec.target, "pod": self.spec.pod,
               "params": self.spec.params, "duration_s": self.spec.duration_s, "onset": self.onset,
               "deadline": self.deadline, "remaining_s": round(max(0.0, (self.deadline or now) - now), 2),
               "status": self.status}
        if self.state.get("pod"):
            out["pod"] = self.state["pod"]
        if self.notes:
            out["notes"] = list(self.notes)
        return out


class ChaosController:
    def __init__(self, runtime: Any, data_dir: Path) -> None:
        self.runtime = runtime
        self.sdir = state_dir(data_dir)
        self.ledger_path = self.sdir / "chaos-ledger.json"
        self.audit_path = self.sdir / "chaos-audit.jsonl"
        self.faults: dict[str, ActiveFault] = {}
        # Read now, before anything new is injected: these belong to an earlier supervisor.
        found = read_json(self.ledger_path)
        self.leftovers: list[dict[str, Any]] = list((found or {}).get("faults", {}).values()) \
            if isinstance(found, dict) else []
        self.closed = False

    # ---- records ------------------------------------------------------------------------------
    def _write_ledger(self) -> None:
        pending = {e["id"]: e for e in self.leftovers}
        pending.update({f.id: f.ledger() for f in self.faults.values()})
        write_json(self.ledger_path, {"faults": pending})
        os.chmod(self.ledger_path, 0o600)

    def audit(self, event: str, **fields: Any) -> None:
        self.sdir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": time.time(), "event": event, **fields}, default=str)
        fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    # ---- inject -------------------------------------------------------------------------------
    async def inject(self, spec: FaultSpec) -> dict[str, Any]:
        if self.closed:
            raise FaultError("the runtime is stopping; no new faults")
        if spec.schedule:
            raise FaultError("schedule: recurring faults are for `sockdrill chaos render` (a Chaos Mesh "
                             "Schedule); inject each occurrence locally instead")
        kind = get_kind(spec.kind)
        kind.check(self.runtime, spec)
        fault = ActiveFault(id=secrets.token_hex(4), spec=spec, requested_at=time.time())
        self.faults[fault.id] = fault

        async def save(state: dict[str, Any]) -> None:
            fault.state = dict(state)
            self._write_ledger()

        ctx = Ctx(self.runtime, fault.id, seed=self.runtime.seed, save=save, notes=fault.notes, memo=fault.memo)
        async with fault.lock:
            self._write_ledger()
            try:
                fault.state = await kind.inject(ctx, spec)
            except Exception as exc:
                self.faults.pop(fault.id, None)
                try:  # whatever the kind did before it failed
                    await kind.revert(Ctx(self.runtime, fault.id, reason="failed", memo=fault.memo), spec,
                                      fault.state)
                except Exception:
                    log.exception("clean-up after a failed inject of %s", spec.kind)
                self._write_ledger()
                self.audit("inject_failed", id=fault.id, kind=spec.kind, target=spec.target, error=str(exc))
                if isinstance(exc, FaultError):
                    raise
                raise FaultError(f"{spec.kind} on {spec.target} failed: {exc}") from exc
            fault.onset = time.time()
            fault.deadline = fault.onset + spec.duration_s
            fault.status = "active"
            self.audit("inject", id=fault.id, kind=spec.kind, target=spec.target, pod=fault.state.get("pod")
                       or spec.pod, params=spec.params, duration_s=spec.duration_s,
                       requested_at=fault.requested_at, onset=fault.onset, deadline=fault.deadline,
                       state=_public_state(fault.state), notes=fault.notes)
            if kind.one_shot:
                self.faults.pop(fault.id, None)
                self.audit("revert", id=fault.id, kind=spec.kind, reason="one-shot", onset=fault.onset,
                           reverted_at=fault.onset)
                self._write_ledger()
            else:
                self._write_ledger()
                fault.timer = asyncio.ensure_future(self._expire(fault))
        out = fault.view()
        out["status"] = "done" if kind.one_shot else "active"
        return out

    async def _expire(self, fault: ActiveFault) -> None:
        assert fault.deadline is not None
        await asyncio.sleep(max(0.0, fault.deadline - time.time()))
        await self.revert(fault.id, "expiry")

    # ---- revert -------------------------------------------------------------------------------
    async def revert(self, fault_id: str, reason: str) -> dict[str, Any]:
        fault = self.faults.get(fault_id)
        if fault is None:
            raise FaultError(f"id: no active fault {fault_id!r}{did_you_mean(fault_id, self.faults)}")
        kind = get_kind(fault.spec.kind)
        async with fault.lock:
            if fault_id not in self.faults:  # reverted meanwhile
                return {"id": fault_id, "reverted": False}
            if fault.timer is not None and fault.timer is not asyncio.current_task():
                fault.timer.cancel()
            ctx = Ctx(self.runtime, fault.id, seed=self.runtime.seed, reason=reason, memo=fault.memo)
            error = None
            for attempt in range(REVERT_RETRIES):
                try:
                    await kind.revert(ctx, fault.spec, fault.state)
                    error = None
                    break
                except Exception as exc:  # e.g. the store is restarting: try again shortly
                    error = exc
                    log.warning("revert of %s (%s) failed (attempt %d): %s", fault.id, fault.spec.kind,
                                attempt + 1, exc)
                    await asyncio.sleep(0.5 * (attempt + 1))
            self.faults.pop(fault_id, None)
            if error is not None:
                # Stays in the ledger: the next supervisor start tries again.
                self.leftovers.append(fault.ledger())
                self._write_ledger()
                self.audit("revert_failed", id=fault.id, kind=fault.spec.kind, reason=reason, error=str(error))
                raise FaultError(f"revert of {fault.id} ({fault.spec.kind}) failed: {error}")
            now = time.time()
            self._write_ledger()
            self.audit("revert", id=fault.id, kind=fault.spec.kind, target=fault.spec.target, reason=reason,
                       onset=fault.onset, reverted_at=now)
        return {"id": fault_id, "reverted": True, "reason": reason}

    async def clear(self, fault_id: str | None = None, reason: str = "clear") -> list[str]:
        if fault_id is not None:
            await self.revert(fault_id, reason)
            return [fault_id]
        done, errors = [], []
        # Newest first: a fault injected on top of another (a pause on a store whose settings a fault
        # changed) must go before the one under it can be undone.
        for fid in reversed(list(self.faults)):
            if fid not in self.faults:  # expired meanwhile
                continue
            try:
                await self.revert(fid, reason)
                done.append(fid)
            except FaultError as exc:
                errors.append(str(exc))
        if errors:
            raise FaultError("; ".join(errors))
        return done

    def list(self) -> list[dict[str, Any]]:
        return [f.view() for f in self.faults.values() if f.status == "active"]

    # ---- lifecycle ----------------------------------------------------------------------------
    async def revert_leftovers(self) -> builtins.list[str]:
        """Revert what an earlier supervisor's ledger still lists (stores are waited for)."""
        done = []
        for entry in list(self.leftovers):
            try:
                spec = FaultSpec.model_validate(entry["spec"])
                kind = get_kind(spec.kind)
                if kind.survives_restart:
                    await wait_ready(self.runtime, [spec.target], timeout=60)
                ctx = Ctx(self.runtime, entry["id"], seed=self.runtime.seed, leftover=True, reason="leftover")
                await kind.revert(ctx, spec, entry.get("state") or {})
            except Exception as exc:
                log.exception("leftover fault %s could not be reverted", entry.get("id"))
                self.audit("revert_failed", id=entry.get("id"), kind=entry.get("spec", {}).get("kind"),
                           reason="leftover", error=str(exc))
                continue
            self.leftovers.remove(entry)
            done.append(entry["id"])
            self.audit("revert", id=entry["id"], kind=spec.kind, target=spec.target, reason="leftover",
                       onset=entry.get("onset"), reverted_at=time.time())
        self._write_ledger()
        return done

    async def close(self) -> None:
        """Revert everything (``sockdrill down``)."""
        self.closed = True
        try:
            await self.clear(reason="down")
        except FaultError as exc:
            log.error("some faults could not be reverted at shutdown: %s", exc)


def _public_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith("_")}
