"""The file Locust loads (``locust -f .../locustfile.py``): one run's users, shape and SLI stream.

The run's ``LoadConfig`` comes as JSON in ``SOCKDRILL_LOAD_CONFIG``. Every request event feeds the
``Aggregator``; each second a greenlet turns it into one record, appends it as a JSON line to
``stats_path`` and queues it for the recorder (best effort: a slow or dead recorder only loses samples).
On quitting, the last partial second is flushed and the summary is written to ``summary_path``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import time
import urllib.request
from typing import Any

import gevent
from gevent.queue import Full, Queue
from locust import events

from sockdrill.cluster.admin import TELEMETRY_TOKEN_ENV, telemetry_headers
from sockdrill.load import journeys, shapes
from sockdrill.load.config import ENV_VAR, LoadConfig
from sockdrill.load.sli import Aggregator, to_samples

CONFIG = LoadConfig.from_json(os.environ[ENV_VAR])
AGGREGATOR = Aggregator()
STATE: dict[str, Any] = {"started": None, "last": None, "reason": "duration", "done": False, "cpu0": 0.0}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _should_stop() -> bool:
    if STATE["reason"] == "stopped":
        return True
    if CONFIG.max_requests is not None and AGGREGATOR.requests >= CONFIG.max_requests:
        STATE["reason"] = "request limit"
        return True
    return False


# Locust finds these two by type in this module's namespace: exactly one user class, one shape.
SockShopCustomer = journeys.make_user_class(CONFIG, AGGREGATOR)
ConfiguredShape = shapes.locust_shape(CONFIG.curve(), _should_stop)


def _on_sigterm() -> None:
    # Headless Locust installs its own SIGTERM handler only after a shape run ends, so until then a
    # SIGTERM would kill the process without a summary. Ending the shape instead stops the run the normal
    # way (within a second): users stop, the last second is flushed, the summary is written.
    STATE["reason"] = "stopped"


gevent.signal_handler(signal.SIGTERM, _on_sigterm)

_pushes: Queue = Queue(maxsize=60)
_TOKEN_HEADERS = telemetry_headers(os.environ.pop(TELEMETRY_TOKEN_ENV, None))  # the recorder asks for it
_stats_file = open(CONFIG.stats_path, "a", buffering=1) if CONFIG.stats_path else None  # noqa: SIM115


@events.request.add_listener
def _on_request(name: str, response_time: float, exception: BaseException | None, **_kw: Any) -> None:
    AGGREGATOR.request(name, (response_time or 0.0) / 1000.0, exception is None,
                       None if exception is None else str(exception))


def _emit(environment: Any, final: bool = False) -> None:
    now, mono = time.time(), time.monotonic()
    interval = mono - STATE["last"] if STATE["last"] is not None else CONFIG.interval
    if final:  # a last partial second: per-second rates over a sliver of time would be noise
        interval = max(interval, CONFIG.interval)
    STATE["last"] = mono
    users = environment.runner.user_count if environment.runner is not None else 0
    record = AGGREGATOR.flush(now, mono - STATE["started"], users, max(interval, 1e-3))
    if _stats_file is not None:
        _stats_file.write(json.dumps(record) + "\n")
    if CONFIG.recorder_url:
        try:
            _pushes.put_nowait(to_samples(record))
        except Full:
            pass  # the recorder is not keeping up: drop rather than grow


def _flusher(environment: Any) -> None:
    next_at = STATE["started"] + CONFIG.interval
    while not STATE["done"]:
        gevent.sleep(max(0.0, next_at - time.monotonic()))
        next_at += CONFIG.interval
        if not STATE["done"]:
            _emit(environment)


def _push(samples: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(f"{str(CONFIG.recorder_url).rstrip('/')}/v1/ingest",
                                 data=json.dumps({"samples": samples}).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **_TOKEN_HEADERS})
    try:
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            resp.read()
    except Exception:
        pass  # best effort by contract: the load must go on whatever the recorder does


def _pusher() -> None:
    while True:
        _push(_pushes.get())


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    if STATE["started"] is not None:
        return
    STATE["started"] = STATE["last"] = time.monotonic()
    STATE["cpu0"] = _cpu_s()  # the generator's CPU counts from here: Locust's start-up is not load
    gevent.spawn(_flusher, environment)
    if CONFIG.recorder_url:
        gevent.spawn(_pusher)


@events.quitting.add_listener
def _on_quitting(environment: Any, **_kw: Any) -> None:
    if STATE["done"]:
        return
    STATE["done"] = True
    started = STATE["started"] or time.monotonic()
    if STATE["started"] is not None:
        _emit(environment, final=True)
    deadline = time.monotonic() + 2.0
    while CONFIG.recorder_url and not _pushes.empty() and time.monotonic() < deadline:
        _push(_pushes.get_nowait())
    if _stats_file is not None:
        _stats_file.close()
    summary = {**AGGREGATOR.summary(time.monotonic() - started), "host": CONFIG.host, "seed": CONFIG.seed,
               "shape": CONFIG.shape, "generator_cpu_s": round(_cpu_s() - STATE["cpu0"], 3),
               "stop_reason": STATE["reason"], "stats_path": CONFIG.stats_path}
    if CONFIG.summary_path:
        with open(CONFIG.summary_path, "w") as fh:
            json.dump(summary, fh)
    if CONFIG.choices_path:
        with open(CONFIG.choices_path, "w") as fh:
            json.dump(SockShopCustomer.choice_log, fh)
