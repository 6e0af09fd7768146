"""Gives every request an id (from X-Request-ID when sane, else new), for logs and responses."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from .logging import request_id_var
from .metrics import HTTP_REQUESTS, observe

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Every request's duration, by URL pattern (never the URL itself: it may carry a
    token), method and status code (core.metrics)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        observe(
            HTTP_REQUESTS,
            time.perf_counter() - started,
            route=(match.route or match.view_name or "-") if match is not None else "unmatched",
            method=request.method if request.method in _METHODS else "other",
            status=str(response.status_code),
        )
        return response


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


# What a multipart body may carry besides the statement file: its boundaries, headers and
# the form's other fields.
MULTIPART_ALLOWANCE = 64 * 1024


class BodySizeLimitMiddleware:
    """Refuse request bodies over DJANGO_MAX_BODY_BYTES with a clear 413 in the API's error
    shape (Django alone answers a bare 400 only when the body is read). The statement upload
    (API and admin) takes files up to RECONCILIATION_MAX_UPLOAD_BYTES instead; the callback
    endpoint has its own, smaller cap and records what it refuses."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    @staticmethod
    def limit_for(path: str) -> int | None:
        if path.startswith("/payments/callback/"):
            return None
        if path in (
            reverse("reconciliation-statement-upload"),
            reverse("admin:reconciliation_statement_add"),
        ):
            return int(settings.RECONCILIATION_MAX_UPLOAD_BYTES) + MULTIPART_ALLOWANCE
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return None if limit is None else int(limit)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = self.limit_for(request.path)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return JsonResponse(
                {
                    "error": {
                        "code": "payload_too_large",
                        "message": f"Request body over {limit} bytes.",
                    }
                },
                status=413,
            )
        return self.get_response(request)
