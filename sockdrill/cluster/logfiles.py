"""Reading pod log files: filter by text, level and age; follow like ``tail -f``."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}


def pod_log_files(data_dir: Path, deployment: str) -> list[Path]:
    pattern = re.compile(rf"^{re.escape(deployment)}-\d+\.log$")
    folder = data_dir / "logs"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if pattern.match(p.name))


def parse_duration(text: str) -> float:
    """'30s' → 30, '5m' → 300, '2h' → 7200, '1.5' → 1.5 seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ValueError(f"duration {text!r} is not like 30s, 5m or 1h")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


@dataclass
class LogFilter:
    grep: str | None = None
    min_level: int = 0
    since: float | None = None  # unix time

    @classmethod
    def build(cls, grep: str | None = None, level: str | None = None, since: str | None = None) -> LogFilter:
        min_level = 0
        if level:
            if level.lower() not in LEVELS:
                raise ValueError(f"--level must be one of {', '.join(sorted(set(LEVELS) - {'warn'}))}, got {level!r}")
            min_level = LEVELS[level.lower()]
        cutoff = time.time() - parse_duration(since) if since else None
        return cls(grep=grep, min_level=min_level, since=cutoff)

    def accepts(self, line: str) -> bool:
        if self.grep and self.grep not in line:
            return False
        if not self.min_level and self.since is None:
            return True
        try:
            rec = json.loads(line)
        except ValueError:
            # Plain-text lines (datastores) pass level filters only when they look like errors.
            if self.min_level >= 40:
                return any(w in line for w in ("ERROR", "FATAL", "PANIC"))
            return self.since is None
        if self.min_level and LEVELS.get(str(rec.get("level", "info")).lower(), 20) < self.min_level:
            return False
        return not (self.since is not None and float(rec.get("time", 0)) < self.since)


def read_lines(files: list[Path], filt: LogFilter, tail: int) -> list[str]:
    out: deque[str] = deque(maxlen=tail if tail else None)
    for path in files:
        with open(path, errors="replace") as fh:
            for raw in fh:
                line = raw.rstrip("\n")
                if line and filt.accepts(line):
                    out.append(line)
    return list(out)


def follow_files(files: list[Path], filt: LogFilter, poll: float = 0.2) -> Iterator[str]:
    handles = {p: open(p, errors="replace") for p in files}  # noqa: SIM115
    for fh in handles.values():
        fh.seek(0, 2)
    while True:
        got = False
        for fh in handles.values():
            for raw in fh.readlines():
                line = raw.rstrip("\n")
                if line and filt.accepts(line):
                    got = True
                    yield line
        if not got:
            time.sleep(poll)
