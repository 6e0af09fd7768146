"""API plumbing: Decimal-preserving JSON parser, pagination, and the one error shape.

Every error body is ``{"error": {"code": "...", "message": "...", "fields": {...}}}``;
``fields`` appears for validation errors and names each field at fault.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """An error with a stable machine-readable code and an HTTP status."""

    def __init__(self, *, code: str, message: str, http_status: int, fields: Any = None) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = http_status
        self.error_code = code
        self.fields = fields


def error_body(code: str, message: str, fields: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        flat = [_flatten(item) for item in detail]
        return flat[0] if len(flat) == 1 and isinstance(flat[0], str) else flat
    return str(detail)


_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "malformed_request",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        response.data = error_body(exc.error_code, str(exc.detail), exc.fields)
    elif isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if isinstance(fields, dict):
            names = ", ".join(fields)
            message = f"Invalid request: check {names}."
        else:
            message = "Invalid request."
            fields = {"non_field_errors": fields}
        response.data = error_body("validation_error", message, fields)
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), "error")
        detail = getattr(exc, "detail", str(exc))
        if code == "authentication_failed":
            code = str(getattr(detail, "code", None) or code)
        message = str(detail)
        if isinstance(exc, exceptions.Throttled):
            seconds = getattr(exc, "wait", None)
            wait = int(seconds) + 1 if seconds is not None else None
            message = "Too many requests for this API key" + (
                f"; retry in {wait} seconds." if wait else "."
            )
        response.data = error_body(code, message)
    return response


# The one error shape, as an OpenAPI schema (for the operations' documented errors).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": True},
            },
        }
    },
}


def errors(**statuses: str) -> dict[Any, OpenApiResponse]:
    """Documented error responses: the ones every operation can give, plus ``statuses``
    (``e409="why"``). Always JSON, also where the success is not (the CSV report)."""
    common = {
        401: "No API key, or a bad one",
        403: "The API key lacks the scope this operation needs (missing_scope names it)",
        406: "An Accept header the operation's renderer cannot satisfy",
        413: "A body over DJANGO_MAX_BODY_BYTES",
        429: "Too many requests for this API key",
    }
    common.update({int(name[1:]): why for name, why in statuses.items()})
    return {code: OpenApiResponse(ERROR_SCHEMA, description=why) for code, why in common.items()}


def json_errors(**statuses: str) -> dict[Any, OpenApiResponse]:
    """:func:`errors` for an operation whose success is not JSON (the CSV report)."""
    return {(code, "application/json"): response for code, response in errors(**statuses).items()}
