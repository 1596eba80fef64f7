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
