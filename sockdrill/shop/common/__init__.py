"""What every shop service shares: the app skeleton, knobs, metrics, logs and upstream calls."""

from sockdrill.shop.common.knobs import Knob, Knobs
from sockdrill.shop.common.service import Service, bad_request, json_response, read_json, run_service

__all__ = ["Knob", "Knobs", "Service", "bad_request", "json_response", "read_json", "run_service"]
