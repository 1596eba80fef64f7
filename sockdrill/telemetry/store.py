"""The flight recorder's embedded store: one SQLite file per run (``RUN_DIR/telemetry/telemetry.db``).

Why SQLite (measured on this project's 2-core machine, 5,000 samples per scrape, 16 targets):
- DuckDB (no pandas/arrow in the way) took ~1.8 s of CPU per scrape through ``executemany`` and holds an
  exclusive file lock: a second process cannot even open the file read-only while the recorder runs,
  which rules out querying a live run in-process;
- SQLite with one row per sample cost ~16 ms of CPU and ~98 KB per scrape (B-tree inserts scattered
  over every series);
- SQLite with one row per *target per scrape* — the scraped values packed as float64 in scrape order,
  the series order kept once in a "layout" — cost ~0.5 ms and ~75 KB per scrape, append-only, and WAL
  mode lets any number of readers in other processes query while the recorder writes.
So metrics are stored as those packed chunks (zlib-compressed: counters of idle series repeat);
samples pushed to ``/v1/ingest`` (few) are plain rows; logs and spans are rows with the indexes their
searches need.
"""

from __future__ import annotations

import json
import re
import sqlite3
import zlib
from array import array
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import re2  # type: ignore[import-untyped]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS targets (id INTEGER PRIMARY KEY, job TEXT NOT NULL, pod TEXT NOT NULL, url TEXT,
    UNIQUE (job, pod));
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL,
    target INTEGER, UNIQUE (name, labels));
