"""The flight recorder: one process per run that scrapes, ingests and stores all the shop's telemetry.

    SOCKDRILL_CONTROL_TOKEN=TOKEN python -m sockdrill.telemetry.recorder RUN_DIR --control-url URL \
        --port PORT --interval SECONDS --logs-dir DIR [--targets-file FILE] [--prometheus auto|on|off]

The control token comes in the environment (``SOCKDRILL_CONTROL_TOKEN``, taken out of it at start so
that Prometheus does not inherit it) or from ``--token-file`` (a file only its owner may read): a command
line is world-readable in ``/proc``. ``--token`` still works for old callers, with a warning.

- every ``--interval`` it reads the scrape targets (``GET /v1/targets`` of the control API; if that route
  is missing, the ready service pods of ``/v1/status``; plus ``--targets-file``, a JSON list of
  ``{"job","pod","url"}``), scrapes them concurrently with a short timeout and stores one packed chunk
  per target (a failed scrape stores ``up{job,pod} 0``);
- it tails every ``*.log`` in ``--logs-dir`` (from the end for files present at start-up, from the
  start for files that appear later: new pods);
- it receives OTLP/HTTP spans (``POST /v1/traces``, protobuf or JSON) and pushed samples
  (``POST /v1/ingest``: ``{"samples": [{"name","labels","value","time"}]}``);
- it answers queries under ``/api/`` (see :mod:`sockdrill.telemetry.query`) and PromQL through the
  Prometheus it starts when the binary is there (``--prometheus``, default ``$SOCKDRILL_PROMETHEUS`` or
  auto);
- everything goes under ``RUN_DIR/telemetry/`` (``telemetry.db``, ``recorder.json``); Prometheus's
  TSDB under ``RUN_DIR/prometheus/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import resource
import signal
import sys
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sockdrill.cluster.admin import TELEMETRY_TOKEN_ENV, bearer_ok, telemetry_headers
from sockdrill.telemetry import otlp
from sockdrill.telemetry.promtext import parse_series, render, samples
from sockdrill.telemetry.query import ROUTES, Query, QueryError, dispatch
from sockdrill.telemetry.store import LEVELS, Store, db_path

log = logging.getLogger("sockdrill.recorder")

MAX_LINE = 8192                # longer log lines are cut
MAX_NOTIFICATIONS = 10_000  # Alertmanager's alerts kept in memory (all of them go to alertmanager.jsonl)
MAX_LOAD_SERIES = 20_000  # pushed series re-served to Prometheus (the load's SLIs: a few hundred)
LOAD_STALE_S = 60.0
MAX_READ_PER_FILE = 4 << 20    # bytes read from one log file per flush (a log storm cannot starve scraping)
MAX_BUFFER = 200_000           # spans/points/log rows held between flushes before dropping
MAX_SERIES_PER_TARGET = 100_000
FLUSH_EVERY = 1.0
SKIP = 0                       # series id meaning "not stored" (ids start at 1)
CORE_LOG_KEYS = frozenset({"time", "ts", "level", "service", "pod", "trace_id", "message"})
_POD_SUFFIX = re.compile(r"-\d+$")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":"), default=str, allow_nan=False),
                        status=status, content_type="application/json")


class LogTailer:
    """Follows every ``*.log`` of a folder; yields store rows for complete new lines."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.files: dict[Path, dict[str, Any]] = {}
        self.lines = 0
        if folder is not None and folder.is_dir():
            for path in folder.glob("*.log"):
                self._open(path, from_end=True)

    def _open(self, path: Path, from_end: bool) -> None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - kept open while tailing
            st = os.fstat(fh.fileno())
        except OSError:
            return
        pos = st.st_size if from_end else 0
        fh.seek(pos)
        pod = path.stem
        self.files[path] = {"fh": fh, "ino": st.st_ino, "pos": pos, "rest": b"", "pod": pod,
                            "service": _POD_SUFFIX.sub("", pod)}

    def close(self) -> None:
        for f in self.files.values():
            f["fh"].close()
        self.files.clear()

    def poll(self) -> list[tuple[Any, ...]]:
        if self.folder is None or not self.folder.is_dir():
            return []
        for path in self.folder.glob("*.log"):
            if path not in self.files:
                self._open(path, from_end=False)
        rows: list[tuple[Any, ...]] = []
        now = time.time()
        f: dict[str, Any] | None
        for path, f in list(self.files.items()):
            try:
                st = os.stat(path)
            except OSError:
                f["fh"].close()
                del self.files[path]
                continue
            if st.st_ino != f["ino"] or st.st_size < f["pos"]:  # replaced or truncated: start over
                f["fh"].close()
                del self.files[path]
                self._open(path, from_end=False)
                f = self.files.get(path)
                if f is None:
                    continue
            if st.st_size <= f["pos"]:
                continue
            data = f["fh"].read(min(st.st_size - f["pos"], MAX_READ_PER_FILE))
            f["pos"] += len(data)
            data = f["rest"] + data
            lines = data.split(b"\n")
            f["rest"] = lines.pop()
            if len(f["rest"]) > MAX_LINE * 4:  # a giant line without end: keep its start only
                lines.append(f["rest"][:MAX_LINE])
                f["rest"] = b""
            for raw in lines:
                if raw.strip():
                    rows.append(self._row(raw, f["service"], f["pod"], now))
        self.lines += len(rows)
        return rows

    @staticmethod
    def _row(raw: bytes, service: str, pod: str, now: float) -> tuple[Any, ...]:
        text = raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r")
        if text.startswith("{"):
            try:
                rec = json.loads(text)
            except ValueError:
                rec = None
            if isinstance(rec, dict):
                level = str(rec.get("level") or "info").lower()
                try:
                    t = float(rec.get("time") or now)
                except (TypeError, ValueError):
                    t = now
                extra = {k: v for k, v in rec.items() if k not in CORE_LOG_KEYS}
                tid = str(rec.get("trace_id") or "").lower()
                if tid.strip("0") == "":
                    tid = ""
                return (t, str(rec.get("service") or service), str(rec.get("pod") or pod), level,
                        LEVELS.get(level, 20), tid, str(rec.get("message", "")),
                        json.dumps(extra, separators=(",", ":"), default=str) if extra else None)
        upper = text[:200].upper()
        if any(w in upper for w in ("ERROR", "FATAL", "PANIC")):
            level = "error"
        elif "WARN" in upper:
            level = "warning"
        else:
            level = "info"
        return (now, service, pod, level, LEVELS[level], "", text, None)


