"""One error shape for every API failure, whatever raised it.

    {"error": {"code": "invalid_input", "message": "…", "fields": {…}}}

`code` is stable for clients to switch on; it reuses the WebSocket's
codes where the two mean the same thing.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

from events.validation import MessageError
from recommendations.metrics_counters import counters

logger = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/healthz")
NOT_FOUND_NAME = "api-not-found"

# DRF's codes renamed where the WebSocket already has a word for it.
CODES = {
    "invalid": "invalid_input",
    "parse_error": "invalid_json",
    "permission_denied": "forbidden",
    "throttled": "rate_limited",
}

MESSAGE_STATUS = {
    "unknown_item": status.HTTP_404_NOT_FOUND,
    "forbidden": status.HTTP_403_FORBIDDEN,
}


class ApiError(exceptions.APIException):
    """An error with our own code and extra members for the envelope."""

    def __init__(self, status_code, code, message, **extra):
        super().__init__(message, code)
        self.status_code = status_code
        self.extra = extra


def from_message_error(error):
    status_code = MESSAGE_STATUS.get(error.code, status.HTTP_400_BAD_REQUEST)
    return ApiError(status_code, error.code, error.message)


def envelope(code, message, **extra):
    return {"error": {"code": code, "message": message, **extra}}


def api_exception_handler(exc, context):
    if isinstance(exc, MessageError):
        exc = from_message_error(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = ApiError(413, "too_large", f"a request body may be at most {limit} bytes")

    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context["request"].path)
        _count_error("server_error")
        return JsonResponse(
            envelope("server_error", "the server failed to answer; it was logged"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    response.data = _error_body(exc)
    _count_error(response.data["error"]["code"])
    return response


def _count_error(code):
    # The socket's errors carry no `via` label: this one tells them apart.
    counters.increment("errors_total", code=code, via="rest")


def _error_body(exc):
    if isinstance(exc, ApiError):
        return envelope(exc.detail.code, str(exc.detail), **exc.extra)
    if isinstance(exc, exceptions.ValidationError):
        return _validation_body(exc.detail)

    code = getattr(exc.detail, "code", None) or exc.default_code
    return envelope(CODES.get(code, code), str(exc.detail))


def _validation_body(detail):
    if isinstance(detail, dict):
        fields = _plain(detail)
        names = ", ".join(fields)
        return envelope("invalid_input", f"invalid fields: {names}", fields=fields)

    messages = _plain(detail)
    if isinstance(messages, list):
        messages = " ".join(str(m) for m in messages)
    return envelope("invalid_input", messages)


def _plain(detail):
    """ErrorDetail trees as plain strings, lists and dicts."""
    if isinstance(detail, dict):
        return {str(k): _plain(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_plain(v) for v in detail]
    return str(detail)


def is_api_path(path):
    return path.startswith(API_PREFIXES)


def api_not_found(request, *args, **kwargs):
    """A JSON 404 for any /api/ path no endpoint answers."""
    message = f"no endpoint at {request.path}"
    if not request.path.endswith("/") and _resolves(request.path + "/"):
        message += f"; did you mean {request.path}/ ?"
    _count_error("not_found")
    return JsonResponse(envelope("not_found", message), status=404)


def _resolves(path):
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.url_name != NOT_FOUND_NAME


def page_not_found(request, exception=None):
    if is_api_path(request.path):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if is_api_path(request.path):
        _count_error("server_error")
        return JsonResponse(
            envelope("server_error", "the server failed to answer; it was logged"),
            status=500,
        )
    return defaults.server_error(request)
