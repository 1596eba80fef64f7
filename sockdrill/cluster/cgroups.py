"""Resource limits and accounting through Linux cgroups (v2, or v1 where that is what the host has).

Every pod gets its own cgroup (so the runtime can account CPU/memory, see throttling, and kill every
process of a pod even after a crash of the supervisor). Limits are written only when asked. Where no
cgroup hierarchy is writable (macOS, non-root), ``CgroupManager.available`` is False and setting a
limit raises ``UnsupportedError`` with the reason: a limit is never faked.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from sockdrill.errors import UnsupportedError

ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


@dataclass
class PodCgroup:
    """The cgroup directories of one pod (one per controller on v1, one on v2)."""

    version: int
    cpu: Path | None
    memory: Path | None
    cpuacct: Path | None = None

    @property
    def paths(self) -> list[Path]:
        seen: list[Path] = []
        for p in (self.cpu, self.memory, self.cpuacct):
            if p is not None and p not in seen:
                seen.append(p)
        return seen

    def procs_files(self) -> list[Path]:
        return [p / "cgroup.procs" for p in self.paths]

    def join(self, pid: int) -> None:
        for f in self.procs_files():
            f.write_text(str(pid))

    def pids(self) -> set[int]:
        out: set[int] = set()
        for f in self.procs_files():
            try:
                out.update(int(x) for x in f.read_text().split())
            except (OSError, ValueError):
                pass
        return out

    # ---- limits ---------------------------------------------------------------------------
    def set_cpu(self, millicores: int | None) -> None:
        if self.cpu is None:
            raise UnsupportedError("CPU limits are unsupported here: no writable cpu cgroup controller")
        if self.version == 2:
            quota: str | int = "max" if millicores is None else str(max(1000, millicores * CFS_PERIOD_US // 1000))
            (self.cpu / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
        else:
            (self.cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            quota = -1 if millicores is None else max(1000, millicores * CFS_PERIOD_US // 1000)
            (self.cpu / "cpu.cfs_quota_us").write_text(str(quota))

    def set_memory(self, limit: int | None) -> None:
        if self.memory is None:
            raise UnsupportedError("memory limits are unsupported here: no writable memory cgroup controller")
        if self.version == 2:
            (self.memory / "memory.max").write_text("max" if limit is None else str(limit))
        else:
            # -1 lifts the limit; the kernel rounds to pages.
            (self.memory / "memory.limit_in_bytes").write_text("-1" if limit is None else str(limit))

    # ---- accounting -----------------------------------------------------------------------
    def cpu_seconds(self) -> float | None:
        try:
            if self.version == 2 and self.cpu is not None:
                for line in (self.cpu / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec"):
                        return int(line.split()[1]) / 1e6
            elif self.cpuacct is not None:
                return int((self.cpuacct / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None
        return None

    def throttling(self) -> dict[str, float]:
        """nr_periods, nr_throttled, throttled_seconds from cpu.stat."""
        out: dict[str, float] = {}
        if self.cpu is None:
            return out
        try:
            for line in (self.cpu / "cpu.stat").read_text().splitlines():
                key, _, val = line.partition(" ")
                if key in ("nr_periods", "nr_throttled"):
                    out[key] = float(val)
                elif key == "throttled_time":  # v1: nanoseconds
                    out["throttled_seconds"] = int(val) / 1e9
                elif key == "throttled_usec":  # v2
                    out["throttled_seconds"] = int(val) / 1e6
        except (OSError, ValueError):
            pass
        return out

    def memory_working_set(self) -> int | None:
        """Usage minus inactive file pages, like cAdvisor's working set."""
        if self.memory is None:
            return None
        try:
            if self.version == 2:
                usage = int((self.memory / "memory.current").read_text())
                stat_file = self.memory / "memory.stat"
                inactive_key = "inactive_file"
            else:
                usage = int((self.memory / "memory.usage_in_bytes").read_text())
                stat_file = self.memory / "memory.stat"
                inactive_key = "total_inactive_file"
            inactive = 0
            for line in stat_file.read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == inactive_key:
                    inactive = int(v)
            return max(0, usage - inactive)
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        if self.memory is None:
            return 0
        try:
            name = "memory.events" if self.version == 2 else "memory.oom_control"
            for line in (self.memory / name).read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        for path in self.paths:
            _rmdir_retry(path)


