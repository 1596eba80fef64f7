"""Structured JSON-lines logs for pods: one object per line on stdout, captured by the runtime."""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable

# Set by the tracing module when OpenTelemetry is active; returns the current trace id or "".
trace_id_provider: Callable[[], str] = lambda: ""  # noqa: E731


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, pod: str) -> None:
        super().__init__()
        self.service = service
        self.pod = pod

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": round(record.created, 6),
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "pod": self.pod,
            "logger": record.name,
            "trace_id": getattr(record, "trace_id", None) or trace_id_provider(),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out["fields"] = fields
        if record.exc_info:
            out["stack"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(out, default=str)


def setup_logging(service: str, pod: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service, pod))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access logger is replaced by ours (with route, latency and trace id).
    logging.getLogger("aiohttp.access").disabled = True
