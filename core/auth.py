"""`Authorization: Bearer <api key>` authentication for the merchant API."""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from .degraded import degraded
from .models import ApiClient, Scope, hash_secret
from .services import API_KEY_PREFIX, api_client_touch


class ApiKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, str] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword:
            raise exceptions.AuthenticationFailed(
                "Use the header 'Authorization: Bearer <api key>'.", code="invalid_auth_scheme"
            )
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "The Authorization header must be 'Bearer <api key>'.", code="invalid_auth_header"
            )
        try:
            key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(
                "Invalid API key.", code="invalid_api_key"
            ) from None
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != API_KEY_PREFIX:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        client = ApiClient.objects.select_related("acts_for").filter(key_prefix=parts[1]).first()
        if client is None or not hmac.compare_digest(client.key_hash, hash_secret(key)):
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if client.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                "This API key was revoked.", code="revoked_api_key"
            )
        api_client_touch(client=client)
        return client, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class HasApiClient(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ApiClient)


class HasScope(HasApiClient):
    """An API client whose key has ``required_scope``; otherwise a 403 ``missing_scope`` in the
    one error shape, naming the scope. (No client at all stays a 401.)"""

    required_scope: str = ""

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            return False
        if not client.has_scope(self.required_scope):
            # Imported here: core.api imports DRF's views, which import this module's
            # authentication class through the settings.
            from .api import ApiError

            raise ApiError(
                code="missing_scope",
                message=f"This API key lacks the '{self.required_scope}' scope this operation "
                f"needs (it has: {', '.join(client.scopes) or 'none'}); an operator grants it "
                "in the admin or with create_api_key --scope.",
                http_status=403,
                fields={"scope": self.required_scope},
            )
        return True


class HasPaymentsScope(HasScope):
    required_scope = Scope.PAYMENTS


class HasReconciliationScope(HasScope):
    required_scope = Scope.RECONCILIATION


class HasWebhooksScope(HasScope):
    required_scope = Scope.WEBHOOKS


def request_client(request: Request) -> ApiClient:
    """The API client whose data an authenticated request works on (every merchant API view
    requires one): the key's own client, or the one a second key acts for."""
    assert isinstance(request.user, ApiClient)
    return request.user.owner


def request_key(request: Request) -> ApiClient:
    """The API key's own client: who acts, for the audit trail and the second-person rule."""
    assert isinstance(request.user, ApiClient)
    return request.user


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "core.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API key from create_api_key"}


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (API_RATE_LIMIT); STK Push has its own, lower limit
    (API_STK_PUSH_RATE_LIMIT), since each one costs a Daraja call and a customer prompt.
    Fails open (logged and counted, core.degraded) when the cache is unreachable."""

    scope = "api"

    def get_rate(self) -> str | None:
        return str(settings.API_RATE_LIMIT)

    def allow_request(self, request: Request, view: Any) -> bool:
        if getattr(view, "throttle_scope", None) == "stk_push":
            self.scope = "stk_push"
            self.rate = str(settings.API_STK_PUSH_RATE_LIMIT)
        else:
            self.scope = "api"
            self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            # The shared cache (Redis) is unreachable: the request history is out of reach,
            # and refusing every merchant request would turn a cache outage into a payments
            # outage. Fail open, on record.
            degraded("throttle", exc, "throttle cache unreachable; request allowed")
            return True

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.user, ApiClient):
            return None  # unauthenticated requests are refused before this matters
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