class Recorder:
    def __init__(self, run_dir: Path, *, control_url: str | None, token: str | None, port: int, interval: float,
                 logs_dir: Path | None, targets_file: Path | None = None, prometheus: str = "auto",
                 scrape_timeout: float | None = None, telemetry_token: str | None = None) -> None:
        self.run_dir = run_dir
        # Asked of every client but /health's liveness answer, and sent on every scrape of the shop's own
        # targets (never to a --targets-file one, which may be anyone's): sockdrill/cluster/admin.py.
        self.telemetry_token = telemetry_token or ""
        self.dir = run_dir / "telemetry"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.control_url = control_url.rstrip("/") if control_url else None
        self.token = token or ""
        self.port = port
        self.interval = interval
        self.timeout = scrape_timeout or max(0.5, min(interval * 0.8, 4.0))
        self.targets_file = targets_file
        self.prometheus_choice = prometheus
        self.store = Store(db_path(run_dir))
        self.store.set_meta(interval=interval, started_at=time.time(), version=1)
        self.store.commit()
        self.reader = Query(Store(db_path(run_dir), readonly=True), interval)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="query")
        self.tailer = LogTailer(logs_dir)
        self.targets: list[dict[str, str]] = []
        self.target_state: dict[tuple[str, str], dict[str, Any]] = {}
        self.keys: dict[int, dict[str, int]] = {}
        self.spans: list[tuple[Any, ...]] = []
        self.points: list[tuple[int, int, float]] = []
        self.stats = {"scrapes": 0, "failed_scrapes": 0, "samples": 0, "spans": 0, "points": 0, "log_lines": 0,
                      "dropped": 0}
        self.stopping = asyncio.Event()
        self.prom: Any = None
        self.prom_error: str | None = None
        self._prom_started_at = 0.0
        self._prom_task: asyncio.Task[None] | None = None
        self._targets_mode = "targets"
        # Alertmanager (when installed): Prometheus's alerts, routed to this recorder's webhook and kept here.
        self.am: Any = None
        self.am_error: str | None = None
        self.notifications: list[dict[str, Any]] = []
        self.url = ""
        self.load_latest: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float]] = {}
        self.session: aiohttp.ClientSession | None = None

    # ---- targets --------------------------------------------------------------------------------------
    async def fetch_targets(self) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        if self.control_url and self.session is not None:
            headers = {"X-Sockdrill-Token": self.token}
            timeout = aiohttp.ClientTimeout(total=max(2.0, self.timeout))
            try:
                if self._targets_mode == "targets":
                    async with self.session.get(f"{self.control_url}/v1/targets", headers=headers,
                                                timeout=timeout) as resp:
                        if resp.status == 404:
                            self._targets_mode = "status"
                            log.warning("the control API has no /v1/targets; using /v1/status's pods")
                        else:
                            resp.raise_for_status()
                            found = _valid_targets(await resp.json(content_type=None))
                if self._targets_mode == "status":
                    async with self.session.get(f"{self.control_url}/v1/status", headers=headers,
                                                timeout=timeout) as resp:
                        resp.raise_for_status()
                        found = targets_from_status(await resp.json(content_type=None))
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                log.warning("cannot read targets from %s (%s); keeping the last %d", self.control_url, exc,
                            len(self.targets))
                found = [t for t in self.targets if t.get("source") != "file"]
        if self.targets_file is not None:
            try:
                extra = _valid_targets(json.loads(self.targets_file.read_text()))
            except (OSError, ValueError) as exc:
                log.warning("cannot read %s: %s", self.targets_file, exc)
                extra = [t for t in self.targets if t.get("source") == "file"]
            seen = {(t["job"], t["pod"]) for t in found}
            found += [{**t, "source": "file"} for t in extra if (t["job"], t["pod"]) not in seen]
        return found

    # ---- scraping -------------------------------------------------------------------------------------
    async def _scrape_one(self, target: dict[str, str]) -> tuple[str | None, float, str]:
        assert self.session is not None
        started = time.perf_counter()
        try:
            headers = telemetry_headers(self.telemetry_token) if target.get("source") != "file" else {}
            async with self.session.get(target["url"], headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                if resp.status != 200:
                    return None, time.perf_counter() - started, f"HTTP {resp.status}"
                body = await resp.read()
            return body.decode("utf-8", "replace"), time.perf_counter() - started, ""
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return None, time.perf_counter() - started, str(exc) or type(exc).__name__

    async def scrape_once(self) -> None:
        self.targets = await self.fetch_targets()
        # A pod that is gone (scaled down, replaced) is no target any more, as Prometheus drops what service
        # discovery no longer lists: its last scrape (often a failed one while it stopped) must not stay "down".
        current = {(t["job"], t["pod"]) for t in self.targets}
        for key in [k for k in self.target_state if k not in current]:
            del self.target_state[key]
        t_ms = int(time.time() * 1000)
        results = await asyncio.gather(*(self._scrape_one(t) for t in self.targets))
        for target, (text, took, error) in zip(self.targets, results, strict=True):
            self._store_scrape(target, t_ms, text, took)
            self.target_state[(target["job"], target["pod"])] = {
                "job": target["job"], "pod": target["pod"], "url": target["url"], "up": text is not None,
                "last_scrape": t_ms / 1000, "duration_s": round(took, 4), "error": error}
            self.stats["scrapes"] += 1
            if text is None:
                self.stats["failed_scrapes"] += 1
        self.store.commit()
        if self.prom is not None:
            with contextlib.suppress(OSError):
                self.prom.update_targets(self._prom_targets())

    def _store_scrape(self, target: dict[str, str], t_ms: int, text: str | None, took: float) -> None:
        job, pod = target["job"], target["pod"]
        tid = self.store.target_id(job, pod, target["url"])
        cache = self.keys.setdefault(tid, {})
        sids = array("i")
        vals = array("d")
        n = 0
        if text is not None:
            for key, value in samples(text):
                sid = cache.get(key)
                if sid is None:
                    sid = self._new_series(key, job, pod, tid) if len(cache) < MAX_SERIES_PER_TARGET else SKIP
                    cache[key] = sid
                if sid:
                    sids.append(sid)
                    vals.append(value)
                    n += 1
        for name, value in (("up", 1.0 if text is not None else 0.0), ("scrape_duration_seconds", took),
                            ("scrape_samples_scraped", float(n))):
            sid = cache.get("\0" + name)
            if sid is None:
                sid = cache["\0" + name] = self.store.series_id(name, {"job": job, "pod": pod}, tid)
            sids.append(sid)
            vals.append(value)
        self.store.add_chunk(tid, t_ms, self.store.layout_id(tid, sids), vals)
        self.stats["samples"] += n

    def _new_series(self, key: str, job: str, pod: str, tid: int) -> int:
        parsed = parse_series(key)
        if parsed is None:
            return SKIP
        name, labels = parsed
        if name.endswith("_created"):  # prometheus_client's creation timestamps: no query needs them
            return SKIP
        # honor_labels: a label the target exposes itself (the runtime's per-pod metrics) wins.
        labels.setdefault("job", job)
        labels.setdefault("pod", pod)
        return self.store.series_id(name, labels, tid)

    async def scrape_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self.stopping.is_set():
            try:
                await self.scrape_once()
            except Exception:
                log.exception("scrape failed")
            if self.prometheus_choice != "off" and self._prom_task is None and self._prom_wanted():
                self._prom_task = asyncio.create_task(self._start_prometheus())
            next_at += self.interval
            now = loop.time()
            if next_at < now:  # overran: skip the missed ticks rather than bunch them up
                next_at = now + self.interval - (now - next_at) % self.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), next_at - now)

    # ---- logs, spans, pushed samples --------------------------------------------------------------
    def flush(self) -> None:
        rows = self.tailer.poll()
        spans, self.spans = self.spans, []
        points, self.points = self.points, []
        if rows:
            self.store.add_logs(rows)
            self.stats["log_lines"] += len(rows)
        if spans:
            self.store.add_spans(spans)
        if points:
            self.store.add_points(points)
        if rows or spans or points:
            self.store.commit()

    async def flush_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.flush()
            except Exception:
                log.exception("flush failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), FLUSH_EVERY)

    # ---- Prometheus --------------------------------------------------------------------------------
    def _prom_wanted(self) -> bool:
        if self.prom is not None:
            if self.prom.alive():
                return False
            if time.time() - self._prom_started_at < 30:
                return False
            self.prom_error = f"prometheus exited (code {self.prom.proc.returncode}); restarting"
            log.warning(self.prom_error)
            self.prom = None
            return True
        return self.prom_error is None

    def _prom_targets(self) -> list[dict[str, str]]:
        """What Prometheus scrapes: the shop's targets, and the load's latest samples as this recorder re-serves
        them (``/metrics/load``), so that journey SLOs, their dashboards and alert rules work there too."""
        return [*self.targets, {"job": "load", "pod": "", "url": f"{self.url}/metrics/load"}]

    async def _start_prometheus(self) -> None:
        from sockdrill.telemetry import prometheus as prom

        try:
            if prom.find_prometheus() is None:
                self.prom_error = "no 'prometheus' binary on PATH (apt-get install prometheus)"
                (log.error if self.prometheus_choice == "on" else log.info)("%s; PromQL is unavailable",
                                                                           self.prom_error)
                return
            self._prom_started_at = time.time()
            await self._start_alertmanager()
            # Launched from the event loop's thread (PDEATHSIG follows the thread that forks), waited for
            # in a worker so scraping goes on meanwhile.
            started = prom.launch_prometheus(self.run_dir, self._prom_targets(), self.interval,
                                             token=self.telemetry_token or None,
                                             alertmanager=self.am.url if self.am is not None else None)
            await asyncio.to_thread(prom.wait_ready, started)
            self.prom = started
            self.prom_error = None
            log.info("prometheus at %s", self.prom.url)
            self._write_info()
        except Exception as exc:
            self.prom_error = str(exc)
            log.error("prometheus did not start: %s", exc)
        finally:
            self._prom_task = None

    async def _start_alertmanager(self) -> None:
        """Start Alertmanager (before Prometheus, which is told where it is) unless it runs or is not installed;
        without it, Prometheus still evaluates the rules and the built-in evaluator answers the alerts tool."""
        from sockdrill.telemetry import alertmanager, prometheus

        if self.am is not None and self.am.alive():
            return
        self.am = None
        if alertmanager.find_alertmanager() is None:
            self.am_error = "no Alertmanager binary on PATH (apt-get install prometheus-alertmanager)"
            return
        try:
            started = alertmanager.launch_alertmanager(self.run_dir, f"{self.url}/v1/alerts/webhook",
                                                       token=self.telemetry_token or None)
            await asyncio.to_thread(prometheus.wait_ready, started)
        except Exception as exc:
            self.am_error = str(exc)
            log.error("alertmanager did not start: %s", exc)
            return
        self.am, self.am_error = started, None
        log.info("alertmanager at %s", self.am.url)

    async def alerts_webhook(self, request: web.Request) -> web.Response:
        """Alertmanager's notifications (its webhook payload): every alert in them is kept, in memory for the
        alerts tool and in ``telemetry/alertmanager.jsonl`` for the run."""
        from sockdrill.telemetry.alertmanager import notification_alerts

        try:
            body = await request.json()
        except ValueError:
            return _json({"error": "the body is not JSON"}, 400)
        alerts = notification_alerts(body, time.time())  # ValueError → 400 (the error middleware)
        self.notifications.extend(alerts)
        del self.notifications[:-MAX_NOTIFICATIONS]
        with open(self.dir / "alertmanager.jsonl", "a") as f:
            f.writelines(json.dumps(a) + "\n" for a in alerts)
        return _json({"kept": len(alerts)})

    async def alerts_notifications(self, request: web.Request) -> web.Response:
        """The alerts Alertmanager sent since ``since`` (epoch seconds), oldest first; ``alertmanager`` says
        whether one runs here (without it there are none, and the built-in evaluator is the one to ask)."""
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return _json({"error": "since must be epoch seconds"}, 400)
        if since != since:
            return _json({"error": "since must be epoch seconds"}, 400)
        return _json({"alertmanager": self.am.url if self.am is not None and self.am.alive() else None,
                      "alertmanager_error": self.am_error,
                      "notifications": [n for n in self.notifications if n["received_at"] >= since]})

    # ---- HTTP ------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth], client_max_size=32 << 20)
        r = app.router
        r.add_get("/health", self.health)
        r.add_post("/v1/traces", self.post_traces)
        r.add_post("/v1/ingest", self.post_ingest)
        r.add_get("/metrics/load", self.load_metrics)
        r.add_post("/v1/prometheus/reload", self.prometheus_reload)
        r.add_post("/v1/alerts/webhook", self.alerts_webhook)
        r.add_get("/v1/alerts/notifications", self.alerts_notifications)
        r.add_get("/api/targets", self.api_targets)
        r.add_get("/api/promql", self.api_promql)
        r.add_get("/api/trace/{trace_id}", self.api_trace)
        r.add_get("/api/{route}", self.api_query)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _json({"error": exc.reason}, exc.status)
            raise
        except (QueryError, otlp.OtlpError, ValueError, KeyError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/health" and not bearer_ok(self.telemetry_token, request.headers):
            return _json({"error": "the flight recorder's API needs the shop's telemetry token"}, 401)
        return await handler(request)

    async def health(self, request: web.Request) -> web.Response:
        if not bearer_ok(self.telemetry_token, request.headers):
            return _json({"ok": True})  # liveness for anyone; what it records, for the token's holders
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return _json({"ok": True, "run_dir": str(self.run_dir), "interval": self.interval,
                      "targets": len(self.targets), "stats": self.stats,
                      "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 3),
                      "prometheus": self.prom.url if self.prom is not None else None,
                      "prometheus_error": self.prom_error,
                      "alertmanager": self.am.url if self.am is not None else None,
                      "alertmanager_error": self.am_error})

    async def post_traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        ctype = request.headers.get("Content-Type", "application/x-protobuf")
        rows = otlp.decode(body, ctype, request.headers.get("Content-Encoding", ""))
        if len(self.spans) + len(rows) > MAX_BUFFER:
            self.stats["dropped"] += len(rows)
        else:
            self.spans.extend(rows)
            self.stats["spans"] += len(rows)
        payload, out_type = otlp.response(ctype)
        return web.Response(body=payload, content_type=out_type)

    async def prometheus_reload(self, _request: web.Request) -> web.Response:
        """Have Prometheus re-read its rule files (``RUN_DIR/prometheus/rules/*.yml``)."""
        if self.prom is None or not self.prom.reload():
            return _json({"error": "prometheus is not running" + (f": {self.prom_error}" if self.prom_error else "")},
                         503)
        return _json({"reloaded": True, "rules_dir": str(self.prom.rules_dir)})

    async def load_metrics(self, _request: web.Request) -> web.Response:
        """The latest value of every pushed series (the load's SLIs), in the text format Prometheus scrapes;
        series the load stopped sending a minute ago are left out."""
        cutoff = time.time() - LOAD_STALE_S
        by_name: dict[str, list[str]] = {}
        for (name, labels), (value, t) in sorted(self.load_latest.items()):
            if t < cutoff or not math.isfinite(value):
                continue
            by_name.setdefault(name, []).append(render(name, dict(labels), value))
        lines = []
        for name, rows in by_name.items():
            lines.append(f"# TYPE {name} {'counter' if name.endswith('_total') else 'gauge'}")
            lines.extend(rows)
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def post_ingest(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            raise ValueError("body must be JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
            raise ValueError('body must be {"samples": [{"name", "labels", "value", "time"}, ...]}')
        rows = []
        for i, s in enumerate(data["samples"]):
            if not isinstance(s, dict):
                raise ValueError(f"samples[{i}] must be an object")
            name = s.get("name")
            labels = s.get("labels") or {}
            if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
                raise ValueError(f"samples[{i}].name must be a metric name, got {name!r}")
            if not isinstance(labels, dict) or not all(isinstance(k, str) for k in labels):
                raise ValueError(f"samples[{i}].labels must be an object of strings")
            value = s.get("value")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"samples[{i}].value must be a number")
            t = s.get("time", time.time())
            if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
                raise ValueError(f"samples[{i}].time must be unix seconds")
            clean = {k: str(v) for k, v in labels.items()}
            sid = self.store.series_id(name, clean, None)
            rows.append((sid, int(t * 1000), float(value)))
            key = (name, tuple(sorted(clean.items())))
            if key in self.load_latest or len(self.load_latest) < MAX_LOAD_SERIES:
                self.load_latest[key] = (float(value), float(t))
        if len(self.points) + len(rows) > MAX_BUFFER:
            self.stats["dropped"] += len(rows)
            return _json({"accepted": 0, "dropped": len(rows)}, 503)
        self.points.extend(rows)
        self.stats["points"] += len(rows)
        return _json({"accepted": len(rows)})

    async def api_targets(self, _r: web.Request) -> web.Response:
        return _json(sorted(self.target_state.values(), key=lambda t: (t["job"], t["pod"])))

    async def api_query(self, request: web.Request) -> web.Response:
        route = request.match_info["route"]
        if route not in ROUTES:
            return _json({"error": f"no route /api/{route}; one of {', '.join((*ROUTES, 'promql', 'targets'))}"},
                         404)
        params = {k: v for k, v in request.query.items() if k != "label"}
        labels = request.query.getall("label", [])
        result = await asyncio.get_running_loop().run_in_executor(
            self.pool, lambda: dispatch(self.reader, route, params, labels))
        if route == "trace" and result is None:
            return _json({"error": f"no trace {params.get('trace_id')!r}"}, 404)
        return _json(result)

    async def api_trace(self, request: web.Request) -> web.Response:
        tid = request.match_info["trace_id"]
        result = await asyncio.get_running_loop().run_in_executor(self.pool, lambda: self.reader.trace(tid))
        if result is None:
            return _json({"error": f"no trace {tid!r}"}, 404)
        return _json(result)

    async def api_promql(self, request: web.Request) -> web.Response:
        from sockdrill.telemetry.prometheus import PrometheusError, promql

        if self.prom is None:
            reason = self.prom_error or ("disabled (--prometheus off)" if self.prometheus_choice == "off"
                                         else "still starting")
            return _json({"error": f"prometheus is not running: {reason}"}, 503)
        query = request.query.get("query", "")
        if not query.strip():
            raise ValueError("give query=EXPR")

        def num(key: str) -> float | None:
            raw = request.query.get(key)
            if raw in (None, ""):
                return None
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{key} must be unix seconds") from None

        try:
            data = await asyncio.to_thread(promql, self.prom.url, query, num("time"), num("start"), num("end"),
                                           num("step"), headers=self.prom.headers)
        except PrometheusError as exc:
            return _json({"error": str(exc)}, 502)
        return _json(data)

    # ---- life ------------------------------------------------------------------------------------------
    def _write_info(self, **extra: Any) -> None:
        info = {"pid": os.getpid(), "url": self.url, "port": self.port, "interval": self.interval,
                "run_dir": str(self.run_dir), "db": str(self.store.path), "started_at": self.started_at,
                "prometheus_url": self.prom.url if self.prom is not None else None,
                "prometheus_error": self.prom_error,
                "alertmanager_url": self.am.url if self.am is not None else None, **extra}
        tmp = self.dir / "recorder.json.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, self.dir / "recorder.json")

    async def run(self) -> int:
        self.started_at = time.time()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64, force_close=False))
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self.port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._write_info()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        log.info("recording %s every %gs on %s", self.run_dir, self.interval, self.url)
        tasks = [asyncio.create_task(self.scrape_loop()), asyncio.create_task(self.flush_loop())]
        try:
            await self.stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._prom_task is not None:
                with contextlib.suppress(Exception):
                    await self._prom_task
            with contextlib.suppress(Exception):
                self.flush()
            if self.prom is not None:
                await asyncio.to_thread(self.prom.stop)
            if self.am is not None:
                await asyncio.to_thread(self.am.stop)
            await runner.cleanup()
            await self.session.close()
            self.pool.shutdown(wait=True)
            self.tailer.close()
            self.store.set_meta(stopped_at=time.time())
            self.store.commit()
            self.store.close()
            self.reader.close()
            self._write_info(stopped_at=time.time())
            log.info("recorder stopped")
        return 0


def _valid_targets(data: Any) -> list[dict[str, str]]:
    if isinstance(data, dict):
        data = data.get("targets", [])
    if not isinstance(data, list):
        raise ValueError("targets must be a JSON list of {job, pod, url}")
    out = []
    for t in data:
        if isinstance(t, dict) and isinstance(t.get("url"), str) and t.get("job"):
            out.append({"job": str(t["job"]), "pod": str(t.get("pod") or t["job"]), "url": t["url"]})
    return out


def targets_from_status(status: dict[str, Any]) -> list[dict[str, str]]:
    """Scrape targets from ``/v1/status`` when the control API has no ``/v1/targets``: ready service pods."""
    out = []
    for dep in status.get("deployments", []):
        if dep.get("kind") != "service" or dep.get("external"):
            continue
        for pod in dep.get("pods", []):
            if pod.get("ready") and pod.get("port"):
                out.append({"job": dep["name"], "pod": pod["name"], "url": f"http://127.0.0.1:{pod['port']}/metrics"})
    return out


def main(argv: list[str] | None = None) -> int:
    from sockdrill.telemetry.prometheus import CHOICES, choice_from_env

    p = argparse.ArgumentParser(prog="python -m sockdrill.telemetry.recorder", description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--control-url", default=None, help="the runtime's control API (for /v1/targets)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="a file holding the control API's X-Sockdrill-Token (else $SOCKDRILL_CONTROL_TOKEN)")
    p.add_argument("--token", default=None, help=argparse.SUPPRESS)  # visible to every local user: deprecated
    p.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: any free one)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between scrapes")
    p.add_argument("--logs-dir", type=Path, default=None, help="folder of pod *.log files to tail")
    p.add_argument("--targets-file", type=Path, default=None, help="extra targets: JSON list of {job,pod,url}")
    p.add_argument("--prometheus", choices=CHOICES, default=choice_from_env(),
                   help="start Prometheus with a generated config (default $SOCKDRILL_PROMETHEUS or auto)")
    p.add_argument("--scrape-timeout", type=float, default=None, help="seconds per scrape (default 0.8×interval)")
    args = p.parse_args(argv)
    if not args.interval > 0:
        p.error("--interval must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    token = os.environ.pop("SOCKDRILL_CONTROL_TOKEN", None)
    telemetry_token = os.environ.pop(TELEMETRY_TOKEN_ENV, None)  # popped: Prometheus must not inherit it
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            p.error(f"--token-file: {exc}")
    elif args.token is not None:
        log.warning("--token puts the control token on a command line every local user can read; "
                    "pass it in $SOCKDRILL_CONTROL_TOKEN or --token-file")
        token = args.token
    rec = Recorder(args.run_dir.resolve(), control_url=args.control_url, token=token, port=args.port,
                   interval=args.interval, logs_dir=args.logs_dir, targets_file=args.targets_file,
                   prometheus=args.prometheus, scrape_timeout=args.scrape_timeout,
                   telemetry_token=telemetry_token)
    return asyncio.run(rec.run())


if __name__ == "__main__":
    sys.exit(main())
