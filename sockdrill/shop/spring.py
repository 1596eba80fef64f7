"""Error bodies shaped like Spring Boot's, for the services that were Java upstream (carts, orders).

Upstream clients see ``{"timestamp","status","error","exception","message","path"}`` with
``application/json;charset=UTF-8``; raising the returned exception from a handler sends it as is
(the service's error layer leaves JSON bodies alone).
"""

from __future__ import annotations

import json
import time

from aiohttp import web

JSON_UTF8 = "application/json;charset=UTF-8"
HAL_UTF8 = "application/hal+json;charset=UTF-8"

_CLASSES: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 404: web.HTTPNotFound, 406: web.HTTPNotAcceptable, 409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType, 500: web.HTTPInternalServerError, 503: web.HTTPServiceUnavailable,
    504: web.HTTPGatewayTimeout,
}


def spring_error(status: int, message: str, path: str, exception: str = "java.lang.IllegalStateException"
                 ) -> web.HTTPException:
    """An exception to raise whose response is a Spring Boot-style error JSON."""
    cls = _CLASSES.get(status, web.HTTPInternalServerError)
    body = {"timestamp": int(time.time() * 1000), "status": cls.status_code,
            "error": web.Response(status=cls.status_code).reason, "exception": exception,
            "message": message, "path": path}
    return cls(text=json.dumps(body, separators=(",", ":")), headers={"Content-Type": JSON_UTF8})
