"""`python manage.py bootstrap_demo`: the demo admin user and the demo API key for `make run`.

Refuses to run against production Daraja: the demo admin password is public (and a deployment
with DJANGO_DEBUG=false refuses to start while a superuser still has it: core/checks.py).

Every run uses the same built-in demo API client (the one the demo page's payments belong to)
and gives it a new key: only a key's hash is stored, so the previous key cannot be shown again,
but the new one sees every payment made before with the old keys and on the demo page.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.checks import DEMO_PASSWORD
from core.services import api_client_rotate_key
from payments.demo import demo_client

DEMO_USER = "admin"


class Command(BaseCommand):
    help = (
        "Create the demo admin user (admin/admin) and print a new key for the demo API client "
        "(the previous demo key stops working; the new one sees the same payments)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args: Any, host: str, port: str, **options: Any) -> None:
        if settings.MPESA_ENV == "production" or not settings.DEBUG:
            raise CommandError("bootstrap_demo is for local development (DJANGO_DEBUG=true) only")
        User = get_user_model()
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "admin@example.com", DEMO_PASSWORD)
        new = api_client_rotate_key(client=demo_client())
        base = f"http://{host}:{port}"
        lines = [
            "",
            "M-Pesa Payments is starting (Ctrl-C stops everything).",
            f"  Demo page:    {base}/demo/",
            f"  API docs:     {base}/api/docs/",
            f"  Admin:        {base}/admin/   (user {DEMO_USER}, password {DEMO_PASSWORD})",
            f"  Daraja:       {settings.MPESA_BASE_URL}  (MPESA_ENV={settings.MPESA_ENV})",
            f"  API key:      {new.key}  (scopes: {', '.join(new.client.scopes)})",
            f"                (API client {new.client.name!r}, prefix {new.client.key_prefix}: "
            "a new key each start, for the same client;",
            "                it sees every payment made with earlier demo keys and on the demo "
            "page; earlier keys no longer work)",
            "",
            "Try it:",
            f"  curl -s -X POST {base}/payments/stk-push/ \\",
            f"    -H 'Authorization: Bearer {new.key}' -H 'Content-Type: application/json' \\",
            '    -d \'{"phone_number": "0712345678", "amount": 10, '
            '"account_reference": "ORDER1", "description": "Demo"}\'',
            f"  curl -s {base}/payments/ -H 'Authorization: Bearer {new.key}'",
            "",
        ]
        self.stdout.write("\n".join(lines))
