"""A run's own slice of the flight recorder's store, so a run directory outlives the shop it ran on.

The recorder keeps one store per shop lifetime (``DATA_DIR/runs/<id>/telemetry/telemetry.db``), shared
by every scenario run on a reused shop and deleted with a temporary one. ``copy_slice`` copies what
was recorded between two instants into ``RUN_DIR/telemetry/telemetry.db`` (same schema, so ``export``,
``metrics`` and ``traces`` read it as they read a live store): the time-stamped rows of the window, and
the small tables (targets, series, layouts, attribute sets) whole, since rows refer to them by id.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sockdrill.telemetry.store import Store, db_path

# (table, time column, factor from unix seconds to that column's unit)
TIMED = (("chunks", "t", 1000), ("points", "t", 1000), ("logs", "t", 1), ("spans", "start", 1))
WHOLE = ("targets", "series", "layouts", "attrsets")


def copy_slice(source: Path, dest_run_dir: Path, start: float, end: float) -> Path:
    """Copy ``source`` (a telemetry.db) rows in [start, end] to ``dest_run_dir``'s own store."""
    if not source.exists():
        raise FileNotFoundError(f"no telemetry database at {source}")
    out = db_path(dest_run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    Store(out).close()  # the schema, exactly as the recorder makes it
    db = sqlite3.connect(str(out))
    try:
        db.execute("PRAGMA busy_timeout=5000")
        # Read-only, so a live recorder keeps writing while we copy (WAL readers never block it).
        db.execute("ATTACH DATABASE ? AS src", (f"file:{source}?mode=ro",))
        with db:
            for table in WHOLE:
                db.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table}")
            for table, column, factor in TIMED:
                db.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table} "
                           f"WHERE {column} >= ? AND {column} <= ?", (start * factor, end * factor))
            db.execute("INSERT OR REPLACE INTO main.meta SELECT * FROM src.meta")
            db.executemany("INSERT OR REPLACE INTO main.meta (key, value) VALUES (?, ?)",
                           [("slice_start", repr(start)), ("slice_end", repr(end)),
                            ("sliced_from", str(source)), ("sliced_at", repr(time.time()))])
        db.execute("DETACH DATABASE src")
        db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        db.close()
    return out

