"""Optional error reporting to Sentry (SENTRY_DSN), with the Django and Celery integrations.

Nothing leaves the process unmasked: every string of an event or breadcrumb goes through the
same masking as the logs (phone numbers, callback and C2B URL tokens, bearer credentials,
API keys); request bodies, local variables, cookies, users and query data are never sent
(``data_collection``).
"""

from __future__ import annotations

from typing import Any

from .logging import mask_text


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    return value


def scrub_event(event: Any, hint: dict[str, Any]) -> Any:
    """``before_send``: the event with every string masked."""
    return _masked(event)


def scrub_breadcrumb(crumb: Any, hint: dict[str, Any]) -> Any:
    """``before_breadcrumb``: the breadcrumb (a log line, a query) with every string masked."""
    return _masked(crumb)


def sentry_init(
    *, dsn: str, environment: str, traces_sample_rate: float = 0.0, transport: Any = None
) -> None:
    """Start reporting to Sentry (called by the settings when SENTRY_DSN is set)."""
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_bodies": [],
            "url_query_params": {"mode": "denylist"},
            "database_query_data": False,
            "stack_frame_variables": False,
        },
        max_request_body_size="never",
        include_local_variables=False,
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
        traces_sample_rate=traces_sample_rate,
        **options,
    )
