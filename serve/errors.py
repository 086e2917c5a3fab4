"""JSON errors for the HTTP server.

Every error leaves the server as ``{"error": message, "error_code": CODE}`` with
the fitting HTTP status. ``error`` is also the whole of the Open Inference
Protocol v2 error object, so v1 and v2 routes share one format. No handler ever
puts a traceback in a response; unexpected errors are logged and answered 500.
"""

__all__ = ["ApiError", "error_response", "register_error_handlers"]

import json
import logging

from flask import Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger("mpiml.serve")

# Werkzeug/Flask HTTP exceptions mapped to our error codes; anything else gets
# its upper-cased reason phrase ("Not Found" -> "NOT_FOUND").
_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}

# An over-limit body is read and discarded up to this many bytes before the
# answer, so that the client receives the 413 instead of a connection reset.
_DRAIN_LIMIT = 64 * 1024 * 1024


class ApiError(Exception):
    """An error answered to the client as JSON.

    Parameters
    ----------
    status : int
        HTTP status (400, 404, 405, 413, 415, 503, ...).
    code : str
        Stable machine-readable error code, e.g. ``"INVALID_VALUE"``.
    message : str
        Human-readable message naming the offending field, row or column.
    """

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status, code, message, headers=None):
    body = json.dumps({"error": message, "error_code": code})
    return Response(body, status=status, mimetype="application/json", headers=headers)


def _drain_input():
    """Discard an unread request body (bounded) so the client sees our answer."""
    length = request.content_length
    if length is None or length > _DRAIN_LIMIT:
        return False
    stream = request.environ.get("wsgi.input")
    try:
        while length > 0:
            chunk = stream.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)
    except Exception:  # noqa: BLE001 - a broken client stream must not matter here
        return False
    return True


def register_error_handlers(app):
    """Install handlers for ApiError, every HTTPException and any other Exception."""

    @app.errorhandler(ApiError)
    def _api_error(exc):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc):
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        if isinstance(exc, RequestEntityTooLarge):
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body larger than the limit of {limit} bytes (MPIML_MAX_BODY_BYTES)"
            if not _drain_input():
                headers["Connection"] = "close"
            return error_response(413, "PAYLOAD_TOO_LARGE", message, headers)
        code = _HTTP_CODES.get(exc.code) or (exc.name or "ERROR").upper().replace(" ", "_")
        message = exc.description or exc.name
        if exc.code == 404:
            message = f"no route for {request.method} {request.path}"
        elif exc.code == 405:
            message = (f"method {request.method} not allowed on {request.path}; "
                       f"allowed: {headers.get('Allow', '')}")
        return error_response(exc.code or 500, code, message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "INTERNAL_ERROR", "internal server error")
