"""OTLP/HTTP trace receiver: ``POST /v1/traces`` bodies (protobuf or JSON, optionally gzip) → span rows.

A span row is ``(trace_id, span_id, parent_id, service, pod, name, kind, start, dur_ms, error, status,
attrs_json)`` with hex ids, ``start`` in unix seconds and ``error`` = OTLP status code ERROR.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

STATUS_ERROR = 2
MAX_ATTR_CHARS = 2000
POD_KEYS = ("k8s.pod.name", "service.instance.id", "host.name")
KINDS = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3,
         "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}

Row = tuple[str, str, str, str, str, str, int, float, float, int, str, str]


class OtlpError(ValueError):
    """A body that is not an OTLP trace export (→ HTTP 400)."""


def decode(body: bytes, content_type: str, content_encoding: str = "") -> list[Row]:
    if content_encoding.lower() == "gzip" or body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as exc:
            raise OtlpError(f"bad gzip body: {exc}") from None
    if "json" in content_type.lower():
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise OtlpError(f"body is not JSON: {exc}") from None
        return from_json(data)
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise OtlpError(f"body is not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    return from_proto(req)


def response(content_type: str) -> tuple[bytes, str]:
    if "json" in content_type.lower():
        return b"{}", "application/json"
    return ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"


# ---- protobuf ---------------------------------------------------------------------------------------
def _any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def from_proto(req: ExportTraceServiceRequest) -> list[Row]:
    rows: list[Row] = []
    for rs in req.resource_spans:
        res = {kv.key: _any_value(kv.value) for kv in rs.resource.attributes}
        service = str(res.get("service.name") or "unknown")
        pod = str(next((res[k] for k in POD_KEYS if res.get(k)), ""))
        for ss in rs.scope_spans:
            for sp in ss.spans:
                attrs = {kv.key: _any_value(kv.value) for kv in sp.attributes}
                rows.append(_row(sp.trace_id.hex(), sp.span_id.hex(), sp.parent_span_id.hex(), service, pod,
                                 sp.name, int(sp.kind), sp.start_time_unix_nano, sp.end_time_unix_nano,
                                 int(sp.status.code), sp.status.message, attrs, len(sp.events)))
    return rows


# ---- JSON (OTLP/HTTP JSON: hex ids, lowerCamelCase, int64 as strings) --------------------------------
def _json_value(v: Any) -> Any:
    if not isinstance(v, dict) or not v:
        return None
    key, val = next(iter(v.items()))
    if key == "arrayValue":
        return [_json_value(x) for x in (val or {}).get("values", [])]
    if key == "kvlistValue":
        return {kv.get("key"): _json_value(kv.get("value")) for kv in (val or {}).get("values", [])}
    if key == "intValue":
        return int(val)
    if key == "doubleValue":
        return float(val)
    return val


def _json_id(value: Any, size: int) -> str:
    text = str(value or "")
    if len(text) == size * 2:
        try:
            bytes.fromhex(text)
            return text.lower()
        except ValueError:
            pass
    if not text:
        return ""
    try:  # protobuf's canonical JSON mapping uses base64 for bytes
        return base64.b64decode(text, validate=True).hex()
    except ValueError:
        raise OtlpError(f"bad id {text!r}") from None


def from_json(data: Any) -> list[Row]:
    if not isinstance(data, dict):
        raise OtlpError("body must be a JSON object with resourceSpans")
    rows: list[Row] = []
    try:
        for rs in data.get("resourceSpans", data.get("resource_spans", [])) or []:
            res = {kv["key"]: _json_value(kv.get("value")) for kv in (rs.get("resource") or {}).get("attributes", [])}
            service = str(res.get("service.name") or "unknown")
            pod = str(next((res[k] for k in POD_KEYS if res.get(k)), ""))
            for ss in rs.get("scopeSpans", rs.get("scope_spans", [])) or []:
                for sp in ss.get("spans", []) or []:
                    attrs = {kv["key"]: _json_value(kv.get("value")) for kv in sp.get("attributes", []) or []}
                    kind = sp.get("kind", 0)
                    kind = KINDS.get(kind, 0) if isinstance(kind, str) else int(kind)
                    status = sp.get("status") or {}
                    code = status.get("code", 0)
                    code = {"STATUS_CODE_ERROR": 2, "STATUS_CODE_OK": 1}.get(code, 0) if isinstance(code, str) \
                        else int(code)
                    rows.append(_row(_json_id(sp.get("traceId"), 16), _json_id(sp.get("spanId"), 8),
                                     _json_id(sp.get("parentSpanId"), 8), service, pod, str(sp.get("name", "")),
                                     kind, int(sp.get("startTimeUnixNano", 0)), int(sp.get("endTimeUnixNano", 0)),
                                     code, str(status.get("message", "")), attrs, len(sp.get("events", []) or [])))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise OtlpError(f"malformed OTLP JSON: {exc}") from None
    return rows


def _row(trace_id: str, span_id: str, parent_id: str, service: str, pod: str, name: str, kind: int,
         start_ns: int, end_ns: int, code: int, message: str, attrs: dict[str, Any], events: int) -> Row:
    if not trace_id or not span_id:
        raise OtlpError("a span without traceId or spanId")
    if events:
        attrs["events"] = events
    text = json.dumps(attrs, separators=(",", ":"), default=str) if attrs else ""
    if len(text) > MAX_ATTR_CHARS:
        text = json.dumps({"truncated": text[:MAX_ATTR_CHARS]})
    dur_ms = max(0.0, (end_ns - start_ns) / 1e6)
    return (trace_id, span_id, parent_id, service, pod, name, kind, start_ns / 1e9, dur_ms,
            1 if code == STATUS_ERROR else 0, message, text)