CREATE TABLE IF NOT EXISTS layouts (id INTEGER PRIMARY KEY, target INTEGER NOT NULL, sids BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (target INTEGER NOT NULL, t INTEGER NOT NULL, layout INTEGER NOT NULL,
    vals BLOB NOT NULL, PRIMARY KEY (target, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS points (sid INTEGER NOT NULL, t INTEGER NOT NULL, v REAL NOT NULL,
    PRIMARY KEY (sid, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY, t REAL NOT NULL, service TEXT NOT NULL, pod TEXT NOT NULL,
    level TEXT NOT NULL, lvl INTEGER NOT NULL, trace_id TEXT NOT NULL, message TEXT NOT NULL, extra TEXT);
CREATE INDEX IF NOT EXISTS logs_t ON logs (t);
CREATE INDEX IF NOT EXISTS logs_service ON logs (service, t);
CREATE INDEX IF NOT EXISTS logs_trace ON logs (trace_id) WHERE trace_id <> '';
CREATE TABLE IF NOT EXISTS spans (id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    parent_id TEXT NOT NULL, service TEXT NOT NULL, pod TEXT NOT NULL, name TEXT NOT NULL, kind INTEGER NOT NULL,
    start REAL NOT NULL, dur_ms REAL NOT NULL, error INTEGER NOT NULL, status TEXT NOT NULL, attrs INTEGER);
CREATE TABLE IF NOT EXISTS attrsets (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start);
CREATE INDEX IF NOT EXISTS spans_service ON spans (service, start);
"""

LEVELS = {"trace": 5, "debug": 10, "info": 20, "notice": 25, "warning": 30, "warn": 30, "error": 40,
          "critical": 50, "fatal": 50, "panic": 50}

Matcher = tuple[str, str, str]  # (label, op, value), op one of = != =~ !~


def db_path(run_dir: Path) -> Path:
    return Path(run_dir) / "telemetry" / "telemetry.db"


def canonical(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


MAX_REGEX_CHARS = 512
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the caller's error, reported to it, not logged by RE2
_RE2_OPTIONS.max_mem = 8 << 20  # a pattern whose automaton needs more is refused, never run


@lru_cache(maxsize=256)
def label_regex(pattern: str) -> Any:
    """A label regex compiled by RE2: linear time in the label's length whatever the pattern, so an
    agent's ``(.|.|.|.)*Z`` cannot stall the recorder (Python's ``re`` backtracks exponentially on it).
    RE2 is also the syntax Prometheus itself uses for ``=~``. ValueError for a pattern it refuses."""
    if len(pattern) > MAX_REGEX_CHARS:
        raise ValueError(f"regex longer than {MAX_REGEX_CHARS} characters")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        why = exc.args[0] if exc.args else exc
        why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
        raise ValueError(f"bad regex {pattern[:80]!r}: {why}") from None


def parse_matcher(text: str) -> Matcher:
    """``'k=v'``, ``'k!=v'``, ``'k=~re'``, ``'k!~re'`` → a matcher; ValueError otherwise."""
    m = re.fullmatch(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*", text, flags=re.S)
    if m is None:
        raise ValueError(f"label matcher {text[:120]!r} is not like name=value, name!=value, name=~regex")
    value = m.group(3)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if m.group(2) in ("=~", "!~"):
        label_regex(value)
    return m.group(1), m.group(2), value


def matches(labels: dict[str, str], matchers: Sequence[Matcher]) -> bool:
    for key, op, value in matchers:
        have = labels.get(key, "")
        if op == "=":
            ok = have == value
        elif op == "!=":
            ok = have != value
        elif op == "=~":
            ok = label_regex(value).fullmatch(have) is not None
        else:
            ok = label_regex(value).fullmatch(have) is None
        if not ok:
            return False
    return True


class Store:
    """Writer (the recorder) or reader (queries, exports) of one run's telemetry database."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no telemetry database at {self.path}")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self.db.commit()
        self.db.execute("PRAGMA cache_size=-16000")
        self.db.execute("PRAGMA busy_timeout=5000")
        # In-memory views of the small tables (refreshed incrementally for readers).
        self.targets: dict[int, tuple[str, str]] = {}
        self._target_ids: dict[tuple[str, str], int] = {}
        self.series: dict[int, tuple[str, dict[str, str], int | None]] = {}
        self._series_ids: dict[tuple[str, str], int] = {}
        self.by_name: dict[str, list[int]] = {}
        self._layouts: dict[int, bytes] = {}
        self._layout_ids: dict[tuple[int, bytes], int] = {}
        self._pos: dict[int, dict[int, int]] = {}
        self._max_series = 0
        self._max_layout = 0
        self._attrsets: dict[str, int] = {}
        self.refresh()

    def close(self) -> None:
        self.db.close()

    # ---- small tables -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Load series, targets and layouts written since the last call (cheap when nothing is new)."""
        for tid, job, pod in self.db.execute("SELECT id, job, pod FROM targets"):
            if tid not in self.targets:
                self.targets[tid] = (job, pod)
                self._target_ids[(job, pod)] = tid
        for sid, name, labels, target in self.db.execute(
                "SELECT id, name, labels, target FROM series WHERE id > ? ORDER BY id", (self._max_series,)):
            self._add_series(sid, name, labels, target)
        for lid, target, sids in self.db.execute(
                "SELECT id, target, sids FROM layouts WHERE id > ? ORDER BY id", (self._max_layout,)):
            self._layouts[lid] = sids
            self._layout_ids[(target, sids)] = lid
            self._max_layout = max(self._max_layout, lid)

    def _add_series(self, sid: int, name: str, labels: str, target: int | None) -> None:
        self.series[sid] = (name, json.loads(labels), target)
        self._series_ids[(name, labels)] = sid
        self.by_name.setdefault(name, []).append(sid)
        self._max_series = max(self._max_series, sid)

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, **values: Any) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            [(k, str(v)) for k, v in values.items()])

    def target_id(self, job: str, pod: str, url: str = "") -> int:
        tid = self._target_ids.get((job, pod))
        if tid is None:
            cur = self.db.execute("INSERT INTO targets (job, pod, url) VALUES (?, ?, ?)", (job, pod, url))
            tid = int(cur.lastrowid or 0)
            self.targets[tid] = (job, pod)
            self._target_ids[(job, pod)] = tid
        return tid

    def series_id(self, name: str, labels: dict[str, str], target: int | None) -> int:
        text = canonical(labels)
        sid = self._series_ids.get((name, text))
        if sid is None:
            cur = self.db.execute("INSERT INTO series (name, labels, target) VALUES (?, ?, ?)", (name, text, target))
            sid = int(cur.lastrowid or 0)
            self._add_series(sid, name, text, target)
        return sid

    def layout_id(self, target: int, sids: array) -> int:
        blob = sids.tobytes()
        lid = self._layout_ids.get((target, blob))
        if lid is None:
            cur = self.db.execute("INSERT INTO layouts (target, sids) VALUES (?, ?)", (target, blob))
            lid = int(cur.lastrowid or 0)
            self._layouts[lid] = blob
            self._layout_ids[(target, blob)] = lid
            self._max_layout = max(self._max_layout, lid)
        return lid

    # ---- writes -----------------------------------------------------------------------------------
    def add_chunk(self, target: int, t_ms: int, layout: int, values: array) -> None:
        self.db.execute("INSERT OR REPLACE INTO chunks (target, t, layout, vals) VALUES (?, ?, ?, ?)",
                        (target, t_ms, layout, zlib.compress(values.tobytes(), 1)))

    def add_points(self, rows: Iterable[tuple[int, int, float]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO points (sid, t, v) VALUES (?, ?, ?)", rows)

    def add_logs(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self.db.executemany("INSERT INTO logs (t, service, pod, level, lvl, trace_id, message, extra) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def add_spans(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Rows as :mod:`otlp` makes them; the attributes' JSON (last field) is stored once per distinct
        text — spans of one route mostly share theirs, and they were over half of a span's bytes."""
        self.db.executemany("INSERT INTO spans (trace_id, span_id, parent_id, service, pod, name, kind, start, "
                            "dur_ms, error, status, attrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [(*r[:11], self._attrs_id(r[11])) for r in rows])

    def _attrs_id(self, text: str | None) -> int | None:
        if not text:
            return None
        aid = self._attrsets.get(text)
        if aid is None:
            row = self.db.execute("SELECT id FROM attrsets WHERE text = ?", (text,)).fetchone()
            if row is None:
                row = (self.db.execute("INSERT INTO attrsets (text) VALUES (?)", (text,)).lastrowid,)
            if len(self._attrsets) > 100_000:  # bounded memory; the table still dedupes
                self._attrsets.clear()
            aid = self._attrsets[text] = int(row[0])
        return aid

    def commit(self) -> None:
        self.db.commit()

    # ---- metric reads -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        self.refresh()
        return sorted(self.by_name)

    def select(self, name: str | None, matchers: Sequence[Matcher] = ()) -> list[int]:
        """Series ids with this metric name (None: any) whose labels satisfy every matcher."""
        self.refresh()
        sids = self.by_name.get(name, []) if name else list(self.series)
        return [s for s in sids if matches(self.series[s][1], matchers)]

    def labels(self, sid: int) -> dict[str, str]:
        return self.series[sid][1]

    def read(self, sids: Iterable[int], start_ms: int, end_ms: int) -> dict[int, tuple[list[float], list[float]]]:
        """Raw samples (unix seconds, value) of each series in [start, end], in time order."""
        self.refresh()
        out: dict[int, tuple[list[float], list[float]]] = {}
        by_target: dict[int | None, list[int]] = {}
        for sid in sids:
            if sid in self.series:
                out[sid] = ([], [])
                by_target.setdefault(self.series[sid][2], []).append(sid)
        pushed = by_target.pop(None, [])
        for target, wanted in by_target.items():
            plans: dict[int, list[tuple[int, int]]] = {}
            for t, layout, blob in self.db.execute(
                    "SELECT t, layout, vals FROM chunks WHERE target = ? AND t BETWEEN ? AND ? ORDER BY t",
                    (target, start_ms, end_ms)):
                plan = plans.get(layout)
                if plan is None:
                    pos = self._positions(layout)
                    plan = plans[layout] = [(sid, pos[sid]) for sid in wanted if sid in pos]
                if not plan:
                    continue
                vals = memoryview(zlib.decompress(blob)).cast("d")
                ts = t / 1000.0
                for sid, i in plan:
                    col = out[sid]
                    col[0].append(ts)
                    col[1].append(vals[i])
        for i in range(0, len(pushed), 500):
            part = pushed[i:i + 500]
            marks = ",".join("?" * len(part))
            for sid, t, v in self.db.execute(
                    f"SELECT sid, t, v FROM points WHERE sid IN ({marks}) AND t BETWEEN ? AND ? ORDER BY sid, t",
                    (*part, start_ms, end_ms)):
                col = out[sid]
                col[0].append(t / 1000.0)
                col[1].append(v)
        return out

    def _positions(self, layout: int) -> dict[int, int]:
        pos = self._pos.get(layout)
        if pos is None:
            if layout not in self._layouts:
                self.refresh()
            sids = array("i")
            sids.frombytes(self._layouts.get(layout, b""))
            pos = self._pos[layout] = {sid: i for i, sid in enumerate(sids)}
        return pos

    def time_bounds(self) -> tuple[float, float] | None:
        """First and last sample time (unix seconds) of everything recorded, or None when empty."""
        self.refresh()
        lo: list[int] = []
        hi: list[int] = []
        for tid in self.targets:
            row = self.db.execute("SELECT min(t), max(t) FROM chunks WHERE target = ?", (tid,)).fetchone()
            if row and row[0] is not None:
                lo.append(row[0])
                hi.append(row[1])
        row = self.db.execute("SELECT min(t), max(t) FROM points").fetchone()
        if row and row[0] is not None:
            lo.append(row[0])
            hi.append(row[1])
        if not lo:
            return None
        return min(lo) / 1000.0, max(hi) / 1000.0
