"""`python manage.py bootstrap_demo`: the demo admin user and a fresh API key for `make run`.

Refuses to run against production Daraja: the demo admin password is public.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.services import api_client_create

DEMO_USER = "admin"
DEMO_PASSWORD = "admin"


class Command(BaseCommand):
    help = "Create the demo admin user (admin/admin) and print a new API key and the URLs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args: Any, host: str, port: str, **options: Any) -> None:
        if settings.MPESA_ENV == "production" or not settings.DEBUG:
            raise CommandError("bootstrap_demo is for local development (DJANGO_DEBUG=true) only")
        User = get_user_model()
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "admin@example.com", DEMO_PASSWORD)
        # Local only: the demo key does the books too, so that the README's statement upload
        # works with it (a production key takes payments only unless given the scope).
        new = api_client_create(name="demo", scopes=["payments", "reconciliation"])
        base = f"http://{host}:{port}"
        lines = [
            "",
            "M-Pesa Payments is starting (Ctrl-C stops everything).",
            f"  Demo page:    {base}/demo/",
            f"  API docs:     {base}/api/docs/",
            f"  Admin:        {base}/admin/   (user {DEMO_USER}, password {DEMO_PASSWORD})",
            f"  Daraja:       {settings.MPESA_BASE_URL}  (MPESA_ENV={settings.MPESA_ENV})",
            f"  API key:      {new.key}  (scopes: {', '.join(new.client.scopes)})",
            "",
            "Try it:",
            f"  curl -s -X POST {base}/payments/stk-push/ \\",
            f"    -H 'Authorization: Bearer {new.key}' -H 'Content-Type: application/json' \\",
            '    -d \'{"phone_number": "0712345678", "amount": 10, '
            '"account_reference": "ORDER1", "description": "Demo"}\'',
            "",
        ]
        self.stdout.write("\n".join(lines))
