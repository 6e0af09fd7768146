"""System checks: `manage.py check` (and `check --deploy`, runserver, migrate) and the start-up of
the WSGI application refuse what must never be served."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.core.checks import CheckMessage, Error, Tags, register
from django.db import DatabaseError

# `make run`'s demo login (payments/management/commands/bootstrap_demo.py). Public: anyone can read
# it in the README, so no server without DJANGO_DEBUG=true may keep it.
DEMO_PASSWORD = "admin"  # public on purpose: local development only


@register(Tags.security)
def demo_admin_password(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """An Error when debug is off and an active superuser's password is the demo password.

    One query (the active superusers' names and hashes); the hashes are then checked in memory."""
    if settings.DEBUG:
        return []
    User = get_user_model()
    try:
        superusers = list(
            User._default_manager.filter(is_superuser=True, is_active=True).values_list(
                User.USERNAME_FIELD, "password"
            )
        )
    except DatabaseError:  # no database or no tables yet (before the first migrate)
        return []
    return [
        Error(
            f"The superuser {username!r} has the public demo password of `make run`, and "
            "DJANGO_DEBUG is false: anyone could log in to the admin.",
            hint=f"Change it (python manage.py changepassword {username}) or deactivate the user.",
            id="core.E001",
        )
        for username, encoded in superusers
        if check_password(DEMO_PASSWORD, encoded)
    ]


def refuse_to_serve() -> None:
    """Called as the WSGI application starts (gunicorn does not run system checks)."""
    from django.core.exceptions import ImproperlyConfigured

    errors = [e for e in demo_admin_password(None) if e.is_serious()]
    if errors:
        raise ImproperlyConfigured("; ".join(f"{e.id}: {e.msg} {e.hint}" for e in errors))