def _rmdir_retry(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            # Processes may still be exiting; kill leftovers and retry.
            try:
                for pid in (path / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), 9)
                    except (ProcessLookupError, ValueError):
                        pass
            except OSError:
                pass
            time.sleep(0.05)


class CgroupManager:
    """Creates per-pod cgroups under ``sockdrill/<run-id>/`` in whichever hierarchy is writable."""

    def __init__(self, run_id: str, root: Path = ROOT) -> None:
        self.run_id = run_id
        self.root = root
        self.version = 0
        self.reason = ""
        self._cpu_base: Path | None = None
        self._mem_base: Path | None = None
        self._acct_base: Path | None = None
        self._detect()

    @property
    def available(self) -> bool:
        return self.version != 0

    def _detect(self) -> None:
        if not self.root.is_dir():
            self.reason = f"{self.root} does not exist (not Linux?)"
            return
        if (self.root / "cgroup.controllers").exists():  # pure v2
            controllers = (self.root / "cgroup.controllers").read_text().split()
            if not _writable(self.root):
                self.reason = f"{self.root} is not writable (run as root or delegate a cgroup)"
                return
            if "cpu" not in controllers or "memory" not in controllers:
                self.reason = f"cgroup v2 lacks cpu/memory controllers (has {controllers})"
                return
            self.version = 2
            base = self.root / "sockdrill" / self.run_id
            self._cpu_base = self._mem_base = base
            return
        cpu = self.root / "cpu"
        mem = self.root / "memory"
        acct = self.root / "cpuacct"
        if not (cpu / "cpu.cfs_quota_us").exists() and (self.root / "cpu,cpuacct").is_dir():
            cpu = acct = self.root / "cpu,cpuacct"
        if _writable(cpu) and _writable(mem):
            self.version = 1
            self._cpu_base = cpu / "sockdrill" / self.run_id
            self._mem_base = mem / "sockdrill" / self.run_id
            if _writable(acct) and acct != cpu:
                self._acct_base = acct / "sockdrill" / self.run_id
            elif acct == cpu:
                self._acct_base = self._cpu_base
            return
        self.reason = "no writable cgroup v1 cpu+memory or v2 hierarchy (run as root on Linux)"

    def _enable_v2_controllers(self, leaf_parent: Path) -> None:
        # Every ancestor between the root and the pod must delegate cpu and memory.
        parts = leaf_parent.relative_to(self.root).parts
        cur = self.root
        for part in ("", *parts):
            if part:
                cur = cur / part
                cur.mkdir(exist_ok=True)
            try:
                (cur / "cgroup.subtree_control").write_text("+cpu +memory")
            except OSError:
                pass

    def create(self, pod: str) -> PodCgroup | None:
        if not self.available:
            return None
        if self.version == 2:
            assert self._cpu_base is not None
            self._enable_v2_controllers(self._cpu_base)
            path = self._cpu_base / pod
            path.mkdir(parents=True, exist_ok=True)
            return PodCgroup(2, path, path, path)
        assert self._cpu_base is not None and self._mem_base is not None
        cpu = self._cpu_base / pod
        mem = self._mem_base / pod
        cpu.mkdir(parents=True, exist_ok=True)
        mem.mkdir(parents=True, exist_ok=True)
        acct = None
        if self._acct_base is not None:
            acct = self._acct_base / pod
            acct.mkdir(parents=True, exist_ok=True)
        return PodCgroup(1, cpu, mem, acct)

    def bases(self) -> list[Path]:
        return [p for p in {self._cpu_base, self._mem_base, self._acct_base} if p is not None]

    def remove_all(self) -> None:
        remove_run_cgroups(self.bases())


def remove_run_cgroups(bases: list[Path]) -> None:
    """Kill whatever is left in a run's cgroups and remove them (used by down, also after a crash)."""
    for base in bases:
        if not base.is_dir():
            continue
        for child in sorted(base.iterdir()):
            if child.is_dir():
                _rmdir_retry(child)
        _rmdir_retry(base)
