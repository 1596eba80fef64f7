"""Process identity: a recorded pid is only ours when its start time matches (pids are reused)."""

from __future__ import annotations

import os

from sockdrill.cluster.state import process_start_time, same_process


def test_a_record_without_a_start_time_is_never_ours() -> None:
    me = os.getpid()
    started = process_start_time(me)
    assert started is not None and same_process(me, started)
    assert not same_process(me, None)            # nothing proves it: never kill on such a record
    assert not same_process(me, started - 5.0)   # another process that had this pid before


def test_a_start_time_does_not_move_when_the_clock_does(monkeypatch) -> None:
    """The kernel's boot time (wall clock minus uptime) shifts when the clock is adjusted; a start time
    counted from boot does not, so a live shop never looks gone to a process that asks minutes later."""
    import psutil

    me = os.getpid()
    started = process_start_time(me)
    assert started is not None and started < 1e9          # seconds since boot, not a wall-clock time
    real = psutil.boot_time()
    monkeypatch.setattr(psutil, "boot_time", lambda: real + 2.0)
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: 0.0)  # a wall clock that moved far
    assert process_start_time(me) == started and same_process(me, started)


def test_a_record_from_an_older_version_still_counts_in_wall_clock_seconds() -> None:
    import psutil

    me = os.getpid()
    wall = psutil.Process(me).create_time()
    assert same_process(me, wall) and not same_process(me, wall - 5.0)
